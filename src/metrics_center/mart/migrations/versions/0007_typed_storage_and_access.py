"""The mart as BI tools need it: typed storage per metric, its relations, ratios, access by department.

- Each metric's values move from the tall ``metric_value`` (dimensions as JSON) to ``values__<key>`` with one
  column per dimension (and numerator, denominator for ratios); ``metric_value`` is dropped.
- Each metric gets its relations ``metrics.<key>`` and ``metrics.<key>_history`` (``metrics__<key>…`` on
  SQLite), built by ``metrics_mart.ensure_metric_relations`` (``relations.sql``) — also at every registration.
- ``metric_value_all`` unites every metric's storage; ``metric_value_current`` and ``metric_value_history`` keep
  their columns (plus numerator and denominator) on top of it.
- ``metric_definition`` records ``aggregation``, ``access`` and ``readers``; ``mart_reader`` the BI roles
  ``metrics-center mart grant-reader`` made and the department each reads for (NULL: every metric). On
  Postgres the tall views, the dictionary and the new ``metric_anomaly`` show a reader only the metrics its
  department may read (``readable_metrics()``, security-barrier views).
- Every column of every view carries a comment (Postgres).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import json
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

_READABLE = """
CREATE OR REPLACE FUNCTION metrics_mart.readable_metrics() RETURNS SETOF varchar
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = metrics_mart, pg_temp AS $fn$
    -- The BI reader roles the session's login is (or is a member of), with their department.
    WITH me AS (
        SELECT r.department FROM metrics_mart.mart_reader r
        WHERE r.role_name = session_user
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                      JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                      JOIN pg_catalog.pg_roles u ON u.oid = m.member
                      WHERE u.rolname = session_user AND g.rolname = r.role_name)
    )
    SELECT d.metric_key FROM metrics_mart.metric_definition d
    WHERE d.valid_to IS NULL AND (
        NOT EXISTS (SELECT 1 FROM me)                       -- the mart's own roles, not a BI reader
        OR EXISTS (SELECT 1 FROM me WHERE me.department IS NULL)   -- a reader of every metric
        OR coalesce(d.access, 'public') = 'public'
        OR (d.access = 'department' AND d.department IN (SELECT department FROM me))
        OR EXISTS (SELECT 1 FROM me WHERE me.department IN
                   (SELECT jsonb_array_elements_text(coalesce(d.readers, '[]'::jsonb))))
    )
$fn$;
"""
_FILTER = {"postgresql": " AND {alias}.metric_key IN (SELECT metrics_mart.readable_metrics())", "sqlite": ""}
_BARRIER = {"postgresql": " WITH (security_barrier)", "sqlite": ""}
_CURRENT = """
CREATE VIEW metric_value_current{barrier} AS
SELECT a.metric_key, a.period_start, a.period_end, a.dimensions, a.value, a.numerator, a.denominator, d.unit,
       a.definition_version, p.run_id, p.approved_by, p.published_at
FROM metric_value_all a
LEFT JOIN metric_definition d ON d.metric_key = a.metric_key AND d.version = a.definition_version
LEFT JOIN publication p ON p.id = a.publication_id
WHERE a.superseded_at IS NULL{filter}
"""
_HISTORY = """
CREATE VIEW metric_value_history{barrier} AS
SELECT a.metric_key, a.period_start, a.period_end, a.dimensions, a.value, a.numerator, a.denominator, d.unit,
       a.definition_version, p.run_id, p.approved_by, a.publication_id, p.restatement,
       p.published_at AS valid_from, a.superseded_at AS valid_to,
       {is_current} AS is_current
FROM metric_value_all a
LEFT JOIN metric_definition d ON d.metric_key = a.metric_key AND d.version = a.definition_version
LEFT JOIN publication p ON p.id = a.publication_id
WHERE 1 = 1{filter}
"""
_IS_CURRENT = {
    "postgresql": "a.superseded_at IS NULL",
    "sqlite": "CASE WHEN a.superseded_at IS NULL THEN 1 ELSE 0 END",
}
_RELATION = {"postgresql": "'metrics.' || d.metric_key", "sqlite": "'metrics__' || d.metric_key"}
_DICTIONARY = """
CREATE VIEW metric_dictionary{barrier} AS
SELECT d.metric_key, d.version AS current_version, d.name, d.description, d.department, d.owner, d.unit,
       d.grain, d.dimensions, d.formula, d.aggregation, d.access, d.change_note, d.valid_from AS current_since,
       {upstream} AS upstream_metrics, {downstream} AS downstream_metrics,
       {relation} AS relation, {relation} || '_history' AS history_relation
