"""Anomalies found against published history, reconciliation severity, and the notification outbox.

- ``anomaly``: every value that scored outside its expected band (method, score, band, version);
  approvers may mark one "expected", which removes the value from future baselines.
- ``quality_result.severity``: ``block`` (an expectation, a blocking reconciliation) or ``warn``.
- ``notification``: the outbox. Written in the same transaction as the fact that caused it, with a
  unique dedupe key; delivered (Slack) by the maintenance DAG, retried, never lost, never sent twice.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "anomaly",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("metric_key", sa.String(63), nullable=False, comment="Metric checked."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that computed the value."),
        sa.Column("period_start", sa.Date, nullable=False, comment="Period of the value."),
        sa.Column("dimensions", JSON, nullable=False, comment="Dimension combination ({} if none)."),
        sa.Column("value", sa.Float(precision=53), nullable=False, comment="The value under test."),
        sa.Column("expected", sa.Float(precision=53), comment="Expected value (baseline centre)."),
        sa.Column("band_low", sa.Float(precision=53), comment="Lower edge of the accepted band."),
        sa.Column("band_high", sa.Float(precision=53), comment="Upper edge of the accepted band."),
        sa.Column("score", sa.Float(precision=53), comment="z-score, robust z (MAD) or relative change."),
        sa.Column("method", sa.String(16), nullable=False, comment="zscore, mad or pct_change."),
        sa.Column("baseline_points", sa.Integer, nullable=False, comment="History points in the baseline."),
        sa.Column("definition_version", sa.Integer, nullable=False, comment="Definition version of the run."),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("marked_expected_by", sa.String(255), comment="Approver who marked it expected."),
        sa.Column("marked_expected_at", TS, comment="When; expected values leave future baselines."),
        comment="Values outside their expected band, per period and dimension combination.",
    )
    op.create_index("ix_anomaly_metric_period", "anomaly", ["metric_key", "period_start"])
    with op.batch_alter_table("quality_result") as batch:
        batch.add_column(
            sa.Column(
                "severity",
                sa.String(8),
                nullable=False,
                server_default="block",
                comment="block: a failure stops publishing; warn: it alerts only.",
            )
        )
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False, comment="anomaly, quality_failure, reconciliation…"),
        sa.Column("dedupe_key", sa.String(255), nullable=False, comment="One notification per fact."),
        sa.Column("metric_key", sa.String(63), comment="Metric concerned."),
        sa.Column("run_id", sa.String(250), comment="Run concerned."),
        sa.Column("recipient", sa.String(255), nullable=False, comment="Department or person (teams file)."),
        sa.Column("address", sa.String(255), comment="Slack channel or user id; NULL = nowhere to send."),
        sa.Column("group_key", sa.String(255), nullable=False, comment="Sent together as one message."),
        sa.Column(
            "payload", JSON, nullable=False, comment="What to say (rendered to Block Kit on delivery)."
        ),
        sa.Column("state", sa.String(16), nullable=False, comment="pending, sending, delivered or dead."),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False, comment="Not before this time."),
        sa.Column("delivery_token", sa.String(64), comment="Idempotency marker sent with the message."),
        sa.Column("last_error", sa.Text),
        sa.Column("slack_channel", sa.String(64), comment="Channel id Slack answered with."),
        sa.Column("slack_ts", sa.String(64), comment="Slack message ts (for threads and updates)."),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.UniqueConstraint("dedupe_key", name="uq_notification_dedupe"),
        comment="Outbox: every alert and broadcast, written with its cause, delivered at least once, recorded once.",
    )
    op.create_index("ix_notification_pending", "notification", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_pending", "notification")
    op.drop_table("notification")
    with op.batch_alter_table("quality_result") as batch:
        batch.drop_column("severity")
    op.drop_index("ix_anomaly_metric_period", "anomaly")
    op.drop_table("anomaly")
