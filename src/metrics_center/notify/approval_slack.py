"""The Slack side of an approval interaction: replying to the person, the reason form, the clicked message.

Replies are ephemeral, through the interaction's ``response_url`` (only Slack's own hooks host, or the
host of the connection's ``base_url``, is trusted), else ``chat.postEphemeral``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from metrics_center.notify.approval_messages import (
    REASON_BLOCK,
    REASON_CALLBACK,
    REASON_INPUT,
    REMINDER,
    REQUEST,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import ApprovalStage, MetricSpec

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """Ephemeral answers to the person who clicked: through ``response_url``, else ``chat.postEphemeral``."""

    client: Any
    user: str
    response_url: str | None
    channel: str | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, client: Any) -> Reply:
        channel, _ = message_location(payload)
        return cls(
            client=client,
            user=str((payload.get("user") or {}).get("id") or ""),
            response_url=payload.get("response_url"),
            channel=channel,
        )

    def say(self, text: str) -> None:
        if self.response_url and trusted(self.response_url, self.client):
            try:
                from slack_sdk.webhook import WebhookClient

                response = WebhookClient(self.response_url, timeout=10).send(
                    text=text, response_type="ephemeral", replace_original=False
                )
                if response.status_code < 300:
                    return
                log.warning("response_url answered HTTP %s", response.status_code)
            except Exception as exc:
                log.warning("response_url failed (%s); trying chat.postEphemeral", exc)
        if self.client is not None and self.channel and self.user:
            try:
                self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text)
                return
            except Exception as exc:
                log.warning("chat.postEphemeral failed: %s", slack_error(exc))
        log.warning("could not tell Slack user %s: %s", self.user, text)


def trusted(url: str, client: Any) -> bool:
    """Slack's own hooks host, or the host of the connection's ``base_url`` (a proxy, the tests' stub)."""
    target = urlsplit(url)
    if target.scheme == "https" and target.hostname == "hooks.slack.com":
        return True
    base = urlsplit(str(getattr(client, "base_url", "") or ""))
    return bool(base.hostname) and (target.scheme, target.hostname, target.port) == (
        base.scheme,
        base.hostname,
        base.port,
    )


def message_location(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    return channel, ts


def request_payload(engine: Engine, *, channel: str | None, ts: str | None) -> dict[str, Any] | None:
    """The outbox payload of the request (or reminder) message at ``channel``/``ts``."""
    import sqlalchemy as sa

    from metrics_center.mart.tables import notification as n

    if not channel or not ts:
        return None
    with engine.connect() as conn:
        payload = conn.execute(
            sa.select(n.c.payload)
            .where(n.c.slack_channel == channel, n.c.slack_ts == ts, n.c.kind.in_([REQUEST, REMINDER]))
            .limit(1)
        ).scalar()
    if isinstance(payload, str):
        payload = json.loads(payload)
    return dict(payload) if isinstance(payload, dict) else None


def reason_view(
    spec: MetricSpec, stage: ApprovalStage, request: dict[str, Any], private: str
) -> dict[str, Any]:
    period = request.get("period") or ""
    return {
        "type": "modal",
        "callback_id": REASON_CALLBACK,
        "private_metadata": private,
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Reject *{stage.name}* of *{spec.name}*{f' for {period}' if period else ''}? "
                    "Nothing is published. Say why: the reason is kept with the decision.",
                },
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }


def reason_of(view: dict[str, Any]) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
    return str((values.get(REASON_INPUT) or {}).get("value") or "").strip()


def slack_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"{type(exc).__name__}: {str(exc)[:200]}"
