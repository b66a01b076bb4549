"""Answering through the Metrics Center while a real ``dag.test()`` run waits: the JSON API and the
page's form, refused people, the "Approve — expected" path, and what the dictionary and audit show
afterwards — all in-process through Airflow's own api-server app with the plugin loaded."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from airflow_api import PREFIX, bearer, token

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)


def _wait_awaiting(task_id: str, timeout: float = 120) -> str:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalar(
                sa.select(TaskInstance)
                .where(TaskInstance.dag_id == "gmv_daily", TaskInstance.task_id == task_id)
                .order_by(TaskInstance.start_date.desc().nullslast())
            )
            if ti is not None and str(getattr(ti.state, "value", ti.state)) == "awaiting_input":
                return ti.run_id
        time.sleep(0.05)
    raise TimeoutError(f"{task_id} never waited")


def _in_thread(script):
    errors: list[BaseException] = []

    def run():
        try:
            script()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "plugin")
def test_people_answer_through_the_api_and_the_page_while_the_run_waits(mart, demo_data):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history
    from metrics_center.orchestration.dag_builder import build_dags

    spec = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir()).metrics["gmv_daily"].spec
    seed_history(engine=mart, specs=[spec], first=date(2026, 9, 1), end=date(2026, 11, 27))
    seen: dict = {}

    def people():
        client = TestClient(create_app(), base_url="http://testserver")
        run_id = _wait_awaiting("approve_sales_review")
        url = f"{PREFIX}/api/approvals/gmv_daily/{quote(run_id, safe='')}/approve_sales_review"
        seen["bob's list"] = client.get(PREFIX + "/api/approvals", headers=bearer(client, "bob")).json()
        seen["carol's list"] = client.get(PREFIX + "/api/approvals", headers=bearer(client, "carol")).json()
        seen["bob's page 2"] = client.get(
            PREFIX + "/api/approvals", params={"per_page": 1, "page": 2}, headers=bearer(client, "bob")
        ).json()
        for who, body in (
            ("mallory", {"option": "Approve"}),
            ("carol", {"option": "Approve"}),
            ("bob", {"option": "Reject"}),
            ("bob", {"option": "Approve", "expected": "yes"}),  # strict types: a string is no bool
            ("bob", {"option": "Approve"}),
        ):
            response = client.post(url, json=body, headers=bearer(client, who))
            seen.setdefault("api", []).append((who, response.status_code, response.json()))
        _wait_awaiting("approve_finance_sign_off")
        client.cookies.set("_token", token(client, "carol"))  # as the browser: the UI's cookie
        page = client.get(PREFIX + "/", headers={"accept": "text/html"})
        seen["carol's page"] = page.text
        form = f"{PREFIX}/approvals/gmv_daily/{quote(run_id, safe='')}/approve_finance_sign_off"
        seen["cross-site"] = client.post(
            form, data={"action": "expected"}, headers={"origin": "https://evil.example"}
        ).status_code
        answered = client.post(
            form, data={"action": "expected", "reason": "flash sale in the east"},
            headers={"origin": "http://testserver"}, follow_redirects=False,
        )  # fmt: skip
        seen["redirect"] = (answered.status_code, answered.headers.get("location"))
        seen["after"] = client.get(PREFIX + "/", headers={"accept": "text/html"}).text
        seen["again"] = client.get(PREFIX + "/", headers={"accept": "text/html"}).text
        client.cookies.clear()
        seen["run_id"] = run_id

    thread, errors = _in_thread(people)
    dag_run = build_dags(only_dag_id="gmv_daily")["gmv_daily"].test(logical_date=LOGICAL)
    thread.join(180)
    assert not errors, errors
    assert str(dag_run.state) == "success"

    mine = seen["bob's list"]
    assert (mine["user"], mine["person"], len(mine["approvals"])) == ("bob", "bob", 1)
    assert (mine["total"], mine["page"], mine["by_metric"]) == (1, 1, {"gmv_daily": 1})
    second = seen["bob's page 2"]
    assert (second["total"], second["page"], second["per_page"], second["approvals"]) == (1, 2, 1, [])
    waiting = mine["approvals"][0]
    assert (waiting["stage"], waiting["period"], waiting["approvers"]) == (
        "sales review",
        "2026-11-26",
        ["Bob Li"],
    )
    assert "**Anomalies** (1" in waiting["body_markdown"]
    (found,) = waiting["anomalies"]
    assert found["dimensions"] == {"channel": "app", "region": "east"} and found["marked_expected_by"] is None
    chart = waiting["charts"][0]
    assert chart["band"]["low"] < chart["band"]["expected"] < chart["band"]["high"] < found["value"]
    assert chart["new"]["values"][0][-1] == found["value"] and len(chart["x"]) > 60
    assert seen["carol's list"]["approvals"] == []

    statuses = [(who, code, body.get("status")) for who, code, body in seen["api"]]
    assert statuses == [
        ("mallory", 403, "refused"),
        ("carol", 403, "refused"),
        ("bob", 422, "invalid"),  # a reject without a reason is a request to fix, not a refusal
        ("bob", 422, None),  # pydantic's 422: `expected` must be a JSON boolean
        ("bob", 200, "recorded"),
    ]
    messages = [body.get("message") for _, _, body in seen["api"]]
    assert "mallory is not a person in _teams.yaml" in messages[0]
    assert messages[1] == "carol is not an approver of sales review (bob)"
    assert messages[2].startswith("Say why you reject")
    assert "expected" in str(seen["api"][3][2]["detail"])
    assert (
        messages[4] == "Approved sales review of GMV (成交额) for 2026-11-26."
    )  # the period, not the run id

    assert "Approve — expected" in seen["carol's page"] and "finance sign-off" in seen["carol's page"]
    assert 'class="markdown"' in seen["carol's page"] and "<table>" in seen["carol's page"]
    assert seen["cross-site"] == 403
    assert seen["redirect"] == (303, f"{PREFIX}/")
    assert "1 anomaly marked expected by Carol Zhang." in seen["after"]
    assert "Approved finance sign-off of GMV (成交额)" in seen["after"]
    assert "marked expected" not in seen["again"]  # the message is shown once

    with mart.connect() as conn:
        marked = conn.execute(
            sa.text("SELECT marked_expected_by FROM anomaly WHERE run_id = :r"), {"r": seen["run_id"]}
        ).all()
        published = conn.execute(
            sa.text(
                "SELECT count(*), min(approved_by) FROM metric_value_current WHERE period_start = '2026-11-26'"
            )
        ).one()
    assert [m[0] for m in marked] == ["carol"]
    assert tuple(published) == (12, "sales review: bob; finance sign-off: carol")

    client = TestClient(create_app())
    audit = client.get(
        f"{PREFIX}/api/audit", params={"metric": "gmv_daily", "per_page": 20}, headers=bearer(client, "dave")
    ).json()["events"]
    trail = [(e["stage"], e["decision"], e["decided_by"], e["via"]) for e in reversed(audit)]
    assert [t for t in trail if t[1] != "requested"] == [
        ("sales review", "refused_attempt", "mallory", "page"),
        ("sales review", "refused_attempt", "carol", "page"),
        ("sales review", "submitted", "bob", "page"),
        ("sales review", "approved", "bob", "page"),
        ("finance sign-off", "submitted", "carol", "page"),
        ("finance sign-off", "approved", "carol", "page"),
    ]
    assert audit[0]["reason"] == "flash sale in the east"
    detail = client.get(f"{PREFIX}/api/metrics/gmv_daily", headers=bearer(client, "erin")).json()
    assert {v["period_start"] for v in detail["latest"]} == {"2026-11-26"}
    assert detail["publications"][0]["approved_by"] == "sales review: bob; finance sign-off: carol"
    assert detail["anomalies"] == []  # the only one was marked expected
    assert json.dumps(detail, ensure_ascii=False)
