"""Extract one source into Parquet parts in the staging area: DB-API connections or files.

Column types: see :mod:`metrics_center.tasks.sql_rows`.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.definitions.spec import FileSource, MetricSource, MetricSpec, SqlSource
from metrics_center.definitions.templates import render_with
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.sql_rows import SqlColumn, describe_columns, rows_to_table
from metrics_center.tasks.staging import PartWriter, StagedTypeConflict

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from metrics_center.tasks.computation import Computation

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000
#: CSV files are read in blocks of this many bytes; types are inferred from the first block.
CSV_BLOCK_BYTES = 1 << 20


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


def _streaming_cursor(conn: Any) -> Any:
    """A cursor that streams the result: on Postgres (psycopg 2 and 3) a server-side cursor, so a 10M-row extract
    holds one batch in memory, not the whole result; other drivers' cursors (sqlite3…) already fetch as asked."""
    module = type(conn).__module__
    postgres = module == "psycopg" or module.startswith(("psycopg2", "psycopg."))
    if postgres and not getattr(conn, "autocommit", False):  # a named cursor lives in a transaction
        cursor = conn.cursor(name="metrics_center_extract")
        if hasattr(cursor, "itersize"):
            cursor.itersize = BATCH_ROWS
        return cursor
    return conn.cursor()


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
    with closing(conn), closing(_streaming_cursor(conn)) as cursor:
        try:
            cursor.execute(sql)
            rows = cursor.fetchmany(
                BATCH_ROWS
            )  # a server-side cursor describes its columns on the first fetch
            if cursor.description is None:
                raise MetricsCenterError("the statement returned no result set; it must be a SELECT")
            columns = describe_columns(cursor)
        except Exception as exc:
            raise _sql_failure(source_name, source, sql, exc) from exc
        _check_unique_names(source_name, columns)
        wrote = False
        while rows:
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
            try:
                rows = cursor.fetchmany(BATCH_ROWS)
            except Exception as exc:
                raise _sql_failure(source_name, source, sql, exc) from exc
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


def stage_file(*, source_name: str, fmt: str, path: Path, writer: PartWriter) -> None:
    """Stage one local ``csv``/``parquet``/``excel`` file as a file source's extract does (same type inference
    and widening); metric unit tests stage their CSV fixtures with it."""
    _extract_one_file(source_name, fmt, path, writer)


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


def extract_source(
    *,
    spec: MetricSpec,
    source_name: str,
    context: Context | None = None,
    computation: Computation | None = None,
) -> dict[str, Any]:
    """Stage one source for every period of the computation (default: the run's own period); returns a
    small summary for XCom (never the data itself)."""
    from metrics_center.tasks.computation import for_context

    if computation is None:
        assert context is not None, "extract_source needs a context or a computation"
        computation = for_context(spec=spec, context=context)
    source = spec.sources[source_name]
    rows = 0
    origins: list[str] = []
    for part in computation.parts:
        folder = computation.source_folder(source_name, part)
        writer = PartWriter(folder)
        if isinstance(source, SqlSource):
            sql = render_with(
                (settings.sql_dir() / source.sql).read_text(), variables=part.variables, what=source.sql
            )
            _extract_sql(source_name, source, sql, writer)
            origin = f"{source.conn_id}: {source.sql}"
        elif isinstance(source, MetricSource):
            from metrics_center.mart.engine import get_engine
            from metrics_center.tasks.metric_input import read_metric_source

            engine = computation.engine or get_engine()
            writer.write(
                read_metric_source(engine, source_name=source_name, source=source, period=part.period)
            )
            origin = f"metric {source.metric} (published values)"
        else:
            rendered = render_with(source.path, variables=part.variables, what=f"source {source_name} path")
            _extract_file(source_name, source, rendered, writer)
            origin = rendered
        rows += writer.rows
        if origin not in origins:
            origins.append(origin)
    shown = (
        origins[0]
        if len(origins) == 1
        else f"{origins[0]} … {origins[-1]} ({len(computation.parts)} periods)"
    )
    return {
        "source": source_name,
        "rows": rows,
        "origin": shown,
        "staged": str(computation.root / "sources" / source_name),
    }
