"""What a running task knows about its run: the period, the template variables, the staging folder."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.periods import Period, period_for_run
from metrics_center.spec import MetricSpec

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath


def run_instant(context: Context) -> datetime:
    """The logical date, or ``run_after`` for manual runs that have none."""
    logical = context.get("logical_date")
    if logical is not None:
        return logical
    return context["dag_run"].run_after


def run_period(context: Context, spec: MetricSpec) -> Period:
    timezone = spec.timezone or settings.business_timezone()
    return period_for_run(run_instant(context), grain=spec.grain, timezone=timezone)


def render(template: str, *, context: Context, spec: MetricSpec) -> str:
    """Render a SQL file or a path with the run's context plus the period variables.

    Undefined variables raise, so a typo in a template fails the task instead of querying ``''``.
    """
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    instant = run_instant(context)
    # Manual runs may have no logical date, hence no ``ds``: fall back to run_after's day.
    fallback = {"ds": instant.strftime("%Y-%m-%d"), "ds_nodash": instant.strftime("%Y%m%d")}
    given = {k: v for k, v in context.items() if v is not None}
    variables: dict[str, Any] = {**fallback, **given, **run_period(context, spec).template_vars()}
    return env.from_string(template).render(**variables)


def staging_dir(context: Context, spec: MetricSpec) -> ObjectStoragePath:
    """``<staging root>/<metric>/<run id>/``; run ids are made path-safe."""
    from airflow.sdk import ObjectStoragePath

    run_id = re.sub(r"[^A-Za-z0-9._-]+", "_", context["run_id"])
    return ObjectStoragePath(settings.staging_root()) / spec.key / run_id
