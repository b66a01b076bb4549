"""What chats say about a metric's lifecycle: the one notice that it is deprecated (``metric_deprecated``), and
"deprecated — use X" on every other message about a deprecated or retired metric.

Pure functions of stored payloads (no I/O, no Airflow import). Whoever writes a message about a metric adds
:func:`status_fields` of its spec to the payload; :func:`marked` then puts the status in the message's title
(the header every channel shows first), in a line under it, and in the plain-text fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from metrics_center.i18n.translate import _
from metrics_center.notify.blocks import (
    MAX_FALLBACK,
    MAX_HEADER,
    Message,
    alert_message,
    cut,
    esc,
    mrkdwn_metric,
    plain,
    section,
    text_of,
)
from metrics_center.notify.change_messages import dictionary_url

if TYPE_CHECKING:
    from metrics_center.definitions.spec import MetricSpec

DEPRECATED_KIND: Final = "metric_deprecated"
_NOT_ACTIVE = ("deprecated", "retired")


def status_fields(spec: MetricSpec) -> dict[str, Any]:
    """The payload fields saying ``spec`` is deprecated or retired and what replaces it; none when active."""
    if spec.status == "active":
        return {}
    return {"metric_status": spec.status, "replaced_by": spec.replaced_by}


def _status(p: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(status, replacement key, replacement name)`` of a payload (an update carries its request's)."""
    request = p.get("request")
    for source in (p, request if isinstance(request, Mapping) else {}):
        status = text_of(source.get("metric_status"))
        if status in _NOT_ACTIVE:
            return status, text_of(source.get("replaced_by")), text_of(source.get("replaced_by_name"))
    return "active", "", ""


def _replacement(key: str, name: str) -> str:
    return f"*{esc(name)}* (`{esc(key)}`)" if name and name != key else f"`{esc(key)}`"


def status_line(p: Mapping[str, Any]) -> str:
    """``⚠️ *Deprecated* — use `net_gmv_daily` instead.`` (mrkdwn) for a deprecated or retired metric, else ""."""
    status, key, name = _status(p)
    if status == "deprecated":
        if key:
            return "⚠️ " + _("*Deprecated* — use {replacement} instead.", replacement=_replacement(key, name))
        return "⚠️ " + _("*Deprecated* — it will be retired; no replacement is named.")
    if status == "retired":
        if key:
            return "⛔ " + _(
                "*Retired* — no new values are published; use {replacement} instead.",
                replacement=_replacement(key, name),
            )
        return "⛔ " + _("*Retired* — no new values are published.")
    return ""


def status_tag(p: Mapping[str, Any]) -> str:
    """``deprecated`` or ``retired`` in the reader's language; "" for an active metric."""
    status = _status(p)[0]
    if status == "deprecated":
        return _("deprecated")
    if status == "retired":
        return _("retired")
    return ""


def marked(message: Message, p: Mapping[str, Any]) -> Message:
    """``message`` about the metric of payload ``p``, saying it is deprecated or retired (unchanged if active)."""
    line = status_line(p)
    if not line:
        return message
    tag = " · " + status_tag(p)
    blocks = list(message.blocks)
    at = 0
    if blocks and blocks[0].get("type") == "header":
        text = dict(blocks[0]["text"])
        text["text"] = cut(str(text.get("text") or ""), MAX_HEADER - len(tag)) + tag
        blocks[0] = {**blocks[0], "text": text}
        at = 1
    blocks.insert(at, section(line))
    return Message(text=cut(f"{plain(line)} {message.text}", MAX_FALLBACK), blocks=blocks)


def render_metric_deprecated(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    """The notice: the metric is deprecated, what to read instead, what is built on it, why you are told."""
    p = payloads[0]
    key = text_of(p.get("metric_key"))
    name = text_of(p.get("metric_name")) or key
    replaced_by, replacement_name = text_of(p.get("replaced_by")), text_of(p.get("replaced_by_name"))
    owner = esc(text_of(p.get("owner_name")) or text_of(p.get("owner")) or "?")
    if replaced_by:
        header = "⚠️ " + _(
            "Deprecated: {metric} — use {replacement}",
            metric=name,
            replacement=replacement_name or replaced_by,
        )
        summary = _(
            "{metric} is deprecated: it is still computed and published for now, and will be retired. "
            "Use {replacement} instead.",
            metric=mrkdwn_metric(p),
            replacement=_replacement(replaced_by, replacement_name),
        )
    else:
        header = "⚠️ " + _("Deprecated: {metric}", metric=name)
        summary = _(
            "{metric} is deprecated: it is still computed and published for now, and will be retired. "
            "No replacement is named: ask its owner, {owner}.",
            metric=mrkdwn_metric(p),
            owner=owner,
        )
    lines = []
    downstream = [str(k) for k in p.get("downstream") or []]
    if downstream:
        built = esc(", ".join(downstream[:top]) + (" …" if len(downstream) > top else ""))
        lines.append(
            _(
                "*Built on it:* {metrics} — move them to {replacement} before it is retired.",
                metrics=built,
                replacement=f"`{esc(replaced_by)}`",
            )
            if replaced_by
            else _(
                "*Built on it:* {metrics} — they must stop reading it before it is retired.", metrics=built
            )
        )
    if replaced_by:
        lines.append(
            _(
                "*In BI:* `metrics.{key}` keeps its published history; new numbers are in `metrics.{replacement}`.",
                key=esc(key),
                replacement=esc(replaced_by),
            )
        )
    if p.get("why"):
        lines.append("_" + _("You are told because {why}.", why=esc("; ".join(p["why"]))) + "_")
    link = (dictionary_url(base_url, key) or "").split("#", 1)[0] or None  # the page itself, not its versions
    return alert_message(
        header=header,
        summary=summary,
        lines=lines,
        more="",
        context=["<" + link + "|" + _("The metric’s page") + ">" if link else ""],
        link=None,
        fallback=(
            _(
                "{metric} ({key}) is deprecated — use {replacement}.",
                metric=name,
                key=key,
                replacement=replaced_by,
            )
            if replaced_by
            else _("{metric} ({key}) is deprecated.", metric=name, key=key)
        ),
    )
