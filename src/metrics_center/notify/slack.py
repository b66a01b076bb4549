"""Block Kit rendering: the notifications of one group (same ``group_key`` and address) → one Slack message.

Pure functions of the stored payloads (no I/O, no Airflow import): a run with 40 anomalous regions
is one alert showing the 10 largest by |score| and "… and 30 more". Every message carries a
plain-text ``text`` fallback (notifications, screen readers). A kind this module does not know, or
a payload it cannot read, is shown generically: rendering never raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

#: How many lines (anomalies, failed expectations, reconciliation rows) one message lists.
TOP = 10
_MAX_BLOCKS = 50  # Slack's limit per message
_MAX_SECTION = 2900  # Slack: 3,000 characters per section text
_MAX_HEADER = 150  # Slack: 150 characters per header
_MAX_FALLBACK = 3000


@dataclass(frozen=True)
class Item:
    """One stored notification: its ``kind`` and JSON ``payload``."""

    kind: str
    payload: Any


@dataclass(frozen=True)
class Message:
    """What ``chat.postMessage`` gets: ``text`` (plain fallback) and ``blocks``."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def airflow_base_url() -> str | None:
    """``[api] base_url`` of this Airflow, without a trailing slash; None when unset (links are left out)."""
    from airflow.configuration import conf

    value = conf.get("api", "base_url", fallback=None)
    return value.rstrip("/") if value else None


def run_url(*, base_url: str | None, dag_id: str | None, run_id: str | None) -> str | None:
    """The run's page in Airflow's UI, ``{base_url}/dags/{dag_id}/runs/{run_id}``; None if anything is missing."""
    if not (base_url and dag_id and run_id):
        return None
    return f"{base_url.rstrip('/')}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"


def render_group(items: Sequence[Item], *, base_url: str | None = None, top: int = TOP) -> Message:
    """One message for all ``items`` of a group, one part per kind (in the order first seen)."""
    if not items:
        return Message(text="Metrics Center: (no notifications)")
    by_kind: dict[str, list[Item]] = {}
    for item in items:
        by_kind.setdefault(str(item.kind), []).append(item)
    parts: list[Message] = []
    for kind, group in by_kind.items():
        renderer = _RENDERERS.get(kind)
        try:
            if renderer is None:
                raise KeyError(kind)
            parts.append(renderer([_as_dict(i.payload) for i in group], base_url, top))
        except Exception:  # an unreadable payload still reaches people, shown as stored
            parts.append(_generic_or_bare(kind, [i.payload for i in group], base_url, top))
    if len(parts) == 1:
        return _bounded(parts[0])
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if blocks:
            blocks.append({"type": "divider"})
        blocks.extend(part.blocks)
    return _bounded(Message(text="\n\n".join(p.text for p in parts), blocks=blocks))


# --- kinds ---------------------------------------------------------------------------------------


def _render_anomaly(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    first = payloads[0]
    metric, period, unit = _metric(first), _periods(payloads), _text(first.get("unit"))
    ranked = sorted(payloads, key=lambda p: -abs(_number(p.get("score")) or 0.0))
    count = len(payloads)
    what = "1 value is" if count == 1 else f"{count} values are"
    several = len({_text(p.get("period")) for p in payloads}) > 1
    lines = [_anomaly_line(p, unit, with_period=several) for p in ranked[:top]]
    more = _more(count, top)
    methods = sorted({_text(p.get("method")) for p in payloads if p.get("method")})
    versions = sorted({str(p["definition_version"]) for p in payloads if p.get("definition_version")})
    context = [f"method {', '.join(methods)}" if methods else "", _versions(versions)]
    summary = f"{_mrkdwn_metric(first)} · period *{_esc(period)}* · {what} outside the expected band."
    return _message(
        header=f"⚠️ Anomaly: {metric} — {period}",
        summary=summary,
        lines=lines,
        more=more,
        context=context,
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=f"Anomaly in {metric} ({first.get('metric_key')}) {period}: {what} outside the expected "
        f"band. " + "; ".join(_plain(line) for line in lines[:3]) + (f" {_plain(more)}" if more else ""),
    )


def _anomaly_line(p: Mapping[str, Any], unit: str, *, with_period: bool = False) -> str:
    value, expected = _number(p.get("value")), _number(p.get("expected"))
    low, high = _number(p.get("band_low")), _number(p.get("band_high"))
    where = _dimensions(p.get("dimensions"))
    if with_period:
        where = f"{_text(p.get('period'))} {where}"
    line = f"• *{_esc(where)}*: {_esc(_with_unit(value, unit))}"
    if value is not None and expected is not None:
        arrow = "▲" if value > expected else "▼" if value < expected else "="
        change = f" {_signed_pct((value - expected) / abs(expected))}" if expected else ""
        line += f"  {arrow}{change} vs expected {_esc(_fmt(expected))}{_esc(_band(expected, low, high))}"
    elif low is not None or high is not None:
        line += f" outside {_esc(_fmt(low))}–{_esc(_fmt(high))}"
    score = _score(p.get("method"), _number(p.get("score")))
    return line + (f" ({_esc(score)})" if score else "")


def _render_quality(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    first = payloads[0]
    metric, period = _metric(first), _text(first.get("period"))
    failed = [f for p in payloads for f in (p.get("failed") or [])]
    count = len(failed)
    lines = [_failure_line(f) for f in failed[:top]]
    what = "1 expectation" if count == 1 else f"{count} expectations"
    summary = (
        f"{_mrkdwn_metric(first)} · period *{_esc(period)}* · {what} failed: nothing is published until "
        "the data or the rule is fixed and the run is cleared."
    )
    return _message(
        header=f"❌ Quality check failed: {metric} — {period}",
        summary=summary,
        lines=lines,
        more=_more(count, top),
        context=[],
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=f"Quality check failed for {metric} ({first.get('metric_key')}) {period}: {what} failed "
        f"({', '.join(sorted({str(f.get('expectation')) for f in failed}))[:300]}). Nothing is published.",
    )


def _failure_line(failure: Any) -> str:
    if not isinstance(failure, Mapping):
        return f"• `{_esc(_short(failure, 200))}`"
    kwargs = failure.get("kwargs") or {}
    args = ", ".join(f"{k}={_short(v, 60)}" for k, v in kwargs.items()) if isinstance(kwargs, Mapping) else ""
    line = f"• `{_esc(_text(failure.get('expectation')) or 'expectation')}`"
    line += f" ({_esc(args)})" if args else ""
    if failure.get("observed") is not None:
        line += f": observed {_esc(_short(failure['observed'], 200))}"
    return line


def _render_reconciliation(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
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
        _metric(p),
        _text(p.get("period")),
        _text(p.get("unit")),
        _text(p.get("name")),
    )
    blocking = p.get("severity") == "block"
    tolerance = _tolerance(p.get("tolerance"))
    ours, theirs, diff = _number(p.get("ours")), _number(p.get("theirs")), _number(p.get("difference"))
    rel = f" ({_signed_pct(diff / abs(theirs))})" if diff is not None and theirs else ""
    totals = (
        f"ours *{_esc(_with_unit(ours, unit))}* vs theirs *{_esc(_with_unit(theirs, unit))}*: difference "
        f"{_esc(_fmt(diff, signed=True))}{rel}, tolerance {_esc(tolerance)}"
    )
    rows = [r for r in (p.get("rows") or []) if isinstance(r, Mapping)]
    off = sorted((r for r in rows if not r.get("within", False)), key=_gap, reverse=True)
    lines = [
        f"• *{_esc(_dimensions(r.get('dimensions')))}*: ours {_esc(_fmt(_number(r.get('ours'))))} vs theirs "
        f"{_esc(_fmt(_number(r.get('theirs'))))} (difference {_esc(_fmt(_number(r.get('difference')), signed=True))})"
        for r in off[:top]
    ]
    by = ", ".join(str(b) for b in p.get("by") or [])
    outcome = "blocks publishing" if blocking else "warning only, publishing continues"
    if p.get("error"):
        totals = f"could not be computed: {_esc(_short(p['error'], 500))}"
    summary = f"{_mrkdwn_metric(p)} · period *{_esc(period)}* · check *{_esc(name)}* ({outcome})\n{totals}"
    if rows:
        summary += f"\n{len(off)} of {len(rows)} rows{f' by {_esc(by)}' if by else ''} outside the tolerance"
    return _message(
        header=f"{'🚫' if blocking else '⚖️'} Reconciliation {name}: {metric} — {period}",
        summary=summary,
        lines=lines,
        more=_more(len(off), top),
        context=[],
        link=run_url(base_url=base_url, dag_id=p.get("dag_id"), run_id=p.get("run_id")),
        fallback=f"Reconciliation {name} of {metric} ({p.get('metric_key')}) {period} ({outcome}): "
        + _plain(totals),
    )


def _gap(row: Mapping[str, Any]) -> float:
    """How far off a reconciliation row is; a row missing on one side is the farthest."""
    difference = _number(row.get("difference"))
    return math.inf if difference is None or math.isnan(difference) else abs(difference)


def _render_generic(kind: str, payloads: Sequence[Any], base_url: str | None, top: int) -> Message:
    first = payloads[0] if payloads and isinstance(payloads[0], Mapping) else {}
    title = _metric(first) if first.get("metric_name") or first.get("metric_key") else "Metrics Center"
    period = _text(first.get("period"))
    header = f"🔔 {kind or 'notification'}: {title}" + (f" — {period}" if period else "")
    lines = [f"```{_esc(_short(p, 600))}```" for p in payloads[:top]]
    return _message(
        header=header,
        summary=f"{len(payloads)} notification(s) of kind `{_esc(kind)}`",
        lines=lines,
        more=_more(len(payloads), top),
        context=[],
        link=run_url(base_url=base_url, dag_id=first.get("dag_id"), run_id=first.get("run_id")),
        fallback=f"{header}: {_short(payloads[0] if payloads else '', 500)}",
    )


def _generic_or_bare(kind: str, payloads: Sequence[Any], base_url: str | None, top: int) -> Message:
    try:
        return _render_generic(kind, payloads, base_url, top)
    except Exception:
        return Message(text=f"Metrics Center: {len(payloads)} notification(s) of kind {kind!r}")


def _render_approval(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    from metrics_center.notify.approval_messages import render_request

    return render_request(payloads, base_url, top)


def _render_approval_update(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    from metrics_center.notify.approval_messages import render_update

    return render_update(payloads, base_url, top)


_RENDERERS: dict[str, Callable[[list[dict[str, Any]], str | None, int], Message]] = {
    "anomaly": _render_anomaly,
    "quality_failure": _render_quality,
    "reconciliation": _render_reconciliation,
    # Approval requests and reminders (with buttons) and their in-place update after the decision.
    "approval_request": _render_approval,
    "approval_reminder": _render_approval,
    "approval_update": _render_approval_update,
    # A new definition version (once per version) and published values replaced (restatement).
    "definition_change": lambda payloads, base_url, top: _change_messages().render_definition_change(
        payloads, base_url, top
    ),
    "history_changed": lambda payloads, base_url, top: _change_messages().render_history_changed(
        payloads, base_url, top
    ),
}


def _change_messages():
    from metrics_center.notify import change_messages

    return change_messages


# --- building blocks -----------------------------------------------------------------------------


def _message(
    *,
    header: str,
    summary: str,
    lines: list[str],
    more: str,
    context: list[str],
    link: str | None,
    fallback: str,
) -> Message:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(header, _MAX_HEADER), "emoji": True}},
        _section(summary),
    ]
    body = "\n".join(lines)
    if body:
        blocks.append(_section(body if len(body) <= _MAX_SECTION else _cut_lines(lines)))
    if more:
        blocks.append(_section(f"_{more}_"))
    notes = [c for c in context if c]
    if link:
        notes.append(f"<{link}|Open the run in Airflow>")
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(notes)}]})
    text = fallback + (f" {link}" if link else "")
    return Message(text=_cut(text, _MAX_FALLBACK), blocks=blocks)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _MAX_SECTION)}}


