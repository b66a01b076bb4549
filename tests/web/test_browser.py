"""A real browser (Playwright driving Debian's chromium, headless, no internet) against a real
api-server + scheduler + dag-processor with the plugin loaded and the demo's published history.

People log in through Airflow's own login page, open the Metrics Center inside Airflow's UI, approve
stages with the page's buttons and watch the run go on. Screenshots land in a temporary folder, or in
``$METRICS_CENTER_SCREENSHOTS`` (e.g. ``docs/screenshots``) when set.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from metrics_center.approvals.answers import HOLD_S
from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
PEOPLE = ("bob", "carol", "dave", "erin", "frank")
LOGICAL = "2026-11-27T00:00:00+00:00"
GMV_RUN = "browser__2026-11-27"
LEADS_RUN = "browser_fast__2026-11-27"
FAST_ANSWER_S = 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory, demo_data) -> Iterator[tuple[LocalAirflow, object, sa.Engine]]:
    """Airflow with the demo's 75 days of history in a SQLite mart, and gmv_daily waiting for bob."""
    root = tmp_path_factory.mktemp("browser")
    include = root / "include"
    shutil.copytree(REPO / "include", include)
    for path in (include / "metrics").glob("[!_]*.yaml"):  # manual runs only: none of the scheduler's own
        text = path.read_text()
        path.write_text(
            text.replace('schedule: "@daily"', "schedule: null").replace(
                'schedule: "0 2 * * 1"', "schedule: null"
            )
        )
    mart_path = root / "metrics_mart.db"
    port = _free_port()
    env = airflow_environment(
        home=root / "airflow",
        port=port,
        passwords={"admin": "admin", **{p: f"{p}-pw" for p in PEOPLE}},
        roles={"admin": "admin", **{p: "user" for p in PEOPLE}},
        extra={
            "METRICS_CENTER_HOME": str(include),
            "METRICS_CENTER_DATA_ROOT": str(demo_data.root),
            "METRICS_CENTER_STAGING": (root / "staging").as_uri(),
            "AIRFLOW_CONN_METRICS_MART": json.dumps({"conn_type": "sqlite", "host": str(mart_path)}),
            "AIRFLOW_CONN_SALES_DB": os.environ["AIRFLOW_CONN_SALES_DB"],
        },
    )
    airflow = LocalAirflow(env=env, port=port)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")
    airflow.run("metrics-center", "pools", "sync")  # extracts of a limited source wait for their pool
    airflow.start()
    try:
        airflow.run("metrics-center", "demo", "history", "--end", "2026-11-27")
        admin = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", admin.healthy)
        airflow.wait_for_dags(admin, ["gmv_daily", "lead_conversion_rate"])
        admin.post("/api/v2/dags/gmv_daily/dagRuns", {"dag_run_id": GMV_RUN, "logical_date": LOGICAL})
        for dag_id in ("gmv_daily", "lead_conversion_rate"):
            admin.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        yield airflow, admin, sa.create_engine(f"sqlite:///{mart_path}")
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives every browser a fresh temporary profile (user-data-dir) of its own.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    wanted = os.environ.get("METRICS_CENTER_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _context(browser, airflow: LocalAirflow, *, locale: str = "en-US"):
    """A browser context that may reach only this Airflow: the pages must work without internet."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 1000}, device_scale_factor=1, locale=locale
    )
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(airflow.url) else route.abort(),
    )
    return context


def _log_in(browser, airflow: LocalAirflow, user: str, *, locale: str = "en-US"):
    context = _context(browser, airflow, locale=locale)
    page = context.new_page()
    page.goto(f"{airflow.url}/auth/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", f"{user}-pw")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    assert any(c["name"] == "_token" for c in context.cookies()), "Airflow's login set no _token cookie"
    return context, page


def _wait_task(airflow: LocalAirflow, api, dag_id: str, run_id: str, task_id: str, states: set[str]) -> dict:
    def reached():
        current = airflow.task_states(api, dag_id, run_id)
        return current if current.get(task_id) in states else None

    return airflow.wait(f"{dag_id}.{task_id} in {states}", reached, timeout=240, every=0.5)


def _run_state(airflow: LocalAirflow, api, dag_id: str, run_id: str) -> str:
    def finished():
        state = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return airflow.wait(f"{dag_id} {run_id} to finish", finished, timeout=240)


def _parked_at(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> float:
    """When the task started waiting (its last state change), from Airflow's metadata database: the
    REST API does not expose it. The page holds the answer, so the task is still waiting now."""
    engine = sa.create_engine(f"sqlite:///{airflow.home / 'airflow.db'}")
    with engine.connect() as conn:
        state, updated_at = conn.execute(
            sa.text(
                "SELECT state, updated_at FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r AND task_id = :t AND map_index = -1"
            ),
            {"d": dag_id, "r": run_id, "t": task_id},
        ).one()
    engine.dispose()
    assert state == "awaiting_input", state
    return _epoch(updated_at)


def _epoch(moment: datetime | str) -> float:
    """Seconds since the epoch of a UTC time as SQLite hands it back (text, no zone)."""
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def test_anonymous_visitors_are_refused(live, browser):
    airflow, _, _ = live
    context = _context(browser, airflow)
    page = context.new_page()
    for path in ("/metrics-center/", "/metrics-center/metrics", "/metrics-center/audit"):
        response = page.goto(airflow.url + path)
        assert response.status == 401
        assert "Log in to Airflow" in page.content()
    api = page.request.get(airflow.url + "/metrics-center/api/approvals")
    assert api.status == 401
    context.close()


def test_bob_approves_inside_airflows_ui_and_the_next_stage_waits(live, browser, shots):
    airflow, admin, _ = live
    airflow.wait_parked(admin, "gmv_daily", GMV_RUN, "approve_sales_review")
    intruder, erins = _log_in(browser, airflow, "erin")  # logged in, but not an approver of this stage
    form = f"{airflow.url}/metrics-center/approvals/gmv_daily/{GMV_RUN}/approve_sales_review"
    answered = erins.request.post(
        form, form={"action": "approve"}, headers={"origin": airflow.url}, max_redirects=0
    )
    assert answered.status == 303
    erins.goto(f"{airflow.url}/metrics-center/")
    assert erins.locator(".flash").inner_text() == "erin is not an approver of sales review (bob)"
    intruder.close()

    context, page = _log_in(browser, airflow, "bob")
    page.goto(f"{airflow.url}/plugin/metrics-center")
    frame = page.frame_locator('iframe[title="Metrics Center"]')
    card = frame.locator("article.card", has_text="sales review")
    card.wait_for(timeout=30_000)
    frame.locator(".mc-chart[data-drawn=true]").first.wait_for(timeout=15_000)  # uPlot, served by us
    assert "Anomalies of this run" in card.inner_text() and "region=east, channel=app" in card.inner_text()
    page.screenshot(path=str(shots / "my-approvals.png"))

    card.get_by_role("button", name="Approve", exact=True).click()
    flash = frame.locator(".flash")
    flash.wait_for(timeout=30_000)
    assert flash.inner_text() == "Approved sales review of GMV (成交额) for 2026-11-26."
    page.screenshot(path=str(shots / "approved.png"))
    states = _wait_task(airflow, admin, "gmv_daily", GMV_RUN, "approve_finance_sign_off", {"awaiting_input"})
    assert states["approve_sales_review"] == "success" and states["publish"] is None
    # Carol answers next (the next test): the stage must be parked as the scheduler sees it, not only
    # "awaiting_input" in the API — waiting on that condition, not on the page's 2.5 s hold.
    airflow.wait_parked(admin, "gmv_daily", GMV_RUN, "approve_finance_sign_off")
    context.close()


#: Words of the pages' English that a Chinese reader must not meet (data — names, keys, SQL — may stay).
ENGLISH_LABELS = (
    "My approvals",
    "Metric dictionary",
    "Evidence",
    "Anomalies of this run",
    "Rows extracted per source",
    "Quality checks",
    "Earlier stages",
    "open in Airflow",
    "Reason",
    "Latest values",
    "Version history",
    "Who approved the last periods",
    "Sources and SQL",
    "every decision",
    "Quality rules",
    "Change note",
)


def test_dave_reads_the_waiting_stage_and_the_dictionary_in_chinese(live, browser, shots):
    """A browser asking for zh-CN (dave has no locale in _teams.yaml) gets every page and the evidence in
    简体中文: Airflow's English body is replaced by the one the approval task wrote in Chinese."""
    airflow, _, _ = live
    context, page = _log_in(browser, airflow, "dave", locale="zh-CN")
    page.goto(f"{airflow.url}/metrics-center/")
    card = page.locator("article.card", has_text="finance sign-off")
    card.wait_for(timeout=30_000)
    page.locator(".mc-chart[data-drawn=true]").first.wait_for(timeout=15_000)
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("main > h1").inner_text() == "我的审批"
    text = card.inner_text()
    for chinese in (
        "审批依据",
        "本次运行的异常",
        "各数据源抽取的行数",
        "质量检查",
        "之前的审批阶段",
        "驳回",
        "数据源",
        "变更说明",
    ):
        assert chinese in text, chinese
    assert "sales review: approved by bob" in text  # the earlier stage's answer, as recorded
    page.screenshot(path=str(shots / "my-approvals-zh.png"), full_page=True)
    pages = {"dictionary-zh": "/metrics-center/metrics", "metric-zh": "/metrics-center/metrics/gmv_daily"}
    pages["audit-zh"] = "/metrics-center/audit?metric=gmv_daily"
    seen = [text]
    for name, path in pages.items():
        page.goto(airflow.url + path)
        if name == "metric-zh":
            page.locator(".mc-chart[data-drawn=true]").first.wait_for(timeout=15_000)
        seen.append(page.locator("body").inner_text())
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert "指标字典" in seen[1] and "最新数值" in seen[2] and "已批准" in seen[3]
    for label in ENGLISH_LABELS:
        assert not any(label in words for words in seen), label
    context.close()


def test_carol_approves_the_anomaly_as_expected_and_the_value_is_published(live, browser, shots):
    airflow, admin, mart = live
    context, page = _log_in(browser, airflow, "carol")
    page.goto(f"{airflow.url}/metrics-center/")
    card = page.locator("article.card", has_text="finance sign-off")
    card.wait_for(timeout=30_000)
    assert "sales review: approved by bob" in card.inner_text()
    card.locator("textarea[name=reason]").fill("Flash sale in the east, announced by sales.")
    card.get_by_role("button", name="Approve — expected").click()
    page.locator(".flash").wait_for(timeout=30_000)
    assert "1 anomaly marked expected by Carol Zhang." in page.locator(".flash").inner_text()
    assert _run_state(airflow, admin, "gmv_daily", GMV_RUN) == "success"

    page.goto(f"{airflow.url}/metrics-center/metrics")
    page.screenshot(path=str(shots / "dictionary.png"), full_page=True)
    page.goto(f"{airflow.url}/metrics-center/metrics/gmv_daily")
    page.locator(".mc-chart[data-drawn=true]").first.wait_for(timeout=15_000)
    latest = page.locator("section", has_text="Latest values")
    assert "2026-11-26" in latest.locator("h2").inner_text()
    assert "sales review: bob; finance sign-off: carol" in latest.inner_text()
    assert "None." in page.locator("section", has_text="Open anomalies").inner_text()
    page.screenshot(path=str(shots / "metric.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_text("Download all published values (CSV)").click()
    csv_text = Path(download.value.path()).read_text(encoding="utf-8")
    with mart.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM metric_value_current WHERE metric_key='gmv_daily'")
        ).scalar()
    assert csv_text.count("\n") == stored + 1

    page.goto(f"{airflow.url}/metrics-center/audit?metric=gmv_daily")
    assert page.locator("tr.decision-approved").count() == 2
    assert "erin is not an approver" in page.locator("tr.decision-refused_attempt").inner_text()
    page.goto(f"{airflow.url}/dags/gmv_daily/plugin/metric")  # the "Metric" tab on the DAG's page
    tab = page.frame_locator("iframe").locator("h1", has_text="GMV (成交额)")
    tab.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "dag-tab.png"))
    context.close()


