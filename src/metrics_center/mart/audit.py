"""The run audit: quality results as they happen, and what is currently published."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.definitions.dimensions import dimensions_key
from metrics_center.mart.tables import anomaly, metric_value_current, quality_result

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine


def record_quality_results(
    conn: Connection, *, metric_key: str, run_id: str, period_start: date, results: list[dict[str, Any]]
) -> None:
    """Store one check's results inside the caller's transaction (with the anomalies and alerts they cause)."""
    now = datetime.now(UTC)
    rows = [
        {
            "metric_key": metric_key,
            "run_id": run_id,
            "period_start": period_start,
            "expectation": r["expectation"],
            "kwargs": r["kwargs"],
            "success": r["success"],
            "observed": r.get("observed"),
            "severity": r.get("severity", "block"),
            "checked_at": now,
        }
        for r in results
    ]
    if rows:
        conn.execute(sa.insert(quality_result), rows)


def run_quality_results(engine: Engine, *, metric_key: str, run_id: str) -> list[dict[str, Any]]:
    """The latest quality check of a run, as stored (not as XCom, which anyone with edit rights can change)."""
    t = quality_result
    with engine.connect() as conn:
        latest = conn.execute(
            sa.select(sa.func.max(t.c.checked_at)).where(t.c.metric_key == metric_key, t.c.run_id == run_id)
        ).scalar()
        if latest is None:
            return []
        rows = conn.execute(
            sa.select(t.c.expectation, t.c.kwargs, t.c.success, t.c.observed, t.c.severity)
            .where(t.c.metric_key == metric_key, t.c.run_id == run_id, t.c.checked_at == latest)
            .order_by(t.c.id)
        ).all()
    return [dict(row._mapping) for row in rows]


def current_values(engine: Engine, *, metric_key: str, period_start: date) -> dict[str, float | None]:
    """Current published values of one period, by canonical dimension JSON."""
    v = metric_value_current
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(v.c.dimensions, v.c.value).where(
                v.c.metric_key == metric_key, v.c.period_start == period_start
            )
        ).all()
    return {dimensions_key(_as_mapping(dims)): value for dims, value in rows}


def _as_mapping(dims: Any) -> dict[str, Any]:
    """JSON columns come back parsed through SQLAlchemy, as text through a view on SQLite."""
    import json

    return json.loads(dims) if isinstance(dims, str) else dims


def run_anomalies(engine: Engine, *, metric_key: str, run_id: str) -> list[dict[str, Any]]:
    """The anomalies the run's quality check found, largest score first."""
    t = anomaly
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.period_start,
                t.c.dimensions,
                t.c.value,
                t.c.expected,
                t.c.band_low,
                t.c.band_high,
                t.c.score,
                t.c.method,
            )
            .where(t.c.metric_key == metric_key, t.c.run_id == run_id)
            .order_by(t.c.id)
        ).all()
    found = [dict(row._mapping) for row in rows]
    return sorted(found, key=lambda a: -abs(a["score"]) if a["score"] is not None else float("-inf"))
