"""A definition's identity and its documentation: the meaning hash, the stored document, the doc page.

One place decides what "the meaning of a metric" is, so the mart (which refuses silent edits), the
DAG docs, the demo and ``publish`` (which refuses stale approvals) can never disagree. Imports no
Airflow: usable from the CLI, tests and tasks alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrics_center import settings
from metrics_center.definitions.spec import FileSource, MetricSource, MetricSpec
from metrics_center.i18n.translate import _  # English (BI comments, DAG docs) unless a reader's locale is set

#: Fields whose change changes the numbers (or what they mean): a new version is required.
#: Owners, schedule, quality rules, approvers, aggregation and subscribers are operational.
MEANING_FIELDS = (
    "key",
    "name",
    "description",
    "unit",
    "grain",
    "formula",
    "dimensions",
    "sources",
    "transform",
)


@dataclass(frozen=True)
class Definition:
    """What a run registers: the document stored in the mart and the hash of its meaning."""

    document: dict[str, Any]
    meaning_hash: str
    timezone: str


def effective_timezone(spec: MetricSpec) -> str:
    """The business time zone closing the metric's periods: the YAML's, else METRICS_CENTER_TIMEZONE."""
    return spec.timezone or settings.business_timezone()


def load_definition(spec: MetricSpec, *, sql_root: Path | None = None) -> Definition:
    """The definition as stored in the mart (YAML + the SQL it uses) and the SHA-256 of its meaning.

    The *effective* time zone is part of the meaning: changing ``METRICS_CENTER_TIMEZONE`` moves every
    period boundary of metrics that do not set ``timezone:``, so it needs a version bump too.
    """
    root = sql_root or settings.sql_dir()
    sql = {spec.transform.sql: (root / spec.transform.sql).read_text(encoding="utf-8")}
    for source in spec.sources.values():
        if (path := getattr(source, "sql", None)) is not None:
            sql[path] = (root / path).read_text(encoding="utf-8")
    full = spec.model_dump(mode="json")
    timezone = effective_timezone(spec)
    # Dimension descriptions are words for people, not meaning: only the names count.
    meaning = {
        "spec": {**{k: full[k] for k in MEANING_FIELDS}, "dimensions": list(spec.dimensions)},
        "timezone": timezone,
        "sql": sql,
    }
    digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()
    return Definition(
        document={"spec": full, "effective_timezone": timezone, "sql": sql},
        meaning_hash=digest,
        timezone=timezone,
    )


def render_doc(spec: MetricSpec, *, path: Path | None) -> str:
    """The definition for people: its status when not active, meaning, formula, sources, owners, approvers."""
    status = status_banner(spec)
    lines = [
        f"# {spec.name} (`{spec.key}` v{spec.version})",
        "",
        *([status, ""] if status else []),
        spec.description,
        "",
        "- "
        + _(
            "**Department**: {department} · **Owner**: {owner} · **Unit**: {unit}",
            department=spec.department,
            owner=spec.owner,
            unit=spec.unit,
        ),
        "- "
        + _(
            "**Grain**: {grain} ({zone}) · **Schedule**: {schedule} · **Dimensions**: {dimensions}",
            grain=spec.grain,
            zone=effective_timezone(spec),
            schedule=spec.schedule or _("manual"),
            dimensions=", ".join(spec.dimensions) or _("(none)"),
        ),
        "- " + _("**Across dimensions**: {words}", words=_aggregation_words(spec)),
    ]
    if spec.formula:
        lines.append("- " + _("**Formula**: {formula}", formula=spec.formula))
    lines += ["", _("**Sources**"), ""]
    for name, source in spec.sources.items():
        if isinstance(source, FileSource):
            lines.append(f"- `{name}`: " + _("file `{path}`", path=source.path))
        elif isinstance(source, MetricSource):
            lines.append(
                f"- `{name}`: " + _("the published values of metric `{metric}`", metric=source.metric)
            )
        else:
            lines.append(
                f"- `{name}`: " + _("`{sql}` on connection `{conn}`", sql=source.sql, conn=source.conn_id)
            )
    lines += ["", _("**Transform**: `{sql}`", sql=spec.transform.sql), "", _("**Approval**"), ""]
    for i, stage in enumerate(spec.approval.stages, 1):
        lines.append(f"{i}. {stage.name}: {', '.join(stage.approvers)}")
    lines.append(
        "\n"
        + _(
            "Timeout {timeout} per stage, then {on_timeout}.",
            timeout=spec.approval.timeout,
            on_timeout=spec.approval.on_timeout,
        )
    )
    if spec.quality:
        lines += ["", _("**Quality rules**"), ""]
        lines += [f"- `{rule.expect}` {rule.kwargs or ''}" for rule in spec.quality]
    lines += ["", _("**Change note (v{version})**: {note}", version=spec.version, note=spec.change_note)]
    if path is not None:
        lines.append(f"\n_Defined in `{path.name}`._")
    return "\n".join(lines)


def status_banner(spec: MetricSpec) -> str:
    """A Markdown quote saying a metric is deprecated or retired and what replaces it; "" when active."""
    if spec.status == "deprecated":
        if spec.replaced_by:
            return "> ⚠️ " + _(
                "**Deprecated** — use `{replacement}` instead; it is still computed and published until it is "
                "retired.",
                replacement=spec.replaced_by,
            )
        return "> ⚠️ " + _("**Deprecated** — it will be retired; no replacement is named.")
    if spec.status == "retired":
        if spec.replaced_by:
            return "> ⛔ " + _(
                "**Retired** — no new periods are computed; use `{replacement}` instead. Its published history "
                "stays readable.",
                replacement=spec.replaced_by,
            )
        return "> ⛔ " + _("**Retired** — no new periods are computed. Its published history stays readable.")
    return ""


def _aggregation_words(spec: MetricSpec) -> str:
    return aggregation_words(spec.aggregation)


def aggregation_words(aggregation: str) -> str:
    """How a metric's values combine across dimensions and periods, in words (docs, dictionary, comments)."""
    if aggregation == "sum":
        return _("additive: a total is the SUM of the values")
    if aggregation == "ratio":
        return _(
            "a ratio: a total is SUM(numerator) / SUM(denominator), never the sum or the average of the values"
        )
    return _("not additive: do not sum or average the values; no total is published")
