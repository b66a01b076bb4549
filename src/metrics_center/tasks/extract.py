"""Extract one source into Parquet parts in the staging area: DB-API connections or files."""

from __future__ import annotations

import glob
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.errors import MetricsCenterError
from metrics_center.runtime import render, staging_dir
from metrics_center.spec import FileSource, MetricSpec, SqlSource
from metrics_center.tasks.staging import PartWriter

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

BATCH_ROWS = 100_000


def _rows_to_table(columns: list[str], rows: list[tuple]) -> pa.Table:
    import pyarrow as pa

    if not rows:
        return pa.table([pa.array([], pa.string()) for _ in columns], names=columns)
    arrays = []
    for values in zip(*rows, strict=True):
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (e.g. Decimal + float): keep as text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.table(arrays, names=columns)


def _extract_sql(source: SqlSource, sql: str, writer: PartWriter) -> None:
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(source.conn_id).get_hook()
    if not hasattr(hook, "get_conn"):
        raise MetricsCenterError(f"connection {source.conn_id!r} is not a database connection")
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        cursor.execute(sql)
        columns = [d[0] for d in cursor.description]
        wrote = False
        while rows := cursor.fetchmany(BATCH_ROWS):
            writer.write(_rows_to_table(columns, [tuple(r) for r in rows]))
            wrote = True
        if not wrote:
            writer.write(_rows_to_table(columns, []))


def _resolve_paths(pattern: str) -> list[Path]:
    path = Path(pattern)
    if not path.is_absolute():
        path = settings.data_root() / path
    matches = sorted(Path(p) for p in glob.glob(str(path)))
    if not matches:
        raise MetricsCenterError(
            f"no file matches {str(path)!r}; check METRICS_CENTER_DATA_ROOT and the source's path"
        )
    return matches


def _extract_file(source: FileSource, rendered_path: str, writer: PartWriter) -> None:
    import pyarrow as pa

    fmt = source.resolved_format()
    for path in _resolve_paths(rendered_path):
        if fmt == "csv":
            import pyarrow.csv as pacsv

            with pacsv.open_csv(path) as reader:
                for batch in reader:
                    writer.write(pa.Table.from_batches([batch]))
                if writer.rows == 0:
                    writer.write(reader.schema.empty_table())
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                writer.write(pa.Table.from_batches([batch]))
            if parquet.metadata.num_rows == 0:
                writer.write(parquet.schema_arrow.empty_table())
        else:
            import pandas as pd

            writer.write(pa.Table.from_pandas(pd.read_excel(path), preserve_index=False))


def extract_source(*, spec: MetricSpec, source_name: str, context: Context) -> dict[str, Any]:
    """Stage one source; returns a small summary for XCom (never the data itself)."""
    source = spec.sources[source_name]
    folder = staging_dir(context, spec) / "sources" / source_name
    writer = PartWriter(folder)
    if isinstance(source, SqlSource):
        sql = render((settings.sql_dir() / source.sql).read_text(), context=context, spec=spec)
        _extract_sql(source, sql, writer)
        origin = f"{source.conn_id}: {source.sql}"
    else:
        rendered = render(source.path, context=context, spec=spec)
        _extract_file(source, rendered, writer)
        origin = rendered
    return {"source": source_name, "rows": writer.rows, "origin": origin, "staged": str(folder)}
