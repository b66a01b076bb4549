"""Runs computed under one definition; approvals bound to the result they approved.

- ``metric_run``: one row per Airflow run of a metric — the definition version, meaning hash and
  business period registered when it started, the hash of the result it computed, and its state.
  ``publish`` reads it instead of trusting the YAML parsed at publish time.
- ``approval_event`` gains the task instance, try and result hash each request/answer belongs to.
- ``publication`` gains ``data_as_of`` (when the run read its sources) and ``restatement``, so an
  older run cannot silently overwrite a newer answer.
- ``metric_value_current`` never hides a value whose definition row is missing (LEFT JOIN).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)

_CURRENT_VIEW = """
    CREATE VIEW metric_value_current AS
    SELECT v.metric_key, v.period_start, v.period_end, v.dimensions, v.value, d.unit,
           v.definition_version, v.run_id, v.approved_by, v.published_at
    FROM metric_value v
    {join} metric_definition d ON d.metric_key = v.metric_key AND d.version = v.definition_version
    WHERE v.superseded_at IS NULL
"""
_CURRENT_VIEW_COMMENT = (
    "COMMENT ON VIEW metric_value_current IS "
    "'Current approved value of every metric, period and dimension combination. Read this from BI.'"
)


def upgrade() -> None:
    op.create_table(
        "metric_run",
        sa.Column("metric_key", sa.String(63), primary_key=True, comment="Metric computed."),
        sa.Column("run_id", sa.String(250), primary_key=True, comment="Airflow run id."),
        sa.Column(
            "definition_version", sa.Integer, nullable=False, comment="Version registered at run start."
        ),
        sa.Column(
            "definition_hash", sa.String(64), nullable=False, comment="Meaning hash registered at run start."
        ),
        sa.Column("timezone", sa.String(64), nullable=False, comment="Business time zone of the period."),
        sa.Column("period_start", sa.Date, nullable=False, comment="The run's business period, first day."),
        sa.Column("period_end", sa.Date, nullable=False, comment="Day after the period's last day."),
        sa.Column(
            "restatement",
            sa.Boolean,
            nullable=False,
            server_default=sa.false(),
            comment="Triggered as an explicit restatement (may replace values of newer runs).",
        ),
        sa.Column(
            "state", sa.String(16), nullable=False, comment="computing, computed, published or refused."
        ),
        sa.Column("started_at", TS, nullable=False, comment="When the latest attempt registered the run."),
        sa.Column("computed_at", TS, comment="When the transform staged the result."),
        sa.Column("result_hash", sa.String(64), comment="SHA-256 of the staged result approvers saw."),
        sa.Column("result_rows", sa.Integer, comment="Rows in the staged result."),
        sa.Column("publication_id", sa.Integer, comment="The publication that published this run."),
        sa.Column("detail", sa.Text, comment="Why publishing was refused, when it was."),
        sa.Column("updated_at", TS, nullable=False),
        comment="Every run of every metric: the definition and period it computes, and how it ended.",
    )
    op.create_index("ix_metric_run_period", "metric_run", ["metric_key", "period_start"])
    with op.batch_alter_table("approval_event") as batch:
        batch.add_column(sa.Column("ti_id", sa.String(36), comment="Airflow task instance of the stage."))
        batch.add_column(sa.Column("try_number", sa.Integer, comment="Try of that task instance."))
        batch.add_column(
            sa.Column("result_hash", sa.String(64), comment="SHA-256 of the result shown to approvers.")
        )
    with op.batch_alter_table("publication") as batch:
        batch.add_column(sa.Column("data_as_of", TS, comment="When the publishing run read its sources."))
        batch.add_column(
            sa.Column(
                "restatement",
                sa.Boolean,
                nullable=False,
                server_default=sa.false(),
                comment="An explicit restatement: allowed to replace values of newer runs.",
            )
        )
    op.execute("UPDATE publication SET data_as_of = published_at WHERE data_as_of IS NULL")
    op.execute("DROP VIEW metric_value_current")
    op.execute(_CURRENT_VIEW.format(join="LEFT JOIN"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CURRENT_VIEW_COMMENT)


def downgrade() -> None:
    op.execute("DROP VIEW metric_value_current")
    op.execute(_CURRENT_VIEW.format(join="JOIN"))
    with op.batch_alter_table("publication") as batch:
        batch.drop_column("restatement")
        batch.drop_column("data_as_of")
    with op.batch_alter_table("approval_event") as batch:
        batch.drop_column("result_hash")
        batch.drop_column("try_number")
        batch.drop_column("ti_id")
    op.drop_index("ix_metric_run_period", "metric_run")
    op.drop_table("metric_run")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CURRENT_VIEW_COMMENT)
