"""The words on every column BI tools show: what a metric's relation and the mart's views hold.

Superset, FineBI, Tableau and Power BI copy a column's comment into their dataset's description, so a value
column says the metric's name, meaning, formula, unit and how it may be totalled, and a dimension column says
what its values are. A deprecated or retired metric's value column and relations start by saying so, and what to
read instead (:func:`lifecycle_words`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metrics_center.definitions.meaning import aggregation_words, effective_timezone

if TYPE_CHECKING:
    from metrics_center.definitions.spec import MetricSpec

PERIOD_LABELS = {"day": "2026-11-27", "week": "2026-W48 (ISO week)", "month": "2026-11"}

#: Columns of the history relation besides the current relation's.
HISTORY_COLUMNS = {
    "is_current": "True for the publication that counts now; false for values a restatement replaced.",
    "valid_from": "When this value was published (it counted from then).",
    "valid_to": "When a restatement replaced it; NULL while current. As published on day X: "
    "valid_from <= X AND (valid_to IS NULL OR valid_to > X).",
    "run_id": "The Airflow run that computed and published it.",
    "restatement": "Whether it was published by a restatement (重算) on purpose.",
}


def lifecycle_words(spec: MetricSpec, *, replacement: str | None = None) -> str:
    """What a BI reader must know first about a deprecated or retired metric; "" for an active one.

    ``replacement``: the name of the metric ``replaced_by`` names, when known (its key is said either way).
    """
    if spec.status == "active":
        return ""
    use = ""
    if spec.replaced_by:
        named = f"{replacement} ({spec.replaced_by})" if replacement else spec.replaced_by
        use = f"use {named} instead"
    if spec.status == "deprecated":
        if use:
            return f"DEPRECATED — {use}; still published until it is retired."
        return "DEPRECATED — it will be retired; no replacement is named."
    if use:
        return f"RETIRED — {use}; no new values are published, the history stays readable."
    return "RETIRED — no new values are published; the history stays readable."


def value_comment(spec: MetricSpec, *, replacement: str | None = None) -> str:
    parts = [lifecycle_words(spec, replacement=replacement)] if spec.status != "active" else []
    parts.append(f"{spec.name}: {spec.description.rstrip('.')}.")
    if spec.formula:
        parts.append(f"Formula: {spec.formula}.")
    parts.append(f"Unit: {spec.unit}.")
    if spec.is_ratio:
        parts.append("Value = numerator / denominator.")
    parts.append(f"Across dimensions and periods it is {aggregation_words(spec.aggregation)}.")
    return " ".join(parts)


def relation_comments(
    spec: MetricSpec, *, replacement: str | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Column comments of the current and history relations, and the relations' own comments.

    ``replacement``: the name of the metric a deprecated or retired one is replaced by (see :func:`lifecycle_words`).
    """
    zone = effective_timezone(spec)
    current = {
        "period_start": f"First day of the {spec.grain} (business time zone {zone}).",
        "period_end": f"Day after the last day of the {spec.grain}.",
        "period": f"The {spec.grain} as people write it, e.g. {PERIOD_LABELS[spec.grain]}.",
        **{
            d: spec.dimension_description(d) or f"Dimension {d} of {spec.name} (one column per dimension)."
            for d in spec.dimensions
        },
        "value": value_comment(spec, replacement=replacement),
        "unit": f"Unit of value ({spec.unit}).",
        "definition_version": "Version of the definition that computed the value (see metrics_mart.metric_dictionary).",
        "approved_by": "Who approved it, stage by stage.",
        "published_at": "When it was published.",
    }
    if spec.is_ratio:
        current["numerator"] = f"Numerator of {spec.name}; a total is SUM(numerator) / SUM(denominator)."
        current["denominator"] = f"Denominator of {spec.name}; a total is SUM(numerator) / SUM(denominator)."
    history = {**current, **HISTORY_COLUMNS}
    words = f"{spec.name} ({spec.key}), {spec.grain} grain, {spec.unit}: {spec.description}"
    status = lifecycle_words(spec, replacement=replacement)
    first = f"{status} " if status else ""
    return (
        {"current": current, "history": history},
        {
            "current": f"{first}Current approved values of {words} One row per {spec.grain} and combination.",
            "history": f"{first}Every published value of {words} is_current marks the ones that count now.",
        },
    )
