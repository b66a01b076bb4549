"""Run the metric's SQL in DuckDB over the staged sources; stage ``period_start, dims…, value``.

DuckDB runs locked down (:mod:`metrics_center.tasks.duck`). The result is checked before anyone is
asked to approve it: the columns, aligned periods, one row per (period, dimensions) and a finite value
on every row. Dimensions are staged as text (the mart's dimension columns are text). A ratio's SQL returns
``numerator`` and ``denominator``; the value is computed here, ``numerator / denominator``, so totals can
always be ``SUM(numerator) / SUM(denominator)``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.definitions.periods import period_containing
from metrics_center.definitions.spec import MetricSpec
from metrics_center.definitions.templates import render_with
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.computation import RESULT_FOLDER
from metrics_center.tasks.duck import staged_duckdb
from metrics_center.tasks.runtime import staging_dir
from metrics_center.tasks.staging import PartWriter

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa
    from airflow.sdk import Context, ObjectStoragePath

    from metrics_center.tasks.computation import Computation

MAX_VALUES_IN_XCOM = 50
MAX_ROWS_NAMED = 5


def _check_columns(spec: MetricSpec, got: list[str]) -> None:
    expected = spec.output_columns
    if sorted(expected) != sorted(got):
        ratio = (
            " (aggregation: ratio — return the numerator and the denominator; the value is computed from them)"
            if spec.is_ratio
            else ""
        )
        raise MetricsCenterError(
            f"{spec.transform.sql} returned columns {got}; it must return exactly {expected}{ratio} "
            f"— alias the columns in the final SELECT"
        )


def _projection(spec: MetricSpec) -> str:
    """The staged columns: the period as a date, each dimension as text, the value (and a ratio's parts)."""
    dims = "".join(f'CAST("{d}" AS VARCHAR) AS "{d}", ' for d in spec.dimensions)
    if spec.is_ratio:
        parts = (
            "CAST(numerator AS DOUBLE) AS numerator, CAST(denominator AS DOUBLE) AS denominator, "
            "CAST(numerator AS DOUBLE) / NULLIF(CAST(denominator AS DOUBLE), 0) AS value"
        )
    else:
        parts = "CAST(value AS DOUBLE) AS value"
    return f"CAST(period_start AS DATE) AS period_start, {dims}{parts}"


def _check_periods(spec: MetricSpec, table: pa.Table) -> None:
    if table.column("period_start").null_count:
        raise MetricsCenterError(f"{spec.transform.sql} returned rows with a NULL period_start")
    import pyarrow.compute as pc

    starts = pc.unique(table.column("period_start")).to_pylist()  # a handful of periods, not 1M dates
    misaligned = sorted(d for d in starts if period_containing(d, grain=spec.grain).start != d)
    if misaligned:
        raise MetricsCenterError(
            f"{spec.transform.sql} returned period_start {misaligned[0]} which does not start a {spec.grain}"
            f" — truncate it to the {spec.grain} (e.g. date_trunc('{spec.grain}', ts))"
        )


def _describe(spec: MetricSpec, rows: list[dict[str, Any]]) -> str:
    """``(period_start=2026-11-26, region=east, value=nan); …`` for the first few offending rows."""
    shown = [
        ", ".join(
            f"{k}={row[k]}"
            for k in ("period_start", *spec.dimensions, "numerator", "denominator", "value", "rows")
            if k in row
        )
        for row in rows[:MAX_ROWS_NAMED]
    ]
    more = f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else ""
    return "; ".join(f"({s})" for s in shown) + more


def _check_values(spec: MetricSpec, table: pa.Table) -> None:
    """NULL, NaN and ±inf are refused before approval: nobody should be asked to sign off on them."""
    import pyarrow.compute as pc

    if spec.is_ratio:
        _check_ratio_parts(spec, table)
    value = table.column("value")
    bad = pc.or_kleene(pc.is_null(value, nan_is_null=True), pc.is_inf(value))
    bad = pc.fill_null(bad, True)
    if pc.any(bad).as_py():
        rows = table.filter(bad).to_pylist()
        raise MetricsCenterError(
            f"{spec.transform.sql} returned {len(rows)} row(s) whose value is NULL, NaN or infinite: "
            f"{_describe(spec, rows)} — guard divisions (NULLIF(x, 0)) and filter or COALESCE missing values"
        )


def _check_ratio_parts(spec: MetricSpec, table: pa.Table) -> None:
    """Both parts of every row are finite numbers and the denominator is not 0 (value = numerator / denominator)."""
    import pyarrow.compute as pc

    for part in ("numerator", "denominator"):
        column = table.column(part)
        bad = pc.fill_null(pc.or_kleene(pc.is_null(column, nan_is_null=True), pc.is_inf(column)), True)
        if pc.any(bad).as_py():
            rows = table.filter(bad).to_pylist()
            raise MetricsCenterError(
                f"{spec.transform.sql} returned {len(rows)} row(s) whose {part} is NULL, NaN or infinite: "
                f"{_describe(spec, rows)} — COALESCE missing parts to 0 or filter the rows out"
            )
    zero = pc.equal(table.column("denominator"), 0)
    if pc.any(zero).as_py():
        rows = table.filter(zero).to_pylist()
        raise MetricsCenterError(
            f"{spec.transform.sql} returned {len(rows)} row(s) whose denominator is 0 (the ratio has no value): "
            f"{_describe(spec, rows)} — leave such combinations out (HAVING SUM(…) <> 0); totals stay "
            "SUM(numerator) / SUM(denominator)"
        )


def _sorted_unique(table: pa.Table, keys: list[str]) -> bool:
    """Whether a table sorted by ``keys`` has no two neighbours with the same keys (NULL equals NULL)."""
    import pyarrow.compute as pc

    if table.num_rows < 2:
        return True
    same = None
    for key in keys:
        column = table.column(key)
        a, b = column.slice(1), column.slice(0, table.num_rows - 1)
        equal = pc.fill_null(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b)))
        same = equal if same is None else pc.and_(same, equal)
    return not pc.any(same).as_py()


