"""Extract one source into Parquet parts in the staging area: DB-API connections or files.

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

import glob
import itertools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.errors import MetricsCenterError
from metrics_center.runtime import render, staging_dir
from metrics_center.spec import FileSource, MetricSpec, SqlSource
from metrics_center.tasks.staging import PartWriter, StagedTypeConflict

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000
#: CSV files are read in blocks of this many bytes; types are inferred from the first block.
CSV_BLOCK_BYTES = 1 << 20

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


def _conflict_error(source: str, conflict: StagedTypeConflict, *, where: str, fix: str) -> MetricsCenterError:
    return MetricsCenterError(
        f"source `{source}` column `{conflict.column}` changes type{where}: row {conflict.row} has "
        f"{conflict.value!r} ({conflict.new_type}) but the rows before it are {conflict.staged_type} — {fix}"
    )


def _check_unique_names(source_name: str, columns: Sequence[SqlColumn]) -> None:
    seen: dict[str, str] = {}
    for column in columns:
        key = column.name.lower()
        if key in seen:
            raise MetricsCenterError(
                f"source `{source_name}` returns the column `{column.name}` twice (DuckDB ignores case:"
                f" `{seen[key]}`) — give each column of the SELECT its own alias"
            )
        seen[key] = column.name


def _as_tuple(row: Any) -> tuple:
    """A fetched row as a tuple of values, also for dict cursors (a connection's ``cursor`` extra)."""
    return tuple(row.values()) if isinstance(row, Mapping) else tuple(row)


def _sql_failure(source_name: str, source: SqlSource, sql: str, exc: BaseException) -> MetricsCenterError:
    return MetricsCenterError(
        f"source `{source_name}` on connection `{source.conn_id}` failed: {exc}\nSQL:\n{sql}"
    )


def _extract_sql(source_name: str, source: SqlSource, sql: str, writer: PartWriter) -> None:
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(source.conn_id)
    except Exception as exc:  # AirflowNotFoundException, a secrets backend error…
        raise MetricsCenterError(
            f"source `{source_name}`: connection `{source.conn_id}` is not available ({exc}); add it in"
            f" Admin → Connections or as AIRFLOW_CONN_{source.conn_id.upper()}"
        ) from exc
    hook = connection.get_hook()
    if not hasattr(hook, "get_conn"):
        raise MetricsCenterError(
            f"source `{source_name}`: connection `{source.conn_id}` is not a database connection;"
            " give it a database conn_type (sqlite, postgres, mysql…)"
        )
    log.info("source %s on connection %s runs:\n%s", source_name, source.conn_id, sql)
    try:
        conn = hook.get_conn()
    except Exception as exc:
        raise _sql_failure(source_name, source, sql, exc) from exc
    with closing(conn), closing(conn.cursor()) as cursor:
        try:
            cursor.execute(sql)
            if cursor.description is None:
                raise MetricsCenterError("the statement returned no result set; it must be a SELECT")
            columns = describe_columns(cursor)
        except Exception as exc:
            raise _sql_failure(source_name, source, sql, exc) from exc
        _check_unique_names(source_name, columns)
        wrote = False
        while True:
            try:
                rows = cursor.fetchmany(BATCH_ROWS)
            except Exception as exc:
                raise _sql_failure(source_name, source, sql, exc) from exc
            if not rows:
                break
            table = rows_to_table(
                columns=columns,
                rows=[_as_tuple(r) for r in rows],
                source=source_name,
                first_row=writer.rows + 1,
            )
            try:
                writer.write(table)
            except StagedTypeConflict as conflict:
                fix = "CAST it in the source SQL so every row has one type"
                raise _conflict_error(source_name, conflict, where="", fix=fix) from conflict
            wrote = True
        if not wrote:
            writer.write(rows_to_table(columns=columns, rows=[], source=source_name))


def _escapes(path: str, root: Path) -> bool:
    return not Path(path).is_relative_to(root)


def _outside_root_error(source_name: str, path: str, target: str, root: Path) -> MetricsCenterError:
    return MetricsCenterError(
        f"source `{source_name}` path {path!r} resolves to {target!r}, outside METRICS_CENTER_DATA_ROOT"
        f" ({root}); file sources must be under the data root — put (or copy) the file there and use a"
        " path relative to it"
    )


def _fixed_prefix(path: str) -> str:
    """The leading part of ``path`` before its first glob component (all of it when there is none)."""
    parts = Path(path).parts
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    return str(Path(*fixed)) if fixed else path


def _resolve_paths(pattern: str, *, source_name: str) -> list[Path]:
    """Files matching ``pattern`` (relative to the data root); every match must really be inside the root.

    Absolute paths, ``..``, globs and symlinks are all checked on the resolved (``realpath``) target:
    first the pattern's fixed prefix (so nothing outside the root is even listed), then every match.
    """
    root = settings.data_root()
    joined = os.path.join(root, pattern)  # an absolute pattern replaces the root
    prefix = os.path.realpath(_fixed_prefix(joined))
    if _escapes(prefix, root):
        raise _outside_root_error(source_name, pattern, prefix, root)
    matches = sorted(Path(p) for p in glob.glob(joined))
    if not matches:
        raise MetricsCenterError(
            f"source `{source_name}`: no file matches {os.path.normpath(joined)!r}; check"
            " METRICS_CENTER_DATA_ROOT and the source's path"
        )
    for match in matches:
        real = os.path.realpath(match)
        if _escapes(real, root):
            raise _outside_root_error(source_name, str(match), real, root)
    return matches


def _write_file_table(source_name: str, path: Path, writer: PartWriter, table: pa.Table, start: int) -> None:
    try:
        writer.write(table)
    except StagedTypeConflict as conflict:
        fix = "export the column with one type in every file (numbers only, or text only)"
        raise _conflict_error(
            source_name, conflict, where=f" in {path} (row {conflict.row - start} of that file)", fix=fix
        ) from conflict


_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S
)


