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

    from metrics_center.definitions.periods import Period
    from metrics_center.definitions.spec import Grain

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
    periods: list[str] | None = None

    def period_list(self, grain: Grain) -> list[Period]:
        """The periods this run computes (one, unless it restates a range or follows its inputs)."""
        from metrics_center.definitions.periods import period_containing

        starts = (
            [date.fromisoformat(str(p)[:10]) for p in self.periods] if self.periods else [self.period_start]
        )
        return [period_containing(d, grain=grain) for d in starts]

    def label(self, grain: Grain) -> str:
        periods = self.period_list(grain)
        if len(periods) == 1:
            return periods[0].label()
        return f"{len(periods)} periods, {periods[0].label()} … {periods[-1].label()}"


def start_run(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    definition_version: int,
    definition_hash: str,
    timezone: str,
    periods: list[Period],
    restatement: bool,
    is_active: Callable[[str], bool],
    drop_in_flight: bool = False,
) -> tuple[RunRecord, list[Period]]:
    """Register (or re-register, on a retry or clear) ``run_id`` as computing ``periods``.

    Another run still in flight for one of these periods is a conflict: raised as :class:`RunConflict`,
    or with ``drop_in_flight`` (a run its inputs triggered: the other run covers the period) those
    periods are left out and returned. ``is_active(run_id)`` asks Airflow whether that run is still
    queued or running: a run that crashed or was marked failed must not block its periods forever.
    """
    wanted = {p.start: p for p in periods}
    first, end = min(wanted), max(p.end for p in periods)
    dropped: list[Period] = []
    with locked_transaction(engine, key=metric_key) as conn:
        others = conn.execute(
            sa.select(metric_run).where(
                metric_run.c.metric_key == metric_key,
                metric_run.c.period_start < end,
                metric_run.c.period_end > first,
                metric_run.c.run_id != run_id,
                metric_run.c.state.in_(IN_FLIGHT),
            )
        ).all()
        now = locked_now(conn)
        for other in others:
            theirs = (
                {date.fromisoformat(str(p)[:10]) for p in other.periods}
                if other.periods
                else {other.period_start}
            )
            shared = sorted(theirs & set(wanted))
            if not shared:
                continue
            if not is_active(other.run_id):
                _set(conn, metric_key, other.run_id, state="abandoned", updated_at=now)
                continue
            if drop_in_flight:
                dropped += [wanted.pop(d) for d in shared if d in wanted]
                continue
            waiting = "its result awaits approval" if other.state == "computed" else "it is computing"
            label = wanted[shared[0]].label() + (f" (and {len(shared) - 1} more)" if len(shared) > 1 else "")
            raise RunConflict(
                f"{metric_key} {label} is already being computed by run {other.run_id} "
                f"(started {other.started_at:%Y-%m-%d %H:%M}, {waiting}); two runs of one period would "
                "race to publish — finish that run first (answer its approvals, or mark it failed), "
                "then clear this one"
            )
        if not wanted:
            return None, dropped  # type: ignore[return-value]
        kept = sorted(wanted.values(), key=lambda p: p.start)
        values = {
            "definition_version": definition_version,
            "definition_hash": definition_hash,
            "timezone": timezone,
            "period_start": kept[0].start,
            "period_end": kept[-1].end,
            "periods": [p.start.isoformat() for p in kept] if len(kept) > 1 else None,
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
    return record, dropped


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
