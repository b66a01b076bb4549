"""Run a metric's unit tests in-process: stage the given rows, run the real transform, compare the rows.

Each case is computed exactly as a run computes its period: the given rows are staged as Parquet parts
(inline rows as an Arrow table, CSV files through the file sources' own reader, a metric source's rows
in the typed shape the mart hands it), then :func:`~metrics_center.tasks.transform.transform_table` runs
the metric's SQL in the locked-down DuckDB with the template variables of the run that normally computes
the period, and checks the result (columns, periods, values, one row per key). No Airflow, no database,
no network; nothing is written outside a temporary folder removed after each case.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center.definitions.metric_tests import (
    CsvRows,
    LoadedTests,
    MetricTestCase,
    csv_path,
)
from metrics_center.definitions.periods import Period, period_containing
from metrics_center.definitions.spec import MetricSource, MetricSpec
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.computation import Computation, PeriodPart, period_variables
from metrics_center.tasks.result_diff import RowDiff, compare_rows

if TYPE_CHECKING:
    import pyarrow as pa

_MISSING_COLUMN = (
    re.compile(r'Referenced column "(?P<column>[^"]+)" not found'),
    re.compile(r'does not have a column named "(?P<column>[^"]+)"'),
    re.compile(r'Values list "[^"]+" does not have a column named "(?P<column>[^"]+)"'),
)


#: The one column of a source a case leaves out (no rows).
NOT_GIVEN = "not_given_in_this_case"


class FixtureError(MetricsCenterError):
    """The given rows cannot be staged (e.g. a column mixing text and numbers); names file, case and column."""


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome: PASS, FAIL (rows differ) or ERROR (the transform or the fixture failed)."""

    metric: str
    case: str
    path: Path
    period: Period
    seconds: float
    diff: RowDiff | None = None
    error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        return "PASS" if self.diff is not None and self.diff.ok else "FAIL"

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def line(self) -> str:
        return f"{self.status:<5} {self.metric}: {self.case} ({self.period.label()}, {self.seconds * 1000:.0f} ms)"

    def details(self) -> list[str]:
        """Why a case did not pass: the row diff, or the error; names the file and the case."""
        if self.passed:
            return []
        head = f"{self.path}: case {self.case!r}:"
        if self.error is not None:
            return [f"{head} {self.error}"]
        assert self.diff is not None
        return [head, *(f"  {line}" for line in self.diff.lines())]


def warm_up() -> None:
    """Pay the one-time costs of a first case up front — imports (DuckDB, Arrow, Jinja, SQLAlchemy for the values'
    shape) and Arrow's Parquet writer's first use (~0.3 s) — so each case's time is its own."""
    import io

    import duckdb
    import jinja2.sandbox  # noqa: F401
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    import metrics_center.mart.values
    import metrics_center.tasks.extract
    import metrics_center.tasks.transform  # noqa: F401

    pq.write_table(pa.table({"warm": [1]}), io.BytesIO())
    duckdb.connect().close()


def case_period(case: MetricTestCase, spec: MetricSpec) -> Period:
    return period_containing(case.period, grain=spec.grain)


def _inline_table(rows: list[dict[str, Any]], *, where: str) -> pa.Table:
    import pyarrow as pa

    columns = list(rows[0]) if rows else []
    arrays = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        try:
            arrays[column] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise FixtureError(
                f"{where}: column `{column}` mixes {', '.join(kinds)} ({exc}) — give the column one type in every "
                "row (quote numbers meant as text)"
            ) from None
    return pa.table(arrays)


def _as_date(cell: Any, *, where: str, column: str) -> date | None:
    if cell is None or (isinstance(cell, date) and not isinstance(cell, datetime)):
        return cell
    if isinstance(cell, datetime):
        return cell.date()
    try:
        return date.fromisoformat(str(cell))
    except ValueError:
        raise FixtureError(f"{where}: {column} {cell!r} is not a date — write YYYY-MM-DD") from None


