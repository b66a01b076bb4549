"""Compute a metric for some periods on the author's machine: what ``metrics-center run`` shows.

The same code a run executes — sources extracted through the same Airflow connections (environment or
secrets backend), the metric's SQL in the same locked-down DuckDB, Great Expectations' rules, the
reconciliations, anomaly scoring against the published history — staged in a temporary folder that is
removed afterwards. No scheduler, nothing written to Airflow's metadata database or to the mart: the
mart (when there is one) is only read, for the history, the published values and metric sources.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center.definitions.periods import Period, period_containing
from metrics_center.definitions.spec import MetricSource, SqlSource
from metrics_center.errors import MetricsCenterError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import pyarrow as pa
    from sqlalchemy import Engine

    from metrics_center.checks.impact import Impact
    from metrics_center.definitions.spec import MetricSpec

#: Shown in the evidence where an approval stage's name would be.
LOCAL_STAGE = "local run (nobody is asked)"


@dataclass(frozen=True)
class LocalRun:
    """A metric computed locally for ``periods``, with everything an approver would be shown."""

    spec: MetricSpec
    periods: list[Period]
    table: pa.Table
    sources: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    anomalies: list[dict[str, Any]]
    evidence: str
    #: Against what is published for the same periods (None without a mart to read).
    published: Impact | None
    #: Why a part was left out (no mart: no history, no comparison), in words for the author.
    notes: list[str] = field(default_factory=list)

    @property
    def blocking_failures(self) -> list[dict[str, Any]]:
        """Checks that would fail the run's quality gate: nothing would be published, nobody asked."""
        return [q for q in self.quality if not q["success"] and q.get("severity", "block") == "block"]


def parse_periods(*, spec: MetricSpec, period: str | None, periods: str | None) -> list[Period]:
    """``--period 2026-11-27`` or ``--periods 2026-11-20..2026-11-27`` → the metric's periods, each named by
    its first day; a day that does not start a period of the grain is refused with the one that does."""
    if (period is None) == (periods is None):
        raise MetricsCenterError("give one of --period DAY or --periods FROM..TO (e.g. --period 2026-11-27)")
    if period is not None:
        return [_aligned(spec, period, what="--period")]
    first_text, sep, last_text = (periods or "").partition("..")
    if not sep:
        raise MetricsCenterError(
            f"--periods {periods!r}: write FROM..TO, e.g. --periods 2026-11-20..2026-11-27"
        )
    first, last = (
        _aligned(spec, first_text, what="--periods FROM"),
        _aligned(spec, last_text, what="--periods TO"),
    )
    if last.start < first.start:
        raise MetricsCenterError(f"--periods {periods}: TO is before FROM")
    found = [first]
    while found[-1].start < last.start:
        found.append(period_containing(found[-1].end, grain=spec.grain))
    if len(found) > 366:
        raise MetricsCenterError(f"--periods {periods}: {len(found)} periods; compute at most 366 at once")
    return found


def _aligned(spec: MetricSpec, text: str, *, what: str) -> Period:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise MetricsCenterError(f"{what} {text!r} is not a day: write YYYY-MM-DD, e.g. 2026-11-27") from None
    found = period_containing(day, grain=spec.grain)
    if found.start != day:
        raise MetricsCenterError(
            f"{what} {day}: {spec.key} is computed per {spec.grain} and {day} does not start one; "
            f"its {spec.grain} is {found.label()}, which starts on {found.start} — use {found.start}"
        )
    return found


