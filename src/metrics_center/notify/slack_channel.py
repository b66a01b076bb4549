"""Slack as a :class:`~metrics_center.notify.channels.Channel`: Block Kit messages through the Web API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metrics_center.notify.blocks import Item, Message
from metrics_center.notify.outcomes import Outcome, Posted
from metrics_center.notify.slack import render_group
from metrics_center.notify.slack_api import EVENT_TYPE, find_token, post, resolve_conversation, update


@dataclass
class SlackChannel:
    client: Any
    interval: float = 1.0  # Slack allows about one message per second per channel
    name: str = "slack"
    searchable: bool = True
    idempotent: bool = False

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Message:
        return render_group(items, base_url=base_url, locale=locale)

    def post(self, *, address: str, message: Message, token: str) -> Outcome:
        return post(
            self.client,
            channel=address,
            text=message.text,
            blocks=message.blocks,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"token": token}},
        )

    def edit(self, *, conversation: str, message_id: str, address: str, message: Message) -> Outcome:
        return update(
            self.client, channel=conversation, ts=message_id, text=message.text, blocks=message.blocks
        )

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        channel = conversation or resolve_conversation(self.client, address=address)
        ts = find_token(self.client, channel=channel, token=token, since=since)
        return Posted(channel=channel, ts=ts) if ts is not None else None
