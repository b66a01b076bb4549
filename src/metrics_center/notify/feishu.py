"""Feishu / Lark as a :class:`~metrics_center.notify.channels.Channel`, with the official SDK ``lark-oapi``.

The connection ``metrics_center_feishu`` holds the app: ``login`` = App ID, ``password`` = App Secret,
``host`` = ``feishu`` (open.feishu.cn, the default), ``lark`` (open.larksuite.com) or a base URL; extras
``verification_token`` and ``encrypt_key`` are the callback's (:mod:`metrics_center.web.feishu_actions`).

Messages are interactive cards sent with ``im/v1/messages`` to a chat (``oc_…``), an open id (``ou_…``) or a
union id (``on_…``). Each is sent with the group's delivery token as ``uuid``: Feishu drops a second message
with the same uuid within an hour, so a delivery interrupted after sending is simply sent again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metrics_center import settings
from metrics_center.notify.blocks import Item
from metrics_center.notify.feishu_cards import card
from metrics_center.notify.markdown import Rich, from_blocks
from metrics_center.notify.outcomes import Failed, Outcome, Posted, RateLimited
from metrics_center.notify.slack import render_group

HTTP_TIMEOUT = 20
DOMAINS = {
    "": "https://open.feishu.cn",
    "feishu": "https://open.feishu.cn",
    "lark": "https://open.larksuite.com",
}
#: "too many requests" codes: the API's own (99991400) and the per-chat message limit (230020).
RATE_LIMITED = frozenset({99991400, 230020})
#: The app's credentials are wrong: nothing can be sent until the connection is fixed.
FATAL = frozenset({99991663, 99991664, 99991661, 99991668, 10003, 10014})
_FIXES = {
    230002: "add the Metrics Center bot to the group chat",
    230013: "the bot cannot reach this person: widen the app's availability (可用范围) to them",
    230001: "the receive id is wrong: check feishu_chat_id / feishu_open_id in _teams.yaml",
    99991672: "give the app the im:message:send_as_bot permission and publish a new version",
    10003: f"check App ID / App Secret in connection {settings.FEISHU_CONN_ID}",
    10014: f"check the App Secret in connection {settings.FEISHU_CONN_ID}",
}


@dataclass(frozen=True)
class FeishuApp:
    """The app of the Feishu connection."""

    app_id: str
    app_secret: str
    domain: str
    verification_token: str | None
    encrypt_key: str | None


def feishu_app(conn_id: str = settings.FEISHU_CONN_ID) -> FeishuApp | None:
    """The app from the Airflow connection; None when there is none (or it lacks id and secret)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    if not conn.login or not conn.password:
        return None
    host = (conn.host or "").strip().rstrip("/")
    domain = DOMAINS.get(host.lower()) or (host if "://" in host else f"https://{host}")
    if conn.port and "://" in host and host.count(":") == 1:
        domain = f"{domain}:{conn.port}"
    extra = conn.extra_dejson
    return FeishuApp(
        app_id=conn.login,
        app_secret=conn.password,
        domain=domain,
        verification_token=extra.get("verification_token") or None,
        encrypt_key=extra.get("encrypt_key") or None,
    )


#: Seconds the app read from its connection is kept by the callback (a rotated key applies after this).
APP_TTL_S = 60.0
_cached: tuple[float, FeishuApp | None] | None = None


def cached_feishu_app() -> FeishuApp | None:
    """:func:`feishu_app`, re-read at most every :data:`APP_TTL_S` seconds."""
    global _cached
    cached = _cached
    if cached is not None and time.monotonic() - cached[0] < APP_TTL_S:
        return cached[1]
    _cached = (time.monotonic(), feishu_app())
    return _cached[1]


def forget_cached_feishu_app() -> None:
    """Read the connection again on the next callback (after changing it)."""
    global _cached
    _cached = None


def feishu_client(app: FeishuApp) -> Any:
    import lark_oapi as lark

    return (
        lark.Client.builder()
        .app_id(app.app_id)
        .app_secret(app.app_secret)
        .domain(app.domain)
        .timeout(HTTP_TIMEOUT)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )


