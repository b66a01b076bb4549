"""What a chat platform answered to one post or edit, in the outbox's terms (every channel returns these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Posted:
    """The platform accepted the message: where it is, to edit it later.

    ``channel``: the conversation id (Slack channel, Feishu chat…); ``ts``: the message id (Slack ``ts``,
    Feishu ``message_id``; webhook robots return none, so it is the delivery token there).
    """

    channel: str
    ts: str


@dataclass(frozen=True, kw_only=True)
class RateLimited:
    """The platform refused to look at it (Slack's 429, DingTalk 130101, WeCom 45009, Feishu 99991400):
    nothing was posted; try again after ``retry_after`` seconds."""

    retry_after: float
    reason: str = "HTTP 429"  #: what the platform answered, for the row's ``last_error``


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The platform refused the message, or its outcome is unknown."""

    error: str
    certain: bool  # True: surely not posted; False: it may have been
    fatal: bool = False  # the credentials or the app are wrong: stop sending on this channel for this call


Outcome = Posted | RateLimited | Failed
