"""A small Slack Web API on 127.0.0.1 for tests and benchmarks: real HTTP, real slack-sdk on the other side.

Speaks the methods delivery uses — ``chat.postMessage``, ``conversations.history`` (with message
metadata, ``oldest``, cursors), ``conversations.list``, ``conversations.open`` — keeps every channel's
messages, records every request, and can be scripted: fail the next calls of a method (optionally
after keeping the message, as a Slack that posted and then failed would), enforce a per-channel rate
limit with 429 + ``Retry-After``, or run a hook when a message is accepted (e.g. kill the poster).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "xoxb-test"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: HTTP ``status``, or ``error`` (HTTP 200, ``ok: false``); ``keep``: post it anyway."""

    status: int = 200
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    keep: bool = False


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[dict]
    metadata: dict | None
    at: float

    @property
    def token(self) -> str | None:
        return ((self.metadata or {}).get("event_payload") or {}).get("token")


class SlackStub:
    def __init__(self, *, channels: dict[str, str] | None = None) -> None:
        #: channel id → name; posting to an unknown ``#name`` or id creates it.
        self.channels: dict[str, str] = dict(channels or {})
        self.calls: list[Call] = []
        self.posted: list[Posted] = []
        self.on_post: Callable[[Posted], None] | None = None  # runs before the reply is sent
        self.on_reply: Callable[[Posted], None] | None = None  # runs once the reply has been sent
        self.latency = 0.0  # seconds each chat.postMessage takes
        self._script: dict[str, deque[Reply]] = defaultdict(deque)
        self._limit: tuple[int, float, bool] | None = None
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._server: ThreadingHTTPServer | None = None

    # -- control --

    def start(self) -> SlackStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub._handle(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="slack-stub").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> SlackStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def connection(self, *, token: str = TOKEN) -> str:
        """The value of ``AIRFLOW_CONN_METRICS_CENTER_SLACK`` pointing slack-sdk at this stub."""
        return json.dumps({"conn_type": "slack", "password": token, "extra": {"base_url": self.base_url}})

    def script(self, method: str, *replies: Reply) -> None:
        """Answer the next calls of ``method`` with ``replies``, in order; then behave normally."""
        with self._lock:
            self._script[method].extend(replies)

    def rate_limit(self, *, per_channel: int = 1, window: float = 1.0, whole_seconds: bool = True) -> None:
        """Slack's ``chat.postMessage`` limit: ``per_channel`` messages per ``window`` s, else 429.

        ``Retry-After`` is in whole seconds, as Slack sends it, unless ``whole_seconds=False`` (windows
        shorter than a second, for benchmarks).
        """
        self._limit = (per_channel, window, whole_seconds)

    # -- what happened --

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def tokens(self) -> Counter[str | None]:
        """How many messages carry each delivery token (a duplicate shows as a count above 1)."""
        return Counter(p.token for p in self.posted)

    def channel_id(self, address: str) -> str:
        with self._lock:
            return self._resolve(address)

    # -- the API --

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        method = url.path.rsplit("/", 1)[-1]
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if body:
            if "json" in (request.headers.get("Content-Type") or ""):
                params.update(json.loads(body))
            else:
                params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, payload, headers = 200, {"ok": False, "error": "invalid_auth"}, {}
        else:
            status, payload, headers = self._answer(method, params)
        accepted = payload.pop("_posted", None)
        with self._lock:
            self.calls.append(Call(method=method, params=params, at=time.time(), status=status))
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)
        request.wfile.flush()
        if accepted is not None and self.on_reply is not None:
            self.on_reply(accepted)

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        with self._lock:
            reply = self._script[method].popleft() if self._script[method] else None
        if method == "chat.postMessage":
            return self._post(params, reply)
        if reply is not None:
            return self._scripted(reply)
        with self._lock:
            if method == "conversations.history":
                return self._history(params)
            if method == "conversations.list":
                channels = [{"id": i, "name": name} for i, name in self.channels.items() if i[0] in "CG"]
                return 200, {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}, {}
            if method == "conversations.open":
                return 200, {"ok": True, "channel": {"id": self._resolve(str(params["users"]))}}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    @staticmethod
    def _scripted(reply: Reply) -> tuple[int, dict, dict[str, str]]:
        if reply.status != 200:
            return reply.status, {"ok": False, "error": f"http_{reply.status}"}, reply.headers
        return 200, {"ok": False, "error": reply.error or "internal_error"}, reply.headers

    def _post(self, params: dict[str, Any], reply: Reply | None) -> tuple[int, dict, dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            channel = self._resolve(str(params.get("channel", "")))
            if reply is None and (retry_after := self._rate_limited(channel)) is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after}
            if reply is not None and not reply.keep:
                return self._scripted(reply)
            posted = Posted(
                channel=channel,
                ts=self._next_ts(),
                text=str(params.get("text", "")),
                blocks=_json(params.get("blocks")) or [],
                metadata=_json(params.get("metadata")),
                at=time.time(),
            )
            self.posted.append(posted)
            self._recent[channel].append(time.monotonic())
        if self.on_post is not None:
            self.on_post(posted)
        if reply is not None:
            status, payload, headers = self._scripted(reply)
            return status, {**payload, "_posted": posted}, headers
        message = {"text": posted.text}
        return (
            200,
            {"ok": True, "channel": channel, "ts": posted.ts, "message": message, "_posted": posted},
            {},
        )

    def _rate_limited(self, channel: str) -> str | None:
        if self._limit is None:
            return None
        per_channel, window, whole = self._limit
        recent, now = self._recent[channel], time.monotonic()
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) < per_channel:
            return None
        wait = recent[0] + window - now
        return str(max(1, math.ceil(wait))) if whole else f"{max(wait, 0.001):.3f}"

    def _history(self, params: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        channel = str(params.get("channel", ""))
        if channel not in self.channels:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [
            {
                "type": "message",
                "ts": p.ts,
                "text": p.text,
                **({"metadata": p.metadata} if with_metadata else {}),
            }
            for p in reversed(self.posted)
            if p.channel == channel and float(p.ts) > oldest
        ]
        start, limit = int(params.get("cursor") or 0), int(params.get("limit") or 100)
        page = messages[start : start + limit]
        cursor = str(start + limit) if start + limit < len(messages) else ""
        return (
            200,
            {
                "ok": True,
                "messages": page,
                "has_more": bool(cursor),
                "response_metadata": {"next_cursor": cursor},
            },
            {},
        )

    def _resolve(self, address: str) -> str:
        if address[:1] in ("U", "W") and address[1:].isalnum():
            dm = "D" + address[1:]
            self.channels.setdefault(dm, f"dm-{address}")
            return dm
        if address.startswith("#") or not address[:1].isupper():
            name = address.removeprefix("#")
            for channel_id, known in self.channels.items():
                if known == name:
                    return channel_id
            channel_id = f"C{len(self.channels) + 1:08d}"
            self.channels[channel_id] = name
            return channel_id
        self.channels.setdefault(address, address.lower())
        return address

    def _next_ts(self) -> str:
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
