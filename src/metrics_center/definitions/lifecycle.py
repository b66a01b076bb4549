"""A metric's life: ``status`` (active, deprecated, retired) and ``replaced_by``, judged in a file and in a catalog.

In one file: ``replaced_by`` belongs to a deprecated or retired metric and names another metric. Across the
catalog: the replacement exists and is not retired itself; no metric reads a retired metric (the message names
its replacement); reading a deprecated one is allowed but warned about. Neither field is part of the meaning
(:data:`metrics_center.definitions.meaning.MEANING_FIELDS`): deprecating a metric needs no new version.
Pure functions over specs; the loader turns the findings into problems (and warnings) with lines.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from metrics_center.definitions.lineage import metric_inputs
from metrics_center.definitions.spec import MetricSpec
from metrics_center.i18n.translate import _

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LifecycleFinding:
    """One finding about metric ``key``, at ``loc`` in its file; a warning is printed but is no problem."""

    key: str
    loc: Loc
    message: str
    fix: str
    warning: bool = False


def spec_findings(spec: MetricSpec) -> list[tuple[Loc, str, str]]:
    """What one file gets wrong about its own lifecycle: ``(loc, what, fix)``."""
    if spec.replaced_by is None:
        return []
    if spec.status == "active":
        return [
            (
                ("replaced_by",),
                _(
                    "replaced_by is set but the metric's status is active, so nothing tells readers to move to "
                    "{replacement}",
                    replacement=spec.replaced_by,
                ),
                _("set status: deprecated (or retired), or remove replaced_by"),
            )
        ]
    if spec.replaced_by == spec.key:
        return [
            (
                ("replaced_by",),
                _("a metric cannot be replaced by itself"),
                _("name the metric to read instead"),
            )
        ]
    return []


def _move_away(upstream: MetricSpec) -> str:
    """Where readers of a deprecated or retired metric should go, in words."""
    retired = upstream.status == "retired"
    if upstream.replaced_by:
        if retired:
            return _("read {replacement} (its replacement) instead", replacement=upstream.replaced_by)
        return _(
            "read {replacement} (its replacement) before {key} is retired",
            replacement=upstream.replaced_by,
            key=upstream.key,
        )
    if retired:
        return _(
            "{key} names no replacement (replaced_by): remove this source instead, or ask its owner ({owner})",
            key=upstream.key,
            owner=upstream.owner,
        )
    return _(
        "{key} names no replacement (replaced_by): remove this source before {key} is retired, or ask its "
        "owner ({owner})",
        key=upstream.key,
        owner=upstream.owner,
    )


def catalog_findings(
    specs: Mapping[str, MetricSpec], *, broken: Collection[str], where: str
) -> list[LifecycleFinding]:
    """Replacements that do not exist (or are retired), and metrics that read retired or deprecated ones.

    ``broken``: keys whose file exists but does not load — they report their own problems, so naming them
    is not an error here. ``where`` names the metrics folder in messages.
    """
    findings: list[LifecycleFinding] = []
    for spec in specs.values():
        target_key = spec.replaced_by
        if target_key is not None and spec.status != "active" and target_key != spec.key:
            target = specs.get(target_key)
            if target is None and target_key not in broken:
                findings.append(
                    LifecycleFinding(
                        spec.key,
                        ("replaced_by",),
                        _(
                            "replaced_by names {key}, which is not a metric in {folder}",
                            key=repr(target_key),
                            folder=where,
                        ),
                        _("name the key of an existing metric, or add {key}.yaml", key=target_key),
                    )
                )
            elif target is not None and target.status == "retired":
                fix = (
                    _(
                        "name the metric that replaces it ({replacement}), or another metric that is not retired",
                        replacement=target.replaced_by,
                    )
                    if target.replaced_by
                    else _("name the metric that replaces it, or another metric that is not retired")
                )
                findings.append(
                    LifecycleFinding(
                        spec.key,
                        ("replaced_by",),
                        _("replaced_by names {key}, which is retired itself", key=target_key),
                        fix,
                    )
                )
        if spec.status == "retired":
            continue  # a retired metric is not computed: what it reads no longer matters
        for name, input_key in metric_inputs(spec).items():
            upstream = specs.get(input_key)
            if upstream is None or upstream.status == "active":
                continue
            findings.append(
                LifecycleFinding(
                    spec.key,
                    ("sources", name, "metric"),
                    (
                        _("reads retired metric {key}", key=input_key)
                        if upstream.status == "retired"
                        else _("reads deprecated metric {key}", key=input_key)
                    ),
                    _move_away(upstream),
                    warning=upstream.status == "deprecated",
                )
            )
    return findings
