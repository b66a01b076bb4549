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
