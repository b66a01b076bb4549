"""Metric sources: another metric's current published values, read from the mart as a staged table.

A metric source ``{metric: gmv_daily}`` is staged like any other source — ``period_start,
period_end, <its dimensions…>, value, definition_version`` (and for a ratio ``numerator, denominator``,
so a metric built on it can total it right) — one row per current value whose period
starts inside the period being computed. Its dimensions (and so its columns) come from the input's
definition registered in the mart, so an empty period still has them, typed.

"Published" means a publication covers the period, even one with no rows (an empty day): an input
has answered a period once it published it, whatever it published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.definitions.periods import Period, period_containing
from metrics_center.definitions.spec import MetricSource, MetricSpec
from metrics_center.errors import MetricsCenterError
from metrics_center.mart.tables import metric_definition, publication

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy import Engine


@dataclass(frozen=True)
class InputDefinition:
    key: str
    version: int
    grain: str
    dimensions: tuple[str, ...]
    ratio: bool = False  #: its table also has numerator and denominator (totals: SUM(num) / SUM(den))


def input_definition(engine: Engine, *, key: str) -> InputDefinition:
    """The input's definition in force in the mart (its newest registered version)."""
    t = metric_definition
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.version, t.c.grain, t.c.dimensions, t.c.aggregation)
            .where(t.c.metric_key == key)
            .order_by(t.c.version.desc())
            .limit(1)
        ).first()
    if row is None:
        raise MetricsCenterError(
            f"input metric {key} has never run: no definition of it is registered in the mart — run it (and "
            "publish) first"
        )
    return InputDefinition(
        key=key,
        version=row.version,
        grain=row.grain,
        dimensions=tuple(row.dimensions or ()),
        ratio=row.aggregation == "ratio",
    )


def published_periods(engine: Engine, *, key: str) -> set[date]:
    """Every period start some publication of ``key`` answered (current or since restated)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(publication.c.periods).where(publication.c.metric_key == key)).scalars()
        return {date.fromisoformat(str(p)[:10]) for periods in rows for p in periods or ()}


def _sub_periods(period: Period, *, grain: str) -> list[Period]:
    found = []
    sub = period_containing(period.start, grain=grain)  # type: ignore[arg-type]
    while sub.start < period.end:
        found.append(sub)
        sub = period_containing(sub.end, grain=grain)  # type: ignore[arg-type]
    return found


def readiness(engine: Engine, *, spec: MetricSpec) -> Callable[[Period], bool]:
    """``ready(period)``: every input metric has published every one of its periods inside ``period``."""
    inputs = sorted({s.metric for s in spec.sources.values() if isinstance(s, MetricSource)})
    if not inputs:
        return lambda _period: True
    known: dict[str, tuple[str, set[date]]] = {}
    for key in inputs:
        try:
            grain = input_definition(engine, key=key).grain
        except MetricsCenterError:
            grain = ""
        known[key] = (grain, published_periods(engine, key=key) if grain else set())

    def ready(period: Period) -> bool:
        for grain, published in known.values():
            if not grain or any(sub.start not in published for sub in _sub_periods(period, grain=grain)):
                return False
        return True

    return ready


def missing_inputs(engine: Engine, *, spec: MetricSpec, period: Period) -> list[str]:
    """``gmv_daily 2026-11-26`` for each input period not published yet (for error messages)."""
    missing = []
    for key in sorted({s.metric for s in spec.sources.values() if isinstance(s, MetricSource)}):
        try:
            grain = input_definition(engine, key=key).grain
        except MetricsCenterError:
            missing.append(f"{key} (never registered)")
            continue
        published = published_periods(engine, key=key)
        missing += [
            f"{key} {sub.label()}" for sub in _sub_periods(period, grain=grain) if sub.start not in published
        ]
    return missing


def read_metric_source(engine: Engine, *, source_name: str, source: MetricSource, period: Period) -> pa.Table:
    """The input's current values for ``period``, dimensions as columns (text), typed even when empty."""
    from metrics_center.mart.values import FIXED_COLUMNS, RATIO_COLUMNS, current_values_table

    definition = input_definition(engine, key=source.metric)
    clash = sorted(set(definition.dimensions) & {*FIXED_COLUMNS, *RATIO_COLUMNS})
    if clash:
        raise MetricsCenterError(
            f"source `{source_name}`: {source.metric} has dimension(s) {clash} named like the columns a metric "
            "source adds; rename the dimension in that metric"
        )
    return current_values_table(
        engine,
        metric_key=source.metric,
        dimensions=definition.dimensions,
        start=period.start,
        end=period.end,
        ratio=definition.ratio,
    )
