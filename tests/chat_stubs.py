"""DingTalk and WeCom group robots and Feishu's open API on 127.0.0.1: real HTTP, our real clients (requests,
the official ``lark-oapi`` SDK) on the other side; the vendors' clouds are the only thing stood in for.

Each stub checks the wire format the platform documents (DingTalk's signature over ``timestamp + "\\n" +
secret``, its keyword rule; WeCom's key; Feishu's tenant token, ``receive_id_type``, card JSON and the
``uuid`` that drops a second message within an hour), records what it accepted, and can be scripted to
answer with the platform's own error codes (rate limits: DingTalk 130101, WeCom 45009, Feishu 230020).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DINGTALK_TOKEN = "dt-token-0001"
DINGTALK_SECRET = "SEC0123456789abcdef"
WECOM_KEY = "wecom-key-0001"
FEISHU_APP_ID = "cli_a1b2c3"
FEISHU_SECRET = "feishu-secret"


@dataclass
class Accepted:
    platform: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class _Stub:
    accepted: list[Accepted] = field(default_factory=list)
    refused: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Scripted answers for the next requests: (HTTP status, JSON body) or a callable run instead.
    script: deque[Any] = field(default_factory=deque)
    on_accept: Callable[[Accepted], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> _Stub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                status, answer = stub.handle(method, url.path, query, body, dict(self.headers))
                self._answer(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> _Stub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def scripted(self) -> tuple[int, dict[str, Any]] | None:
        with self.lock:
            return self.script.popleft() if self.script else None

    def accept(self, accepted: Accepted) -> None:
        with self.lock:
            self.accepted.append(accepted)
        if self.on_accept is not None:
            self.on_accept(accepted)

    def handle(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError


class DingTalkStub(_Stub):
    """``POST /robot/send?access_token=…&timestamp=…&sign=…`` with DingTalk's checks and error codes."""

    keyword: str | None = None

    def handle(self, method, path, query, body, headers):
        if path != "/robot/send" or query.get("access_token") != DINGTALK_TOKEN:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        stamp, sign = query.get("timestamp", ""), query.get("sign", "")
        expected = base64.b64encode(
            hmac.new(
                DINGTALK_SECRET.encode(), f"{stamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
            ).digest()
        ).decode()
        if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 3_600_000 or sign != expected:
            self.refused.append(("sign", body))
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        text = json.dumps(body, ensure_ascii=False)
        if self.keyword and self.keyword not in text:
            self.refused.append(("keyword", body))
            return 200, {"errcode": 310000, "errmsg": "keywords not in content"}
        if body.get("msgtype") not in ("markdown", "actionCard", "text"):
            return 200, {"errcode": 40035, "errmsg": "msgtype"}
        if (scripted := self.scripted()) is not None:
            return scripted
        self.accept(Accepted("dingtalk", path, query, body, time.monotonic()))
        return 200, {"errcode": 0, "errmsg": "ok"}


class WeComStub(_Stub):
    """``POST /cgi-bin/webhook/send?key=…`` with WeCom's checks and error codes."""

    def handle(self, method, path, query, body, headers):
        if path != "/cgi-bin/webhook/send" or query.get("key") != WECOM_KEY:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        content = (body.get("markdown") or {}).get("content") or ""
        if body.get("msgtype") != "markdown" or not content:
            return 200, {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode()) > 4096:
            return 200, {"errcode": 40058, "errmsg": "content exceed max length 4096"}
        if (scripted := self.scripted()) is not None:
            return scripted
        self.accept(Accepted("wecom", path, query, body, time.monotonic()))
        return 200, {"errcode": 0, "errmsg": "ok"}


