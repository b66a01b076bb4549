"""What a Slack click on an approval message does, once the interactions endpoint has acknowledged it.

Runs in a worker thread of the api-server (see :mod:`metrics_center.web.slack_actions`): maps the Slack
user to a person of ``_teams.yaml``, opens the reason form for Reject (``views.open``) and hands the rest —
the rules, recording the answer, the audit — to :mod:`metrics_center.web.chat_answers`; the person is told
what happened in an ephemeral message.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metrics_center.notify.approval_messages import (
    APPROVE_ACTION,
    REASON_BLOCK,
    REASON_CALLBACK,
    REJECT_ACTION,
    ActionRef,
    Decision,
    render_decided,
)
from metrics_center.notify.approval_slack import (
    Reply,
    message_location,
    reason_of,
    reason_view,
    request_payload,
    slack_error,
)
from metrics_center.web.chat_answers import HELP, ChatEnv, answer, cannot_reject, identify

if TYPE_CHECKING:
    from metrics_center.definitions.spec import ApprovalStage, MetricSpec

log = logging.getLogger(__name__)


def handle_interaction(payload: dict[str, Any]) -> None:
    """Act on one verified Slack interaction (``block_actions`` or the reason form's ``view_submission``)."""
    kind = payload.get("type")
    try:
        if kind == "block_actions":
            _on_click(payload)
        elif kind == "view_submission" and (payload.get("view") or {}).get("callback_id") == REASON_CALLBACK:
            _on_reason(payload)
    except Exception as exc:
        log.exception("Slack interaction %s failed", kind)
        Reply.from_payload(payload, client=_client_or_none()).say(
            f"⚠️ Metrics Center could not handle this click ({type(exc).__name__}: {str(exc)[:200]}); your "
            f"answer may not be recorded — check the Metrics Center page, or {HELP}."
        )


def reason_errors(payload: dict[str, Any]) -> dict[str, str] | None:
    """Inline errors for the reason form (answered synchronously, inside Slack's 3 s): None when fine."""
    view = payload.get("view") or {}
    if view.get("callback_id") != REASON_CALLBACK:
        return None
    if not reason_of(view):
        return {
            REASON_BLOCK: "Say why you reject: the reason is kept with the decision and shown to the owner."
        }
    return None


@dataclass
class SlackClicker:
    """A Slack user who clicked: ephemeral replies, and the clicked message updated with ``chat.update``."""

    env: ChatEnv
    client: Any
    reply: Reply
    at: tuple[str | None, str | None]
    via: str = "slack"

    @property
    def account(self) -> str:
        return f"slack:{self.reply.user}"

    def say(self, text: str) -> None:
        self.reply.say(text)

    def show_decided(self, *, decision: Decision) -> None:
        channel, ts = self.at
        request = request_payload(self.env.engine, channel=channel, ts=ts)
        if request is None or self.client is None or not channel or not ts:
            return
        message = render_decided(request, decision)
        try:
            self.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
        except Exception as exc:
            log.warning(
                "could not update the clicked message %s %s at once (%s); the maintenance DAG will",
                channel,
                ts,
                exc,
            )


# --- the two interactions ------------------------------------------------------------------------


def _on_click(payload: dict[str, Any]) -> None:
    action = (payload.get("actions") or [{}])[0]
    if action.get("action_id") not in (APPROVE_ACTION, REJECT_ACTION):
        return  # the link buttons also report their clicks: nothing to do
    env, client = ChatEnv.load(), _client_or_none()
    reply = Reply.from_payload(payload, client=client)
    try:
        ref = ActionRef.decode(str(action.get("value") or ""))
    except ValueError as exc:
        reply.say(f"⚠️ This button is not one Metrics Center understands ({exc}); {HELP}.")
        return
    channel, ts = message_location(payload)
    clicker = SlackClicker(env=env, client=client, reply=reply, at=(channel, ts))
    found = _identify(env, ref=ref, clicker=clicker)
    if found is None:
        return
    spec, stage, person = found
    if action["action_id"] == APPROVE_ACTION:
        answer(env, ref=ref, spec=spec, person=person, option="Approve", reason=None, clicker=clicker)
        return
    problem = cannot_reject(env, ref=ref, spec=spec, stage=stage, person=person, via="slack")
    if problem:
        reply.say(problem)
        return
    request = request_payload(env.engine, channel=channel, ts=ts) or {}
    private = json.dumps(
        {"ref": ref.encode(), "response_url": reply.response_url, "channel": channel, "ts": ts},
        separators=(",", ":"),
    )
    if client is None:
        reply.say(
            f"⚠️ The Slack connection `metrics_center_slack` is missing, so no reason form can open; {HELP}."
        )
        return
    try:
        client.views_open(
            trigger_id=payload.get("trigger_id"), view=reason_view(spec, stage, request, private)
        )
    except Exception as exc:
        reply.say(
            f"⚠️ Slack did not open the reason form ({slack_error(exc)}): click Reject again within a few "
            f"seconds, or {HELP}."
        )


def _on_reason(payload: dict[str, Any]) -> None:
    view = payload.get("view") or {}
    private = json.loads(view.get("private_metadata") or "{}")
    env, client = ChatEnv.load(), _client_or_none()
    reply = Reply(
        client=client,
        user=str((payload.get("user") or {}).get("id") or ""),
        response_url=private.get("response_url"),
        channel=private.get("channel"),
    )
    ref = ActionRef.decode(str(private.get("ref") or ""))
    clicker = SlackClicker(
        env=env, client=client, reply=reply, at=(private.get("channel"), private.get("ts"))
    )
    found = _identify(env, ref=ref, clicker=clicker)
    if found is None:
        return
    spec, _, person = found
    answer(env, ref=ref, spec=spec, person=person, option="Reject", reason=reason_of(view), clicker=clicker)


def _identify(
    env: ChatEnv, *, ref: ActionRef, clicker: SlackClicker
) -> tuple[MetricSpec, ApprovalStage, str] | None:
    user = clicker.reply.user
    person = env.teams.person_for_slack_user(user) if user else None
    return identify(
        env,
        ref=ref,
        person=person,
        clicker=clicker,
        unknown=f"🚫 Metrics Center does not know your Slack account: nobody in `_teams.yaml` has "
        f"`slack_user_id: {user}`. Ask the data team to add it to your entry, or {HELP}. Nothing was recorded.",
    )


def _client_or_none() -> Any:
    from metrics_center.notify.slack_api import slack_client

    try:
        return slack_client()
    except Exception:
        return None
