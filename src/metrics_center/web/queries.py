"""The mart reads (and the one write) behind the pages: definitions, values, anomalies, publications, audit."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.mart.tables import (
    anomaly,
    approval_event,
    metric_definition,
    metric_value_current,
    publication,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

Row = dict[str, Any]
VALUE_COLUMNS = (
    "metric_key",
    "period_start",
    "period_end",
    "dimensions",
    "value",
    "unit",
    "definition_version",
    "run_id",
    "approved_by",
    "published_at",
)


def as_mapping(dims: Any) -> dict[str, Any]:
    """JSON columns come back parsed on Postgres, as text through a view on SQLite."""
    return json.loads(dims) if isinstance(dims, str) else dict(dims or {})


def _rows(engine: Engine, query: sa.Select) -> list[Row]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def registered(engine: Engine) -> dict[str, Row]:
    """The current registered definition of every metric in the mart, by key."""
    t = metric_definition
    rows = _rows(engine, sa.select(t).where(t.c.valid_to.is_(None)))
    return {r["metric_key"]: r for r in rows}


def latest_periods(engine: Engine) -> dict[str, date]:
    """The newest published period of every metric."""
    v = metric_value_current
    query = sa.select(v.c.metric_key, sa.func.max(v.c.period_start).label("latest")).group_by(v.c.metric_key)
    with engine.connect() as conn:
        return {key: _as_date(latest) for key, latest in conn.execute(query)}


def _as_date(value: Any) -> date:
    """``max()`` over a SQLite view loses the column's type: the date comes back as text."""
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


def versions(engine: Engine, key: str) -> list[Row]:
    """Every registered version of a metric, newest first, with its change note."""
    t = metric_definition
    cols = (t.c.version, t.c.name, t.c.change_note, t.c.definition_hash, t.c.valid_from, t.c.valid_to)
    return _rows(engine, sa.select(*cols).where(t.c.metric_key == key).order_by(t.c.version.desc()))


def version_changes(engine: Engine, key: str) -> dict[int, dict[str, Any]]:
    """Per registered version: what changed from the one before (classification and diff) and its impact preview."""
    from metrics_center.definitions.changes import compare_documents, unified_diff
    from metrics_center.mart.tables import impact_preview

    t = metric_definition
    rows = _rows(
        engine, sa.select(t.c.version, t.c.definition).where(t.c.metric_key == key).order_by(t.c.version)
    )
    previews = {
        r["version"]: r
        for r in _rows(engine, sa.select(impact_preview).where(impact_preview.c.metric_key == key))
    }
    found: dict[int, dict[str, Any]] = {}
    previous = None
    for row in rows:
        document = (
            row["definition"] if not isinstance(row["definition"], str) else json.loads(row["definition"])
        )
        change = compare_documents(previous, document)
        preview = previews.get(row["version"])
        found[row["version"]] = {
            "breaking": change.breaking if previous is not None else None,
            "summary": change.summary() if previous is not None else "first version",
            "diff": unified_diff(previous, document, old_label="before", new_label=f"v{row['version']}")
            if previous is not None
            else "",
            "author": ((document.get("provenance") or {}).get("description")),
            "preview": (preview["summary"] or {"error": preview["error"]}) if preview else None,
        }
        previous = document
    return found


def history(engine: Engine, key: str, *, periods: int, before: date | None = None) -> list[Row]:
    """Current published values of the newest ``periods`` periods (before ``before``), oldest first."""
    v = metric_value_current
    newest = sa.select(v.c.period_start).where(v.c.metric_key == key).distinct()
    if before is not None:
        newest = newest.where(v.c.period_start < before)
    newest = newest.order_by(v.c.period_start.desc()).limit(periods).subquery()
    query = (
        sa.select(v.c.period_start, v.c.dimensions, v.c.value, v.c.numerator, v.c.denominator)
        .where(v.c.metric_key == key, v.c.period_start.in_(sa.select(newest.c.period_start)))
        .order_by(v.c.period_start)
    )
    return [{**r, "dimensions": as_mapping(r["dimensions"])} for r in _rows(engine, query)]