def _csv_widened_type(inferred: str, value: str) -> pa.DataType | None:
    """The type to re-read a CSV column with when ``value`` broke the type inferred from the first block.

    Integers followed by decimals become doubles; a column empty in the first block takes the type of
    its first value (integer, double, else text). Anything else (text after numbers) has no widening.
    """
    import pyarrow as pa

    if inferred == "null":
        for candidate in (pa.int64(), pa.float64()):
            try:
                pa.array([value]).cast(candidate)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            return candidate
        return pa.string()
    if inferred.startswith(("int", "uint")):
        try:
            pa.array([value]).cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return pa.float64()
    return None


def _stream_csv(
    source_name: str, path: Path, writer: PartWriter, column_types: dict[str, pa.DataType]
) -> None:
    """Stage one CSV file block by block, with ``column_types`` forced over the inferred types."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    start = writer.rows
    options = pacsv.ConvertOptions(column_types=column_types)
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    with pacsv.open_csv(path, read_options=read, convert_options=options) as reader:
        for batch in reader:
            _write_file_table(source_name, path, writer, pa.Table.from_batches([batch]), start)
        if writer.rows == 0:  # header only: null-typed columns, which DuckDB binds with anything
            _write_file_table(source_name, path, writer, reader.schema.empty_table(), start)


def _extract_csv(source_name: str, path: Path, writer: PartWriter) -> None:
    """Stage a CSV file; re-read it with a wider column type when a later block breaks the inferred one.

    pyarrow infers column types from the first block (about 1 MB): a column of integers there and
    ``12.5`` further down is re-read as doubles instead of failing. Text after numbers is an error.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    column_types: dict[str, pa.DataType] = {}
    mark = writer.mark()
    while True:
        try:
            _stream_csv(source_name, path, writer, column_types)
            return
        except pa.ArrowInvalid as exc:
            match = _CSV_CONVERSION.search(str(exc))
            if match is None:
                raise
            writer.rollback(mark)
            with pacsv.open_csv(path) as reader:
                names = reader.schema.names
            index, inferred, value = int(match[1]), match[2], match[3]
            column = names[index] if index < len(names) else f"#{index}"
            widened = _csv_widened_type(inferred, value)
            if widened is None or column_types.get(column) == widened:
                raise MetricsCenterError(
                    f"source `{source_name}` column `{column}` in {path} has {value!r} after rows of {inferred}"
                    " — export the column with one type (numbers only, or text only)"
                ) from exc
            column_types[column] = widened


def _extract_one_file(source_name: str, fmt: str, path: Path, writer: PartWriter) -> None:
    import pyarrow as pa

    start = writer.rows
    if fmt == "csv":
        _extract_csv(source_name, path, writer)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            _write_file_table(source_name, path, writer, pa.Table.from_batches([batch]), start)
        if writer.rows == 0:
            _write_file_table(source_name, path, writer, parquet.schema_arrow.empty_table(), start)
    else:
        import pandas as pd

        table = pa.Table.from_pandas(pd.read_excel(path), preserve_index=False)
        _write_file_table(source_name, path, writer, table, start)


def _extract_file(source_name: str, source: FileSource, rendered_path: str, writer: PartWriter) -> None:
    import pyarrow as pa

    fmt = source.resolved_format()
    for path in _resolve_paths(rendered_path, source_name=source_name):
        try:
            _extract_one_file(source_name, fmt, path, writer)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise MetricsCenterError(
                f"source `{source_name}` could not read {path} as {fmt}: {exc} — fix the file, or set the"
                f" source's `format:` if it is not a {fmt} file"
            ) from exc


def extract_source(*, spec: MetricSpec, source_name: str, context: Context) -> dict[str, Any]:
    """Stage one source; returns a small summary for XCom (never the data itself)."""
    source = spec.sources[source_name]
    folder = staging_dir(context, spec) / "sources" / source_name
    writer = PartWriter(folder)
    if isinstance(source, SqlSource):
        sql = render((settings.sql_dir() / source.sql).read_text(), context=context, spec=spec)
        _extract_sql(source_name, source, sql, writer)
        origin = f"{source.conn_id}: {source.sql}"
    else:
        rendered = render(source.path, context=context, spec=spec)
        _extract_file(source_name, source, rendered, writer)
        origin = rendered
    return {"source": source_name, "rows": writer.rows, "origin": origin, "staged": str(folder)}
