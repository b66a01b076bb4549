"""DB-API rows → typed Arrow tables: the column types a SQL source is staged with.

Column types of SQL sources:

- Drivers that describe result columns (psycopg 2/3: Postgres type OIDs) give the staged type, so
  even an empty result keeps ``amount`` numeric and ``ordered_at`` a timestamp. ``numeric`` is
  staged as DOUBLE (values are doubles), ``json``/``jsonb`` as text.
- Drivers that do not (sqlite3) get types from the values. A column with no value at all (an
  empty day) is staged with the Parquet/Arrow ``null`` type, which DuckDB binds with anything
  (``SUM(amount)``, ``status = 'paid'``, ``COALESCE(x, 0)``, ``CAST(x AS DATE)``); only functions
  with several overloads (``date_trunc``) need an explicit ``CAST`` — which text dates need anyway.
- Numbers of mixed Python types in one column (int + float, Decimal + float) are doubles; text mixed
  with numbers is an error naming the column and a row: CAST it in the source SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from metrics_center.errors import MetricsCenterError

if TYPE_CHECKING:
    import pyarrow as pa

#: Postgres type OIDs (``cursor.description[i].type_code`` of psycopg 2 and 3) → staged kind.
PG_TYPE_KINDS: dict[int, str] = {
    16: "bool",
    20: "int",  # int8
    21: "int",  # int2
    23: "int",  # int4
    26: "int",  # oid
    700: "double",  # float4
    701: "double",  # float8
    1700: "double",  # numeric: values are doubles
    18: "text",  # "char"
    19: "text",  # name
    25: "text",
    1042: "text",  # bpchar
    1043: "text",  # varchar
    2950: "text",  # uuid
    114: "json",
    3802: "json",  # jsonb
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
}

_KIND_NAMES = {
    "number": "numbers",
    "text": "text",
    "bool": "booleans",
    "datetime": "timestamps",
    "date": "dates",
}


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "bool": pa.bool_(),
        "int": pa.int64(),
        "double": pa.float64(),
        "text": pa.string(),
        "json": pa.string(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }[kind]


@dataclass(frozen=True)
class SqlColumn:
    """One result column: its name and, when the driver says, its staged kind (``PG_TYPE_KINDS`` values)."""

    name: str
    kind: str | None = None


def describe_columns(cursor: Any) -> list[SqlColumn]:
    """Columns of an executed cursor, typed from ``cursor.description`` where the driver gives Postgres OIDs."""
    driver = type(cursor).__module__.split(".")[0]
    typed = driver in ("psycopg", "psycopg2")
    return [
        SqlColumn(name=d[0], kind=PG_TYPE_KINDS.get(d[1]) if typed and isinstance(d[1], int) else None)
        for d in cursor.description
    ]


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    return type(value).__name__


def _mixed_types_error(
    *, source: str, column: str, values: Sequence[Any], first_row: int, culprit: int
) -> MetricsCenterError:
    first = next(i for i, v in enumerate(values) if v is not None)
    expected, got = _value_kind(values[first]), _value_kind(values[culprit])
    return MetricsCenterError(
        f"source `{source}` column `{column}` mixes {_KIND_NAMES.get(expected, expected)} and "
        f"{_KIND_NAMES.get(got, got)}: row {first_row + culprit} has {values[culprit]!r} but row "
        f"{first_row + first} has {values[first]!r} — CAST it in the source SQL "
        f"(e.g. CAST({column} AS REAL) or CAST({column} AS TEXT)) so the column has one type"
    )


def _inferred_array(values: Sequence[Any], *, source: str, column: str, first_row: int) -> pa.Array:
    """Array typed from the values: all-None → null, ints → int64, other numbers → double (values are doubles)."""
    import pyarrow as pa

    kinds = [_value_kind(v) if v is not None else None for v in values]
    present = {k for k in kinds if k is not None}
    if not present:
        return pa.nulls(len(values))
    if len(present) > 1:
        first = next(k for k in kinds if k is not None)
        culprit = next(i for i, k in enumerate(kinds) if k is not None and k != first)
        raise _mixed_types_error(
            source=source, column=column, values=values, first_row=first_row, culprit=culprit
        )
    if present == {"number"}:
        if all(v is None or isinstance(v, int) for v in values):
            try:
                return pa.array(values, pa.int64())
            except OverflowError:
                pass
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise MetricsCenterError(
            f"source `{source}` column `{column}` (rows {first_row}–{first_row + len(values) - 1}) cannot be"
            f" staged: {exc} — CAST it in the source SQL to a number, text or timestamp"
        ) from exc


def _declared_array(values: Sequence[Any], kind: str) -> pa.Array:
    import pyarrow as pa

    if kind == "double":
        values = [None if v is None else float(v) for v in values]
    elif kind == "json":
        values = [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values]
    return pa.array(values, _arrow_type(kind))


def _column_array(values: Sequence[Any], column: SqlColumn, *, source: str, first_row: int) -> pa.Array:
    import pyarrow as pa

    if column.kind is not None:
        try:
            return _declared_array(values, column.kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            pass  # an unexpected Python value: let the inference name it
    return _inferred_array(values, source=source, column=column.name, first_row=first_row)


def rows_to_table(
    *, columns: Sequence[SqlColumn], rows: Sequence[Sequence[Any]], source: str, first_row: int = 1
) -> pa.Table:
    """DB-API rows → Arrow table; ``first_row`` is the 1-based number of ``rows[0]`` in the result (for errors).

    Declared kinds win; other columns are typed from their values (see the module docstring). With no
    rows, undeclared columns are Arrow ``null`` columns, which DuckDB binds with any type.
    """
    import pyarrow as pa

    if not rows:
        arrays = [pa.nulls(0, _arrow_type(c.kind) if c.kind else pa.null()) for c in columns]
        return pa.table(arrays, names=[c.name for c in columns])
    by_column = list(zip(*rows, strict=True))
    arrays = [
        _column_array(values, column, source=source, first_row=first_row)
        for column, values in zip(columns, by_column, strict=True)
    ]
    return pa.table(arrays, names=[c.name for c in columns])