def _cut_lines(lines: list[str]) -> str:
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > _MAX_SECTION - 40:
            kept.append(f"… {len(lines) - len(kept)} more line(s) not shown")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _bounded(message: Message) -> Message:
    """At most Slack's 50 blocks: the rest is replaced by one line saying so."""
    if len(message.blocks) <= _MAX_BLOCKS:
        return message
    kept = message.blocks[: _MAX_BLOCKS - 1]
    note = _section(f"_… {len(message.blocks) - len(kept)} more block(s) not shown_")
    return Message(text=message.text, blocks=[*kept, note])


def _more(count: int, top: int) -> str:
    return f"… and {count - top} more" if count > top else ""


def _periods(payloads: Sequence[Mapping[str, Any]]) -> str:
    periods = sorted({_text(p.get("period")) for p in payloads if p.get("period")})
    if len(periods) > 1:
        return f"{periods[0]} … {periods[-1]} ({len(periods)} periods)"
    return periods[0] if periods else ""


def _metric(p: Mapping[str, Any]) -> str:
    return _text(p.get("metric_name")) or _text(p.get("metric_key")) or "metric"


def _mrkdwn_metric(p: Mapping[str, Any]) -> str:
    name, key = _text(p.get("metric_name")), _text(p.get("metric_key"))
    if name and key and name != key:
        return f"*{_esc(name)}* (`{_esc(key)}`)"
    return f"*{_esc(name or key or 'metric')}*"


