"""Approval messages (Block Kit; other chats read them as Markdown): the request, the reminder and the in-place
update after the decision.

Pure functions of stored outbox payloads (no I/O, no Airflow import), registered with
:mod:`metrics_center.notify.slack`'s renderers. The Approve / Reject buttons carry an :class:`ActionRef`
(dag, run, task, try) that the interactions endpoint reads back; rendering never raises.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metrics_center.i18n.translate import _
from metrics_center.notify.blocks import Message, cut, esc, section
from metrics_center.notify.lifecycle_messages import marked

APPROVE_ACTION = "metrics_center_approve"
REJECT_ACTION = "metrics_center_reject"
LINK_ACTIONS = frozenset({"metrics_center_page", "metrics_center_required_actions"})
REASON_CALLBACK = "metrics_center_reject_reason"
REASON_BLOCK = REASON_INPUT = "reason"
REQUEST, REMINDER, UPDATE = "approval_request", "approval_reminder", "approval_update"
_EVIDENCE_SECTIONS = 4  # at most this many 2,900-character sections of evidence per message
_TABLE_ROWS = 10  # value rows shown in Slack (the page and Airflow show all)
_SECTION = 2900


@dataclass(frozen=True, kw_only=True)
class ActionRef:
    """Which task instance try a button answers: it travels in the button's ``value``."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    def encode(self) -> str:
        return json.dumps(
            {"d": self.dag_id, "r": self.run_id, "t": self.task_id, "n": self.try_number},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, value: str) -> ActionRef:
        """Read a button value back; ValueError (saying what is wrong) for anything else."""
        try:
            data = json.loads(value)
            return cls(
                dag_id=str(data["d"]),
                run_id=str(data["r"]),
                task_id=str(data["t"]),
                try_number=int(data["n"]),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"not a Metrics Center approval button value ({exc!r})") from None

    @property
    def key(self) -> str:
        """A short stable id of this try (dedupe and group keys must fit 255 characters)."""
        raw = "\x1f".join((self.dag_id, self.run_id, self.task_id, str(self.try_number)))
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What became of a request, for the in-place update: who, what, when (and why)."""

    #: approved, rejected, approved_on_timeout, rejected_on_timeout, timed_out, refused, superseded, closed
    outcome: str
    by: str | None = None  # a person's display name
    at: datetime | None = None
    via: str | None = None  # slack, page, airflow
    reason: str | None = None
    detail: str | None = None

    def as_payload(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "by": self.by,
            "at": self.at.astimezone(UTC).isoformat() if self.at else None,
            "via": self.via,
            "reason": self.reason,
            "detail": self.detail,
        }


def render_request(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    """The request (or, with ``kind`` reminder, the reminder): evidence, buttons, links."""
    return _render(payloads, decision=None)


def render_update(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    """The request as it reads after the decision: no buttons, the decision on top."""
    first = payloads[0]
    return _render([first.get("request") or {}], decision=first.get("decision") or {})


def render_decided(request: Mapping[str, Any], decision: Decision) -> Message:
    """The same, for the interactions endpoint's immediate update of the clicked message (a deprecated or
    retired metric says so, as every message about it does)."""
    return marked(_render([dict(request)], decision=decision.as_payload()), request)


def decision_line(decision: Mapping[str, Any]) -> str:
    """``✅ Approved by Bob Li at 2026-11-27 10:02 UTC via Slack`` (mrkdwn)."""
    outcome, who = str(decision.get("outcome") or ""), esc(str(decision.get("by") or _("someone")))
    when = " " + _("at {time}", time=_when(decision.get("at"))) if decision.get("at") else ""
    via = {
        "slack": " " + _("via Slack"),
        "feishu": " " + _("via Feishu"),
        "page": " " + _("on the Metrics Center page"),
        "airflow": " " + _("in Airflow"),
    }.get(str(decision.get("via") or ""), "")
    reason = f"\n>{esc(cut(str(decision['reason']), 500))}" if decision.get("reason") else ""
    detail = esc(cut(str(decision.get("detail") or ""), 500))
    if outcome == "approved":
        line = "✅ " + _("*Approved* by *{who}*", who=who) + when + via
    elif outcome == "rejected":
        line = "❌ " + _("*Rejected* by *{who}*", who=who) + when + via
    elif outcome == "approved_on_timeout":
        line = "⌛ " + _("*Timed out*{when}: approved by default (on_timeout: approve)", when=when)
    elif outcome == "rejected_on_timeout":
        line = "⌛ " + _("*Timed out*{when}: rejected by default — nothing is published", when=when)
    elif outcome == "timed_out":
        line = "⌛ " + _("*Timed out*{when} with no answer", when=when)
    elif outcome == "refused":
        line = "🚫 " + _(
            "Answered by *{who}*{when}{via}, but the answer does not count: {detail}. Clear the approval task "
            "to ask again.",
            who=who,
            when=when,
            via=via,
            detail=detail,
        )
    elif outcome == "superseded":
        line = "↪️ " + _(
            "*Out of date*: {detail} — answer the newest message.",
            detail=detail or _("this stage was asked again"),
        )
    elif outcome == "closed":
        line = "⏹️ " + _(
            "*No longer waiting*: {detail}.",
            detail=detail or _("its run ended without an answer to this stage"),
        )
    else:
        line = _("Answered{when}: {outcome}", when=when, outcome=esc(outcome))
    return line + reason


# --- evidence ------------------------------------------------------------------------------------


def evidence_mrkdwn(markdown: str) -> list[str]:
    """The operator's Markdown evidence (up to its ``---`` rule) as Slack mrkdwn lines.

    Bold ``**x**`` becomes ``*x*``, bullets become ``•``, the values table becomes one line per row
    (the first ``_TABLE_ROWS``); the definition after ``---`` is left to the linked pages.
    """
    text = markdown.split("\n---", 1)[0].strip()
    lines: list[str] = []
    header: list[str] | None = None
    rows_shown = rows_hidden = 0
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
            elif not all(set(c) <= {"-", ":", " "} for c in cells):
                if rows_shown < _TABLE_ROWS and not cells[0].startswith("…"):
                    lines.append(_table_row(header, cells))
                    rows_shown += 1
                else:
                    rows_hidden += _hidden_rows(cells)
            continue
        if header is not None:
            if rows_hidden:
                lines.append(
                    "_" + _("… and {count} more row(s) on the Metrics Center page", count=rows_hidden) + "_"
                )
            header, rows_shown, rows_hidden = None, 0, 0
        line = esc(line)
        line = re.sub(r"\*\*(.+?)\*\*", r"*\1*", line)
        if line.startswith("- "):
            line = "• " + line[2:]
        lines.append(line)
    if header is not None and rows_hidden:
        lines.append("_" + _("… and {count} more row(s) on the Metrics Center page", count=rows_hidden) + "_")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _table_row(header: list[str], cells: list[str]) -> str:
    row = dict(zip(header, cells, strict=False))
    if {"value", "previous", "change"} <= row.keys():
        where = row.get("dimensions") or row.get("period") or ""
        return (
            f"• {esc(where)}: *{esc(row['value'])}* ("
            + _(
                "previous {previous}, change {change}",
                previous=esc(row["previous"]),
                change=esc(row["change"]),
            )
            + ")"
        )
    return "• " + " · ".join(esc(c) for c in cells if c)


def _hidden_rows(cells: list[str]) -> int:
    match = re.search(r"(\d+) more rows", " ".join(cells))
    return int(match.group(1)) if match else 1


# --- one message ---------------------------------------------------------------------------------


def _render(payloads: list[dict[str, Any]], *, decision: dict[str, Any] | None) -> Message:
    first = payloads[0] if payloads else {}
    name, period = str(first.get("metric_name") or first.get("metric_key") or _("metric")), _period(first)
    stage = str(first.get("stage") or _("approval"))
    reminder = first.get("kind") == REMINDER
    if decision is not None:
        mark = decision_line(decision).split(" ", 1)[0]
        header = f"{mark} {stage}: {name} — {period}"
    elif reminder:
        header = "⏰ " + _("Reminder: approve {metric} — {period}", metric=name, period=period)
    else:
        header = "🟡 " + _("Approve {metric} — {period}", metric=name, period=period)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(header, 150), "emoji": True}}
    ]
    if decision is not None:
        blocks.append(section(decision_line(decision)))
    blocks.append(section(_summary(payloads, decided=decision is not None, reminder=reminder)))
    for part in _split(evidence_mrkdwn(str(first.get("evidence") or ""))):
        blocks.append(section(part))
    context = _context(first)
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(context, _SECTION)}]})
    actions = _actions(first, buttons=decision is None)
    if actions:
        blocks.append({"type": "actions", "block_id": "metrics_center_approval", "elements": actions})
    return Message(text=cut(_fallback(first, decision, reminder=reminder), 3000), blocks=blocks)


def _summary(payloads: list[dict[str, Any]], *, decided: bool, reminder: bool) -> str:
    first = payloads[0] if payloads else {}
    key, version = esc(str(first.get("metric_key") or "")), first.get("version")
    stage, number, stages = (
        esc(str(first.get("stage") or "")),
        first.get("stage_number"),
        first.get("stages"),
    )
    where = (
        " (" + _("{number} of {stages}", number=number, stages=stages) + ")"
        if number and stages and stages > 1
        else ""
    )
    head = (
        f"*{esc(str(first.get('metric_name') or key))}* (`{key}`{f' v{version}' if version else ''})"
        + " · "
        + _("stage *{stage}*{where}", stage=stage, where=where)
        + " · "
        + _("period *{period}*", period=esc(_period(first)))
    )
    if decided:
        return head
    people = [str(p.get("person_name") or p.get("person") or "") for p in payloads]
    # "direct": the person has a chat id of their own (a DM); older payloads only said their Slack id.
    direct = len(payloads) == 1 and payloads[0].get("direct", payloads[0].get("slack_user_id"))
    if direct:
        who = _("{name}, your answer is needed.", name=esc(people[0]))
    else:
        who = _(
            "Asked: {people} (no chat id of theirs in _teams.yaml: posted here).",
            people=esc(", ".join(p for p in people if p)),
        )
    others = [n for n in first.get("approvers") or [] if n not in people]
    if others:
        who += " " + _("Any one of {people} may answer.", people=esc(", ".join([*people, *others])))
    deadline = ""
    if first.get("timeout_at"):
        after = {
            "reject": _("it is rejected"),
            "approve": _("it is approved"),
            "fail": _("the run fails"),
        }.get(str(first.get("on_timeout")), _("it times out"))
        by = _when(first["timeout_at"])
        deadline = "\n" + (
            _("Still waiting: answer by *{time}*; after that {after}.", time=by, after=after)
            if reminder
            else _("answer by *{time}*; after that {after}.", time=by, after=after)
        )
    return f"{head}\n{who}{deadline}"


def _context(p: Mapping[str, Any]) -> str:
    parts = []
    if p.get("version"):
        note = f": {esc(cut(str(p['change_note']), 300))}" if p.get("change_note") else ""
        parts.append(_("Definition v{version}", version=p["version"]) + note)
    if p.get("owner_name"):
        parts.append(_("owner {name}", name=esc(str(p["owner_name"]))))
    parts.append(
        _("run `{run}`, try {number}", run=esc(str(p.get("run_id") or "")), number=p.get("try_number"))
    )
    return " · ".join(parts)


def _actions(p: Mapping[str, Any], *, buttons: bool) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    if buttons:
        try:
            value = ActionRef(
                dag_id=str(p["dag_id"]),
                run_id=str(p["run_id"]),
                task_id=str(p["task_id"]),
                try_number=int(p["try_number"]),
            ).encode()
        except (KeyError, TypeError, ValueError):
            value = None
        if value is not None:
            elements += [
                _button(_("Approve"), APPROVE_ACTION, value=value, style="primary"),
                _button(_("Reject…"), REJECT_ACTION, value=value, style="danger"),
            ]
    if p.get("page_url"):
        elements.append(_button("Metrics Center", "metrics_center_page", url=str(p["page_url"])))
    if p.get("actions_url"):
        elements.append(
            _button(
                _("Airflow Required Actions"), "metrics_center_required_actions", url=str(p["actions_url"])
            )
        )
    return elements


def _button(
    text: str, action_id: str, *, value: str | None = None, url: str | None = None, style: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
    }
    if value is not None:
        button["value"] = value
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    return button


def _fallback(p: Mapping[str, Any], decision: dict[str, Any] | None, *, reminder: bool) -> str:
    name = f"{p.get('metric_name') or p.get('metric_key')} ({p.get('metric_key')})"
    what = _("{metric} {period}, stage {stage}", metric=name, period=_period(p), stage=p.get("stage"))
    if decision is not None:
        return f"{_plain(decision_line(decision))} — {what}"
    first = next((line for line in evidence_mrkdwn(str(p.get("evidence") or ""))[1:] if line), "")
    ask = _("Reminder: approval still needed") if reminder else _("Approval needed")
    return f"{ask}: {what}. {_plain(first)}"


def _split(lines: list[str]) -> list[str]:
    """Lines packed into sections of at most ~2,900 characters, at most ``_EVIDENCE_SECTIONS`` of them."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        line = cut(line, _SECTION - 100)
        if current and size + len(line) + 1 > _SECTION - 100:
            parts.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current and any(current):
        parts.append("\n".join(current))
    if len(parts) > _EVIDENCE_SECTIONS:
        parts = [
            *parts[: _EVIDENCE_SECTIONS - 1],
            "_" + _("… the rest of the evidence is on the Metrics Center page") + "_",
        ]
    return [p for p in parts if p.strip()]


def _period(p: Mapping[str, Any]) -> str:
    return str(p.get("period") or p.get("run_id") or "")


def _when(value: Any) -> str:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plain(mrkdwn: str) -> str:
    return (
        mrkdwn.replace("*", "")
        .replace("`", "")
        .replace("• ", "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )
