"""The evidence an approver reads before answering: values, change vs last period, rows, quality."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metrics_center.definitions.dimensions import dimensions_key
from metrics_center.i18n.translate import _, n_

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec

MAX_ROWS_SHOWN = 20
MAX_PERIODS_SHOWN = 31


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.4g} {unit}" if abs(value) < 1 else f"{value:,.2f} {unit}"


def _change(current: float | None, previous: float | None) -> str:
    if current is None or previous is None:
        return _("n/a (no previous value)")
    delta = current - previous
    if previous == 0:
        return f"{delta:+,.2f}"
    return f"{delta:+,.2f} ({delta / abs(previous):+.1%})"


def approval_body(
    *,
    name: str,
    unit: str,
    period: str,
    stage: str,
    previous_period: str,
    rows: int,
    total: float | None,
    values: list[dict[str, Any]],
    previous: dict[str, float | None],
    already_published: dict[str, float | None],
    sources: list[dict[str, Any]],
    quality: list[dict[str, Any]],
    anomalies: list[dict[str, Any]],
    earlier_approvals: list[str],
    doc: str,
    restatement: bool = False,
    by_period: list[dict[str, Any]] | None = None,
    impact: dict[str, Any] | None = None,
    ratio: bool = False,
    previous_total: float | None = None,
    published_total: float | None = None,
    reject_only: list[str] | None = None,
    signoff_waiting: list[str] | None = None,
) -> str:
    """Markdown for the HITL body (shown in the Airflow UI, Slack and the plugin page).

    ``total`` is given only for metrics that total: additive ones (``aggregation: sum``, the sum) and
    ratios (``ratio``: SUM(numerator) / SUM(denominator), with ``previous_total`` and ``published_total``
    computed the same way) — the sum of four regions' conversion rates is not a number anyone should approve.
    """
    lines = [
        _("**{name}** — period **{period}** — stage **{stage}**", name=name, period=period, stage=stage),
        "",
    ]
    how = " (SUM(numerator) / SUM(denominator))" if ratio else ""
    if total is not None and by_period:
        lines.append(
            _(
                "Total{how}: **{total}** over {rows} row(s) in {periods} periods",
                how=how,
                total=_fmt(total, unit),
                rows=rows,
                periods=len(by_period),
            )
        )
    elif total is not None:
        total_prev = previous_total
        if total_prev is None and not ratio and previous:
            total_prev = sum(v for v in previous.values() if v is not None)
        lines.append(
            _(
                "Total{how}: **{total}** over {rows} row(s); vs {previous_period}: {change}",
                how=how,
                total=_fmt(total, unit),
                rows=rows,
                previous_period=previous_period,
                change=_change(total, total_prev),
            )
        )
    else:
        lines.append(
            _("{rows} row(s); no total: this metric is not additive across its dimensions", rows=rows)
        )
    if restatement:
        lines.append(
            "\n"
            + (
                _(
                    "⚠️ **Explicit restatement**: approving replaces the published values of these periods "
                    "even if a newer run published them."
                )
                if by_period
                else _(
                    "⚠️ **Explicit restatement**: approving replaces the published values of this period "
                    "even if a newer run published them."
                )
            )
        )
    if impact:
        lines += ["", *impact_lines(impact, unit=unit)]
    if by_period:
        additive = total is not None
        changed = sum(1 for p in by_period if _differs(p))
        lines += [
            "",
            _(
                "**{periods} periods in one decision** — {changed} differ from what is published; approving "
                "publishes all of them (the old values stay in the history):",
                periods=len(by_period),
                changed=changed,
            ),
            "",
            _("| period | published rows | new rows | ")
            + (_("published total | new total | change |") if additive else "|"),
            "|---|---|---|" + ("---|---|---|" if additive else ""),
        ]
        for p in by_period[:MAX_PERIODS_SHOWN]:
            row = f"| {p['period']} | {p['old_rows']} | {p['new_rows']} |"
            if additive:
                row += f" {_fmt(p['old_total'], unit)} | {_fmt(p['new_total'], unit)} | {_change(p['new_total'], p['old_total'])} |"
            lines.append(row)
        if len(by_period) > MAX_PERIODS_SHOWN:
            lines.append(_("| … {more} more periods | | |", more=len(by_period) - MAX_PERIODS_SHOWN))
    if already_published and not by_period:
        if total is not None:
            if published_total is None and not ratio:
                published_total = sum(v for v in already_published.values() if v is not None)
            what = _(
                "total {published}; this result {change}",
                published=_fmt(published_total, unit),
                change=_change(total, published_total),
            )
        else:
            what = _("{count} value(s)", count=len(already_published))
        lines.append(
            "\n"
            + _(
                "⚠️ **This period is already published** ({what}): approving publishes a restatement; "
                "the old values stay in the history.",
                what=what,
            )
        )
    if values:
        lines += ["", _("| period | dimensions | value | previous | change |"), "|---|---|---|---|---|"]
        for row in values[:MAX_ROWS_SHOWN]:
            dims = {
                k: v for k, v in row.items() if k not in ("period_start", "value", "numerator", "denominator")
            }
            prev = previous.get(dimensions_key(dims))
            label = ", ".join(f"{k}={v}" for k, v in dims.items()) or _("(no dimensions)")
            lines.append(
                f"| {row['period_start']} | {label} | {_fmt(row['value'], unit)} | {_fmt(prev, unit)} "
                f"| {_change(row['value'], prev)} |"
            )
        if rows > MAX_ROWS_SHOWN:
            lines.append(_("| … | {more} more rows | | | |", more=rows - MAX_ROWS_SHOWN))
    elif rows == 0:
        lines += ["", _("**The result is empty**: approving publishes no values for this period.")]
    lines += ["", _("**Rows extracted per source**"), ""]
    lines += [
        "- "
        + _(
            "`{source}`: {rows} rows from {origin}",
            source=s["source"],
            rows=f"{s['rows']:,}",
            origin=s["origin"],
        )
        for s in sources
    ]
    if anomalies:
        lines += [
            "",
            _("**Anomalies** ({count}, vs this metric's published history)", count=len(anomalies)),
            "",
        ]
        lines += [f"- {anomaly_line(a, unit=unit)}" for a in anomalies[:MAX_ROWS_SHOWN]]
        if len(anomalies) > MAX_ROWS_SHOWN:
            lines.append("- " + _("… and {more} more", more=len(anomalies) - MAX_ROWS_SHOWN))
    lines += ["", _("**Quality checks**: {summary}", summary=quality_summary(quality)), ""]
    for q in quality:
        mark = "✅" if q["success"] else ("⚠️" if q.get("severity") == "warn" else "❌")
        if q["expectation"].startswith("reconcile:"):
            lines.append(f"- {mark} {reconciliation_line(q, unit=unit)}")
        else:
            lines.append(f"- {mark} `{q['expectation']}` {q['kwargs']}")
    if earlier_approvals:
        lines += ["", _("**Earlier stages**: {stages}", stages="; ".join(earlier_approvals))]
    if signoff_waiting:
        lines += [
            "",
            _(
                "⏳ **The definition awaits its sign-off** by {reviewers}: values approved now are published once "
                "one of them signs it off (nothing, if it is rejected).",
                reviewers=", ".join(signoff_waiting),
            ),
        ]
    if reject_only:
        # Airflow's Required Actions lists every assignee alike; say who may only reject before they click.
        lines += [
            "",
            _(
                "**May reject, not approve**: {people} — the owner is never the only approver of their own "
                "number (approval.allow_self_approval: false).",
                people=", ".join(reject_only),
            ),
        ]
    lines += ["", "---", doc]
    return "\n".join(lines)


def periods_against_published(
    engine: Engine, *, spec: MetricSpec, table: Any, periods: list[Any]
) -> list[dict[str, Any]]:
    """Per period of a run of several: rows and total now vs what is published (a restatement's before/after)."""
    from metrics_center.mart.values import current_values_table, period_totals

    published = period_totals(
        current_values_table(
            engine,
            metric_key=spec.key,
            dimensions=list(spec.dimensions),
            start=periods[0].start,
            end=periods[-1].end,
            ratio=spec.is_ratio,
        )
    )
    new = period_totals(table)
    return [
        {
            "period": period.label(),
            "old_rows": published.get(period.start, (0, None))[0],
            "new_rows": new.get(period.start, (0, None))[0],
            "old_total": published.get(period.start, (0, None))[1],
            "new_total": new.get(period.start, (0, None))[1],
        }
        for period in periods
    ]


def _differs(period: dict[str, Any]) -> bool:
    """Rows or total changed (beyond floating-point summation order)."""
    old, new = period["old_total"], period["new_total"]
    if period["old_rows"] != period["new_rows"] or (old is None) != (new is None):
        return True
    return old is not None and abs(new - old) > 1e-9 * max(1.0, abs(old))


def impact_lines(impact: dict[str, Any], *, unit: str) -> list[str]:
    """The impact preview of a new breaking version, for its first approver."""
    if impact.get("error"):
        return [_("⚠️ **New breaking version: its impact preview failed** — {error}", error=impact["error"])]
    head = _(
        "⚠️ **New breaking version v{new}** (was v{old}): over the last {periods} published periods, {headline}.",
        new=impact.get("to_version"),
        old=impact.get("from_version"),
        periods=len(impact.get("periods") or []),
        headline=impact.get("headline", ""),
    )
    lines = [head]
    largest = impact.get("largest") or []
    if largest:
        lines += [
            "",
            _("| period | dimensions | published | new definition | change |"),
            "|---|---|---|---|---|",
        ]
        for row in largest:
            dims = ", ".join(f"{k}={v}" for k, v in (row.get("dimensions") or {}).items()) or _("(total)")
            lines.append(
                f"| {row['period']} | {dims} | {_fmt(row.get('old'), unit)} | {_fmt(row.get('new'), unit)} "
                f"| {_change(row.get('new'), row.get('old'))} |"
            )
    return lines


def anomaly_line(anomaly: dict[str, Any], *, unit: str) -> str:
    """``east: ▲ 18,200.00 CNY, +38.0% vs expected 13,190.00 CNY ± 1,100.00 (zscore 4.2)``."""
    dims = ", ".join(f"{k}={v}" for k, v in (anomaly.get("dimensions") or {}).items()) or _("(no dimensions)")
    value, expected = anomaly["value"], anomaly.get("expected")
    arrow = "▲" if expected is None or value >= expected else "▼"
    if expected is None:
        return f"{dims}: {arrow} {_fmt(value, unit)} " + _("(no expected value)")
    change = f", {(value - expected) / abs(expected):+.1%}" if expected else ""
    low, high = anomaly.get("band_low"), anomaly.get("band_high")
    half = (high - low) / 2 if low is not None and high is not None else None
    band = f" ± {half:,.2f}" if half else " " + _("(flat history: any change is unusual)")
    score = anomaly.get("score")
    scored = f" ({anomaly['method']} {score:+.1f})" if score is not None else ""
    return (
        f"{dims}: {arrow} {_fmt(value, unit)}{change} "
        + _("vs expected {expected}", expected=_fmt(expected, unit))
        + f"{band}{scored}"
    )


def quality_summary(quality: list[dict[str, Any]]) -> str:
    """``3 passed, 1 warning`` — a warn-only check that failed is a warning, not a failure."""
    passed = sum(1 for q in quality if q["success"])
    warnings = sum(1 for q in quality if not q["success"] and q.get("severity") == "warn")
    failed = len(quality) - passed - warnings
    parts = [_("{count} passed", count=passed)]
    if warnings:
        parts.append(n_("{count} warning", "{count} warnings", warnings))
    if failed:
        parts.append(_("{count} failed", count=failed))
    return ", ".join(parts) if quality else _("none declared")


def reconciliation_line(result: dict[str, Any], *, unit: str) -> str:
    """Which total is within and which combinations are outside, e.g. ``reconcile:settled_cash (warn, within 1%):
    total: ours 65,859.87 CNY vs theirs 62,100.00 CNY (+6.1%); outside the tolerance, 1 of 4 by region —
    region=east: ours 30,120.00 CNY vs theirs 26,360.13 CNY``."""
    kwargs, observed = result["kwargs"], result.get("observed") or {}
    tolerance = kwargs.get("tolerance", {})
    allowed = []
    if tolerance.get("pct") is not None:
        allowed.append(f"{tolerance['pct']:g}%")
    if tolerance.get("abs") is not None:
        allowed.append(f"{tolerance['abs']:,g} {unit}")
    head = (
        f"`{result['expectation']}` ("
        + _(
            "{severity}, within {allowed}",
            severity=result.get("severity", "block"),
            allowed=_(" or ").join(allowed) or "—",
        )
        + ")"
    )
    if "error" in observed:
        return f"{head}: " + _("could not compare — {error}", error=observed["error"])
    ours, theirs = observed.get("ours"), observed.get("theirs")
    relative = f"{(ours - theirs) / abs(theirs):+.1%}" if ours is not None and theirs else "n/a"
    total = _(
        "total: ours {ours} vs theirs {theirs} ({relative})",
        ours=_fmt(ours, unit),
        theirs=_fmt(theirs, unit),
        relative=relative,
    )
    by = list(kwargs.get("by") or [])
    by_words = _(" and ").join(by)
    mismatched, compared = observed.get("mismatched", 0), observed.get("compared", 0)
    if not by:  # the check compares the period's totals only
        verdict = _("within the tolerance") if not mismatched else _("outside the tolerance")
        return f"{head}: {total}, {verdict}"
    if not mismatched:
        return f"{head}: {total}; " + _(
            "every {by} within ({compared} compared)", by=by_words, compared=compared
        )
    outside = [r for r in observed.get("rows") or [] if not r.get("within")]
    named = "; ".join(
        ", ".join(f"{k}={v}" for k, v in (r.get("dimensions") or {}).items())
        + ": "
        + _(
            "ours {ours} vs theirs {theirs}",
            ours=_fmt(r.get("ours"), unit),
            theirs=_fmt(r.get("theirs"), unit),
        )
        for r in outside[:3]
    )
    more = (
        " " + _("and {more} more", more=mismatched - len(outside[:3]))
        if mismatched > len(outside[:3])
        else ""
    )
    return (
        f"{head}: {total}; "
        + _(
            "outside the tolerance, {mismatched} of {compared} by {by}",
            mismatched=mismatched,
            compared=compared,
            by=by_words,
        )
        + f" — {named}{more}"
    )