def _versions(versions: list[str]) -> str:
    return f"definition v{', v'.join(versions)}" if versions else ""


def _dimensions(dimensions: Any) -> str:
    if isinstance(dimensions, Mapping):
        return ", ".join(f"{k}={v}" for k, v in dimensions.items()) or "total"
    return _text(dimensions) or "total"


def _tolerance(tolerance: Any) -> str:
    if not isinstance(tolerance, Mapping):
        return "none"
    parts = []
    if _number(tolerance.get("pct")) is not None:
        parts.append(f"{_fmt(_number(tolerance['pct']))}%")
    if _number(tolerance.get("abs")) is not None:
        parts.append(_fmt(_number(tolerance["abs"])))
    return " or ".join(parts) or "none"


def _score(method: Any, score: float | None) -> str:
    if score is None:
        return ""
    if method == "zscore":
        return f"z={score:.1f}"
    if method == "mad":
        return f"robust z={score:.1f}"
    if method == "pct_change":
        return f"change {_signed_pct(score)}"
    return f"score {score:.2f}"


def _band(expected: float, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    half = (high - low) / 2
    if math.isclose(expected - low, high - expected, rel_tol=1e-6, abs_tol=1e-9):
        return f" ± {_fmt(half)}"
    return f" ({_fmt(low)}–{_fmt(high)})"


def _signed_pct(ratio: float) -> str:
    """+38% · −4.2% · +0.31%: whole percent from 10 up, then one decimal, then two significant digits."""
    pct = abs(ratio * 100)
    text = f"{pct:,.0f}" if pct >= 10 else f"{pct:.1f}".rstrip("0").rstrip(".") if pct >= 1 else f"{pct:.2g}"
    return f"{'+' if ratio >= 0 else '−'}{text}%"


def _fmt(value: float | None, *, signed: bool = False, digits: int = 4) -> str:
    """Numbers as people read them: 12,400 · 3.14 · 0.0342 · 1.2e+15."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    sign = "+" if signed and value > 0 else ""
    magnitude = abs(value)
    if magnitude >= 1e15:
        return f"{sign}{value:.3g}"
    if magnitude >= 1000:
        return f"{sign}{value:,.0f}"
    if magnitude >= 1 or magnitude == 0:
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
        return sign + ("0" if text in ("-0", "") else text)
    return sign + f"{value:.{max(digits - 1, 1)}g}"


def _with_unit(value: float | None, unit: str) -> str:
    text = _fmt(value)
    if not unit or value is None:
        return text
    return f"{text}{unit}" if unit in ("%", "‰") else f"{text} {unit}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(mrkdwn: str) -> str:
    return (
        mrkdwn.replace("*", "")
        .replace("`", "")
        .replace("• ", "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )


def _as_dict(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload is {type(payload).__name__}, not an object")
    return dict(payload)
