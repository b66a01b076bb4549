"""A metric's own storage and relations in the mart: typed columns per dimension, made from its definition.

Each metric stores its values in ``values__<key>`` (one column per dimension it ever had, value, and for a
ratio its numerator and denominator) and is read by BI through two relations named after it — in schema
``metrics`` on Postgres (``metrics.gmv_daily``, ``metrics.gmv_daily_history``), with the prefix ``metrics__``
on SQLite (``metrics__gmv_daily``…):

- ``<key>``: the current values — period, its label, one column per dimension, value (and its parts), unit,
  version, who approved it and when;
- ``<key>_history``: every publication, ``is_current`` saying which one counts now (as-of questions).

Both are built when a version is registered, in the same transaction (a version that changes dimensions
replaces them), and by ``metrics-center mart upgrade`` for every metric. On Postgres the DDL runs inside
``metrics_mart.ensure_metric_relations`` (``relations.sql``), the one piece of DDL the task role may start;
on SQLite it runs here. Every column carries a comment (Postgres) that BI tools copy into their datasets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from metrics_center.definitions.spec import MetricSpec, Teams

BI_SCHEMA = "metrics"  # Postgres: the schema BI tools read
SQLITE_PREFIX = "metrics__"
STORAGE_PREFIX = "values__"
_LABELS_SQLITE = {
    "day": "strftime('%Y-%m-%d', v.period_start)",
    "week": None,  # computed in Python for SQLite: ISO weeks (see _iso_week_sqlite)
    "month": "strftime('%Y-%m', v.period_start)",
}


def storage_name(metric_key: str) -> str:
    return STORAGE_PREFIX + metric_key


def relation_names(metric_key: str, *, dialect: str) -> tuple[str, str]:
    """The current-values relation and the history relation, as a reader names them (schema-qualified)."""
    if dialect == "postgresql":
        return f"{BI_SCHEMA}.{metric_key}", f"{BI_SCHEMA}.{metric_key}_history"
    return f"{SQLITE_PREFIX}{metric_key}", f"{SQLITE_PREFIX}{metric_key}_history"


def storage_table(metric_key: str, *, dimensions: Sequence[str]) -> sa.Table:
    """SQLAlchemy Core handle on a metric's storage (its columns as registered; never used for DDL)."""
    return sa.Table(
        storage_name(metric_key),
        sa.MetaData(),
        sa.Column("period_start", sa.Date),
        sa.Column("period_end", sa.Date),
        *(sa.Column(d, sa.Text) for d in dimensions),
        sa.Column("value", sa.Float(precision=53)),
        sa.Column("numerator", sa.Float(precision=53)),
        sa.Column("denominator", sa.Float(precision=53)),
        sa.Column("definition_version", sa.Integer),
        sa.Column("publication_id", sa.Integer),
        sa.Column("superseded_at", sa.DateTime(timezone=True)),
    )


def stored_dimensions(conn: Connection, *, metric_key: str, current: Sequence[str] = ()) -> list[str]:
    """Every dimension any registered version of the metric had (its storage's columns), in first-seen order."""
    from metrics_center.mart.tables import metric_definition as t

    rows = conn.execute(
        sa.select(t.c.dimensions).where(t.c.metric_key == metric_key).order_by(t.c.version)
    ).scalars()
    names: dict[str, None] = {}
    for dims in rows:
        for d in json.loads(dims) if isinstance(dims, str) else dims or []:
            names[d] = None
    names.update(dict.fromkeys(current))
    return list(names)


def metric_storage(conn: Connection, *, metric_key: str) -> sa.Table | None:
    """The storage handle of a registered metric (None: never registered, so nothing was published)."""
    dims = stored_dimensions(conn, metric_key=metric_key)
    if not dims and not _exists(conn, storage_name(metric_key)):
        return None
    return storage_table(metric_key, dimensions=dims)


def _exists(conn: Connection, name: str) -> bool:
    return sa.inspect(conn).has_table(name)


