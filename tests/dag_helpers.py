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


def run_with_people(dag_id: str, script, *, logical_date, client_factory):
    """``dag.test()`` of ``dag_id`` here, the people (``script(client)``) in a thread; their errors fail the test
    (printed at once: ``dag.test()`` may wait a long while before it returns and they are raised)."""
    import threading
    import traceback

    from metrics_center.orchestration.dag_builder import build_dags
    from metrics_center.web.slack_actions import wait_for_work

    errors: list[BaseException] = []

    def people():
        try:
            script(client_factory())
        except BaseException as exc:
            traceback.print_exc()
            errors.append(exc)
            threading.Thread(target=fail_waiting, args=(dag_id,), daemon=True).start()

    thread = threading.Thread(target=people, daemon=True)
    thread.start()
    dag_run = build_dags(only_dag_id=dag_id)[dag_id].test(logical_date=logical_date)
    thread.join(180)
    assert wait_for_work(60)
    if errors:
        raise errors[0]
    return dag_run


def wait_awaiting(dag_id: str, task_id: str, timeout: float = 120) -> tuple[str, float]:
    """The run id of ``dag_id``'s newest ``task_id`` once it waits for input, and when that was seen."""
    import time

    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalar(
                sa.select(TaskInstance)
                .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
                .order_by(TaskInstance.start_date.desc().nullslast())
            )
            if ti is not None and str(getattr(ti.state, "value", ti.state)) == "awaiting_input":
                return ti.run_id, time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{dag_id}.{task_id} never waited for input")
