"""Jinja in a sandbox: how a metric's SQL files and paths are rendered, with exactly the variables given.

The variables themselves (``ds``, ``period_start``… in the business time zone) come from
:mod:`metrics_center.definitions.periods` and the run (:mod:`metrics_center.tasks.runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping

from metrics_center.errors import MetricsCenterError


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