def _metric_source_table(
    rows: list[dict[str, Any]], *, upstream: MetricSpec, period: Period, where: str
) -> pa.Table:
    """Rows of an input metric as a metric source stages them (typed like the mart's values), with
    ``period_start`` (default: the case's period start), ``period_end`` (the end of the input's period
    starting then) and ``definition_version`` (the input's version) filled in when not given."""
    import pyarrow as pa

    from metrics_center.mart.values import values_schema

    schema = values_schema(dimensions=upstream.dimensions, ratio=upstream.is_ratio)
    filled = []
    for row in rows:
        start = _as_date(row.get("period_start"), where=where, column="period_start") or period.start
        end = _as_date(row.get("period_end"), where=where, column="period_end")
        filled.append(
            {
                **row,
                "period_start": start,
                "period_end": end or period_containing(start, grain=upstream.grain).end,
                "definition_version": row.get("definition_version", upstream.version),
            }
        )
    columns = {}
    for column in schema:
        values = [row.get(column.name) for row in filled]
        if column.type == pa.string():
            values = [None if v is None else str(v) for v in values]
        try:
            columns[column.name] = pa.array(values, type=column.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            hint = {"date32[day]": "a date (YYYY-MM-DD)", "string": "text"}.get(str(column.type), "a number")
            raise FixtureError(
                f"{where}: column `{column.name}` of {upstream.key} must be {column.type} ({exc}) — give {hint}"
            ) from None
    return pa.table(columns, schema=schema)


def _csv_rows(path: Path, *, where: str) -> list[dict[str, Any]]:
    """A CSV's rows for a metric source (then typed like the mart's values)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise FixtureError(f"{where}: cannot read {path}: {exc} — fix the CSV file") from None


def stage_given(
    *,
    loaded: LoadedTests,
    case: MetricTestCase,
    spec: MetricSpec,
    inputs: Mapping[str, MetricSpec],
    root: Path,
) -> None:
    """Write each source's given rows under ``root/sources/<name>/`` as a run stages them."""
    import pyarrow as pa

    from metrics_center.tasks.extract import stage_file
    from metrics_center.tasks.staging import PartWriter

    period = case_period(case, spec)
    for name, source in spec.sources.items():
        if name in case.given:
            continue
        # Left out: staged empty. A metric source has its typed columns; another source has none of its own,
        # so a transform reading one of its columns names it (see run_case).
        writer = PartWriter(root / "sources" / name)
        if isinstance(source, MetricSource):
            writer.write(_metric_source_table([], upstream=inputs[source.metric], period=period, where=name))
        else:
            writer.write(pa.table({NOT_GIVEN: pa.array([], pa.null())}))
    for name, given in case.given.items():
        where = f"given.{name}"
        writer = PartWriter(root / "sources" / name)
        source = spec.sources[name]
        if isinstance(source, MetricSource):
            rows = _csv_rows(csv_path(loaded, given), where=where) if isinstance(given, CsvRows) else given
            upstream = inputs[source.metric]
            writer.write(_metric_source_table(rows, upstream=upstream, period=period, where=where))
        elif isinstance(given, CsvRows):
            path = csv_path(loaded, given)
            try:
                stage_file(source_name=name, fmt="csv", path=path, writer=writer)
            except (pa.ArrowInvalid, pa.ArrowTypeError, MetricsCenterError) as exc:
                raise FixtureError(f"{where}: cannot read {path}: {exc} — fix the CSV file") from None
        else:
            writer.write(_inline_table(given, where=where))


def _missing_column(exc: BaseException | None) -> str | None:
    text = str(exc or "")
    for pattern in _MISSING_COLUMN:
        if match := pattern.search(text):
            return match["column"]
    return None


def _given_columns(root: Path, spec: MetricSpec) -> str:
    import pyarrow.parquet as pq

    described = []
    for name in spec.sources:
        parts = sorted((root / "sources" / name).glob("*.parquet"))
        names = pq.read_schema(parts[0]).names if parts else []
        described.append(
            f"{name} ({'not given' if names == [NOT_GIVEN] else ', '.join(names) or 'no columns'})"
        )
    return "; ".join(described)


def run_case(
    *,
    loaded: LoadedTests,
    case: MetricTestCase,
    spec: MetricSpec,
    inputs: Mapping[str, MetricSpec],
    sql_root: Path,
) -> CaseResult:
    """Stage the case's rows, run the metric's transform as a run does, compare with the expected rows."""
    from metrics_center.tasks.transform import transform_table

    period = case_period(case, spec)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mc-unit-") as tmp:
        root = Path(tmp)
        try:
            stage_given(loaded=loaded, case=case, spec=spec, inputs=inputs, root=root)
            part = PeriodPart(period=period, variables=period_variables(period, spec))
            # A local pathlib folder as the staging root: what a run's local staging is, minus Airflow.
            computation = Computation(spec=spec, root=root, parts=(part,))  # type: ignore[arg-type]
            table = transform_table(computation, sql_root=sql_root)
        except FixtureError as exc:
            result["error"] = str(exc)
        except MetricsCenterError as exc:
            column = _missing_column(exc.__cause__)
            if column is not None:
                result["error"] = (
                    f"the transform reads column `{column}`, which no given source has — given: "
                    f"{_given_columns(root, spec)}; add `{column}` to the given rows (or fix the SQL)"
                )
            else:
                result["error"] = str(exc)
        else:
            rows = table.to_pylist()
            result["rows"] = rows
            result["diff"] = compare_rows(
                expected=case.expect, actual=rows, key_columns=["period_start", *spec.dimensions]
            )
    return CaseResult(
        metric=spec.key,
        case=case.name,
        path=loaded.path,
        period=period,
        seconds=time.perf_counter() - started,
        **result,
    )


def run_tests(
    *, loaded: LoadedTests, spec: MetricSpec, inputs: Mapping[str, MetricSpec], sql_root: Path
) -> list[CaseResult]:
    return [
        run_case(loaded=loaded, case=case, spec=spec, inputs=inputs, sql_root=sql_root)
        for case in loaded.cases
    ]