@dataclass(frozen=True, kw_only=True)
class RelationSpec:
    """What :func:`ensure_relations` builds for one metric (also the JSON the Postgres function reads)."""

    key: str
    grain: str
    ratio: bool
    stored_dimensions: list[str]
    dimensions: list[str]
    comments: dict[str, dict[str, str]] = field(default_factory=dict)
    relation_comments: dict[str, str] = field(default_factory=dict)
    readers: list[str] | None = None  # departments that may read; None: everyone (public)

    def as_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "grain": self.grain,
                "ratio": self.ratio,
                "stored_dimensions": self.stored_dimensions,
                "dimensions": self.dimensions,
                "comments": self.comments,
                "relation_comments": self.relation_comments,
                "readers": self.readers,
            },
            ensure_ascii=False,
        )


def reader_departments(spec: MetricSpec, teams: Teams | None) -> list[str] | None:
    """Departments whose BI roles may read the metric; None for a public one.

    ``department``: the owning department and the departments among ``readers``; ``restricted``: only those
    (people listed as readers read through the Metrics Center page, not through a department's role).
    """
    if spec.access == "public":
        return None
    departments = [r for r in spec.readers if teams is None or r in teams.departments]
    if spec.access == "department":
        departments = [spec.department, *departments]
    return sorted(set(departments))


def relation_spec(
    spec: MetricSpec, *, teams: Teams | None, stored: Sequence[str], replacement: str | None = None
) -> RelationSpec:
    """What to build for ``spec``; ``replacement``: the name of the metric that replaces it, for the comments."""
    from metrics_center.mart.comments import relation_comments

    comments, relation_words = relation_comments(spec, replacement=replacement)
    return RelationSpec(
        key=spec.key,
        grain=spec.grain,
        ratio=spec.is_ratio,
        stored_dimensions=list(dict.fromkeys([*stored, *spec.dimensions])),
        dimensions=list(spec.dimensions),
        comments=comments,
        relation_comments=relation_words,
        readers=reader_departments(spec, teams),
    )


def ensure_relations(conn: Connection, relation: RelationSpec) -> None:
    """Create or update the metric's storage and relations inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT metrics_mart.ensure_metric_relations(CAST(:spec AS jsonb))"),
            {"spec": relation.as_json()},
        )
        return
    _ensure_sqlite(conn, relation)


_NAME = re.compile(r"[a-z][a-z0-9_]{0,80}")


def _quote(conn: Connection, name: str) -> str:
    """A validated identifier (metric keys and dimensions are checked at the boundary; checked again here)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an identifier")
    return conn.dialect.identifier_preparer.quote(name)


def _ensure_sqlite(conn: Connection, r: RelationSpec) -> None:
    """The same relations on SQLite (no schemas, roles or comments; ISO-week labels computed by SQLite too)."""
    q = lambda name: _quote(conn, name)  # noqa: E731
    storage = storage_name(r.key)
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {q(storage)} (period_start DATE NOT NULL, period_end DATE NOT NULL, "
        "value FLOAT, numerator FLOAT, denominator FLOAT, definition_version INTEGER NOT NULL, "
        "publication_id INTEGER NOT NULL, superseded_at DATETIME)"
    )
    present = {c["name"] for c in sa.inspect(conn).get_columns(storage)}
    for d in r.stored_dimensions:
        if d not in present:
            conn.exec_driver_sql(f"ALTER TABLE {q(storage)} ADD COLUMN {q(d)} TEXT")
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS {q('ix_current_' + storage)} ON {q(storage)} (period_start) "
        "WHERE superseded_at IS NULL"
    )
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {q('uq_current_' + storage)}")
    # SQLite's unique indexes treat NULLs as distinct: index the dimensions with NULL mapped to a marker.
    keys = "".join(f", coalesce({q(d)}, char(0))" for d in r.stored_dimensions)
    conn.exec_driver_sql(
        f"CREATE UNIQUE INDEX {q('uq_current_' + storage)} ON {q(storage)} (period_start{keys}) "
        "WHERE superseded_at IS NULL"
    )
    label = _LABELS_SQLITE[r.grain] or (
        # ISO week of a Monday: the year and week of its Thursday (SQLite's %W counts from the first Monday).
        "strftime('%Y', date(v.period_start, '+3 days')) || '-W' || "
        "printf('%02d', (CAST(strftime('%j', date(v.period_start, '+3 days')) AS INTEGER) + 6) / 7)"
    )
    cols = ", ".join(
        [
            "v.period_start",
            "v.period_end",
            f"{label} AS period",
            *(f"v.{q(d)}" for d in r.dimensions),
            "v.value",
            *(["v.numerator", "v.denominator"] if r.ratio else []),
            "d.unit",
            "v.definition_version",
            "p.approved_by",
            "p.published_at",
        ]
    )
    history = (
        f"{cols}, CASE WHEN v.superseded_at IS NULL THEN 1 ELSE 0 END AS is_current, p.published_at AS valid_from, "
        "v.superseded_at AS valid_to, p.run_id, coalesce(p.restatement, 0) AS restatement"
    )
    _quote(conn, r.key)  # a validated identifier: no quote can appear in the literal below
    source = (
        f" FROM {q(storage)} v LEFT JOIN publication p ON p.id = v.publication_id "
        f"LEFT JOIN metric_definition d ON d.metric_key = '{r.key}' AND d.version = v.definition_version"
    )
    current_name, history_name = (SQLITE_PREFIX + r.key, SQLITE_PREFIX + r.key + "_history")
    for name, body in (
        (current_name, f"SELECT {cols}{source} WHERE v.superseded_at IS NULL"),
        (history_name, f"SELECT {history}{source}"),
    ):
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {q(name)}")
        conn.exec_driver_sql(f"CREATE VIEW {q(name)} AS {body}")
    rebuild_value_views_sqlite(conn)


