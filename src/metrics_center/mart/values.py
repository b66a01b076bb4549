"""Read current published values back from a metric's storage as an Arrow table, dimensions as text columns.

Used by metric sources (a derived metric reads its inputs), the impact preview (what the old version
published) and the restatement evidence (before vs after).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.relations import metric_storage, storage_table
from metrics_center.mart.tables import publication

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy import Connection, Engine

#: Columns every such table has besides the dimensions (a ratio's also has numerator and denominator).
FIXED_COLUMNS = ("period_start", "period_end", "value", "definition_version")
RATIO_COLUMNS = ("numerator", "denominator")


def values_schema(*, dimensions: Sequence[str], ratio: bool = False) -> pa.Schema:
    """The columns and types of :func:`current_values_table` (what a metric source stages), even when empty."""
    import pyarrow as pa

    parts = list(RATIO_COLUMNS) if ratio else []
    names = ["period_start", "period_end", *dimensions, "value", *parts, "definition_version"]
    types = [
        pa.date32(),
        pa.date32(),
        *(pa.string() for _ in dimensions),
        pa.float64(),
        *(pa.float64() for _ in parts),
        pa.int32(),
    ]
    return pa.schema(list(zip(names, types, strict=True)))


def current_values_table(
    engine: Engine,
    *,
    metric_key: str,
    dimensions: Sequence[str],
    start: date | None = None,
    end: date | None = None,
    period_starts: Sequence[date] | None = None,
    before_version: int | None = None,
    ratio: bool = False,
) -> pa.Table:
    """``period_start, period_end, <dimensions…>, value[, numerator, denominator], definition_version`` now.

    Filters: periods starting in ``[start, end)``, or exactly ``period_starts``; ``before_version``
    keeps values computed under older definition versions only. Typed even when empty (and for a metric
    never published). ``ratio``: include the numerator and the denominator.
    """
    import pyarrow as pa

    parts = list(RATIO_COLUMNS) if ratio else []
    schema = values_schema(dimensions=dimensions, ratio=ratio)
    names, types = schema.names, schema.types
    with engine.connect() as conn:
        stored = metric_storage(conn, metric_key=metric_key)
        if stored is None:
            return schema.empty_table()
        # Dimensions the storage lacks (a new version's, before it published): NULL, typed text.
        v = storage_table(metric_key, dimensions=[c.name for c in stored.c if c.name in dimensions])
        dims = [
            (v.c[d] if d in v.c else sa.cast(sa.null(), sa.Text)).label(f"d{i}")
            for i, d in enumerate(dimensions)
        ]
        query = sa.select(
            v.c.period_start,
            v.c.period_end,
            *dims,
            v.c.value,
            *(v.c[p] for p in parts),
            v.c.definition_version,
        ).where(v.c.superseded_at.is_(None))
        if start is not None:
            query = query.where(v.c.period_start >= start)
        if end is not None:
            query = query.where(v.c.period_start < end)
        if period_starts is not None:
            query = query.where(v.c.period_start.in_(list(period_starts)))
        if before_version is not None:
            query = query.where(v.c.definition_version < before_version)
        if conn.dialect.name == "postgresql":
            return copy_out(conn, query, schema=schema)
        rows = conn.execute(query.order_by(v.c.period_start)).all()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [
        pa.array([_as_date(x) for x in col] if t == pa.date32() else list(col), type=t)
        for col, t in zip(columns, types, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=names)


def copy_out(conn: Connection, query: sa.Select, *, schema: pa.Schema) -> pa.Table:
    """Postgres: stream a query through ``COPY … TO STDOUT`` into Arrow (10× faster than fetching rows).

    The statement is SQLAlchemy's own rendering with its bound values escaped as literals: metric keys
    (validated identifiers), dates and version numbers — no user text.
    """
    import io

    import pyarrow.csv as pacsv

    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buffer = io.BytesIO()
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    if not buffer.getbuffer().nbytes:  # no rows: Arrow refuses an empty CSV
        return schema.empty_table()
    return pacsv.read_csv(
        io.BytesIO(buffer.getvalue()),
        read_options=pacsv.ReadOptions(column_names=schema.names),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types, strict=True)),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def recent_periods(
    engine: Engine, *, metric_key: str, limit: int, before_version: int | None = None
) -> list[date]:
    """The newest ``limit`` periods published (optionally under versions older than ``before_version``), oldest first.

    Read from ``publication`` (one row per publish, however many values): a period counts when it still
    has current values of such a version, so one later republished under a newer version is skipped.
    """
    query = sa.select(publication.c.periods).where(publication.c.metric_key == metric_key)
    if before_version is not None:
        query = query.where(publication.c.definition_version < before_version)
    with engine.connect() as conn:
        v = metric_storage(conn, metric_key=metric_key)
        if v is None:
            return []
        candidates = sorted(
            {_as_date(str(p)) for periods in conn.execute(query).scalars() for p in periods or ()},
            reverse=True,
        )
        found: list[date] = []
        for day in candidates:  # newest first, one indexed probe each, until enough
            if len(found) >= limit:
                break
            current = sa.select(v.c.period_start).where(v.c.period_start == day, v.c.superseded_at.is_(None))
            if before_version is not None:
                current = current.where(v.c.definition_version < before_version)
            if conn.execute(current.limit(1)).first() is not None:
                found.append(day)
    return sorted(found[:limit])


def _as_date(value: object) -> date:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value  # type: ignore[index,return-value]


def period_totals(table: pa.Table) -> dict[date, tuple[int, float | None]]:
    """Rows and total per ``period_start`` of a values table: the sum of ``value``, or for a ratio (a table
    with ``numerator`` and ``denominator``) SUM(numerator) / SUM(denominator)."""
    if table.num_rows == 0:
        return {}
    ratio = all(c in table.column_names for c in RATIO_COLUMNS)
    sums = [("value", "count"), ("value", "sum"), *((c, "sum") for c in RATIO_COLUMNS if ratio)]
    grouped = table.group_by("period_start").aggregate(sums).to_pylist()
    totals = {}
    for row in grouped:
        total = row["value_sum"]
        if ratio:
            den = row["denominator_sum"]
            total = row["numerator_sum"] / den if den else None
        totals[_as_date(row["period_start"])] = (int(row["value_count"]), total)
    return totals
