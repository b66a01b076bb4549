"""What a running task knows about its run: the period, the template variables, the staging folder."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from metrics_center import settings
from metrics_center.definition import effective_timezone
from metrics_center.errors import MetricsCenterError
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


def render_with(template: str, *, variables: Mapping[str, str], what: str = "template") -> str:
    """Render in Jinja's sandbox with exactly ``variables``.

    Undefined variables raise, so a typo in a template fails the task instead of querying ``''``.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(template).render(**variables)
    except jinja2.UndefinedError as exc:
        raise MetricsCenterError(
            f"{what}: {exc.message}; templates see only {', '.join(sorted(variables))} (see README, Templates)"
        ) from None
    except jinja2.TemplateError as exc:
        raise MetricsCenterError(f"{what}: cannot render the template: {exc}") from None


def staging_dir(context: Context, spec: MetricSpec) -> ObjectStoragePath:
    """``<staging root>/<metric>/<run id>/``; run ids are made path-safe."""

    run_id = re.sub(r"[^A-Za-z0-9._-]+", "_", context["run_id"])
    return settings.staging_path() / spec.key / run_id
