"""Run the metric's SQL in DuckDB over the staged sources; stage ``period_start, dims…, value``."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.errors import MetricsCenterError
from metrics_center.periods import period_containing
from metrics_center.runtime import render, staging_dir
from metrics_center.spec import MetricSpec
from metrics_center.tasks.staging import PartWriter, local_parquet_files

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

RESULT_FOLDER = "result"
MAX_VALUES_IN_XCOM = 50


def _check_columns(spec: MetricSpec, got: list[str]) -> None:
    expected = spec.output_columns
    if sorted(expected) != sorted(got):
        raise MetricsCenterError(
            f"{spec.transform.sql} returned columns {got}; it must return exactly {expected} "
            f"— alias the columns in the final SELECT"
        )


def _check_periods(spec: MetricSpec, table: pa.Table) -> None:
    if table.column("period_start").null_count:
        raise MetricsCenterError(f"{spec.transform.sql} returned rows with a NULL period_start")
    starts = set(table.column("period_start").to_pylist())
    misaligned = sorted(d for d in starts if period_containing(d, grain=spec.grain).start != d)
    if misaligned:
        raise MetricsCenterError(
            f"{spec.transform.sql} returned period_start {misaligned[0]} which does not start a {spec.grain}"
            f" — truncate it to the {spec.grain} (e.g. date_trunc('{spec.grain}', ts))"
        )


def _check_unique(spec: MetricSpec, table: pa.Table) -> None:
    keys = ["period_start", *spec.dimensions]
    if table.group_by(keys).aggregate([]).num_rows != table.num_rows:
        raise MetricsCenterError(
            f"{spec.transform.sql} returned several rows for the same {', '.join(keys)}"
            f" — GROUP BY {', '.join(keys)} in the final SELECT"
        )


def transform(*, spec: MetricSpec, context: Context) -> dict[str, Any]:
    import duckdb

    run_dir = staging_dir(context, spec)
    sql = render((settings.sql_dir() / spec.transform.sql).read_text(), context=context, spec=spec)
    con = duckdb.connect()
    try:
        with ExitStack() as stack:
            for name in spec.sources:
                files = stack.enter_context(local_parquet_files(run_dir / "sources" / name))
                con.read_parquet(files, union_by_name=True).to_view(name)
            relation = con.sql(sql)
            _check_columns(spec, relation.columns)
            dims = "".join(f'"{d}", ' for d in spec.dimensions)
            table = con.sql(
                f"SELECT CAST(period_start AS DATE) AS period_start, {dims}CAST(value AS DOUBLE) AS value "
                "FROM relation ORDER BY ALL"
            ).to_arrow_table()
    except duckdb.Error as exc:
        raise MetricsCenterError(f"{spec.transform.sql} failed in DuckDB: {exc}") from exc
    finally:
        con.close()
    import pyarrow.compute as pc

    _check_periods(spec, table)
    _check_unique(spec, table)
    writer = PartWriter(run_dir / RESULT_FOLDER)
    writer.write(table)
    periods = sorted({d.isoformat() for d in table.column("period_start").to_pylist()})
    summary: dict[str, Any] = {
        "rows": table.num_rows,
        "periods": periods,
        "total": pc.sum(table["value"]).as_py(),
    }
    if table.num_rows <= MAX_VALUES_IN_XCOM:
        summary["values"] = [
            {**row, "period_start": row["period_start"].isoformat()} for row in table.to_pylist()
        ]
    return summary


def read_result(*, spec: MetricSpec, context: Context) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with local_parquet_files(staging_dir(context, spec) / RESULT_FOLDER) as files:
        return pa.concat_tables(pq.read_table(f) for f in files)
