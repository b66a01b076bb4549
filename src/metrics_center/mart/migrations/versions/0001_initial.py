"""The first mart: definitions, values with full history, publications and the run audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "metric_definition",
        sa.Column("metric_key", sa.String(63), primary_key=True, comment="Stable metric id (= DAG id)."),
        sa.Column(
            "version",
            sa.Integer,
            primary_key=True,
            comment="Definition version; bumped on every change of meaning.",
        ),
        sa.Column("name", sa.Text, nullable=False, comment="Display name."),
        sa.Column("description", sa.Text, nullable=False, comment="What the metric means, in words."),
        sa.Column("department", sa.String(63), nullable=False, comment="Owning department."),
        sa.Column("owner", sa.String(255), nullable=False, comment="Person accountable for the definition."),
        sa.Column("unit", sa.String(63), nullable=False, comment="Unit of value (CNY, %, count…)."),
        sa.Column("grain", sa.String(16), nullable=False, comment="Period length: day, week or month."),
        sa.Column("dimensions", JSON, nullable=False, comment="Ordered list of dimension names."),
        sa.Column("formula", sa.Text, comment="Human-readable formula."),
        sa.Column(
            "definition_hash", sa.String(64), nullable=False, comment="SHA-256 of the definition and its SQL."
        ),
        sa.Column(
            "definition", JSON, nullable=False, comment="The full YAML definition as JSON, plus its SQL text."
        ),
        sa.Column("change_note", sa.Text, nullable=False, comment="Why this version exists."),
        sa.Column("registered_at", TS, nullable=False, comment="When this version was first seen by a run."),
        sa.Column("valid_from", TS, nullable=False, comment="Start of the time this version was current."),
        sa.Column("valid_to", TS, comment="End of the time this version was current; NULL = current."),
        comment="Every version of every metric definition. The current one has valid_to IS NULL.",
    )
    op.create_table(
        "publication",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, comment="Publication id."),
        sa.Column("metric_key", sa.String(63), nullable=False, comment="Metric published."),
        sa.Column("definition_version", sa.Integer, nullable=False, comment="Definition version used."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that produced the values."),
        sa.Column("content_hash", sa.String(64), nullable=False, comment="SHA-256 of the published rows."),
        sa.Column("periods", JSON, nullable=False, comment="Period starts covered (ISO dates)."),
        sa.Column("row_count", sa.Integer, nullable=False, comment="Rows published."),
        sa.Column("approved_by", sa.Text, nullable=False, comment="Approvers, stage by stage."),
        sa.Column("published_at", TS, nullable=False, comment="Commit time of the publication."),
        sa.UniqueConstraint("metric_key", "run_id", "content_hash", name="uq_publication_run_content"),
        comment="One row per publish of a run; re-running the same publish is a no-op.",
    )
    op.create_table(
        "metric_value",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("metric_key", sa.String(63), nullable=False, comment="Metric (see metric_dictionary)."),
        sa.Column(
            "definition_version", sa.Integer, nullable=False, comment="Definition version that computed it."
        ),
        sa.Column(
            "period_start", sa.Date, nullable=False, comment="First day of the period (business time zone)."
        ),
        sa.Column("period_end", sa.Date, nullable=False, comment="Day after the last day of the period."),
        sa.Column(
            "dimensions",
            JSON,
            nullable=False,
            comment="Dimension values as a JSON object ({} if none), keys in canonical order.",
        ),
        sa.Column("value", sa.Float(precision=53), comment="The approved value."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that computed it."),
        sa.Column("approved_by", sa.Text, nullable=False, comment="Who approved it, stage by stage."),
        sa.Column("published_at", TS, nullable=False, comment="When it was published."),
        # No foreign key on purpose: Postgres would check it row by row during COPY (~40% of a 1M-row
        # publish); publish writes the publication and its values in one transaction instead.
        sa.Column(
            "publication_id", sa.Integer, nullable=False, comment="The publication (run) that wrote it."
        ),
        sa.Column("superseded_at", TS, comment="When a restatement replaced it; NULL = current."),
        comment="Every value ever published; never updated except to mark it superseded by a restatement.",
    )
    op.create_index(
        "uq_metric_value_current",
        "metric_value",
        ["metric_key", "period_start", "dimensions"],
        unique=True,
        postgresql_where=sa.text("superseded_at IS NULL"),
        sqlite_where=sa.text("superseded_at IS NULL"),
    )
    op.create_index("ix_metric_value_period", "metric_value", ["metric_key", "period_start"])
    op.create_table(
        "quality_result",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("metric_key", sa.String(63), nullable=False, comment="Metric checked."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run checked."),
        sa.Column("period_start", sa.Date, nullable=False, comment="Period checked."),
        sa.Column("expectation", sa.String(255), nullable=False, comment="Great Expectations expectation."),
        sa.Column("kwargs", JSON, nullable=False, comment="Its arguments."),
        sa.Column("success", sa.Boolean, nullable=False, comment="Whether the data met it."),
        sa.Column("observed", JSON, comment="What GX observed (result summary)."),
        sa.Column("checked_at", TS, nullable=False),
        comment="Audit: every expectation of every run, passed or failed.",
    )
    op.create_table(
        "approval_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("metric_key", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("stage", sa.String(255), nullable=False, comment="Approval stage name."),
        sa.Column(
            "decision", sa.String(32), nullable=False, comment="approved, rejected, timed_out, refused."
        ),
        sa.Column("decided_by", sa.String(255), comment="Airflow user who answered (NULL on timeout)."),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("detail", sa.Text, comment="Why (e.g. the reason a response was refused)."),
        comment="Audit: every approval decision, including timeouts and refused attempts.",
    )
    op.execute(
        """
        CREATE VIEW metric_dictionary AS
        SELECT metric_key, version AS current_version, name, description, department, owner, unit,
               grain, dimensions, formula, change_note, valid_from AS current_since
        FROM metric_definition
        WHERE valid_to IS NULL
        """
    )
    op.execute(
        """
        CREATE VIEW metric_value_current AS
        SELECT v.metric_key, v.period_start, v.period_end, v.dimensions, v.value, d.unit,
               v.definition_version, v.run_id, v.approved_by, v.published_at
        FROM metric_value v
        JOIN metric_definition d ON d.metric_key = v.metric_key AND d.version = v.definition_version
        WHERE v.superseded_at IS NULL
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "COMMENT ON VIEW metric_value_current IS "
            "'Current approved value of every metric, period and dimension combination. Read this from BI.'"
        )
        op.execute(
            "COMMENT ON VIEW metric_dictionary IS "
            "'The current definition of every metric: meaning, owner, unit, grain, dimensions.'"
        )
