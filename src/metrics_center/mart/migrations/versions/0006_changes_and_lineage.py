"""Definitions that change safely and build on each other: lineage, announcements, impact previews, history.

- ``metric_input``: which metrics each definition version reads (``sources: {x: {metric: key}}``).
- ``metric_definition.announced_at``: when the version's change was broadcast (once); existing versions
  count as announced.
- ``impact_preview``: a breaking version's values over recent periods compared with the old version's.
- ``metric_run.periods``: the periods a run computes when it computes several (a restatement, an
  input-triggered run); NULL = its one period.
- Views: ``metric_value_history`` (every version of every value, with the time it was current) and
  ``metric_dictionary`` with each metric's upstream and downstream metrics.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

_OLD_DICTIONARY = """
    CREATE VIEW metric_dictionary AS
    SELECT metric_key, version AS current_version, name, description, department, owner, unit,
           grain, dimensions, formula, change_note, valid_from AS current_since
    FROM metric_definition
    WHERE valid_to IS NULL
"""
_LIST = {
    "postgresql": "(SELECT string_agg(x.k, ', ' ORDER BY x.k) FROM ({rows}) AS x)",
    "sqlite": "(SELECT group_concat(x.k, ', ') FROM ({rows} ORDER BY 1) AS x)",
}
_UPSTREAM = (
    "SELECT DISTINCT i.input_key AS k FROM metric_input i "
    "WHERE i.metric_key = d.metric_key AND i.version = d.version"
)
_DOWNSTREAM = (
    "SELECT DISTINCT i.metric_key AS k FROM metric_input i "
    "JOIN metric_definition c ON c.metric_key = i.metric_key AND c.version = i.version AND c.valid_to IS NULL "
    "WHERE i.input_key = d.metric_key"
)
_DICTIONARY = """
    CREATE VIEW metric_dictionary AS
    SELECT d.metric_key, d.version AS current_version, d.name, d.description, d.department, d.owner, d.unit,
           d.grain, d.dimensions, d.formula, d.change_note, d.valid_from AS current_since,
           {upstream} AS upstream_metrics, {downstream} AS downstream_metrics
    FROM metric_definition d
    WHERE d.valid_to IS NULL
"""
_HISTORY = """
    CREATE VIEW metric_value_history AS
    SELECT v.metric_key, v.period_start, v.period_end, v.dimensions, v.value, d.unit, v.definition_version,
           v.run_id, v.approved_by, v.publication_id, p.restatement,
           v.published_at AS valid_from, v.superseded_at AS valid_to,
           CASE WHEN v.superseded_at IS NULL THEN 1 ELSE 0 END AS is_current
    FROM metric_value v
    LEFT JOIN metric_definition d ON d.metric_key = v.metric_key AND d.version = v.definition_version
    LEFT JOIN publication p ON p.id = v.publication_id
"""
_COMMENTS = (
    "COMMENT ON VIEW metric_dictionary IS 'The current definition of every metric: meaning, owner, unit, grain, "
    "dimensions, and the metrics it reads (upstream) and that read it (downstream).'",
    "COMMENT ON VIEW metric_value_history IS 'Every value ever published, each with the time it was current "
    "(valid_from = published, valid_to = superseded; NULL = current): as published on day X is "
    "valid_from <= X AND (valid_to IS NULL OR valid_to > X).'",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "metric_input",
        sa.Column("metric_key", sa.String(63), primary_key=True, comment="The metric that reads."),
        sa.Column("version", sa.Integer, primary_key=True, comment="Its definition version."),
        sa.Column("source_name", sa.String(63), primary_key=True, comment="The source (table) name."),
        sa.Column("input_key", sa.String(63), nullable=False, comment="The metric read."),
        comment="Lineage: the metrics each definition version reads (原子指标 → 派生指标).",
    )
    op.create_index("ix_metric_input_input", "metric_input", ["input_key"])
    with op.batch_alter_table("metric_definition") as batch:
        batch.add_column(sa.Column("announced_at", TS, comment="When this version was broadcast (once)."))
    op.execute("UPDATE metric_definition SET announced_at = registered_at")
    op.create_table(
        "impact_preview",
        sa.Column("metric_key", sa.String(63), primary_key=True, comment="Metric."),
        sa.Column("version", sa.Integer, primary_key=True, comment="The new (breaking) version."),
        sa.Column("from_version", sa.Integer, comment="The version it was compared with."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="The run that computed it."),
        sa.Column("computed_at", TS, nullable=False),
        sa.Column(
            "summary", JSON, comment="Periods and combinations affected, differences, largest changes."
        ),
        sa.Column("error", sa.Text, comment="Why the preview could not be computed (then summary is NULL)."),
        comment="Impact of a breaking definition version on recently published numbers, before its first approval.",
    )
    with op.batch_alter_table("metric_run") as batch:
        batch.add_column(
            sa.Column(
                "periods",
                JSON,
                comment="Period starts when the run computes several; NULL = period_start only.",
            )
        )
    op.execute("DROP VIEW metric_dictionary")
    op.execute(
        _DICTIONARY.format(
            upstream=_LIST[dialect].format(rows=_UPSTREAM), downstream=_LIST[dialect].format(rows=_DOWNSTREAM)
        )
    )
    op.execute(_HISTORY)
    if dialect == "postgresql":
        for comment in _COMMENTS:
            op.execute(comment)


def downgrade() -> None:
    op.execute("DROP VIEW metric_value_history")
    op.execute("DROP VIEW metric_dictionary")
    op.execute(_OLD_DICTIONARY)
    with op.batch_alter_table("metric_run") as batch:
        batch.drop_column("periods")
    op.drop_table("impact_preview")
    with op.batch_alter_table("metric_definition") as batch:
        batch.drop_column("announced_at")
    op.drop_index("ix_metric_input_input", "metric_input")
    op.drop_table("metric_input")
