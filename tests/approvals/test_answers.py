"""Answering as a person through our own path (what the page and the Slack endpoint call), in-process
like the api-server: the sign-off rules, the early-answer hold, and the audit of every attempt."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)
REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"


def _catalog():
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    return catalog.metrics["gmv_daily"].spec, catalog.teams


def _wait_awaiting(task_id: str, timeout: float = 90) -> tuple[str, float]:
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
                return ti.run_id, time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"{task_id} never waited")


def _answer_in_thread(script):
    """Run ``script`` (the people answering) beside ``dag.test()``; errors surface in the test."""
    errors: list[BaseException] = []

    def run():
        try:
            from airflow.api_fastapi.app import create_app

            create_app()  # the api-server's auth manager, as the plugin has it
            script()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _submit(spec, teams, mart, run_id, task_id, person, option, reason=None, via="page"):
    from metrics_center.approvals.answers import airflow_user_for, submit_answer

    return submit_answer(
        engine=mart,
        spec=spec,
        teams=teams,
        run_id=run_id,
        task_id=task_id,
        person=person,
        option=option,
        reason=reason,
        via=via,
        user=airflow_user_for(person, teams),
    )


@pytest.fixture
def shared_approver(tmp_path, monkeypatch):
    """gmv_daily where bob may answer both stages (to test that he may not)."""
    home = tmp_path / "include"
    shutil.copytree(REPO_INCLUDE, home)
    path = home / "metrics" / "gmv_daily.yaml"
    path.write_text(path.read_text().replace("approvers: [carol, dave]", "approvers: [carol, dave, bob]"))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data", "shared_approver")
def test_rules_hold_and_every_attempt_is_audited(mart):
    from metrics_center.orchestration.dag_builder import build_dags

    spec, teams = _catalog()
    outcomes = {}

    def people():
        run_id, _ = _wait_awaiting("approve_sales_review")
        outcomes["mallory"] = _submit(spec, teams, mart, run_id, "approve_sales_review", "carol", "Approve")
        outcomes["no reason"] = _submit(spec, teams, mart, run_id, "approve_sales_review", "bob", "Reject")
        outcomes["bob"] = _submit(
            spec, teams, mart, run_id, "approve_sales_review", "bob", "Approve", via="slack"
        )
        outcomes["again"] = _submit(spec, teams, mart, run_id, "approve_sales_review", "bob", "Approve")
        _wait_awaiting("approve_finance_sign_off")
        outcomes["bob twice"] = _submit(
            spec, teams, mart, run_id, "approve_finance_sign_off", "bob", "Approve"
        )
        outcomes["dave"] = _submit(
            spec, teams, mart, run_id, "approve_finance_sign_off", "dave", "Reject", reason="refunds look low"
        )

    thread, errors = _answer_in_thread(people)
    dag_run = build_dags(only_dag_id="gmv_daily")["gmv_daily"].test(logical_date=LOGICAL)
    thread.join(120)
    assert not errors, errors
    assert {k: o.status for k, o in outcomes.items()} == {
        "mallory": "refused",
        "no reason": "invalid",  # a request to fix (422 on the API), not a refusal
        "bob": "recorded",
        "again": "already_answered",
        "bob twice": "refused",
        "dave": "recorded",
    }
    assert "carol is not an approver of sales review (bob)" in outcomes["mallory"].message
    assert "bob already approved sales review of this run" in outcomes["bob twice"].message
    assert outcomes["again"].message.startswith("Already answered: Approve by Bob Li")
    with mart.connect() as conn:
        audit = conn.execute(
            sa.text(
                "SELECT stage, decision, decided_by, via, reason FROM approval_event WHERE decision <> 'requested' ORDER BY id"
            )
        ).all()
        published = conn.execute(sa.text("SELECT count(*) FROM metric_value_history")).scalar()
    # The approval tasks write their decisions when Airflow resumes them: compare regardless of order.
    assert sorted((tuple(a) for a in audit), key=str) == sorted(
        [
            ("sales review", "refused_attempt", "carol", "page", None),
            ("sales review", "submitted", "bob", "slack", None),
            ("sales review", "approved", "bob", "slack", None),
            ("sales review", "refused_attempt", "bob", "page", None),
            ("finance sign-off", "refused_attempt", "bob", "page", None),
            ("finance sign-off", "submitted", "dave", "page", "refunds look low"),
            ("finance sign-off", "rejected", "dave", "page", "refunds look low"),
        ],
        key=str,
    )
    assert str(dag_run.state) == "success" and published == 0  # a reject ends the run: nothing published


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_an_answer_within_a_fifth_of_a_second_is_held_until_the_task_is_parked(mart):
    spec, teams = _catalog()
    timing = {}

    def people():
        run_id, seen = _wait_awaiting("approve_sales_review")
        timing["outcome"] = _submit(spec, teams, mart, run_id, "approve_sales_review", "bob", "Approve")
        timing["delay"] = seen
        _wait_awaiting("approve_finance_sign_off")
        _submit(spec, teams, mart, run_id, "approve_finance_sign_off", "carol", "Approve")

    from metrics_center.orchestration.dag_builder import build_dags

    thread, errors = _answer_in_thread(people)
    dag_run = build_dags(only_dag_id="gmv_daily")["gmv_daily"].test(logical_date=LOGICAL)
    thread.join(120)
    assert not errors, errors
    assert timing["outcome"].status == "recorded"
    assert str(dag_run.state) == "success"
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metric_value_current")).scalar() == 12
