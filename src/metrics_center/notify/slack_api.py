"""Slack Web API for delivery: the client, posting and updating (outcome classified), channel lookup, token search.

slack-sdk and the Airflow Slack provider are imported only when a function needs them, never at import.
Nothing here touches the outbox: :mod:`metrics_center.notify.deliver` decides what an outcome means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from metrics_center import settings
from metrics_center.notify.outcomes import Failed, Posted, RateLimited

__all__ = ["EVENT_TYPE", "Failed", "Posted", "RateLimited", "find_token", "post", "slack_client", "update"]

#: ``metadata.event_type`` of every message we post; ``event_payload.token`` is the row's delivery token.
EVENT_TYPE = "metrics_center_notification"
#: Seconds slack-sdk waits for Slack; a claim's lease must outlast it by far.
HTTP_TIMEOUT = 20
_FATAL = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "missing_scope"}
    | {"no_permission", "not_allowed_token_type", "team_access_not_granted", "ekm_access_denied"}
)
_FIXES = {
    "channel_not_found": "check the recipient's slack_channel / slack_user_id in _teams.yaml",
    "not_in_channel": "invite the Slack app to the channel (/invite @your-app)",
    "is_archived": "unarchive the channel, or point _teams.yaml at another one",
    "invalid_auth": f"set a valid bot token (xoxb-…) as the password of connection {settings.SLACK_CONN_ID}",
    "not_authed": f"set a bot token (xoxb-…) as the password of connection {settings.SLACK_CONN_ID}",
    "token_revoked": f"reinstall the Slack app and update connection {settings.SLACK_CONN_ID}",
    "missing_scope": "give the Slack app the scopes listed in README → Notifications, then reinstall it",
    "invalid_blocks": "a rendering bug in metrics_center.notify.slack: report it with the notification ids",
    "msg_too_long": "a rendering bug in metrics_center.notify.slack: report it with the notification ids",
    "message_not_found": "the message was deleted in Slack; delete this update or leave it to die",
    "cant_update_message": "only messages the app posted can be updated; was the token changed?",
}
_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")


def slack_client(conn_id: str = settings.SLACK_CONN_ID) -> Any | None:
    """slack-sdk's ``WebClient`` from the Airflow connection (its ``base_url`` extra included); None if absent.

    slack-sdk's own retries are off: a connection reset after Slack received a post would post it twice.
    """
    from airflow.providers.slack.hooks.slack import SlackHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return SlackHook(slack_conn_id=conn_id, retry_handlers=[], timeout=HTTP_TIMEOUT).client
    except AirflowNotFoundException:
        return None


def post(
    client: Any, *, channel: str, text: str, blocks: list[dict], metadata: dict
) -> Posted | RateLimited | Failed:
    """``chat.postMessage``, its outcome classified: posted, rate limited, refused (certain) or unknown."""
    try:
        response = client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            metadata=metadata,
            unfurl_links=False,
            unfurl_media=False,
        )
    except Exception as exc:
        return _failure(exc, method="chat.postMessage", channel=channel, done="posted")
    return Posted(channel=response["channel"], ts=response["ts"])


def update(
    client: Any, *, channel: str, ts: str, text: str, blocks: list[dict]
) -> Posted | RateLimited | Failed:
    """``chat.update`` of the app's own message ``ts`` in ``channel`` (a conversation id), classified like
    :func:`post`. Updating is idempotent: an unknown outcome is simply tried again."""
    try:
        response = client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
    except Exception as exc:
        return _failure(exc, method="chat.update", channel=channel, done="updated")
    return Posted(channel=response.get("channel") or channel, ts=response.get("ts") or ts)


def _failure(exc: Exception, *, method: str, channel: str, done: str) -> RateLimited | Failed:
    from urllib.error import URLError

    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        code = str(data.get("error") or f"HTTP {status}")
        if status == 429:
            return RateLimited(retry_after=_retry_after(exc.response.headers))
        if status >= 500:
            return Failed(
                error=f"Slack answered HTTP {status} ({code[:200]}); it may have {done} the message",
                certain=False,
            )
        fix = _FIXES.get(code, f"see https://api.slack.com/methods/{method}#errors")
        return Failed(
            error=f"Slack refused the message to {channel}: {code} — {fix}",
            certain=True,
            fatal=code in _FATAL,
        )
    if isinstance(exc, URLError):
        refused = isinstance(exc.reason, ConnectionRefusedError)
        return Failed(
            error=f"cannot reach Slack ({describe(exc)}); check the connection's base_url", certain=refused
        )
    # timeouts, resets: Slack may have the message
    return Failed(
        error=f"no answer from Slack ({describe(exc)}); it may have {done} the message", certain=False
    )


def resolve_conversation(client: Any, *, address: str) -> str:
    """The conversation id ``conversations.history`` needs, for a channel name, id or user id, asked of Slack."""
    if _CONVERSATION_ID.fullmatch(address):
        return address
    if _USER_ID.fullmatch(address):
        return client.conversations_open(users=address)["channel"]["id"]
    name = address.removeprefix("#")
    for page in client.conversations_list(
        types="public_channel,private_channel", exclude_archived=True, limit=1000
    ):
        for channel in page.get("channels") or []:
            if channel.get("name") == name:
                return channel["id"]
    raise LookupError(f"no channel named {address!r} visible to the Slack app")


def find_token(client: Any, *, channel: str, token: str, since: datetime | None) -> str | None:
    """The ``ts`` of the message carrying ``token`` in its metadata, posted since ``since``; None if none."""
    # 10 minutes earlier for clock skew between us and Slack; no ``since``: the whole history.
    oldest = 0.0 if since is None else max((since - timedelta(minutes=10)).timestamp(), 0)
    pages = client.conversations_history(
        channel=channel, oldest=f"{oldest:.6f}", include_all_metadata=True, limit=200
    )
    for page in pages:
        for message in page.get("messages") or []:
            metadata = message.get("metadata") or {}
            if (
                metadata.get("event_type") == EVENT_TYPE
                and (metadata.get("event_payload") or {}).get("token") == token
            ):
                return message["ts"]
    return None


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters), for error texts stored on rows."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")


def _retry_after(headers: Mapping[str, Any]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value[0] if isinstance(value, list) else value), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0