def compute_locally(
    *,
    spec: MetricSpec,
    periods: list[Period],
    engine: Engine | None,
    no_mart: str | None = None,
    expectations: Executor | None = None,
) -> LocalRun:
    """Extract, transform, check and score ``spec`` over ``periods``; evidence as an approver reads it.

    ``engine``: the mart, only read (None: no history, no comparison — ``no_mart`` says why).
    ``expectations``: a worker process the Great Expectations rules run in (same function, same results),
    warmed up by :func:`warm_expectations` while the sources are extracted; None: in this process.
    """
    from airflow.sdk import ObjectStoragePath

    from metrics_center.tasks.computation import of_periods
    from metrics_center.tasks.transform import transform_table

    notes: list[str] = []
    if engine is None:
        metric_sources = [n for n, s in spec.sources.items() if isinstance(s, MetricSource)]
        if metric_sources:
            raise MetricsCenterError(
                f"{spec.key} reads published metrics ({', '.join(metric_sources)}) and no mart was reachable: "
                "give --url (the mart's SQLAlchemy URL) or configure the metrics_mart connection"
            )
        notes.append(
            no_mart or "no mart: anomaly scoring and the comparison with published values were skipped"
        )
    with tempfile.TemporaryDirectory(prefix=f"mc-run-{spec.key}-") as tmp:
        computation = of_periods(
            spec=spec, root=ObjectStoragePath(Path(tmp).as_uri()), periods=periods, engine=engine
        )
        sources = [_extract(spec, name, computation) for name in spec.sources]
        for summary in sources:
            if summary["rows"] == 0:
                notes.append(
                    f"source {summary['source']} returned no rows for {_periods_label(periods)} "
                    f"({summary['origin']}): is the period right, and is the data there yet?"
                )
        table = transform_table(computation)
        quality = _quality(spec, table, computation, expectations)
    anomalies = _anomalies(spec, table, engine)
    if spec.anomaly and spec.anomaly.block and anomalies:
        quality.append(
            {
                "expectation": "anomaly",
                "kwargs": spec.anomaly.model_dump(exclude_none=True),
                "success": False,
                "severity": "block",
                "observed": {"anomalies": len(anomalies)},
            }
        )
    published = _against_published(spec, table, periods, engine) if engine is not None else None
    evidence = _evidence(spec, periods, table, sources, quality, anomalies, engine)
    return LocalRun(
        spec=spec,
        periods=periods,
        table=table,
        sources=sources,
        quality=quality,
        anomalies=anomalies,
        evidence=evidence,
        published=published,
        notes=notes,
    )


def _periods_label(periods: list[Period]) -> str:
    return periods[0].label() if len(periods) == 1 else f"{periods[0].label()} … {periods[-1].label()}"


def _extract(spec: MetricSpec, name: str, computation: Any) -> dict[str, Any]:
    from metrics_center.tasks.extract import extract_source

    source = spec.sources[name]
    try:
        return extract_source(spec=spec, source_name=name, computation=computation)
    except MetricsCenterError:
        raise
    except Exception as exc:
        if isinstance(source, SqlSource) and _is_missing_connection(exc):
            env = f"AIRFLOW_CONN_{source.conn_id.upper()}"
            raise MetricsCenterError(
                f"source {name}: connection {source.conn_id!r} is not configured — set {env} (a URI or JSON, "
                "e.g. postgresql://user@host:5432/db) or add it to Airflow's secrets backend"
            ) from exc
        raise MetricsCenterError(f"source {name}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def _is_missing_connection(exc: BaseException) -> bool:
    from airflow.exceptions import AirflowNotFoundException

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AirflowNotFoundException) or "isn't defined" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def warm_expectations() -> None:
    """Import what the quality rules need (in a worker, while the caller extracts)."""
    from metrics_center.checks.expectations import run_expectations

    run_expectations(frame=_empty_frame(), rules=[], suite_name="warm-up")
    import great_expectations  # noqa: F401 - the import is the point


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


def _quality(
    spec: MetricSpec, table: pa.Table, computation: Any, expectations: Executor | None
) -> list[dict[str, Any]]:
    from metrics_center.checks.expectations import run_expectations
    from metrics_center.tasks.reconciliation import run_reconciliations

    arguments = {"frame": table.to_pandas(), "rules": list(spec.quality), "suite_name": spec.key}
    found = (
        expectations.submit(run_expectations, **arguments).result()
        if expectations is not None and spec.quality
        else run_expectations(**arguments)
    )
    results = [{**r, "severity": "block"} for r in found]
    return results + run_reconciliations(spec=spec, result=table, computation=computation)


