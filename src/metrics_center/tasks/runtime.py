"""What a running task knows about its run: the period, the template variables, the staging folder."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from metrics_center import settings
from metrics_center.definitions.meaning import effective_timezone
from metrics_center.definitions.periods import Period, period_for_run
from metrics_center.definitions.spec import MetricSpec
from metrics_center.definitions.templates import render_with

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath


def run_instant(context: Context) -> datetime:
    """The logical date, or ``run_after`` for manual runs that have none."""
    logical = context.get("logical_date")
    if logical is not None:
        return logical
    return context["dag_run"].run_after


def run_period(context: Context, spec: MetricSpec) -> Period:
    return period_for_run(run_instant(context), grain=spec.grain, timezone=effective_timezone(spec))


def template_variables(context: Context, spec: MetricSpec) -> dict[str, str]:
    """The only variables a metric's SQL files and paths see — all in the business time zone.

    Deliberately not Airflow's context: ``ds`` there is the UTC date (a Shanghai metric would read the
    wrong day's export), and ``params``/``conf``/``var``/``conn`` would let whoever can trigger a run
    inject SQL or paths.
    """
    timezone = effective_timezone(spec)
    local = run_instant(context).astimezone(ZoneInfo(timezone))
    return {
        "ds": local.strftime("%Y-%m-%d"),
        "ds_nodash": local.strftime("%Y%m%d"),
        "logical_date": local.isoformat(),
        "timezone": timezone,
        **run_period(context, spec).template_vars(),
    }


def render(template: str, *, context: Context, spec: MetricSpec, what: str = "template") -> str:
    """Render a SQL file or a path in Jinja's sandbox with :func:`template_variables` only."""
    return render_with(template, variables=template_variables(context, spec), what=what)


def staging_dir(context: Context, spec: MetricSpec) -> ObjectStoragePath:
    """``<staging root>/<metric>/<run id>/``; run ids are made path-safe."""

    run_id = re.sub(r"[^A-Za-z0-9._-]+", "_", context["run_id"])
    return settings.staging_path() / spec.key / run_id
