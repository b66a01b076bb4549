"""No number goes out unapproved or wrong: the holes an auditor would try, each closed, with real Airflow.

Every test drives the generated DAG with ``dag.test()`` (real tasks, real HITL records answered over
Airflow's REST API) against the mart on Postgres and SQLite, then tries what a careless or hostile
user would: mark the waiting approvals success, clear ``publish`` after a reject, bump the YAML while
a run waits.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hitl_answers import Answer, Responder

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)  # daily run computing 2026-11-26
REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"
BOTH_STAGES = [
    Answer("approve_sales_review", "bob", "Approve"),
    Answer("approve_finance_sign_off", "carol", "Approve"),
]


def metric_dag(dag_id: str):
    from metrics_center.orchestration.dag_builder import build_dags

    return build_dags(only_dag_id=dag_id)[dag_id]


def _states(dag_run) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        )
        return {ti.task_id: str(ti.state) for ti in tis}


def _clear_and_run(dag, run_id: str, task_id: str) -> str:
    """What "Clear" on one task does, then the worker running it: a new try of that task alone."""
    from airflow.models import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session

    where = (
        TaskInstance.dag_id == dag.dag_id,
        TaskInstance.run_id == run_id,
        TaskInstance.task_id == task_id,
    )
    with create_session() as session:
        ti = session.scalar(sa.select(TaskInstance).where(*where))
        ti.try_number += 1
        session.commit()
        session.refresh(ti)
        _run_task(ti=ti, task=dag.task_dict[task_id])
    with create_session() as session:
        return str(session.scalar(sa.select(TaskInstance.state).where(*where)))


def _mart_run(engine, run_id: str) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT state, detail, definition_version FROM metric_run WHERE run_id = :r"),
            {"r": run_id},
        ).one()


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def _current(engine, metric_key: str = "gmv_daily") -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT period_start, definition_version, value FROM metric_value_current "
                    "WHERE metric_key = :k ORDER BY value"
                ),
                {"k": metric_key},
            )
        ]


@pytest.fixture
def include_copy(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "include"
    shutil.copytree(REPO_INCLUDE, home)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_marking_waiting_approvals_success_publishes_nothing(mart):
    """Anyone who can edit a DAG can "Mark success" on approval tasks: publish must not believe it."""
    dag_run = metric_dag("gmv_daily").test(logical_date=LOGICAL, mark_success_pattern=r"approve_.*")
    states = _states(dag_run)
    assert states["approve_sales_review"] == states["approve_finance_sign_off"] == "success"
    assert states["publish"] == "failed"
    run = _mart_run(mart, dag_run.run_id)
    assert run.state == "refused"
    assert (
        "sales review never asked for approval in this run (was its task marked success by hand?)"
        in run.detail
    )
    assert "finance sign-off never asked" in run.detail
    assert run.detail.endswith("nothing published")
    assert _count(mart, "metric_value_history") == _count(mart, "publication") == 0


@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_clearing_publish_after_a_reject_publishes_nothing(mart):
    dag = metric_dag("gmv_daily")
    responder = Responder(
        dag_id="gmv_daily", answers=[Answer("approve_sales_review", "bob", "Reject")]
    ).start()
    dag_run = dag.test(logical_date=LOGICAL)
    responder.join()
    assert _states(dag_run)["publish"] == "skipped"

    assert _clear_and_run(dag, dag_run.run_id, "publish") == "failed"
    run = _mart_run(mart, dag_run.run_id)
    assert run.state == "refused"
    assert run.detail.startswith("sales review was rejected by bob at ")
    assert "finance sign-off was asked" not in run.detail  # never asked: it was skipped
    assert "finance sign-off never asked for approval" in run.detail
    assert _count(mart, "metric_value_history") == 0


# A whole DAG run per backend costs CI ~10 s; what differs between the backends here is covered per backend
# by the mart-level tests, so this one runs on Postgres, the production mart.
@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_approval_binds_to_the_result_a_rerun_transform_needs_new_approvals(mart):
    """Approve, then clear only the transform (new data): the old approvals do not cover the new result."""
    dag = metric_dag("gmv_daily")
    responder = Responder(dag_id="gmv_daily", answers=BOTH_STAGES).start()
    dag_run = dag.test(logical_date=LOGICAL)
    responder.join()
    assert str(dag_run.state) == "success"
    published = _current(mart)

    with mart.begin() as conn:  # simulate new data arriving: the transform's result hash changes
        conn.execute(
            sa.text("UPDATE metric_run SET result_hash = 'tampered' WHERE run_id = :r"), {"r": dag_run.run_id}
        )
    assert _clear_and_run(dag, dag_run.run_id, "publish") == "failed"
    detail = _mart_run(mart, dag_run.run_id).detail
    assert "sales review approved a different result than the one staged now" in detail
    assert _current(mart) == published


# A whole DAG run per backend costs CI ~10 s; what differs between the backends here is covered per backend
# by the mart-level tests, so this one runs on Postgres, the production mart.
@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_a_definition_bumped_while_a_run_waits_is_refused_and_current_values_stay(mart, include_copy):
    # v1 is published for 2026-11-26.
    first = Responder(dag_id="gmv_daily", answers=BOTH_STAGES).start()
    metric_dag("gmv_daily").test(logical_date=LOGICAL)
    first.join()
    before = _current(mart)
    assert len(before) == 12 and {v for _, v, _ in before} == {1}

    # A second run of the period waits for approval; meanwhile someone merges v2 (new SQL) and the
    # workers now parse v2. Its publish runs with the freshly parsed definition, as on a real worker.
    definition = include_copy / "metrics" / "gmv_daily.yaml"
    sql = include_copy / "sql" / "metrics" / "gmv_daily.sql"

    def bump_then_approve():
        definition.write_text(
            definition.read_text()
            .replace("version: 1", "version: 2")
            .replace("change_note: First definition.", "change_note: Cancelled orders count.")
        )
        sql.write_text(
            sql.read_text().replace("WHERE status = 'paid'", "WHERE status IN ('paid', 'cancelled')")
        )

    second = Responder(dag_id="gmv_daily", answers=BOTH_STAGES, before_answer={0: bump_then_approve}).start()
    dag_run = metric_dag("gmv_daily").test(logical_date=LOGICAL, mark_success_pattern="publish")
    second.join()
    assert _clear_and_run(metric_dag("gmv_daily"), dag_run.run_id, "publish") == "failed"

    run = _mart_run(mart, dag_run.run_id)
    assert run.definition_version == 1
    assert "definition changed while this run waited: the run computed v1" in run.detail
    assert "the definition in force is v2" in run.detail
    assert "re-run the period" in run.detail
    assert _current(mart) == before  # the period keeps its v1 values, visible in the current view


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_a_ratio_shows_approvers_the_ratio_of_the_sums_not_a_sum_of_rates(mart):
    from dag_helpers import approval_body

    responder = Responder(
        dag_id="lead_conversion_rate", answers=[Answer("approve", "erin", "Reject")]
    ).start()
    dag_run = metric_dag("lead_conversion_rate").test(logical_date=LOGICAL)
    responder.join()
    body = approval_body(dag_run, "approve")
    assert "Total (SUM(numerator) / SUM(denominator)): **" in body and "no total" not in body
    assert "over 4 row(s)" in body
    assert "| 2026-11-26 | region=east |" in body
