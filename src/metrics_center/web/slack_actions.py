"""Slack interactions: ``POST /metrics-center/slack/interactions`` (Approve / Reject buttons, the reason modal).

The one route of the plugin that Airflow's auth does not guard: it authenticates by Slack's request
signature instead (slack-sdk's ``SignatureVerifier`` with the ``signing_secret`` extra of the
``metrics_center_slack`` connection), refuses requests older than 5 minutes and replays (each signature is
remembered in the mart, so every api-server worker agrees), acknowledges at once — Slack wants an answer
within 3 s — and leaves the work (who clicked, recording the answer as that person, the ephemeral reply)
to a worker thread: :mod:`metrics_center.web.slack_answers`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from metrics_center import settings

log = logging.getLogger(__name__)
router = APIRouter()

#: Slack's replay window: a request whose timestamp is further from our clock is refused.
STALE_S = 300
#: Largest request body accepted (Slack's interaction payloads are far smaller).
MAX_BODY = 1_000_000
#: Seconds the signing secret is kept between connection look-ups (a rotated secret applies after this).
SECRET_TTL_S = 60.0
#: Worker threads per api-server process for acknowledged interactions. Few: the work is mostly Python
#: (GIL-bound), and more threads would slow the acknowledgements down (benchmarks/slack_ack.py).
WORKERS = 4

_state_lock = threading.Lock()
_secret: tuple[float, str | None] | None = None
_pool: ThreadPoolExecutor | None = None
_pending: set[Future[None]] = set()
_in_flight = 0  # requests being acknowledged right now (read by the worker threads)
#: Longest a worker defers its work while acknowledgements are in flight (they go first).
YIELD_MAX_S = 0.5


@router.post("/slack/interactions", include_in_schema=False)
async def slack_interactions(request: Request) -> Response:
    """Verify, refuse replays, acknowledge; the click itself is handled after the answer is sent."""
    with in_flight():
        return await _interaction(request)


@contextlib.contextmanager
def in_flight() -> Iterator[None]:
    """Count a request being acknowledged: the worker threads let acknowledgements go first."""
    global _in_flight
    with _state_lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _state_lock:
            _in_flight -= 1


async def _interaction(request: Request) -> Response:
    import anyio

    length = request.headers.get("content-length") or ""
    if length.isdigit() and int(length) > MAX_BODY:
        return await _refuse(
            413, f"request body over {MAX_BODY} bytes: not a Slack interaction", request, b""
        )
    body = await request.body()
    if len(body) > MAX_BODY:
        return await _refuse(
            413, f"request body over {MAX_BODY} bytes: not a Slack interaction", request, b""
        )
    secret = _cached_secret() or await anyio.to_thread.run_sync(signing_secret)
    if not secret:
        return await _refuse(
            503,
            f"the Slack signing secret is not configured: add the extra signing_secret (Slack app → Basic "
            f"Information → Signing Secret) to the connection {settings.SLACK_CONN_ID}",
            request,
            body,
        )
    timestamp = request.headers.get("x-slack-request-timestamp")
    signature = request.headers.get("x-slack-signature")
    problem = check_signature(
        secret=secret, body=body, timestamp=timestamp, signature=signature, now=time.time()
    )
    if problem:
        return await _refuse(401, problem, request, body)
    assert timestamp is not None and signature is not None
    fresh = await anyio.to_thread.run_sync(partial(_remember, signature, int(timestamp)))
    if not fresh:
        return await _refuse(
            401, "replayed request: a request with this signature was already received", request, body
        )
    payload = parse_payload(body)
    if payload is None:
        return await _refuse(
            400, "no interaction payload: Slack sends a form field `payload` holding JSON", request, body
        )
    if payload.get("type") == "view_submission":
        from metrics_center.web.slack_answers import reason_errors

        errors = reason_errors(payload)
        if errors:
            return JSONResponse({"response_action": "errors", "errors": errors})
    submit(payload)
    return Response(status_code=200)


def check_signature(
    *, secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float
) -> str | None:
    """Why a request is not from Slack (missing headers, stale, bad signature), or None when it is."""
    from slack_sdk.signature import SignatureVerifier

    if not timestamp or not signature:
        return "not a Slack request: the X-Slack-Request-Timestamp and X-Slack-Signature headers are missing"
    try:
        sent = int(timestamp)
    except ValueError:
        return "not a Slack request: X-Slack-Request-Timestamp is not a number"
    if abs(now - sent) > STALE_S:
        return (
            f"stale request: signed {abs(now - sent):.0f} s away from this server's clock (more than 5 minutes);"
            " a replay, or a clock out of sync (check NTP)"
        )
    if not SignatureVerifier(secret).is_valid(body=body, timestamp=timestamp, signature=signature):
        return (
            "invalid signature: the request was not signed with this app's signing secret (check the "
            f"signing_secret extra of the connection {settings.SLACK_CONN_ID})"
        )
    return None


def parse_payload(body: bytes) -> dict[str, Any] | None:
    """The ``payload`` JSON of Slack's form-encoded interaction request; None if there is none."""
    try:
        raw = parse_qs(body.decode("utf-8"), strict_parsing=False).get("payload", [None])[0]
        payload = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def signing_secret() -> str | None:
    """The ``signing_secret`` extra of the Slack connection, re-read at most every :data:`SECRET_TTL_S`."""
    global _secret
    cached = _secret
    if cached is not None and time.monotonic() - cached[0] < SECRET_TTL_S:
        return cached[1]
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        value = Connection.get(settings.SLACK_CONN_ID).extra_dejson.get("signing_secret") or None
    except AirflowNotFoundException:
        value = None
    _secret = (time.monotonic(), str(value) if value else None)
    return _secret[1]


