"""The run audit: quality results and approval decisions, written as they happen."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.mart.tables import approval_event, metric_value_current, quality_result

if TYPE_CHECKING:
    from sqlalchemy import Engine


def record_quality_results(
    engine: Engine, *, metric_key: str, run_id: str, period_start: date, results: list[dict[str, Any]]
) -> None:
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
            "checked_at": now,
        }
        for r in results
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(sa.insert(quality_result), rows)


def record_approval_event(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    stage: str,
    decision: str,
    decided_by: str | None,
    detail: str | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(approval_event).values(
                metric_key=metric_key,
                run_id=run_id,
                stage=stage,
                decision=decision,
                decided_by=decided_by,
                decided_at=datetime.now(UTC),
                detail=detail,
            )
        )


def current_values(engine: Engine, *, metric_key: str, period_start: date) -> dict[str, float | None]:
    """Current published values of one period, by canonical dimension JSON."""
    import json

    v = metric_value_current
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(v.c.dimensions, v.c.value).where(
                v.c.metric_key == metric_key, v.c.period_start == period_start
            )
        ).all()
    return {
        json.dumps(dims, sort_keys=True, separators=(",", ":"), ensure_ascii=False): value
        for dims, value in rows
    }