FROM metric_definition d
WHERE d.valid_to IS NULL{filter}
"""
_ANOMALY = """
CREATE VIEW metric_anomaly{barrier} AS
SELECT n.metric_key, n.period_start, n.dimensions, n.value, n.expected, n.band_low, n.band_high, n.score,
       n.method, n.definition_version, n.detected_at, n.marked_expected_by, n.marked_expected_at
FROM anomaly n
WHERE 1 = 1{filter}
"""

#: Every column of every view BI reads: its comment (Postgres).
VIEW_COMMENTS = {
    "metric_value_current": {
        "": "Current approved value of every metric, period and dimension combination (one tall relation; "
        "for one metric, read metrics.<key>: typed dimension columns). Never SUM value across metric_key.",
        "metric_key": "The metric (see metric_dictionary); filter on it: metrics have different units.",
        "period_start": "First day of the period (the metric's business time zone).",
        "period_end": "Day after the last day of the period.",
        "dimensions": "Dimension values as a JSON object ({} if none). metrics.<key> has them as columns.",
        "value": "The approved value. For a ratio, totals are SUM(numerator) / SUM(denominator).",
        "numerator": "A ratio's numerator (NULL for other metrics).",
        "denominator": "A ratio's denominator (NULL for other metrics).",
        "unit": "Unit of value (CNY, %, count…), as the definition version that computed it says.",
        "definition_version": "Definition version that computed it.",
        "run_id": "The Airflow run that computed and published it.",
        "approved_by": "Who approved it, stage by stage.",
        "published_at": "When it was published.",
    },
    "metric_value_history": {
        "": "Every value ever published, each with the time it was current (valid_from = published, "
        "valid_to = superseded; NULL = current): as published on day X is valid_from <= X AND "
        "(valid_to IS NULL OR valid_to > X).",
        "metric_key": "The metric (see metric_dictionary).",
        "period_start": "First day of the period (the metric's business time zone).",
        "period_end": "Day after the last day of the period.",
        "dimensions": "Dimension values as a JSON object ({} if none).",
        "value": "The value as published. For a ratio, totals are SUM(numerator) / SUM(denominator).",
        "numerator": "A ratio's numerator (NULL for other metrics).",
        "denominator": "A ratio's denominator (NULL for other metrics).",
        "unit": "Unit of value.",
        "definition_version": "Definition version that computed it.",
        "run_id": "The Airflow run that computed and published it.",
        "approved_by": "Who approved it, stage by stage.",
        "publication_id": "The publication that wrote it.",
        "restatement": "Whether it was published by a restatement (重算) on purpose.",
        "valid_from": "When it was published (it counted from then).",
        "valid_to": "When a restatement replaced it; NULL while current.",
        "is_current": "True for the values that count now.",
    },
    "metric_dictionary": {
        "": "The current definition of every metric: meaning, owner, unit, grain, dimensions, how it totals, "
        "who may read it, its relations, and the metrics it reads (upstream) and that read it (downstream).",
        "metric_key": "Stable metric id (DAG id, file name <key>.yaml).",
        "current_version": "The definition version in force.",
        "name": "Display name.",
        "description": "What the metric means, in words.",
        "department": "Owning department.",
        "owner": "Person accountable for the definition.",
        "unit": "Unit of value.",
        "grain": "Period length: day, week (ISO) or month.",
        "dimensions": "Dimension names, in order (JSON list).",
        "formula": "Human-readable formula.",
        "aggregation": "How values total: sum (SUM), ratio (SUM(numerator) / SUM(denominator)) or none.",
        "access": "Who may read it: public, department (its department and readers) or restricted (readers).",
        "change_note": "Why the current version exists.",
        "current_since": "When the current version came into force.",
        "upstream_metrics": "Metrics this one is computed from.",
        "downstream_metrics": "Metrics computed from this one.",
        "relation": "The relation of its current values, one typed column per dimension.",
        "history_relation": "The relation of every publication of it (is_current marks the current ones).",
    },
    "metric_anomaly": {
        "": "Anomalies found by each run's quality check: values far from the metric's published history.",
        "metric_key": "The metric.",
        "period_start": "First day of the period.",
        "dimensions": "Dimension values as a JSON object.",
        "value": "The value that looked anomalous.",
        "expected": "What the history expected.",
        "band_low": "Lower end of the accepted band.",
        "band_high": "Upper end of the accepted band.",
        "score": "How far outside (z-score, robust z or relative change; see method).",
        "method": "zscore, mad or pct_change.",
        "definition_version": "Definition version of the value.",
        "detected_at": "When the run found it.",
        "marked_expected_by": "Approver who said it was expected (it then leaves future baselines).",
        "marked_expected_at": "When they said so.",
    },
}


def _spec_of(definition: object):
    """The stored definition as a MetricSpec; None for a document this code no longer reads."""
    from metrics_center.definitions.spec import MetricSpec

    document = json.loads(definition) if isinstance(definition, str) else definition
    try:
        return MetricSpec.model_validate(document["spec"])
    except Exception:
        return None


def upgrade() -> None:
    from metrics_center.mart.relations import (
        RelationSpec,
        ensure_relations,
        relation_spec,
        storage_name,
    )

    bind = op.get_bind()
    dialect = bind.dialect.name
    with op.batch_alter_table("metric_definition") as batch:
        batch.add_column(sa.Column("aggregation", sa.String(8), comment="sum, ratio or none."))
        batch.add_column(sa.Column("access", sa.String(12), comment="public, department or restricted."))
        batch.add_column(
            sa.Column("readers", JSON, comment="Departments or people who may read beside access.")
        )
    op.create_table(
        "mart_reader",
        sa.Column(
            "role_name", sa.String(63), primary_key=True, comment="A BI role made by mart grant-reader."
        ),
        sa.Column("department", sa.String(63), comment="The department it reads for; NULL: every metric."),
        sa.Column("granted_at", TS, nullable=False),
        comment="BI reader roles and the department each reads for (权限分级).",
    )
    if dialect == "postgresql":
        op.execute("CREATE SCHEMA IF NOT EXISTS metrics")
        op.execute(
            "COMMENT ON SCHEMA metrics IS 'One relation per metric (and <key>_history), for BI tools.'"
        )
        _ddl(resources.files("metrics_center.mart").joinpath("relations.sql").read_text(encoding="utf-8"))
        _ddl(_READABLE)
        for function in ("ensure_metric_relations(jsonb)", "rebuild_value_views()"):
            op.execute(f"REVOKE ALL ON FUNCTION metrics_mart.{function} FROM PUBLIC")

    t = sa.table(
        "metric_definition",
        sa.column("metric_key"),
        sa.column("version"),
        sa.column("dimensions", JSON),
        sa.column("grain"),
        sa.column("definition", JSON),
        sa.column("valid_to"),
        sa.column("aggregation"),
        sa.column("access"),
    )
    rows = bind.execute(
        sa.select(
            t.c.metric_key, t.c.version, t.c.dimensions, t.c.grain, t.c.definition, t.c.valid_to
        ).order_by(t.c.metric_key, t.c.version)
    ).all()
    latest: dict[str, tuple] = {}
    stored: dict[str, dict[str, None]] = {}
    for row in rows:
        spec = _spec_of(row.definition)
        bind.execute(
            sa.update(t)
            .where(t.c.metric_key == row.metric_key, t.c.version == row.version)
            .values(aggregation=spec.aggregation if spec else "none", access="public")
        )
        dims = json.loads(row.dimensions) if isinstance(row.dimensions, str) else row.dimensions or []
        stored.setdefault(row.metric_key, {}).update(dict.fromkeys(dims))
        latest[row.metric_key] = (row, spec, dims)

    for view in ("metric_value_history", "metric_value_current", "metric_dictionary"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for key, (row, spec, dims) in latest.items():
        names = list(stored[key])
        relation = (
            relation_spec(spec, teams=None, stored=names)
            if spec is not None
            else RelationSpec(
                key=key, grain=row.grain, ratio=False, stored_dimensions=names, dimensions=list(dims)
            )
        )
        ensure_relations(bind, relation)
        extract = {
            "postgresql": lambda d: f"v.dimensions ->> '{d}'",
            "sqlite": lambda d: f"json_extract(v.dimensions, '$.\"{d}\"')",
        }[dialect]
        preparer = bind.dialect.identifier_preparer
        # Keys and dimension names were validated identifiers when registered: no quote can appear in them.
        columns = ", ".join(preparer.quote(d) for d in names)
        values = ", ".join(extract(d) for d in names)
        op.execute(
            f"INSERT INTO {preparer.quote(storage_name(key))} (period_start, period_end, "
            f"{columns + ', ' if names else ''}value, definition_version, publication_id, superseded_at) "
            f"SELECT v.period_start, v.period_end, {values + ', ' if names else ''}v.value, v.definition_version, "
            f"v.publication_id, v.superseded_at FROM metric_value v WHERE v.metric_key = '{key}'"
        )
    op.drop_table("metric_value")
    if dialect == "postgresql":
        op.execute("SELECT metrics_mart.rebuild_value_views()")
    else:
        from metrics_center.mart.relations import rebuild_value_views_sqlite

        rebuild_value_views_sqlite(bind)
    _create_views(dialect)


def _create_views(dialect: str) -> None:
    import importlib

    # The dictionary's upstream/downstream lists are 0006's, unchanged.
    v0006 = importlib.import_module("metrics_center.mart.migrations.versions.0006_changes_and_lineage")
    barrier = _BARRIER[dialect]
    op.execute(_CURRENT.format(barrier=barrier, filter=_FILTER[dialect].format(alias="a")))
    op.execute(
        _HISTORY.format(
            barrier=barrier, filter=_FILTER[dialect].format(alias="a"), is_current=_IS_CURRENT[dialect]
        )
    )
    op.execute(
        _DICTIONARY.format(
            barrier=barrier,
            filter=_FILTER[dialect].format(alias="d"),
            upstream=v0006._LIST[dialect].format(rows=v0006._UPSTREAM),
            downstream=v0006._LIST[dialect].format(rows=v0006._DOWNSTREAM),
            relation=_RELATION[dialect],
        )
    )
    op.execute(_ANOMALY.format(barrier=barrier, filter=_FILTER[dialect].format(alias="n")))
    if dialect == "postgresql":
        for view, comments in VIEW_COMMENTS.items():
            for column, text in comments.items():
                target = f"VIEW metrics_mart.{view}" if not column else f"COLUMN metrics_mart.{view}.{column}"
                _ddl(f"COMMENT ON {target} IS " + _literal(text))
        _ddl(
            "COMMENT ON VIEW metrics_mart.metric_value_all IS "
            + _literal("Internal: every metric's storage united; BI reads metric_value_current instead.")
        )


def _ddl(sql: str) -> None:
    """Postgres DDL with ``%`` and ``$$`` in it, through the driver's cursor (no placeholder parsing)."""
    op.get_bind().connection.driver_connection.cursor().execute(sql)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def downgrade() -> None:
    """Back to one tall ``metric_value``: every stored value moves back (dimensions as each version's JSON)."""
    import importlib

    bind = op.get_bind()
    dialect = bind.dialect.name
    v0002 = importlib.import_module("metrics_center.mart.migrations.versions.0002_runs_and_bound_approvals")
    v0006 = importlib.import_module("metrics_center.mart.migrations.versions.0006_changes_and_lineage")
    for view in ("metric_anomaly", "metric_dictionary", "metric_value_history", "metric_value_current"):
        op.execute(f"DROP VIEW {view}")
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
            "dimensions", JSON, nullable=False, comment="Dimension values as a JSON object ({} if none)."
        ),
        sa.Column("value", sa.Float(precision=53), comment="The approved value."),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that computed it."),
        sa.Column("approved_by", sa.Text, nullable=False, comment="Who approved it, stage by stage."),
        sa.Column("published_at", TS, nullable=False, comment="When it was published."),
        sa.Column(
            "publication_id", sa.Integer, nullable=False, comment="The publication (run) that wrote it."
        ),
        sa.Column("superseded_at", TS, comment="When a restatement replaced it; NULL = current."),
        comment="Every value ever published; never updated except to mark it superseded by a restatement.",
    )
    op.execute(
        "INSERT INTO metric_value (metric_key, definition_version, period_start, period_end, dimensions, value, "
        "run_id, approved_by, published_at, publication_id, superseded_at) "
        "SELECT a.metric_key, a.definition_version, a.period_start, a.period_end, a.dimensions, a.value, "
        "p.run_id, p.approved_by, p.published_at, a.publication_id, a.superseded_at "
        "FROM metric_value_all a JOIN publication p ON p.id = a.publication_id"
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
    keys = bind.execute(sa.text("SELECT DISTINCT metric_key FROM metric_definition")).scalars().all()
    op.execute("DROP VIEW metric_value_all")
    preparer = bind.dialect.identifier_preparer
    if dialect == "postgresql":
        op.execute("DROP SCHEMA metrics CASCADE")  # the relations BI reads, before the tables under them
    for key in keys:
        if dialect == "sqlite":
            for name in (f"metrics__{key}", f"metrics__{key}_history"):
                op.execute(f"DROP VIEW IF EXISTS {preparer.quote(name)}")
        op.execute(f"DROP TABLE IF EXISTS {preparer.quote('values__' + key)}")
    if dialect == "postgresql":
        for function in ("ensure_metric_relations(jsonb)", "rebuild_value_views()", "readable_metrics()"):
            op.execute(f"DROP FUNCTION metrics_mart.{function}")
    op.drop_table("mart_reader")
    with op.batch_alter_table("metric_definition") as batch:
        for column in ("readers", "access", "aggregation"):
            batch.drop_column(column)
    op.execute(v0002._CURRENT_VIEW.format(join="LEFT JOIN"))
    op.execute(
        v0006._DICTIONARY.format(
            upstream=v0006._LIST[dialect].format(rows=v0006._UPSTREAM),
            downstream=v0006._LIST[dialect].format(rows=v0006._DOWNSTREAM),
        )
    )
    op.execute(v0006._HISTORY)
    if dialect == "postgresql":
        op.execute(v0002._CURRENT_VIEW_COMMENT)
        for comment in v0006._COMMENTS:
            op.execute(comment)
