"""What a Feishu / Lark card click (Approve / Reject) does, once :mod:`metrics_center.web.feishu_actions`
has verified and acknowledged it.

The clicker is mapped to a person of ``_teams.yaml`` by ``feishu_open_id`` (or ``feishu_union_id``); from
there the rules are Slack's and the page's (:mod:`metrics_center.web.chat_answers`). The person is told
what happened in a direct message from the app, and the clicked card is updated for everyone who sees it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metrics_center.notify.approval_messages import ActionRef, Decision, render_decided
from metrics_center.notify.approval_slack import request_payload
from metrics_center.notify.feishu_cards import APPROVE, REASON_FIELD, REJECT, notice_card
from metrics_center.notify.markdown import from_blocks, markdown_of
from metrics_center.web.chat_answers import HELP, ChatEnv, answer, cannot_reject, identify

log = logging.getLogger(__name__)


def early_toast(event: dict[str, Any]) -> dict[str, str] | None:
    """A refusal answered inside Feishu's 3 s, before anything is recorded; None to go on."""
    action = _action(event)
    choice = (action.get("value") or {}).get("action")
    if choice not in (APPROVE, REJECT):
        return {"type": "info", "content": "Nothing to do for this button."}
    if choice == REJECT and not _reason(action):
        return {
            "type": "error",
            "content": "Write why you reject in the Reason field, then click Reject: the reason is kept with "
            "the decision and shown to the owner.",
        }
    return None


def handle_card_action(event: dict[str, Any]) -> None:
    """Act on one verified ``card.action.trigger`` event (in a worker thread)."""
    from metrics_center.notify.feishu import cached_feishu_app, feishu_client

    body = event.get("event") or {}
    operator = body.get("operator") or {}
    context = body.get("context") or {}
    app = cached_feishu_app()
    clicker = FeishuClicker(
        # Built when first needed (a reply, the card update): lark-oapi takes seconds to import, and the
        # answer is recorded before that.
        make_client=(lambda: feishu_client(app)) if app is not None else None,
        open_id=str(operator.get("open_id") or ""),
        union_id=str(operator.get("union_id") or "") or None,
        chat=context.get("open_chat_id"),
        message_id=context.get("open_message_id"),
        event_id=str((event.get("header") or {}).get("event_id") or ""),
    )
    try:
        _on_click(clicker, _action(event))
    except Exception as exc:
        log.exception("Feishu card action failed")
        clicker.say(
            f"⚠️ Metrics Center could not handle this click ({type(exc).__name__}: {str(exc)[:200]}); your "
            f"answer may not be recorded — check the Metrics Center page, or {HELP}."
        )


@dataclass
class FeishuClicker:
    """A Feishu user who clicked: told in a direct message; the clicked card patched for everyone."""

    make_client: Callable[[], Any] | None
    open_id: str
    union_id: str | None
    chat: str | None
    message_id: str | None
    event_id: str
    env: ChatEnv | None = None
    via: str = "feishu"
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None and self.make_client is not None:
            self._client = self.make_client()
        return self._client

    @property
    def account(self) -> str:
        return f"feishu:{self.open_id or self.union_id}"

    def say(self, text: str) -> None:
        from metrics_center.notify.feishu import send_card
        from metrics_center.notify.outcomes import Posted

        if self.client is None or not (self.open_id or self.union_id):
            log.warning("could not tell Feishu user %s: %s", self.account, text)
            return
        # One uuid per event and text: a retried worker does not tell the person twice.
        uuid = hashlib.sha1(f"{self.event_id}|{text}".encode()).hexdigest()[:40]
        outcome = send_card(
            self.client,
            address=self.open_id or str(self.union_id),
            content=notice_card("Metrics Center", markdown_of(text), template=_template(text)),
            uuid=uuid,
        )
        if not isinstance(outcome, Posted):
            log.warning("could not tell Feishu user %s (%s): %s", self.account, outcome, text)

    def show_decided(self, *, decision: Decision) -> None:
        from metrics_center.notify.feishu import FeishuChannel

        if self.env is None or self.client is None or not self.chat or not self.message_id:
            return
        request = request_payload(self.env.engine, channel=self.chat, ts=self.message_id)
        if request is None:
            return
        rich = from_blocks(render_decided(request, decision))
        outcome = FeishuChannel(client=self.client).edit(
            conversation=self.chat, message_id=self.message_id, address=self.chat, message=rich
        )
        log.info("clicked Feishu card %s updated at once: %s", self.message_id, outcome)


def _on_click(clicker: FeishuClicker, action: dict[str, Any]) -> None:
    value = action.get("value") or {}
    env = ChatEnv.load()
    clicker.env = env
    try:
        ref = ActionRef.decode(str(value.get("ref") or ""))
    except ValueError as exc:
        clicker.say(f"⚠️ This button is not one Metrics Center understands ({exc}); {HELP}.")
        return
    person = env.teams.person_for_feishu_user(open_id=clicker.open_id or None, union_id=clicker.union_id)
    found = identify(
        env,
        ref=ref,
        person=person,
        clicker=clicker,
        unknown=f"🚫 Metrics Center does not know your Feishu account: nobody in `_teams.yaml` has "
        f"`feishu_open_id: {clicker.open_id}`. Ask the data team to add it to your entry, or {HELP}. "
        "Nothing was recorded.",
    )
    if found is None:
        return
    spec, stage, person = found
    if value.get("action") == APPROVE:
        answer(env, ref=ref, spec=spec, person=person, option="Approve", reason=None, clicker=clicker)
        return
    problem = cannot_reject(env, ref=ref, spec=spec, stage=stage, person=person, via="feishu")
    if problem:
        clicker.say(problem)
        return
    answer(env, ref=ref, spec=spec, person=person, option="Reject", reason=_reason(action), clicker=clicker)


def _action(event: dict[str, Any]) -> dict[str, Any]:
    action = (event.get("event") or {}).get("action")
    return action if isinstance(action, dict) else {}


def _reason(action: dict[str, Any]) -> str:
    form = action.get("form_value") or {}
    return str(form.get(REASON_FIELD) or "").strip() if isinstance(form, dict) else ""


def _template(text: str) -> str:
    return next((colour for mark, colour in _COLOURS if text.startswith(mark)), "blue")


_COLOURS = (("✅", "green"), ("🚫", "red"), ("⚠️", "orange"))