def histories(
    engine: Engine, key: str, *, periods: int, befores: Sequence[date | None]
) -> dict[date | None, list[Row]]:
    """:func:`history` for several cut-offs of one metric in two queries (one page of approval cards)."""
    v = metric_value_current
    cut = [b for b in befores if b is not None]
    starts = sa.select(v.c.period_start).where(v.c.metric_key == key).distinct()
    if cut and None not in befores:
        starts = starts.where(v.c.period_start < max(cut))
    with engine.connect() as conn:
        known = sorted(_as_date(d) for d in conn.execute(starts).scalars())
    wanted: dict[date | None, list[date]] = {}
    for before in dict.fromkeys(befores):
        older = [d for d in known if before is None or d < before]
        wanted[before] = older[-periods:] if periods else []
    needed = sorted({d for days in wanted.values() for d in days})
    if not needed:
        return {before: [] for before in wanted}
    query = (
        sa.select(v.c.period_start, v.c.dimensions, v.c.value, v.c.numerator, v.c.denominator)
        .where(v.c.metric_key == key, v.c.period_start.in_(needed))
        .order_by(v.c.period_start)
    )
    rows = [
        {**r, "period_start": _as_date(r["period_start"]), "dimensions": as_mapping(r["dimensions"])}
        for r in _rows(engine, query)
    ]
    found = {}
    for before, days in wanted.items():
        first, last = (days[0], days[-1]) if days else (None, None)
        found[before] = [r for r in rows if first is not None and first <= r["period_start"] <= last]
    return found


def latest_values(engine: Engine, key: str) -> list[Row]:
    """The newest published period's current values, with who approved them."""
    v = metric_value_current
    last = sa.select(sa.func.max(v.c.period_start)).where(v.c.metric_key == key).scalar_subquery()
    query = (
        sa.select(v.c.period_start, v.c.dimensions, v.c.value, v.c.unit, v.c.approved_by, v.c.published_at)
        .where(v.c.metric_key == key, v.c.period_start == last)
        .order_by(v.c.value.desc())
    )
    return [{**r, "dimensions": as_mapping(r["dimensions"])} for r in _rows(engine, query)]


def _anomaly_columns() -> tuple[sa.Column, ...]:
    a = anomaly
    return (
        a.c.id,
        a.c.run_id,
        a.c.period_start,
        a.c.dimensions,
        a.c.value,
        a.c.expected,
        a.c.band_low,
        a.c.band_high,
        a.c.score,
        a.c.method,
        a.c.marked_expected_by,
        a.c.marked_expected_at,
    )


def run_anomalies(engine: Engine, key: str, run_id: str) -> list[Row]:
    """The anomalies a run's quality check found, largest |score| first."""
    a = anomaly
    rows = _rows(engine, sa.select(*_anomaly_columns()).where(a.c.metric_key == key, a.c.run_id == run_id))
    rows = [{**r, "dimensions": as_mapping(r["dimensions"])} for r in rows]
    return sorted(rows, key=lambda r: -abs(r["score"] or 0.0))


def runs_anomalies(engine: Engine, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Row]]:
    """:func:`run_anomalies` of several ``(metric_key, run_id)`` in one query."""
    a = anomaly
    found: dict[tuple[str, str], list[Row]] = {k: [] for k in keys}
    if not keys:
        return found
    query = sa.select(a.c.metric_key, *_anomaly_columns()).where(
        sa.tuple_(a.c.metric_key, a.c.run_id).in_(list(keys))
    )
    for r in _rows(engine, query):
        row = {k: val for k, val in r.items() if k != "metric_key"}
        found[(r["metric_key"], r["run_id"])].append({**row, "dimensions": as_mapping(row["dimensions"])})
    return {k: sorted(rows, key=lambda r: -abs(r["score"] or 0.0)) for k, rows in found.items()}