def test_an_answer_within_a_fifth_of_a_second_still_ends_as_a_normal_approval(live, browser, shots):
    """Airflow 3.3.2 fails a task answered < ~1 s after it parks; the page's answer is held, not lost."""
    airflow, admin, mart = live
    context, page = _log_in(browser, airflow, "frank")
    page.goto(f"{airflow.url}/metrics-center/")
    admin.post(
        "/api/v2/dags/lead_conversion_rate/dagRuns", {"dag_run_id": LEADS_RUN, "logical_date": LOGICAL}
    )
    ti_url = f"/api/v2/dags/lead_conversion_rate/dagRuns/{quote(LEADS_RUN, safe='')}/taskInstances/approve"
    action = f"/metrics-center/approvals/lead_conversion_rate/{quote(LEADS_RUN, safe='')}/approve"
    with page.expect_navigation(timeout=60_000):
        clicked_at = page.evaluate(
            """({tiUrl, action}) => new Promise((resolve) => {
                // Ask Airflow's own API for the task's state every 25 ms (≤ 3 requests in flight), and
                // submit the page's Approve form, with the page's login, the moment it waits.
                let done = false, inFlight = 0;
                const approve = () => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    const button = document.createElement("button");
                    button.name = "action";
                    button.value = "approve";
                    form.appendChild(button);
                    document.body.appendChild(form);
                    const now = Date.now() / 1000;
                    button.click();
                    resolve(now);
                };
                const poll = async () => {
                    inFlight += 1;
                    try {
                        const response = await fetch(tiUrl, {credentials: "same-origin"});
                        const state = response.ok ? (await response.json()).state : null;
                        if (!done && state === "awaiting_input") { done = true; approve(); }
                    } finally { inFlight -= 1; }
                };
                const timer = setInterval(() => {
                    if (done) clearInterval(timer); else if (inFlight < 3) poll();
                }, 25);
            })""",
            {"tiUrl": ti_url, "action": action},
        )
        parked_at = _parked_at(airflow, "lead_conversion_rate", LEADS_RUN, "approve")  # while held
    delay = clicked_at - parked_at
    print(f"answered through the page {delay:.3f} s after the stage started to wait")
    assert 0 <= delay < FAST_ANSWER_S, delay
    flash = page.locator(".flash")
    flash.wait_for(timeout=30_000)
    assert (
        flash.inner_text()
        == "Approved marketing review of Lead → order conversion rate (线索转化率) for 2026-11-26."
    )
    assert _run_state(airflow, admin, "lead_conversion_rate", LEADS_RUN) == "success"
    states = airflow.task_states(admin, "lead_conversion_rate", LEADS_RUN)
    assert (states["approve"], states["publish"]) == ("success", "success")
    with mart.connect() as conn:
        decisions = conn.execute(
            sa.text(
                "SELECT decision, decided_by, via, decided_at FROM approval_event "
                "WHERE run_id = :r AND decision <> 'requested' ORDER BY id"
            ),
            {"r": LEADS_RUN},
        ).all()
        published = conn.execute(
            sa.text("SELECT count(*) FROM metric_value_current WHERE run_id = :r"), {"r": LEADS_RUN}
        ).scalar()
    assert [tuple(d[:3]) for d in decisions] == [
        ("submitted", "frank", "page"),
        ("approved", "frank", "page"),
    ]
    held = _epoch(decisions[0].decided_at) - parked_at
    assert held >= HOLD_S - 0.1, held  # passed on to Airflow only once the stage had been parked 2.5 s
    assert published > 0
    page.goto(f"{airflow.url}/metrics-center/audit")
    assert page.locator("tr.decision-approved").count() == 3
    assert page.locator("tr.decision-refused_attempt").count() == 1
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    context.close()
