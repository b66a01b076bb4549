"""Replay protection for chat callbacks (Slack, Feishu), shared by every api-server worker through the mart,
and the record of the callbacks refused.

A verified request's signature (``feishu:`` + event id for Feishu) is inserted into ``slack_request``; if it is
there already, the request is a replay (someone resent a captured request within the 5-minute window). The
maintenance DAG forgets signatures older than a day. Refused requests are kept in ``chat_request_refusal``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.tables import chat_request_refusal, slack_request

if TYPE_CHECKING:
    from sqlalchemy import Engine


def remember_request(engine: Engine, *, signature: str, request_ts: int) -> bool:
    """Record ``signature``; False when it was recorded before (a replay)."""
    from sqlalchemy.dialects import postgresql, sqlite

    with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        result = conn.execute(
            insert(slack_request)
            .values(signature=signature[:128], request_ts=request_ts, received_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["signature"])
            .returning(slack_request.c.signature)
        )
        return result.scalar() is not None


def forget_requests(engine: Engine, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete signatures older than ``older_than``; the number deleted."""
    cutoff = datetime.now(UTC) - older_than
    with engine.begin() as conn:
        refused = chat_request_refusal.c.received_at < datetime.now(UTC) - timedelta(days=90)
        conn.execute(sa.delete(chat_request_refusal).where(refused))  # the refusals: a quarter
        return conn.execute(sa.delete(slack_request).where(slack_request.c.received_at < cutoff)).rowcount


def record_refusal(
    engine: Engine, *, channel: str, reason: str, status: int, remote: str | None, body: bytes
) -> None:
    """Keep a refused callback for the security review (never raises: the refusal is answered anyway)."""
    import hashlib
    import logging

    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(chat_request_refusal).values(
                    channel=channel,
                    reason=reason[:2000],
                    status=status,
                    remote=(remote or "")[:64] or None,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    received_at=datetime.now(UTC),
                )
            )
    except Exception:
        logging.getLogger(__name__).exception("could not record a refused %s callback", channel)