def _cached_secret() -> str | None:
    """The signing secret if it was read recently (no thread hop, no look-up), else None."""
    cached = _secret
    if cached is not None and time.monotonic() - cached[0] < SECRET_TTL_S:
        return cached[1]
    return None


def forget_cached_secret() -> None:
    """Read the signing secret again on the next request (after changing the connection)."""
    global _secret
    _secret = None


def submit(payload: dict[str, Any], work: Callable[[dict[str, Any]], None] | None = None) -> Future[None]:
    """Handle an acknowledged interaction in a worker thread of this process (``work``: default Slack's)."""
    if work is None:
        from metrics_center.web.slack_answers import handle_interaction as work

    global _pool
    with _state_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="chat-interaction")
        future = _pool.submit(_after_acks, work, payload)
        _pending.add(future)
    future.add_done_callback(_pending.discard)
    return future


def _after_acks(work: Any, payload: dict[str, Any]) -> None:
    """Acknowledgements first: while a burst of clicks is being acknowledged, the work waits (at most
    :data:`YIELD_MAX_S`) — it is Python too, and would take the interpreter from them."""
    deadline = time.monotonic() + YIELD_MAX_S
    while _in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    work(payload)


def wait_for_work(timeout: float = 30.0) -> bool:
    """Wait until every acknowledged interaction of this process is handled (tests, benchmarks, shutdown)."""
    with _state_lock:
        pending = list(_pending)
    _done, not_done = wait(pending, timeout=timeout)
    return not not_done


def _remember(signature: str, request_ts: int) -> bool:
    from metrics_center.mart.engine import get_engine
    from metrics_center.notify.slack_replay import remember_request

    return remember_request(get_engine(), signature=signature, request_ts=request_ts)


async def _refuse(status: int, message: str, request: Request, body: bytes) -> JSONResponse:
    return await refuse("slack", status, message, request, body)


async def refuse(channel: str, status: int, message: str, request: Request, body: bytes) -> JSONResponse:
    """Answer a chat callback's refusal, and keep it in ``chat_request_refusal`` (off the event loop)."""
    import anyio

    log.warning("%s callback refused (%s): %s", channel, status, message)
    remote = request.client.host if request.client else None
    await anyio.to_thread.run_sync(
        partial(refused, channel=channel, reason=message, status=status, remote=remote, body=body)
    )
    return JSONResponse({"error": message}, status_code=status)


def refused(*, channel: str, reason: str, status: int, remote: str | None, body: bytes) -> None:
    from metrics_center.mart.engine import get_engine
    from metrics_center.notify.slack_replay import record_refusal

    try:
        engine = get_engine()
    except Exception:  # no mart configured: the log line above is the record
        return
    record_refusal(engine, channel=channel, reason=reason, status=status, remote=remote, body=body)
