"""The seam between the outbox and a chat tool: what every channel (Slack, Feishu, DingTalk, WeCom, e-mail,
the local inbox) does for :mod:`metrics_center.notify.delivery_run`.

The outbox, its dedupe keys, claims, retries, backoff, pacing and the recovery after an interrupted
delivery are the same for every channel; a channel only renders a group of notifications, posts it,
edits a posted message, and says how an unknown outcome can be settled:

- ``searchable``: its history can be searched for the delivery token (Slack): found → delivered;
- ``idempotent``: posting again with the same token is dropped by the platform (Feishu's ``uuid``, for an
  hour): the group is simply posted again under its token;
- neither (DingTalk and WeCom robots, e-mail): the platform cannot be asked, so the group is posted again —
  at least once, never lost; the rare duplicate carries the same reference line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from metrics_center.notify.blocks import Item
from metrics_center.notify.outcomes import Outcome, Posted


class Channel(Protocol):
    """One chat tool, configured (its connection found) for one delivery call."""

    name: str
    #: Seconds between two messages to one address (the platform's rate limit, with room).
    interval: float
    searchable: bool
    idempotent: bool

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Any:
        """The message for one group (any kinds), in this channel's format."""

    def post(self, *, address: str, message: Any, token: str) -> Outcome:
        """Send ``message``; ``token`` is the group's delivery token (kept with the message where possible)."""

    def edit(self, *, conversation: str, message_id: str, address: str, message: Any) -> Outcome:
        """Show ``message`` in place of a posted one (approval decided); a channel that cannot edit posts it."""

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        """Only when ``searchable``: the message carrying ``token``, or None; raises when it cannot look."""