def open_anomalies(engine: Engine, key: str, *, limit: int = 20) -> list[Row]:
    """Anomalies nobody has marked expected, newest period first."""
    a = anomaly
    query = (
        sa.select(*_anomaly_columns())
        .where(a.c.metric_key == key, a.c.marked_expected_at.is_(None))
        .order_by(a.c.period_start.desc(), a.c.id.desc())
        .limit(limit)
    )
    return [{**r, "dimensions": as_mapping(r["dimensions"])} for r in _rows(engine, query)]


def mark_expected(engine: Engine, *, key: str, run_id: str, person: str) -> int:
    """Mark a run's unmarked anomalies as expected by ``person`` (left out of later baselines)."""
    a = anomaly
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(a)
            .where(a.c.metric_key == key, a.c.run_id == run_id, a.c.marked_expected_at.is_(None))
            .values(marked_expected_by=person, marked_expected_at=datetime.now(UTC))
        )
    return int(result.rowcount or 0)


def publications(engine: Engine, key: str, *, limit: int = 10) -> list[Row]:
    """The newest publications of a metric: which periods, approved by whom, when."""
    p = publication
    query = (
        sa.select(
            p.c.id,
            p.c.run_id,
            p.c.definition_version,
            p.c.periods,
            p.c.row_count,
            p.c.approved_by,
            p.c.published_at,
            p.c.restatement,
        )
        .where(p.c.metric_key == key)
        .order_by(p.c.published_at.desc(), p.c.id.desc())
        .limit(limit)
    )
    return [{**r, "periods": _as_list(r["periods"])} for r in _rows(engine, query)]


def _as_list(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def stream_values(
    engine: Engine, key: str, *, since: date | None = None, until: date | None = None
) -> Iterator[Row]:
    """Every current value of a metric (optionally ``since`` ≤ period_start ≤ ``until``), streamed."""
    v = metric_value_current
    query = sa.select(*(v.c[c] for c in VALUE_COLUMNS)).where(v.c.metric_key == key)
    if since is not None:
        query = query.where(v.c.period_start >= since)
    if until is not None:
        query = query.where(v.c.period_start <= until)
    query = query.order_by(v.c.period_start, v.c.value)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
        for row in result:
            values = dict(row._mapping)
            values["dimensions"] = as_mapping(values["dimensions"])
            yield values


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page filters on; empty fields filter nothing."""

    metric: str | None = None
    person: str | None = None
    stage: str | None = None
    decision: str | None = None
    since: date | None = None
    until: date | None = None


def audit_events(
    engine: Engine, keys: Sequence[str], where: AuditFilter, *, page: int, per_page: int
) -> tuple[list[Row], int]:
    """One page of ``approval_event`` rows of the metrics ``keys``, newest first, and the total."""
    t = approval_event
    conditions = [t.c.metric_key.in_(list(keys))]
    for column, value in (
        (t.c.metric_key, where.metric),
        (t.c.decided_by, where.person),
        (t.c.stage, where.stage),
        (t.c.decision, where.decision),
    ):
        if value:
            conditions.append(column == value)
    if where.since:
        conditions.append(t.c.decided_at >= _midnight(where.since))
    if where.until:
        conditions.append(t.c.decided_at < _midnight(where.until + timedelta(days=1)))
    cols = [c for c in t.c if c.name not in ("ti_id", "result_hash", "evidence_hash")]
    query = (
        sa.select(*cols)
        .where(*conditions)
        .order_by(t.c.decided_at.desc(), t.c.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t).where(*conditions)).scalar_one()
        rows = [dict(r._mapping) for r in conn.execute(query)]
    return rows, int(total)


def audit_choices(engine: Engine, keys: Sequence[str]) -> dict[str, list[str]]:
    """The distinct metrics, people, stages and decisions in the audit (for the filter menus)."""
    t = approval_event
    found: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for name, column in (
            ("metric", t.c.metric_key),
            ("person", t.c.decided_by),
            ("stage", t.c.stage),
            ("decision", t.c.decision),
        ):
            query = sa.select(column).where(t.c.metric_key.in_(list(keys)), column.is_not(None)).distinct()
            found[name] = sorted(str(v) for v in conn.execute(query).scalars())
    return found


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