def receive_id_type(address: str) -> str:
    """Which kind of id ``address`` is, as ``im/v1/messages`` wants it named."""
    if address.startswith("oc_"):
        return "chat_id"
    if address.startswith("on_"):
        return "union_id"
    if address.startswith("ou_"):
        return "open_id"
    return "email" if "@" in address else "user_id"


@dataclass
class FeishuChannel:
    client: Any
    interval: float = 0.25  # 5 messages a second per chat
    name: str = "feishu"
    searchable: bool = False
    idempotent: bool = True  # the uuid

    def render(self, items: Sequence[Item], *, base_url: str | None, locale: str | None = None) -> Rich:
        return from_blocks(render_group(items, base_url=base_url, locale=locale), locale=locale)

    def post(self, *, address: str, message: Rich, token: str) -> Outcome:
        return send_card(self.client, address=address, content=card(message, token=token), uuid=token)

    def edit(self, *, conversation: str, message_id: str, address: str, message: Rich) -> Outcome:
        from lark_oapi.api.im.v1 import PatchMessageRequest, PatchMessageRequestBody

        request = (
            PatchMessageRequest.builder()
            .message_id(message_id)
            .request_body(
                PatchMessageRequestBody.builder()
                .content(json.dumps(card(message), ensure_ascii=False))
                .build()
            )
            .build()
        )
        try:
            response = self.client.im.v1.message.patch(request)
        except Exception as exc:  # updating a card is idempotent: an unknown outcome is tried again
            return Failed(error=f"no answer from Feishu ({type(exc).__name__})", certain=False)
        return _outcome(response, address=address, done=Posted(channel=conversation, ts=message_id))

    def find(
        self, *, address: str, conversation: str | None, token: str, since: datetime | None
    ) -> Posted | None:
        return None


def send_card(client: Any, *, address: str, content: dict[str, Any], uuid: str | None = None) -> Outcome:
    """``im/v1/messages`` of one interactive card; the outcome classified."""
    from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

    body = (
        CreateMessageRequestBody.builder()
        .receive_id(address)
        .msg_type("interactive")
        .content(json.dumps(content, ensure_ascii=False))
    )
    if uuid:
        body = body.uuid(uuid[:50])
    request = (
        CreateMessageRequest.builder()
        .receive_id_type(receive_id_type(address))
        .request_body(body.build())
        .build()
    )
    try:
        response = client.im.v1.message.create(request)
    except Exception as exc:  # a timeout after Feishu took it: sent again under the same uuid, dropped there
        return Failed(error=f"no answer from Feishu ({type(exc).__name__}: {str(exc)[:200]})", certain=False)
    data = getattr(response, "data", None)
    done = Posted(
        channel=str(getattr(data, "chat_id", None) or address),
        ts=str(getattr(data, "message_id", None) or uuid or ""),
    )
    return _outcome(response, address=address, done=done)


def _outcome(response: Any, *, address: str, done: Posted) -> Outcome:
    if response.success():
        return done
    code = int(response.code or -1)
    status = getattr(getattr(response, "raw", None), "status_code", None)
    if code in RATE_LIMITED or status == 429:
        return RateLimited(retry_after=_retry_after(response), reason=f"code {code}, HTTP {status}")
    if status is not None and status >= 500:
        return Failed(
            error=f"Feishu answered HTTP {status} ({code}); it may have sent the message", certain=False
        )
    fix = _FIXES.get(code, "see the error code in Feishu's server API error codes")
    return Failed(
        error=f"Feishu refused the message to {address}: {code} {str(response.msg or '')[:200]} — {fix}",
        certain=True,
        fatal=code in FATAL,
    )


def _retry_after(response: Any) -> float:
    headers = getattr(getattr(response, "raw", None), "headers", None) or {}
    for name in ("x-ogw-ratelimit-reset", "Retry-After", "retry-after"):
        value = headers.get(name) if hasattr(headers, "get") else None
        if value:
            try:
                return max(float(value), 1.0)
            except ValueError:
                break
    return 1.0