def rebuild_value_views_sqlite(conn: Connection) -> None:
    """``metric_value_all``: every metric's storage as one tall view, dimensions as each version's JSON."""
    from metrics_center.mart.tables import metric_definition as t

    q = lambda name: _quote(conn, name)  # noqa: E731
    versions: dict[str, list[tuple[int, list[str]]]] = {}
    for key, version, dims in conn.execute(
        sa.select(t.c.metric_key, t.c.version, t.c.dimensions).order_by(t.c.metric_key, t.c.version)
    ):
        versions.setdefault(key, []).append(
            (version, json.loads(dims) if isinstance(dims, str) else dims or [])
        )
    branches = []
    for key, rows in versions.items():
        if not _exists(conn, storage_name(key)):
            continue
        _quote(conn, key)  # validated: no quote can appear in the literal below
        pairs = {version: ", ".join("'" + d + "', v." + q(d) for d in sorted(dims)) for version, dims in rows}
        # dimension names are validated identifiers (q): no quote can appear in the literals
        cases = " ".join(f"WHEN {int(version)} THEN json_object({pairs[version]})" for version, _ in rows)
        branches.append(
            f"SELECT '{key}' AS metric_key, v.period_start, v.period_end, CASE v.definition_version {cases} END "
            "AS dimensions, v.value, v.numerator, v.denominator, v.definition_version, v.publication_id, "
            f"v.superseded_at FROM {q(storage_name(key))} v"
        )
    body = " UNION ALL ".join(branches) or (
        "SELECT NULL AS metric_key, NULL AS period_start, NULL AS period_end, NULL AS dimensions, NULL AS value, "
        "NULL AS numerator, NULL AS denominator, NULL AS definition_version, NULL AS publication_id, "
        "NULL AS superseded_at WHERE 0"
    )
    conn.exec_driver_sql("DROP VIEW IF EXISTS metric_value_all")
    conn.exec_driver_sql(f"CREATE VIEW metric_value_all AS {body}")


def column_changes(
    *, old_dimensions: Sequence[str], old_ratio: bool, new_dimensions: Sequence[str], new_ratio: bool
) -> dict[str, list[str]]:
    """Columns of the metric's relation that a new version adds and removes (what a BI dataset must follow)."""

    def columns(dims: Sequence[str], ratio: bool) -> list[str]:
        return [*dims, *(["numerator", "denominator"] if ratio else [])]

    old, new = columns(old_dimensions, old_ratio), columns(new_dimensions, new_ratio)
    return {"added": [c for c in new if c not in old], "removed": [c for c in old if c not in new]}


def dimensions_json(table: sa.Table, dimensions: Sequence[str], *, dialect: str) -> Any:
    """The canonical dimension JSON of a storage row, as the audit tables (``anomaly``) hold it."""
    pairs = [x for d in sorted(dimensions) for x in (sa.literal(d), table.c[d])]
    if dialect == "postgresql":
        return sa.func.jsonb_build_object(*pairs)
    return sa.func.json_object(*pairs)