class FeishuStub(_Stub):
    """Feishu's open API as the SDK calls it: the tenant token, sending and patching interactive cards."""

    def __init__(self) -> None:
        super().__init__()
        self.token = "t-tenant-0001"
        self.cards: dict[str, dict[str, Any]] = {}  # message id → the card now shown
        self.chat_of: dict[str, str] = {}
        self.uuids: dict[str, str] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)

    def handle(self, method, path, query, body, headers):
        if path == "/open-apis/auth/v3/tenant_access_token/internal":
            if (body.get("app_id"), body.get("app_secret")) != (FEISHU_APP_ID, FEISHU_SECRET):
                return 200, {"code": 10014, "msg": "app secret invalid"}
            return 200, {"code": 0, "msg": "ok", "tenant_access_token": self.token, "expire": 7200}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": 99991663, "msg": "Invalid access token for authorization."}
        if path == "/open-apis/im/v1/messages" and method == "POST":
            return self._create(query, body)
        if path.startswith("/open-apis/im/v1/messages/") and method == "PATCH":
            message_id = path.rsplit("/", 1)[1]
            if message_id not in self.cards:
                return 400, {"code": 230011, "msg": "message not found"}
            if (scripted := self.scripted()) is not None:
                return scripted
            card = json.loads(body["content"])
            self.cards[message_id] = card
            self.patches.append((message_id, card))
            return 200, {"code": 0, "msg": "ok", "data": {}}
        return 404, {"code": 404, "msg": f"no {method} {path} here"}

    def _create(self, query, body):
        kind, receiver = query.get("receive_id_type"), body.get("receive_id") or ""
        prefix = {"chat_id": "oc_", "open_id": "ou_", "union_id": "on_"}.get(kind or "")
        if prefix is None or not receiver.startswith(prefix):
            return 400, {"code": 230001, "msg": f"invalid receive_id for {kind}"}
        if body.get("msg_type") != "interactive":
            return 400, {"code": 230001, "msg": "msg_type"}
        card = json.loads(body["content"])
        if card.get("schema") != "2.0" or not (card.get("body") or {}).get("elements"):
            return 400, {"code": 230099, "msg": "Failed to create card content"}
        uuid = body.get("uuid")
        if uuid and uuid in self.uuids:  # Feishu's dedupe: the same message again
            message_id = self.uuids[uuid]
            return 200, {
                "code": 0,
                "msg": "ok",
                "data": {"message_id": message_id, "chat_id": self.chat_of[message_id]},
            }
        if (scripted := self.scripted()) is not None:
            return scripted
        message_id = f"om_{next(self._ids):06d}"
        chat = receiver if kind == "chat_id" else f"oc_dm_{receiver}"
        with self.lock:
            self.cards[message_id] = card
            self.chat_of[message_id] = chat
            if uuid:
                self.uuids[uuid] = message_id
        self.accept(
            Accepted(
                "feishu",
                "/open-apis/im/v1/messages",
                query,
                {**body, "message_id": message_id},
                time.monotonic(),
            )
        )
        return 200, {"code": 0, "msg": "ok", "data": {"message_id": message_id, "chat_id": chat}}

    def sent_to(self, receiver: str) -> list[Accepted]:
        return [a for a in self.accepted if a.body.get("receive_id") == receiver]


def robot_connection(url: str, *, password: str, extra: dict[str, Any] | None = None) -> str:
    """An Airflow connection (JSON, for ``AIRFLOW_CONN_…``) of a robot at the stub."""
    return json.dumps({"conn_type": "http", "host": url, "password": password, "extra": extra or {}})


def feishu_connection(url: str, **extra: str) -> str:
    return json.dumps(
        {"conn_type": "http", "host": url, "login": FEISHU_APP_ID, "password": FEISHU_SECRET, "extra": extra}
    )


def encrypt_callback(payload: dict[str, Any], *, key: str) -> bytes:
    """A callback body as Feishu sends it encrypted: AES-256-CBC, key = SHA-256 of the Encrypt Key, random IV
    first, base64, in ``{"encrypt": …}``."""
    import os

    from Crypto.Cipher import AES

    raw = json.dumps(payload).encode()
    pad = 16 - len(raw) % 16
    iv = os.urandom(16)
    cipher = AES.new(hashlib.sha256(key.encode()).digest(), AES.MODE_CBC, iv)
    sealed = base64.b64encode(iv + cipher.encrypt(raw + bytes([pad]) * pad)).decode()
    return json.dumps({"encrypt": sealed}).encode()


def feishu_signed_headers(body: bytes, *, key: str, timestamp: int | None = None) -> dict[str, str]:
    """Feishu's request signature: sha256(timestamp + nonce + encrypt key + body)."""
    import uuid

    stamp, nonce = str(timestamp or int(time.time())), uuid.uuid4().hex
    return {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": hashlib.sha256((stamp + nonce + key).encode() + body).hexdigest(),
    }


def card_click_event(
    *,
    token: str,
    open_id: str,
    action: str,
    value: dict[str, Any],
    message_id: str,
    chat_id: str,
    reason: str = "",
) -> dict[str, Any]:
    """A ``card.action.trigger`` event (schema 2.0) of ``open_id`` clicking button ``action``."""
    import uuid

    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "token": token,
            "create_time": str(int(time.time() * 1000)),
            "event_type": "card.action.trigger",
            "tenant_key": "tenant",
            "app_id": FEISHU_APP_ID,
        },
        "event": {
            "operator": {"open_id": open_id, "union_id": f"on_{open_id[3:]}"},
            "token": "c-callback-token",
            "action": {"value": value, "tag": "button", "name": action, "form_value": {"reason": reason}},
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }
