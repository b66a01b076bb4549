"""Metrics Center maintenance: approval follow-ups, deliver the notification outbox to Slack, prune staged data.

Airflow's DAG discovery only reads files that mention both words "airflow" and "dag": this is one.
Every 5 minutes, one run at a time, no catch-up. The task bodies live in ``metrics_center.orchestration.maintenance``
and are imported only when a task runs: parsing this file imports nothing but ``airflow.sdk``.

- ``follow_up_approvals``: enqueues a reminder for approval stages still waiting at ``approval.remind_at``
  of their timeout (once per stage try), and an in-place update of every request message once the stage
  is answered (in Slack, on the page, in Airflow, or by the timeout); then delivery sends them.
- ``deliver_notifications``: posts due notifications, one Slack message per group; retries with
  backoff; logs delivered / retried / dead / pending (dead ones as a warning). Without the
  ``metrics_center_slack`` connection everything stays pending and the task still succeeds.
- ``prune_staging``: deletes staged runs older than ``METRICS_CENTER_STAGING_RETENTION`` (default
  ``14d``), keeping runs Airflow still has queued or running (e.g. waiting for approval).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="metrics_center_maintenance",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    default_args={"retries": 0},
    tags=["metrics-center", "maintenance"],
    doc_md=__doc__,
)
def metrics_center_maintenance() -> None:
    @task(execution_timeout=timedelta(minutes=2))
    def follow_up_approvals(**context):
        from metrics_center.orchestration import maintenance

        return maintenance.follow_up_approvals(context)

    @task(execution_timeout=timedelta(minutes=6), trigger_rule="all_done")
    def deliver_notifications(**context):
        from metrics_center.orchestration import maintenance

        return maintenance.deliver_notifications(context)

    @task(execution_timeout=timedelta(minutes=10))
    def prune_staging(**context):
        from metrics_center.orchestration import maintenance

        return maintenance.prune_staging(context)

    follow_up_approvals() >> deliver_notifications()
    prune_staging()


metrics_center_maintenance()