def _anomalies(spec: MetricSpec, table: pa.Table, engine: Engine | None) -> list[dict[str, Any]]:
    """The values the run's anomaly check would flag, scored against the published history."""
    from metrics_center.checks.anomaly import score_against_history

    if engine is None or table.num_rows == 0:
        return []
    scored = score_against_history(
        engine, spec=spec, frame=table.to_pandas(), definition_version=spec.version
    )
    if scored is None:
        return []
    found = []
    for row in scored.anomalies.to_dict("records"):
        found.append(
            {
                "period_start": row["period_start"].date() if hasattr(row["period_start"], "date") else None,
                "dimensions": {d: row[d] for d in spec.dimensions},
                "value": row["value"],
                "expected": _number(row.get("expected")),
                "band_low": _number(row.get("band_low")),
                "band_high": _number(row.get("band_high")),
                "score": _number(row.get("score")),
                "method": spec.anomaly.method,
            }
        )
    return found


def _number(value: Any) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        number = float(value)
        if number == number:  # not NaN
            return number
    return None


def _against_published(spec: MetricSpec, table: pa.Table, periods: list[Period], engine: Engine) -> Impact:
    from metrics_center.checks.impact import compare_versions
    from metrics_center.mart.values import current_values_table

    starts = [p.start for p in periods]
    published = current_values_table(
        engine,
        metric_key=spec.key,
        dimensions=list(spec.dimensions),
        period_starts=starts,
        ratio=spec.is_ratio,
    )
    return compare_versions(
        old=published,
        new=table,
        old_dimensions=list(spec.dimensions),
        new_dimensions=list(spec.dimensions),
        additive=spec.aggregation == "sum",
        ratio=spec.is_ratio,
        from_version=spec.version,
        to_version=spec.version,
        periods=starts,
    )


def _evidence(
    spec: MetricSpec,
    periods: list[Period],
    table: pa.Table,
    sources: list[dict[str, Any]],
    quality: list[dict[str, Any]],
    anomalies: list[dict[str, Any]],
    engine: Engine | None,
) -> str:
    from metrics_center.approvals.evidence import MAX_ROWS_SHOWN, approval_body, periods_against_published
    from metrics_center.definitions.meaning import effective_timezone, render_doc
    from metrics_center.tasks.transform import result_total

    period, previous = periods[0], periods[0].previous()
    published: dict[str, Any] = {
        "previous": {},
        "already": {},
        "previous_total": None,
        "published_total": None,
    }
    if engine is not None:
        from metrics_center.mart.audit import current_values
        from metrics_center.mart.values import current_values_table, period_totals

        totals = period_totals(
            current_values_table(
                engine,
                metric_key=spec.key,
                dimensions=list(spec.dimensions),
                period_starts=[previous.start, period.start],
                ratio=spec.is_ratio,
            )
        )
        published = {
            "previous": current_values(engine, metric_key=spec.key, period_start=previous.start),
            "already": current_values(engine, metric_key=spec.key, period_start=period.start),
            "previous_total": totals.get(previous.start, (0, None))[1],
            "published_total": totals.get(period.start, (0, None))[1],
        }
    label = (
        period.label()
        if len(periods) == 1
        else f"{len(periods)} periods, {periods[0].label()} … {periods[-1].label()}"
    )
    return approval_body(
        name=spec.name,
        unit=spec.unit,
        period=f"{label} ({spec.grain}, {effective_timezone(spec)})",
        stage=LOCAL_STAGE,
        previous_period=previous.label(),
        rows=table.num_rows,
        total=result_total(spec, table),
        ratio=spec.is_ratio,
        previous_total=published["previous_total"],
        published_total=published["published_total"],
        values=[
            {**row, "period_start": row["period_start"].isoformat()}
            for row in table.slice(0, MAX_ROWS_SHOWN).to_pylist()
        ],
        previous=published["previous"],
        already_published=published["already"],
        sources=sources,
        quality=quality,
        anomalies=anomalies,
        earlier_approvals=[],
        doc=render_doc(spec, path=None),
        by_period=periods_against_published(engine, spec=spec, table=table, periods=periods)
        if engine is not None and len(periods) > 1
        else None,
    )
