"""Block Kit building blocks shared by every Slack message: limits, sections, escaping, numbers as people read them.

Pure functions (no I/O, no Airflow import at module level). Slack's limits live here: 50 blocks per message,
3,000 characters per section, 150 per header.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from metrics_center.i18n.translate import _

#: How many lines (anomalies, failed expectations, reconciliation rows) one message lists.
TOP = 10


MAX_BLOCKS = 50  # Slack's limit per message


MAX_SECTION = 2900  # Slack: 3,000 characters per section text


MAX_HEADER = 150  # Slack: 150 characters per header


MAX_FALLBACK = 3000


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


def alert_message(
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
        {"type": "header", "text": {"type": "plain_text", "text": cut(header, MAX_HEADER), "emoji": True}},
        section(summary),
    ]
    body = "\n".join(lines)
    if body:
        blocks.append(section(body if len(body) <= MAX_SECTION else cut_lines(lines)))
    if more:
        blocks.append(section(f"_{more}_"))
    notes = [c for c in context if c]
    if link:
        notes.append("<" + link + "|" + _("Open the run in Airflow") + ">")
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(notes)}]})
    text = fallback + (f" {link}" if link else "")
    return Message(text=cut(text, MAX_FALLBACK), blocks=blocks)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION)}}


def cut_lines(lines: list[str]) -> str:
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > MAX_SECTION - 40:
            kept.append(_("… {count} more line(s) not shown", count=len(lines) - len(kept)))
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def bounded(message: Message) -> Message:
    """At most Slack's 50 blocks: the rest is replaced by one line saying so."""
    if len(message.blocks) <= MAX_BLOCKS:
        return message
    kept = message.blocks[: MAX_BLOCKS - 1]
    note = section("_" + _("… {count} more block(s) not shown", count=len(message.blocks) - len(kept)) + "_")
    return Message(text=message.text, blocks=[*kept, note])


def more_line(count: int, top: int) -> str:
    return _("… and {count} more", count=count - top) if count > top else ""


def periods_text(payloads: Sequence[Mapping[str, Any]]) -> str:
    periods = sorted({text_of(p.get("period")) for p in payloads if p.get("period")})
    if len(periods) > 1:
        return _("{first} … {last} ({count} periods)", first=periods[0], last=periods[-1], count=len(periods))
    return periods[0] if periods else ""


def metric_name(p: Mapping[str, Any]) -> str:
    return text_of(p.get("metric_name")) or text_of(p.get("metric_key")) or _("metric")


def mrkdwn_metric(p: Mapping[str, Any]) -> str:
    name, key = text_of(p.get("metric_name")), text_of(p.get("metric_key"))
    if name and key and name != key:
        return f"*{esc(name)}* (`{esc(key)}`)"
    return "*" + esc(name or key or _("metric")) + "*"


def versions_text(versions: list[str]) -> str:
    return _("definition v{versions}", versions=", v".join(versions)) if versions else ""


def dimensions_text(dimensions: Any) -> str:
    if isinstance(dimensions, Mapping):
        return ", ".join(f"{k}={v}" for k, v in dimensions.items()) or _("total")
    return text_of(dimensions) or _("total")


def signed_pct(ratio: float) -> str:
    """+38% · −4.2% · +0.31%: whole percent from 10 up, then one decimal, then two significant digits."""
    pct = abs(ratio * 100)
    text = f"{pct:,.0f}" if pct >= 10 else f"{pct:.1f}".rstrip("0").rstrip(".") if pct >= 1 else f"{pct:.2g}"
    return f"{'+' if ratio >= 0 else '−'}{text}%"


def fmt(value: float | None, *, signed: bool = False, digits: int = 4) -> str:
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


def with_unit(value: float | None, unit: str) -> str:
    text = fmt(value)
    if not unit or value is None:
        return text
    return f"{text}{unit}" if unit in ("%", "‰") else f"{text} {unit}"


def number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def text_of(value: Any) -> str:
    return "" if value is None else str(value)


def short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def esc(text: str) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(mrkdwn: str) -> str:
    return (
        mrkdwn.replace("*", "")
        .replace("`", "")
        .replace("• ", "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )


def as_dict(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload is {type(payload).__name__}, not an object")
    return dict(payload)
