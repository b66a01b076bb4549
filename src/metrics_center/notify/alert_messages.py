"""Slack messages for a run's alerts: anomalies, failed quality checks and reconciliations, and any other kind.

Pure functions of stored outbox payloads, registered by :mod:`metrics_center.notify.slack`: a run with
40 anomalous regions is one alert showing the 10 largest by |score| and "… and 30 more"; a kind or a
payload nobody can read is shown generically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from metrics_center.i18n.translate import _, n_
from metrics_center.notify.blocks import (
    Message,
    alert_message,
    dimensions_text,
    esc,
    fmt,
    metric_name,
    more_line,
    mrkdwn_metric,
    number_or_none,
    periods_text,
    plain,
    run_url,
    short,
    signed_pct,
    text_of,
    versions_text,
    with_unit,
)


def render_anomaly(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    first = payloads[0]
    metric, period, unit = metric_name(first), periods_text(payloads), text_of(first.get("unit"))
    ranked = sorted(payloads, key=lambda p: -abs(number_or_none(p.get("score")) or 0.0))
    count = len(payloads)
    what = n_("1 value is outside the expected band.", "{count} values are outside the expected band.", count)
    several = len({text_of(p.get("period")) for p in payloads}) > 1
    lines = [_anomaly_line(p, unit, with_period=several) for p in ranked[:top]]
    more = more_line(count, top)
    methods = sorted({text_of(p.get("method")) for p in payloads if p.get("method")})
    versions = sorted({str(p["definition_version"]) for p in payloads if p.get("definition_version")})
    context = [_("method {methods}", methods=", ".join(methods)) if methods else "", versions_text(versions)]
    summary = f"{mrkdwn_metric(first)} · " + _("period *{period}*", period=esc(period)) + f" · {what}"
    return alert_message(
        header="⚠️ " + _("Anomaly: {metric} — {period}", metric=metric, period=period),
        summary=summary,
        lines=lines,
        more=more,
        context=context,
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=_(
            "Anomaly in {metric} ({key}) {period}:", metric=metric, key=first.get("metric_key"), period=period
        )
        + f" {what} "
        + "; ".join(plain(line) for line in lines[:3])
        + (f" {plain(more)}" if more else ""),
    )


def _anomaly_line(p: Mapping[str, Any], unit: str, *, with_period: bool = False) -> str:
    value, expected = number_or_none(p.get("value")), number_or_none(p.get("expected"))
    low, high = number_or_none(p.get("band_low")), number_or_none(p.get("band_high"))
    where = dimensions_text(p.get("dimensions"))
    if with_period:
        where = f"{text_of(p.get('period'))} {where}"
    line = f"• *{esc(where)}*: {esc(with_unit(value, unit))}"
    if value is not None and expected is not None:
        arrow = "▲" if value > expected else "▼" if value < expected else "="
        change = f" {signed_pct((value - expected) / abs(expected))}" if expected else ""
        expected_text = esc(fmt(expected)) + esc(_band(expected, low, high))
        line += f"  {arrow}{change} " + _("vs expected {expected}", expected=expected_text)
    elif low is not None or high is not None:
        line += " " + _("outside {low}–{high}", low=esc(fmt(low)), high=esc(fmt(high)))
    score = _score(p.get("method"), number_or_none(p.get("score")))
    return line + (f" ({esc(score)})" if score else "")


def render_quality(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    first = payloads[0]
    metric, period = metric_name(first), text_of(first.get("period"))
    failed = [f for p in payloads for f in (p.get("failed") or [])]
    count = len(failed)
    lines = [_failure_line(f) for f in failed[:top]]
    what = n_("1 expectation failed", "{count} expectations failed", count)
    summary = (
        f"{mrkdwn_metric(first)} · "
        + _("period *{period}*", period=esc(period))
        + " · "
        + _(
            "{what}: nothing is published until the data or the rule is fixed and the run is cleared.",
            what=what,
        )
    )
    return alert_message(
        header="❌ " + _("Quality check failed: {metric} — {period}", metric=metric, period=period),
        summary=summary,
        lines=lines,
        more=more_line(count, top),
        context=[],
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=_(
            "Quality check failed for {metric} ({key}) {period}: {what} ({names}). Nothing is published.",
            metric=metric,
            key=first.get("metric_key"),
            period=period,
            what=what,
            names=", ".join(sorted({str(f.get("expectation")) for f in failed}))[:300],
        ),
    )


def _failure_line(failure: Any) -> str:
    if not isinstance(failure, Mapping):
        return f"• `{esc(short(failure, 200))}`"
    kwargs = failure.get("kwargs") or {}
    args = ", ".join(f"{k}={short(v, 60)}" for k, v in kwargs.items()) if isinstance(kwargs, Mapping) else ""
    line = "• `" + esc(text_of(failure.get("expectation")) or _("expectation")) + "`"
    line += f" ({esc(args)})" if args else ""
    if failure.get("observed") is not None:
        line += ": " + _("observed {value}", value=esc(short(failure["observed"], 200)))
    return line


def render_reconciliation(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    blocks: list[dict[str, Any]] = []
    texts: list[str] = []
    for p in payloads:
        part = _reconciliation(p, base_url, top)
        if blocks:
            blocks.append({"type": "divider"})
        blocks.extend(part.blocks)
        texts.append(part.text)
    return Message(text="\n".join(texts), blocks=blocks)


def _reconciliation(p: dict[str, Any], base_url: str | None, top: int) -> Message:
    metric, period, unit, name = (
        metric_name(p),
        text_of(p.get("period")),
        text_of(p.get("unit")),
        text_of(p.get("name")),
    )
    blocking = p.get("severity") == "block"
    tolerance = _tolerance(p.get("tolerance"))
    ours, theirs, diff = (
        number_or_none(p.get("ours")),
        number_or_none(p.get("theirs")),
        number_or_none(p.get("difference")),
    )
    rel = f" ({signed_pct(diff / abs(theirs))})" if diff is not None and theirs else ""
    totals = _(
        "ours *{ours}* vs theirs *{theirs}*: difference {difference}, tolerance {tolerance}",
        ours=esc(with_unit(ours, unit)),
        theirs=esc(with_unit(theirs, unit)),
        difference=esc(fmt(diff, signed=True)) + rel,
        tolerance=esc(tolerance),
    )
    rows = [r for r in (p.get("rows") or []) if isinstance(r, Mapping)]
    off = sorted((r for r in rows if not r.get("within", False)), key=_gap, reverse=True)
    lines = [
        f"• *{esc(dimensions_text(r.get('dimensions')))}*: "
        + _(
            "ours {ours} vs theirs {theirs} (difference {difference})",
            ours=esc(fmt(number_or_none(r.get("ours")))),
            theirs=esc(fmt(number_or_none(r.get("theirs")))),
            difference=esc(fmt(number_or_none(r.get("difference")), signed=True)),
        )
        for r in off[:top]
    ]
    by = ", ".join(str(b) for b in p.get("by") or [])
    outcome = _("blocks publishing") if blocking else _("warning only, publishing continues")
    if p.get("error"):
        totals = _("could not be computed: {error}", error=esc(short(p["error"], 500)))
    summary = (
        f"{mrkdwn_metric(p)} · "
        + _("period *{period}*", period=esc(period))
        + " · "
        + _("check *{name}* ({outcome})", name=esc(name), outcome=outcome)
    )
    summary += f"\n{totals}"
    if rows:
        summary += "\n" + (
            _(
                "{off} of {count} rows by {by} outside the tolerance",
                off=len(off),
                count=len(rows),
                by=esc(by),
            )
            if by
            else _("{off} of {count} rows outside the tolerance", off=len(off), count=len(rows))
        )
    return alert_message(
        header=("🚫 " if blocking else "⚖️ ")
        + _("Reconciliation {name}: {metric} — {period}", name=name, metric=metric, period=period),
        summary=summary,
        lines=lines,
        more=more_line(len(off), top),
        context=[],
        link=run_url(base_url=base_url, dag_id=p.get("dag_id"), run_id=p.get("run_id")),
        fallback=_(
            "Reconciliation {name} of {metric} ({key}) {period} ({outcome}):",
            name=name,
            metric=metric,
            key=p.get("metric_key"),
            period=period,
            outcome=outcome,
        )
        + " "
        + plain(totals),
    )


def _gap(row: Mapping[str, Any]) -> float:
    """How far off a reconciliation row is; a row missing on one side is the farthest."""
    difference = number_or_none(row.get("difference"))
    return math.inf if difference is None or math.isnan(difference) else abs(difference)


def _render_generic(kind: str, payloads: Sequence[Any], base_url: str | None, top: int) -> Message:
    first = payloads[0] if payloads and isinstance(payloads[0], Mapping) else {}
    title = metric_name(first) if first.get("metric_name") or first.get("metric_key") else "Metrics Center"
    period = text_of(first.get("period"))
    header = "🔔 " + (kind or _("notification")) + f": {title}" + (f" — {period}" if period else "")
    lines = [f"```{esc(short(p, 600))}```" for p in payloads[:top]]
    return alert_message(
        header=header,
        summary=_("{count} notification(s) of kind `{kind}`", count=len(payloads), kind=esc(kind)),
        lines=lines,
        more=more_line(len(payloads), top),
        context=[],
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=f"{header}: {short(payloads[0] if payloads else '', 500)}",
    )


def render_generic(kind: str, payloads: Sequence[Any], base_url: str | None, top: int) -> Message:
    try:
        return _render_generic(kind, payloads, base_url, top)
    except Exception:
        return Message(text=f"Metrics Center: {len(payloads)} notification(s) of kind {kind!r}")


def _tolerance(tolerance: Any) -> str:
    if not isinstance(tolerance, Mapping):
        return _("none")
    parts = []
    if number_or_none(tolerance.get("pct")) is not None:
        parts.append(f"{fmt(number_or_none(tolerance['pct']))}%")
    if number_or_none(tolerance.get("abs")) is not None:
        parts.append(fmt(number_or_none(tolerance["abs"])))
    return _(" or ").join(parts) or _("none")


def _score(method: Any, score: float | None) -> str:
    if score is None:
        return ""
    if method == "zscore":
        return f"z={score:.1f}"
    if method == "mad":
        return _("robust z={score}", score=f"{score:.1f}")
    if method == "pct_change":
        return _("change {change}", change=signed_pct(score))
    return _("score {score}", score=f"{score:.2f}")


def _band(expected: float, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    half = (high - low) / 2
    if math.isclose(expected - low, high - expected, rel_tol=1e-6, abs_tol=1e-9):
        return f" ± {fmt(half)}"
    return f" ({fmt(low)}–{fmt(high)})"
