"""One slower test against a real api-server + scheduler + dag-processor (LocalExecutor, SQLite metadata).

It covers what ``dag.test()`` cannot: the scheduler's approval timeout sweep (``on_timeout``), answers
recorded over HTTP while the scheduler is running, and the Asset event of a real publish.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)

REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"
LOGICAL = "2026-11-27T00:00:00+00:00"
RUN_ID = "live__2026-11-27"
OTHER_PERIOD_RUN_ID = "live__2026-11-26"  # computes 2026-11-25
SAME_PERIOD_RUN_ID = "live__2026-11-27-again"  # 06:00 the same day: computes 2026-11-26 too
PEOPLE = ("bob", "carol", "dave", "erin", "frank")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edit(path: Path, **replacements: str) -> None:
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{old!r} not in {path.name}"
        text = text.replace(old, new)
    path.write_text(text)


@pytest.fixture(scope="module")
def live(tmp_path_factory, postgres_mart_url, demo_data):
    root = tmp_path_factory.mktemp("live")
    include = root / "include"
    shutil.copytree(REPO_INCLUDE, include)
    metrics = include / "metrics"
    # Manual runs only (no scheduled run racing ours), and a 5 s approval timeout where we test it.
    _edit(metrics / "gmv_daily.yaml", **{'schedule: "@daily"': "schedule: null"})
    _edit(
        metrics / "lead_conversion_rate.yaml",
        **{'schedule: "@daily"': "schedule: null", "timeout: 48h": "timeout: 5s"},
    )
    _edit(
        metrics / "refund_rate_weekly.yaml",
        **{'schedule: "0 2 * * 1"': "schedule: null", "timeout: 3d": "timeout: 5s"},
    )
    _edit(metrics / "refunds_daily.yaml", **{'schedule: "@daily"': "schedule: null"})
    # refund_rate_daily keeps `schedule: inputs`: it runs when gmv_daily or refunds_daily publishes.
    mart = sa.create_engine(postgres_mart_url.replace("postgresql://", "postgresql+psycopg://"))
    with mart.begin() as conn:  # start from an empty mart, whatever ran before
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS metrics_mart"))
        tables = conn.execute(
            sa.text(
                "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
                "WHERE schemaname = 'metrics_mart' AND tablename <> 'mart_schema_version'"
            )
        ).scalar()
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join('metrics_mart.' + t for t in tables.split(', '))}"))
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
            "AIRFLOW_CONN_METRICS_MART": postgres_mart_url,
            "AIRFLOW_CONN_SALES_DB": os.environ["AIRFLOW_CONN_SALES_DB"],
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
        },
    )
    env.pop("AIRFLOW__CORE__DAGS_FOLDER_OVERRIDE", None)
    airflow = LocalAirflow(env=env, port=port)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")  # the privileged step: tasks never migrate
    airflow.run("metrics-center", "pools", "sync")  # extracts of a limited source wait for their pool
    airflow.start()
    try:
        admin = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", admin.healthy)
        dag_ids = ["gmv_daily", "lead_conversion_rate", "refund_rate_weekly"]
        airflow.wait_for_dags(admin, [*dag_ids, "refunds_daily", "refund_rate_daily"])
        for dag_id in dag_ids:
            admin.post(f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": LOGICAL})
            admin.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        for dag_id in ("refunds_daily", "refund_rate_daily"):
            admin.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        yield (
            airflow,
            admin,
            sa.create_engine(postgres_mart_url.replace("postgresql://", "postgresql+psycopg://")),
        )
    finally:
        airflow.stop()


def _wait_state(
    airflow: LocalAirflow, api, dag_id: str, task_id: str, states: set[str], run_id: str = RUN_ID
) -> dict:
    def reached():
        current = airflow.task_states(api, dag_id, run_id)
        return current if current.get(task_id) in states else None

    return airflow.wait(f"{dag_id}.{task_id} in {states}", reached, timeout=180)


def _run_state(airflow: LocalAirflow, api, dag_id: str, run_id: str = RUN_ID) -> str:
    def finished():
        state = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return airflow.wait(f"{dag_id} to finish", finished, timeout=180)


def _answer(
    airflow: LocalAirflow, dag_id: str, task_id: str, user: str, option: str, run_id: str = RUN_ID
) -> None:
    api = airflow.api(user=user, password=f"{user}-pw")
    airflow.wait_parked(api, dag_id, run_id, task_id)  # Airflow 3.3.2 fails a task answered too early
    api.patch(
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails",
        {"chosen_options": [option], "params_input": {}},
    )


def test_other_periods_proceed_while_one_waits_and_the_same_period_is_refused(live):
    """No max_active_runs=1: last Tuesday's re-run is not queued behind today's approval."""
    airflow, admin, mart = live
    _wait_state(airflow, admin, "gmv_daily", "approve_sales_review", {"awaiting_input"})
    admin.post(
        "/api/v2/dags/gmv_daily/dagRuns",
        {"dag_run_id": OTHER_PERIOD_RUN_ID, "logical_date": "2026-11-26T00:00:00+00:00"},
    )
    admin.post(
        "/api/v2/dags/gmv_daily/dagRuns",
        {"dag_run_id": SAME_PERIOD_RUN_ID, "logical_date": "2026-11-27T06:00:00+00:00"},
    )
    _wait_state(
        airflow, admin, "gmv_daily", "approve_sales_review", {"awaiting_input"}, run_id=OTHER_PERIOD_RUN_ID
    )
    assert airflow.task_states(admin, "gmv_daily", RUN_ID)["approve_sales_review"] == "awaiting_input"
    assert _run_state(airflow, admin, "gmv_daily", run_id=SAME_PERIOD_RUN_ID) == "failed"
    log = json.dumps(
        admin.get(
            f"/api/v2/dags/gmv_daily/dagRuns/{SAME_PERIOD_RUN_ID}/taskInstances/register_definition/logs/1"
        ),
        ensure_ascii=False,
    )
    assert f"gmv_daily 2026-11-26 is already being computed by run {RUN_ID}" in log
    with mart.connect() as conn:
        periods = dict(
            conn.execute(
                sa.text(
                    "SELECT run_id, period_start FROM metrics_mart.metric_run WHERE metric_key='gmv_daily'"
                )
            ).all()
        )
    assert {k: v.isoformat() for k, v in periods.items()} == {
        RUN_ID: "2026-11-26",
        OTHER_PERIOD_RUN_ID: "2026-11-25",
    }


def test_live_approval_publishes_and_emits_the_asset_event(live):
    airflow, admin, mart = live
    _wait_state(airflow, admin, "gmv_daily", "approve_sales_review", {"awaiting_input"})
    _answer(airflow, "gmv_daily", "approve_sales_review", "bob", "Approve")
    _wait_state(airflow, admin, "gmv_daily", "approve_finance_sign_off", {"awaiting_input"})
    _answer(airflow, "gmv_daily", "approve_finance_sign_off", "carol", "Approve")
    assert _run_state(airflow, admin, "gmv_daily") == "success"
    with mart.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT count(*), min(approved_by) FROM metrics_mart.metric_value_current WHERE metric_key='gmv_daily'"
            )
        ).one()
    assert tuple(rows) == (12, "sales review: bob; finance sign-off: carol")
    extract = admin.get(f"/api/v2/dags/gmv_daily/dagRuns/{RUN_ID}/taskInstances/extract_orders")
    assert extract["pool"] == "metrics_center__conn__sales_db"  # _teams.yaml limits sales_db to 2 queries
    events = _asset_events(airflow, admin)
    gmv = [e for e in events if e["uri"] == "metrics_mart://gmv_daily"]
    assert len(gmv) == 1
    assert gmv[0]["extra"]["periods"] == ["2026-11-26"]
    assert gmv[0]["extra"]["version"] == 1


def test_timeout_reject_skips_publish_and_timeout_fail_fails_the_run(live):
    airflow, admin, mart = live
    states = _wait_state(airflow, admin, "lead_conversion_rate", "publish", {"skipped"})
    assert states["approve"] == "success"  # the scheduler answered with the default: Reject
    assert _run_state(airflow, admin, "refund_rate_weekly") == "failed"
    states = airflow.task_states(admin, "refund_rate_weekly", RUN_ID)
    assert states["approve_finance_review"] == "failed"
    assert states["publish"] == "upstream_failed"
    with mart.connect() as conn:
        decisions = conn.execute(
            sa.text(
                "SELECT metric_key, decision, decided_by FROM metrics_mart.approval_event "
                "WHERE metric_key <> 'gmv_daily' AND decision <> 'requested' ORDER BY metric_key"
            )
        ).all()
        published = conn.execute(
            sa.text("SELECT count(*) FROM metrics_mart.metric_value_history WHERE metric_key <> 'gmv_daily'")
        ).scalar()
    assert [tuple(d) for d in decisions] == [
        ("lead_conversion_rate", "rejected_on_timeout", None),
        ("refund_rate_weekly", "timed_out", None),
    ]
    assert published == 0
    body = admin.get(
        f"/api/v2/dags/lead_conversion_rate/dagRuns/{RUN_ID}/taskInstances/approve/-1/hitlDetails"
    )
    assert body["chosen_options"] == ["Reject"]
    assert json.dumps(body["responded_by_user"]) == "null"


def _asset_events(airflow: LocalAirflow, admin) -> list[dict]:
    # On SQLite metadata the api-server can answer 500 ("database is locked") while the scheduler
    # writes the consuming runs the event just queued; ask again rather than fail on Airflow's lock.
    deadline = time.monotonic() + 30
    while True:
        try:
            return admin.get("/api/v2/assets/events?limit=10")["asset_events"]
        except urllib.error.HTTPError as error:
            if error.code < 500 or time.monotonic() > deadline:
                log = (airflow.home / "component-logs" / "api-server.log").read_text(errors="replace")
                raise AssertionError(
                    f"asset events: HTTP {error.code}; api-server log tail:\n{log[-3000:]}"
                ) from error
            time.sleep(1)


def _runs(admin, dag_id: str) -> list[dict]:
    return admin.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=20")["dag_runs"]


def test_a_derived_metric_runs_when_its_inputs_publish_for_the_days_both_published(live):
    """refund_rate_daily (schedule: inputs) on Airflow's Asset events: gmv_daily alone defers, refunds_daily completes."""
    airflow, admin, mart = live
    assert _run_state(airflow, admin, "gmv_daily") == "success"  # published 2026-11-26 (test above)

    def first_run():
        runs = _runs(admin, "refund_rate_daily")
        return runs if runs and runs[0]["state"] in ("success", "failed") else None

    (deferred,) = airflow.wait("gmv_daily's event to trigger refund_rate_daily", first_run, timeout=120)
    assert deferred["run_type"] == "asset_triggered"
    states = airflow.task_states(admin, "refund_rate_daily", deferred["dag_run_id"])
    assert states["register_definition"] == "skipped" and states["publish"] == "skipped"  # refunds not in yet

    admin.post("/api/v2/dags/refunds_daily/dagRuns", {"dag_run_id": RUN_ID, "logical_date": LOGICAL})
    _wait_state(airflow, admin, "refunds_daily", "approve", {"awaiting_input"})
    _answer(airflow, "refunds_daily", "approve", "dave", "Approve")
    assert _run_state(airflow, admin, "refunds_daily") == "success"

    def second_run():
        runs = _runs(admin, "refund_rate_daily")
        return runs[1] if len(runs) > 1 else None

    run_id = airflow.wait("refunds_daily's event to trigger refund_rate_daily", second_run, timeout=120)[
        "dag_run_id"
    ]
    _wait_state(airflow, admin, "refund_rate_daily", "approve", {"awaiting_input"}, run_id=run_id)
    _answer(airflow, "refund_rate_daily", "approve", "carol", "Approve", run_id=run_id)
    assert _run_state(airflow, admin, "refund_rate_daily", run_id=run_id) == "success"

    with mart.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT metric_key, dimensions->>'region' AS region, sum(value) FROM metrics_mart.metric_value_current "
                "WHERE period_start = '2026-11-26' GROUP BY 1, 2"
            )
        ).all()
        runs = conn.execute(
            sa.text(
                "SELECT run_id, period_start FROM metrics_mart.metric_run WHERE metric_key = 'refund_rate_daily'"
            )
        ).all()
    by = {(k, r): v for k, r, v in rows}
    regions = sorted(r for k, r in by if k == "gmv_daily")
    expected = {
        r: by.get(("refunds_daily", r), 0.0) / (by[("gmv_daily", r)] + by.get(("refunds_daily", r), 0.0))
        for r in regions
    }
    assert {r: by[("refund_rate_daily", r)] for r in regions} == pytest.approx(expected)
    assert [(r, p.isoformat()) for r, p in runs] == [(run_id, "2026-11-26")]
    events = admin.get("/api/v2/assets/events?limit=20")["asset_events"]
    derived = [e for e in events if e["uri"] == "metrics_mart://refund_rate_daily"]
    assert [e["extra"]["periods"] for e in derived] == [["2026-11-26"]]  # its own downstream can follow it
