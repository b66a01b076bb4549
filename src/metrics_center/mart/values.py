"""Read current published values back as an Arrow table, dimensions as text columns.

Used by metric sources (a derived metric reads its inputs), the impact preview (what the old version
published) and the restatement evidence (before vs after).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.tables import metric_value

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy import Engine

#: Columns every such table has besides the dimensions.
FIXED_COLUMNS = ("period_start", "period_end", "value", "definition_version")


def current_values_table(
    engine: Engine,
    *,
    metric_key: str,
    dimensions: Sequence[str],
    start: date | None = None,
    end: date | None = None,
    period_starts: Sequence[date] | None = None,
    before_version: int | None = None,
) -> pa.Table:
    """``period_start, period_end, <dimensions…>, value, definition_version`` of the current values.

    Filters: periods starting in ``[start, end)``, or exactly ``period_starts``; ``before_version``
    keeps values computed under older definition versions only. Typed even when empty.
    """
    import pyarrow as pa

    v = metric_value
    dims = [v.c.dimensions[d].as_string().label(f"d{i}") for i, d in enumerate(dimensions)]
    query = sa.select(v.c.period_start, v.c.period_end, *dims, v.c.value, v.c.definition_version).where(
        v.c.metric_key == metric_key, v.c.superseded_at.is_(None)
    )
    if start is not None:
        query = query.where(v.c.period_start >= start)
    if end is not None:
        query = query.where(v.c.period_start < end)
    if period_starts is not None:
        query = query.where(v.c.period_start.in_(list(period_starts)))
    if before_version is not None:
        query = query.where(v.c.definition_version < before_version)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(v.c.period_start)).all()
    names = ["period_start", "period_end", *dimensions, "value", "definition_version"]
    types = [pa.date32(), pa.date32(), *(pa.string() for _ in dimensions), pa.float64(), pa.int32()]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [
        pa.array([_as_date(x) for x in col] if t == pa.date32() else list(col), type=t)
        for col, t in zip(columns, types, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=names)


def recent_periods(
    engine: Engine, *, metric_key: str, limit: int, before_version: int | None = None
) -> list[date]:
    """The newest ``limit`` period starts with current values (optionally of older versions), oldest first."""
    v = metric_value
    query = (
        sa.select(v.c.period_start)
        .where(v.c.metric_key == metric_key, v.c.superseded_at.is_(None))
        .group_by(v.c.period_start)
        .order_by(v.c.period_start.desc())
        .limit(limit)
    )
    if before_version is not None:
        query = query.where(v.c.definition_version < before_version)
    with engine.connect() as conn:
        return sorted(_as_date(d) for d in conn.execute(query).scalars())


def _as_date(value: object) -> date:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value  # type: ignore[return-value]


def period_totals(table: pa.Table) -> dict[date, tuple[int, float | None]]:
    """Rows and sum of ``value`` per ``period_start`` of a values table."""
    if table.num_rows == 0:
        return {}
    grouped = table.group_by("period_start").aggregate([("value", "count"), ("value", "sum")])
    return {
        _as_date(d): (int(n), total)
        for d, n, total in zip(
            grouped["period_start"].to_pylist(),
            grouped["value_count"].to_pylist(),
            grouped["value_sum"].to_pylist(),
            strict=True,
        )
    }
