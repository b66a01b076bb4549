"""Feishu / Lark card actions: ``POST /metrics-center/feishu/card`` (Approve / Reject on a request card).

Configure it in the Feishu developer console as the app's card callback (回调配置 → 卡片回传交互,
``card.action.trigger``), with an **Encrypt Key** and the **Verification Token** copied into the extras
``encrypt_key`` and ``verification_token`` of the ``metrics_center_feishu`` connection. Like the Slack
route, Airflow's auth does not guard it; Feishu's own scheme does, as documented:

- the body may be encrypted (``{"encrypt": …}``, AES-256-CBC with the SHA-256 of the Encrypt Key);
- ``X-Lark-Signature`` = ``sha256(X-Lark-Request-Timestamp + X-Lark-Request-Nonce + encrypt_key + body)``;
- the event's ``header.token`` is the Verification Token;
- a request more than 5 minutes from our clock is stale; an event id seen before is a replay (remembered in
  the mart, so every api-server worker agrees).

Refusals are answered with the reason and kept in ``chat_request_refusal``. The ``url_verification``
challenge Feishu sends when the URL is saved is answered once its token matches. A verified click is
acknowledged at once with a toast (Feishu wants an answer within 3 s); the answer itself is recorded in a
worker thread (:mod:`metrics_center.web.feishu_answers`), which then tells the person and updates the card.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from metrics_center import settings
from metrics_center.notify.feishu import cached_feishu_app, forget_cached_feishu_app

__all__ = ["check_signature", "decrypt", "forget_cached_feishu_app", "router"]

log = logging.getLogger(__name__)
router = APIRouter()

STALE_S = 300
MAX_BODY = 1_000_000


@router.post("/feishu/card", include_in_schema=False)
async def feishu_card(request: Request) -> Response:
    import anyio

    from metrics_center.web.slack_actions import in_flight

    with in_flight():
        length = request.headers.get("content-length") or ""
        if length.isdigit() and int(length) > MAX_BODY:
            return await _refuse(
                413, f"request body over {MAX_BODY} bytes: not a Feishu callback", request, b""
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            return await _refuse(
                413, f"request body over {MAX_BODY} bytes: not a Feishu callback", request, b""
            )
        app = await anyio.to_thread.run_sync(cached_feishu_app)
        if app is None or not app.encrypt_key or not app.verification_token:
            return await _refuse(
                503,
                f"the Feishu callback is not configured: set App ID / App Secret and the extras encrypt_key and "
                f"verification_token (developer console → 事件与回调 → 加密策略) on connection "
                f"{settings.FEISHU_CONN_ID}",
                request,
                body,
            )
        try:
            event = decrypt(body, encrypt_key=app.encrypt_key)
        except ValueError as exc:
            return await _refuse(400, f"unreadable callback body: {exc}", request, body)
        if event.get("type") == "url_verification":
            if not hmac.compare_digest(str(event.get("token") or ""), app.verification_token):
                return await _refuse(401, "url_verification with the wrong verification token", request, body)
            return JSONResponse({"challenge": event.get("challenge")})
        problem = check_signature(
            encrypt_key=app.encrypt_key,
            body=body,
            timestamp=request.headers.get("x-lark-request-timestamp"),
            nonce=request.headers.get("x-lark-request-nonce"),
            signature=request.headers.get("x-lark-signature"),
            now=time.time(),
        )
        if problem:
            return await _refuse(401, problem, request, body)
        header = event.get("header") or {}
        if not hmac.compare_digest(str(header.get("token") or ""), app.verification_token):
            return await _refuse(
                401, "invalid verification token: the event's header.token is not this app's", request, body
            )
        if header.get("event_type") != "card.action.trigger":
            return JSONResponse({})  # another event the app subscribed to: acknowledged, ignored
        event_id = str(header.get("event_id") or "")
        if not event_id:
            return await _refuse(400, "no header.event_id: not a card.action.trigger event", request, body)
        stamp = int(request.headers.get("x-lark-request-timestamp") or 0)
        fresh = await anyio.to_thread.run_sync(partial(_remember, f"feishu:{event_id}", stamp))
        if not fresh:
            return await _refuse(401, "replayed request: this event was already received", request, body)
        from metrics_center.web.feishu_answers import early_toast, handle_card_action
        from metrics_center.web.slack_actions import submit

        toast = early_toast(event)
        if toast is not None:  # refused before anything is recorded (Reject without a reason)
            return JSONResponse({"toast": toast})
        submit(event, work=handle_card_action)
        return JSONResponse({"toast": {"type": "info", "content": "Received: recording your answer…"}})


def decrypt(body: bytes, *, encrypt_key: str) -> dict[str, Any]:
    """The callback's JSON, decrypted when Feishu encrypted it (``{"encrypt": …}``)."""
    try:
        outer = json.loads(body)
    except ValueError as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(outer, dict):
        raise ValueError("not a JSON object")
    if "encrypt" not in outer:
        return outer
    try:
        inner = json.loads(_aes_decrypt(str(outer["encrypt"]), key=encrypt_key))
    except Exception as exc:
        raise ValueError("cannot decrypt it with this app's encrypt_key") from exc
    if not isinstance(inner, dict):
        raise ValueError("the decrypted body is not a JSON object")
    return inner


def _aes_decrypt(sealed: str, *, key: str) -> str:
    """Feishu's encryption: base64(IV + AES-256-CBC(PKCS#7 body)), the key the SHA-256 of the Encrypt Key.

    Done with pycryptodome directly: importing ``lark_oapi`` takes ~5 s, and Feishu wants an answer in 3.
    """
    import base64

    from Crypto.Cipher import AES

    raw = base64.b64decode(sealed)
    plain = AES.new(hashlib.sha256(key.encode()).digest(), AES.MODE_CBC, raw[:16]).decrypt(raw[16:])
    pad = plain[-1]
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    return plain[:-pad].decode("utf-8")


def check_signature(
    *,
    encrypt_key: str,
    body: bytes,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    now: float,
) -> str | None:
    """Why a request is not from Feishu (missing headers, stale, bad signature), or None when it is."""
    if not timestamp or not nonce or not signature:
        return "not a Feishu request: the X-Lark-Request-Timestamp, -Nonce and X-Lark-Signature headers are missing"
    try:
        sent = int(timestamp)
    except ValueError:
        return "not a Feishu request: X-Lark-Request-Timestamp is not a number"
    if abs(now - sent) > STALE_S:
        return (
            f"stale request: signed {abs(now - sent):.0f} s away from this server's clock (more than 5 minutes);"
            " a replay, or a clock out of sync (check NTP)"
        )
    expected = hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return (
            "invalid signature: the request was not signed with this app's encrypt key (check the encrypt_key "
            f"extra of the connection {settings.FEISHU_CONN_ID})"
        )
    return None


def _remember(key: str, request_ts: int) -> bool:
    from metrics_center.mart.engine import get_engine
    from metrics_center.notify.slack_replay import remember_request

    return remember_request(get_engine(), signature=key, request_ts=request_ts)


async def _refuse(status: int, message: str, request: Request, body: bytes) -> JSONResponse:
    from metrics_center.web.slack_actions import refuse

    return await refuse("feishu", status, message, request, body)
