"""The run register: which definition and period each run computes, what it computed, how it ended.

``register_definition`` starts a run here; ``transform`` records the hash of the result approvers
will see; ``publish`` reads it back, so a run is computed, approved and published under one
definition even if the YAML changes while it waits. Two runs of the same period may not be in
flight at once: the second is refused with a message naming the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from metrics_center.errors import MetricsCenterError
from metrics_center.mart.engine import locked_now, locked_transaction
from metrics_center.mart.tables import metric_run

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from metrics_center.periods import Period

RunState = Literal["computing", "computed", "published", "refused", "abandoned"]
IN_FLIGHT: tuple[RunState, ...] = ("computing", "computed")


class RunConflict(MetricsCenterError):
    """Another run of the same metric and period is still in flight."""


@dataclass(frozen=True)
class RunRecord:
    metric_key: str
    run_id: str
    definition_version: int
    definition_hash: str
    timezone: str
    period_start: date
    period_end: date
    restatement: bool
    state: RunState
    started_at: datetime
    computed_at: datetime | None
    result_hash: str | None
    result_rows: int | None
    publication_id: int | None


def start_run(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    definition_version: int,
    definition_hash: str,
    timezone: str,
    period: Period,
    restatement: bool,
    is_active: Callable[[str], bool],
) -> RunRecord:
    """Register (or re-register, on a retry or clear) ``run_id`` as computing ``period``.

    ``is_active(run_id)`` asks Airflow whether another run is still queued or running: a run that
    crashed or was marked failed leaves its row behind, and must not block the period forever.
    """
    with locked_transaction(engine, key=metric_key) as conn:
        others = conn.execute(
            sa.select(metric_run).where(
                metric_run.c.metric_key == metric_key,
                metric_run.c.period_start == period.start,
                metric_run.c.run_id != run_id,
                metric_run.c.state.in_(IN_FLIGHT),
            )
        ).all()
        now = locked_now(conn)
        for other in others:
            if is_active(other.run_id):
                waiting = "its result awaits approval" if other.state == "computed" else "it is computing"
                raise RunConflict(
                    f"{metric_key} {period.label()} is already being computed by run {other.run_id} "
                    f"(started {other.started_at:%Y-%m-%d %H:%M}, {waiting}); two runs of one period would "
                    "race to publish — finish that run first (answer its approvals, or mark it failed), "
                    "then clear this one"
                )
            _set(conn, metric_key, other.run_id, state="abandoned", updated_at=now)
        values = {
            "definition_version": definition_version,
            "definition_hash": definition_hash,
            "timezone": timezone,
            "period_start": period.start,
            "period_end": period.end,
            "restatement": restatement,
            "state": "computing",
            "started_at": now,
            "computed_at": None,
            "result_hash": None,
            "result_rows": None,
            "publication_id": None,
            "detail": None,
            "updated_at": now,
        }
        if not _set(conn, metric_key, run_id, **values):
            conn.execute(sa.insert(metric_run).values(metric_key=metric_key, run_id=run_id, **values))
    record = get_run(engine, metric_key=metric_key, run_id=run_id)
    assert record is not None
    return record


def record_result(engine: Engine, *, metric_key: str, run_id: str, result_hash: str, rows: int) -> None:
    """The transform staged a result: approvers will see (and approve) exactly this one."""
    with locked_transaction(engine, key=metric_key) as conn:
        now = locked_now(conn)
        if not _set(
            conn,
            metric_key,
            run_id,
            state="computed",
            computed_at=now,
            result_hash=result_hash,
            result_rows=rows,
            updated_at=now,
        ):
            raise MetricsCenterError(
                f"run {run_id} of {metric_key} was never registered; clear the whole run (register_definition "
                "first)"
            )


def finish_run(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    state: RunState,
    publication_id: int | None = None,
    detail: str | None = None,
) -> None:
    with locked_transaction(engine, key=metric_key) as conn:
        _set(
            conn,
            metric_key,
            run_id,
            state=state,
            publication_id=publication_id,
            detail=detail,
            updated_at=locked_now(conn),
        )


def get_run(engine: Engine, *, metric_key: str, run_id: str) -> RunRecord | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(*(metric_run.c[f] for f in RunRecord.__dataclass_fields__)).where(
                metric_run.c.metric_key == metric_key, metric_run.c.run_id == run_id
            )
        ).first()
    return RunRecord(**row._asdict()) if row is not None else None


def get_runs(engine: Engine, *, keys: list[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
    """Several runs in one query, by ``(metric_key, run_id)``."""
    if not keys:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*(metric_run.c[f] for f in RunRecord.__dataclass_fields__)).where(
                sa.tuple_(metric_run.c.metric_key, metric_run.c.run_id).in_(keys)
            )
        ).all()
    return {(r.metric_key, r.run_id): RunRecord(**r._asdict()) for r in rows}


def _set(conn: Connection, metric_key: str, run_id: str, **values: object) -> bool:
    result = conn.execute(
        sa.update(metric_run)
        .where(metric_run.c.metric_key == metric_key, metric_run.c.run_id == run_id)
        .values(**values)
    )
    return result.rowcount > 0
