"""Replay protection for Slack requests, shared by every api-server worker through the mart.

A verified request's signature is inserted into ``slack_request``; if it is there already, the request is a
replay (someone resent a captured request within Slack's 5-minute window). The maintenance DAG forgets
signatures older than a day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.tables import slack_request

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
        return conn.execute(sa.delete(slack_request).where(slack_request.c.received_at < cutoff)).rowcount
