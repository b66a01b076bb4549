"""A metric's DAG as the worker builds it, and what its approval task asked (Airflow's HITL record)."""

from __future__ import annotations

import sqlalchemy as sa


def metric_dag(dag_id: str):
    from metrics_center.orchestration.dag_builder import build_dags

    return build_dags(only_dag_id=dag_id)[dag_id]


def approval_body(dag_run, task_id: str) -> str:
    from airflow.models import TaskInstance
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(
            sa.select(HITLDetail.body)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
            )
        )


def fail_waiting(dag_id: str, *, timeout: float = 90.0) -> None:
    """Fail every approval of ``dag_id`` that waits for input, until its ``dag.test()`` run has ended.

    Someone marking the stage failed in Airflow's UI, or a test whose people gave up: ``dag.test()`` only
    returns once nothing waits. Done again every half second, because a task still parking may write
    ``awaiting_input`` after a first pass (under load, seconds later).
    """
    import time

    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            for ti in session.scalars(
                sa.select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.state == "awaiting_input"
                )
            ):
                ti.state = "failed"
            running = session.scalar(
                sa.select(sa.func.count()).where(DagRun.dag_id == dag_id, DagRun.state == "running")
            )
        if not running:
            return
        time.sleep(0.5)
