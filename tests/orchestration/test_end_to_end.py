"""A demo metric, run for real: DuckDB, Great Expectations, Airflow's HITL and REST API, the mart."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from builders import expected_gmv
from dag_helpers import approval_body, metric_dag
from hitl_answers import Answer, Responder

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)  # daily run computing 2026-11-26
REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"


def _run(dag_id: str, answers: list[Answer], logical_date: datetime = LOGICAL):
    responder = Responder(dag_id=dag_id, answers=answers).start()
    dag_run = metric_dag(dag_id).test(logical_date=logical_date)
    responder.join()
    return dag_run, responder


def _states(dag_run) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        )
        return {ti.task_id: str(ti.state) for ti in tis}


def _current(engine, metric_key: str) -> list[sa.Row]:
    from metrics_center.mart.tables import metric_value_current as v

    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                v.c.period_start, v.c.dimensions, v.c.value, v.c.unit, v.c.definition_version, v.c.approved_by
            )
            .where(v.c.metric_key == metric_key)
            .order_by(v.c.value)
        ).all()


@pytest.mark.usefixtures("airflow_db")
def test_approved_gmv_is_published_with_history_and_audit(mart, demo_data):
    dag_run, responder = _run(
        "gmv_daily",
        [
            Answer("approve_sales_review", "bob", "Approve"),
            Answer("approve_finance_sign_off", "carol", "Approve"),
        ],
    )
    assert [status for _, status, _ in responder.statuses] == [200, 200]
    assert str(dag_run.state) == "success", _states(dag_run)
    body = approval_body(dag_run, "approve_finance_sign_off")
    assert "period **2026-11-26 (day, UTC)**" in body
    assert "**Quality checks**: 3 passed, 1 warning" in body  # the demo plants a settlement gap: a warning
    assert "- ⚠️ `reconcile:settled_cash` (warn, within 1%): total: ours " in body
    assert "; outside the tolerance, 1 of 4 by region — region=" in body
    assert "`orders`: " in body and "from finance/refunds_2026-11-27.csv" in body
    assert "sales review: approved by bob" in body
    assert "already published" not in body

    rows = _current(mart, "gmv_daily")
    expected = expected_gmv(demo_data.root, date(2026, 11, 26))
    got = {(r.dimensions["region"], r.dimensions["channel"]): r.value for r in rows}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9)
    assert {r.period_start for r in rows} == {date(2026, 11, 26)}
    assert {r.unit for r in rows} == {"CNY"}
    assert {r.approved_by for r in rows} == {"sales review: bob; finance sign-off: carol"}

    with mart.connect() as conn:
        decisions = conn.execute(
            sa.text(
                "SELECT stage, decision, decided_by FROM approval_event WHERE decision <> 'requested' ORDER BY id"
            )
        ).all()
        requests = conn.execute(
            sa.text("SELECT stage, result_hash FROM approval_event WHERE decision = 'requested' ORDER BY id")
        ).all()
        run = conn.execute(sa.text("SELECT state, result_hash, publication_id FROM metric_run")).one()
        quality = conn.execute(
            sa.text("SELECT count(*), sum(CASE WHEN success THEN 1 ELSE 0 END) FROM quality_result")
        ).one()
        dictionary = conn.execute(sa.text("SELECT metric_key, current_version FROM metric_dictionary")).all()
    assert [tuple(d) for d in decisions] == [
        ("sales review", "approved", "bob"),
        ("finance sign-off", "approved", "carol"),
    ]
    assert [stage for stage, _ in requests] == ["sales review", "finance sign-off"]
    assert {result_hash for _, result_hash in requests} == {run.result_hash}  # both saw the published result
    assert run.state == "published" and run.publication_id is not None
    assert tuple(quality) == (4, 3)
    assert [tuple(d) for d in dictionary] == [("gmv_daily", 1)]


@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_reject_publishes_nothing_and_unassigned_user_is_refused(mart):
    dag_run, responder = _run(
        "gmv_daily",
        [
            Answer("approve_sales_review", "mallory", "Approve"),  # not assigned: 403
            Answer("approve_sales_review", "carol", "Approve"),  # assigned to the next stage only: 403
            Answer("approve_sales_review", "bob", "Reject"),
        ],
    )
    assert [status for _, status, _ in responder.statuses] == [403, 403, 200]
    states = _states(dag_run)
    assert states["approve_finance_sign_off"] == "skipped"
    assert states["publish"] == "skipped"
    assert _current(mart, "gmv_daily") == []
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metric_value_history")).scalar() == 0
        assert conn.execute(
            sa.text("SELECT decision, decided_by FROM approval_event WHERE decision <> 'requested'")
        ).all() == [("rejected", "bob")]


@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_failing_expectation_blocks_publishing(mart, tmp_path, monkeypatch):
    """A metric whose expectation fails: quality_check fails, nobody is asked, nothing is published."""
    import shutil

    home = tmp_path / "include"
    shutil.copytree(REPO_INCLUDE, home)
    definition = home / "metrics" / "gmv_daily.yaml"
    # No region/channel sells over 1,000 CNY a day? It does: this expectation must fail.
    definition.write_text(
        definition.read_text().replace("    min_value: 0\n", "    min_value: 0\n    max_value: 1000\n", 1)
    )
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    dag_run = metric_dag("gmv_daily").test(logical_date=LOGICAL)
    states = _states(dag_run)
    assert states["quality_check"] == "failed"
    assert states["approve_sales_review"] == "upstream_failed"
    assert states["publish"] == "upstream_failed"
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metric_value_history")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM publication")).scalar() == 0
        failed = conn.execute(
            sa.text("SELECT expectation, severity FROM quality_result WHERE NOT success ORDER BY id")
        ).all()
        alerts = conn.execute(
            sa.text(
                "SELECT DISTINCT kind, state FROM notification WHERE channel = 'slack' ORDER BY kind DESC"
            )
        ).all()
        chats = {row[0] for row in conn.execute(sa.text("SELECT DISTINCT channel FROM notification"))}
    # The blocking expectation fails the gate; the demo's planted settlement gap only warns.
    assert [tuple(f) for f in failed] == [
        ("expect_column_values_to_be_between", "block"),
        ("reconcile:settled_cash", "warn"),
    ]
    # (A metric's first version is no change to anyone's numbers: it is not broadcast.)
    assert [tuple(a) for a in alerts] == [("reconciliation", "pending"), ("quality_failure", "pending")]
    assert chats == {"slack", "feishu", "dingtalk", "wecom"}  # each of the sales department's chats


# A whole DAG run per backend costs CI ~10 s; what differs between the backends here is covered per backend
# by the mart-level tests, so this one runs on Postgres, the production mart.
@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_running_the_same_day_twice_leaves_one_current_value_per_key(mart):
    answers = [
        Answer("approve_sales_review", "bob", "Approve"),
        Answer("approve_finance_sign_off", "dave", "Approve"),
    ]
    first, _ = _run("gmv_daily", answers)
    before = _current(mart, "gmv_daily")
    second, _ = _run("gmv_daily", answers)
    after = _current(mart, "gmv_daily")
    assert "This period is already published" in approval_body(second, "approve_sales_review")
    assert str(first.state) == str(second.state) == "success"
    assert len(after) == len(before) == 12
    assert [r.value for r in after] == [r.value for r in before]
    with mart.connect() as conn:
        keys = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT CAST(dimensions AS TEXT)) FROM metric_value_current")
        ).one()
    assert tuple(keys) == (12, 12)
