"""What a run (or an impact preview) computes: the metric, its periods, their template variables, where it stages.

A run of one period — the period rule's, every scheduled run — stages as it always has:
``<staging>/<metric>/<run>/sources/<source>/``, templates seeing the run's own variables. A run of several
periods (a restatement, an input-triggered run, an impact preview) computes each period exactly as the
run that normally computes it would: templates rendered with that period's variables (as if run at the
start of the day after the period, in the business time zone — so ``refunds_{{ ds }}.csv`` is the export
of that morning), each source staged under ``sources/<source>/p=<period start>/`` and the transform run per
period over that period's parts only. One result, one approval, one publish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from metrics_center.definitions.meaning import effective_timezone
from metrics_center.definitions.periods import Period
from metrics_center.tasks.runtime import run_period, staging_dir, template_variables

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec

RESULT_FOLDER = "result"


@dataclass(frozen=True)
class PeriodPart:
    """One period of a computation: its template variables and its staging sub-folder ("" = the run's own)."""

    period: Period
    variables: Mapping[str, str]
    folder: str = ""


@dataclass(frozen=True)
class Computation:
    spec: MetricSpec
    root: ObjectStoragePath
    parts: tuple[PeriodPart, ...]
    #: Multi-period computations refuse rows a period's transform returns for another period.
    strict_periods: bool = field(default=False)
    #: The mart metric sources read (default: the ``metrics_mart`` connection's).
    engine: Engine | None = field(default=None, compare=False)

    @property
    def periods(self) -> list[Period]:
        return [part.period for part in self.parts]

    def source_folder(self, name: str, part: PeriodPart) -> ObjectStoragePath:
        base = self.root / "sources" / name
        return base / part.folder if part.folder else base

    @property
    def result_folder(self) -> ObjectStoragePath:
        return self.root / RESULT_FOLDER


def period_variables(period: Period, spec: MetricSpec) -> dict[str, str]:
    """The template variables of the run that normally computes ``period``: at 00:00 of the day after it."""
    timezone = effective_timezone(spec)
    local = datetime.combine(period.end, time(0), tzinfo=ZoneInfo(timezone))
    return {
        "ds": local.strftime("%Y-%m-%d"),
        "ds_nodash": local.strftime("%Y%m%d"),
        "logical_date": local.isoformat(),
        "timezone": timezone,
        **period.template_vars(),
    }


def of_periods(
    *, spec: MetricSpec, root: ObjectStoragePath, periods: Sequence[Period], engine: Engine | None = None
) -> Computation:
    """Each period computed on its own, under ``root`` (a preview's or a restatement's)."""
    parts = tuple(
        PeriodPart(period=p, variables=period_variables(p, spec), folder=f"p={p.start.isoformat()}")
        for p in periods
    )
    return Computation(spec=spec, root=root, parts=parts, strict_periods=True, engine=engine)


def for_context(
    *,
    spec: MetricSpec,
    context: Context,
    periods: Sequence[Period] | None = None,
    engine: Engine | None = None,
) -> Computation:
    """A run's computation: the period rule's period with the run's own variables, or ``periods`` one by one."""
    root = staging_dir(context, spec)
    rule = run_period(context, spec)
    if periods is None or list(periods) == [rule]:
        part = PeriodPart(period=rule, variables=template_variables(context, spec))
        return Computation(spec=spec, root=root, parts=(part,), engine=engine)
    return of_periods(spec=spec, root=root, periods=periods, engine=engine)


def for_run(*, spec: MetricSpec, context: Context, engine: Engine) -> Computation:
    """The computation the run register says this run does (``register_definition`` chose its periods)."""
    from metrics_center.errors import MetricsCenterError
    from metrics_center.mart.runs import get_run

    run = get_run(engine, metric_key=spec.key, run_id=context["run_id"])
    if run is None:
        raise MetricsCenterError(
            f"run {context['run_id']} of {spec.key} was never registered; clear the whole run (register_definition first)"
        )
    return for_context(spec=spec, context=context, periods=run.period_list(spec.grain), engine=engine)