def _check_unique(spec: MetricSpec, table: pa.Table) -> None:
    """One row per (period, dimensions). The result is sorted by them, so neighbours tell (O(n), vectorised);
    the grouping that names the duplicates runs only when there are some."""
    keys = ["period_start", *spec.dimensions]
    if _sorted_unique(table, keys):
        return
    counts = table.group_by(keys).aggregate([([], "count_all")]).rename_columns([*keys, "rows"])
    if counts.num_rows != table.num_rows:
        import pyarrow.compute as pc

        dupes = counts.filter(pc.greater(counts.column("rows"), 1)).to_pylist()
        raise MetricsCenterError(
            f"{spec.transform.sql} returned several rows for the same {', '.join(keys)}: {_describe(spec, dupes)}"
            f" — GROUP BY {', '.join(keys)} in the final SELECT"
        )


def transform_table(computation: Computation, *, sql_root: Path | None = None) -> pa.Table:
    """The checked result of every period of ``computation``, each computed over its own staged parts.

    ``sql_root``: the folder of SQL files (default: the settings'); a metric unit test passes its own.
    """
    import duckdb
    import pyarrow as pa

    spec = computation.spec
    text = ((sql_root or settings.sql_dir()) / spec.transform.sql).read_text(encoding="utf-8")
    tables = []
    for part in computation.parts:
        sql = render_with(text, variables=part.variables, what=spec.transform.sql)
        try:
            with staged_duckdb(computation=computation, part=part) as con:
                result = con.sql(sql)
                if result is None:
                    raise MetricsCenterError(f"{spec.transform.sql} is not a query; end it with a SELECT")
                _check_columns(spec, result.columns)
                # Project the relation itself: no table name is looked up, so a source cannot shadow it.
                table = (
                    result.project(_projection(spec))
                    .order(", ".join(f'"{c}"' for c in ["period_start", *spec.dimensions]))
                    .to_arrow_table()
                )
        except duckdb.Error as exc:
            raise MetricsCenterError(f"{spec.transform.sql} failed in DuckDB: {exc}") from exc
        if computation.strict_periods:
            _check_own_period(spec, table, part.period.start)
        tables.append(table)
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    _check_periods(spec, table)
    _check_values(spec, table)
    _check_unique(spec, table)
    return table


def _check_own_period(spec: MetricSpec, table: pa.Table, start: Any) -> None:
    """In a computation of several periods, each period's transform answers for its own period only."""
    import pyarrow.compute as pc

    other = table.filter(pc.not_equal(table["period_start"], pa_scalar_date(start)))
    if other.num_rows:
        found = other.column("period_start")[0].as_py()
        raise MetricsCenterError(
            f"{spec.transform.sql} returned period_start {found} while computing {start}; in a run of several "
            "periods each one is computed on its own — return the period being computed ({{ period_start }})"
        )


def pa_scalar_date(day: Any) -> Any:
    import pyarrow as pa

    return pa.scalar(day, pa.date32())


def transform(
    *, spec: MetricSpec, context: Context | None = None, computation: Computation | None = None
) -> dict[str, Any]:
    """Compute and stage the result of the computation (default: the run's own period); a summary for XCom."""

    from metrics_center.tasks.computation import for_context

    if computation is None:
        assert context is not None, "transform needs a context or a computation"
        computation = for_context(spec=spec, context=context)
    table = transform_table(computation)
    writer = PartWriter(computation.result_folder)
    writer.write(table)
    periods = sorted({d.isoformat() for d in table.column("period_start").to_pylist()})
    summary: dict[str, Any] = {
        "rows": table.num_rows,
        "periods": periods,
        "total": result_total(spec, table),
        "result_hash": result_digest(computation.result_folder),
    }
    if table.num_rows <= MAX_VALUES_IN_XCOM:
        summary["values"] = [
            {**row, "period_start": row["period_start"].isoformat()} for row in table.to_pylist()
        ]
    return summary


def result_total(spec: MetricSpec, table: pa.Table) -> float | None:
    """The total of a result as the metric totals: SUM for additive metrics, SUM(numerator) / SUM(denominator)
    for ratios, none otherwise (None also for a ratio whose denominators sum to 0)."""
    import pyarrow.compute as pc

    if spec.aggregation == "sum":
        return pc.sum(table["value"]).as_py()
    if spec.is_ratio:
        numerator, denominator = pc.sum(table["numerator"]).as_py(), pc.sum(table["denominator"]).as_py()
        return numerator / denominator if numerator is not None and denominator else None
    return None


def result_digest(folder: ObjectStoragePath) -> str:
    """SHA-256 over the staged result's parts: what approvers saw is exactly what gets published."""
    from metrics_center.observability.task_timing import staging

    digest = hashlib.sha256()
    with staging():
        for part in sorted(folder.iterdir(), key=lambda p: p.name):
            digest.update(part.name.encode())
            with part.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def read_result(*, spec: MetricSpec, context: Context) -> tuple[pa.Table, str]:
    """The staged result and its digest (publish compares the digest with the one approvers saw).

    Each part is read once, from wherever staging lives: its bytes are hashed and parsed from memory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from metrics_center.observability.task_timing import staging

    folder = staging_dir(context, spec) / RESULT_FOLDER
    digest = hashlib.sha256()
    tables = []
    with staging():
        for part in sorted(folder.iterdir(), key=lambda p: p.name):
            data = part.read_bytes()
            digest.update(part.name.encode())
            digest.update(data)
            if part.name.endswith(".parquet"):
                tables.append(pq.read_table(pa.BufferReader(data)))
    return pa.concat_tables(tables), digest.hexdigest()
