"""Delivery of the outbox to Slack: one message per group, retried with backoff, never posted twice.

A ``notification`` row moves through these states:

- ``pending`` → ``sending``: claimed with a fresh ``delivery_token``, committed *before* Slack is called.
- ``sending`` → ``delivered``: Slack accepted the message (``slack_channel``, ``slack_ts``, ``delivered_at``).
- ``sending`` → ``pending`` at now + backoff: Slack refused it (``ok: false``, connection refused); ``dead``
  once it has had ``max_attempts`` tries. A 429 puts it back at now + ``Retry-After``, not counted as a try.
- ``sending`` stays ``sending`` when the outcome is unknown (HTTP 5xx, timeout) or the process died. Once its
  lease (``next_attempt_at``) has passed, the channel's history is searched for the token, sent as message
  ``metadata``: found → ``delivered`` with that ``ts``; not found → ``pending`` again (or ``dead``).

``approval_update`` rows post nothing: they edit the request messages they name (``chat.update`` on the
recorded ``slack_channel`` / ``slack_ts``), see :mod:`metrics_center.notify.message_updates`.

Rows without an address, and every row while the Slack connection is missing, stay ``pending``.
Two deliverers may run at once: a claim is an ``UPDATE … WHERE state = 'pending'`` that must change
every row of its group, else it is rolled back and the group left to the other one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center import settings
from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.tables import notification as n
from metrics_center.notify.blocks import airflow_base_url
from metrics_center.notify.delivery_run import Clock, DeliveryReport, DeliveryRun
from metrics_center.notify.message_updates import deliver_update
from metrics_center.notify.slack_api import EVENT_TYPE, HTTP_TIMEOUT, slack_client

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["EVENT_TYPE", "DeliveryReport", "deliver_pending", "readdress", "requeue"]


def deliver_pending(
    engine: Engine,
    *,
    now: datetime | None = None,
    max_attempts: int = 10,
    base_delay: timedelta = timedelta(seconds=30),
    max_delay: timedelta = timedelta(hours=1),
    claim_timeout: timedelta = timedelta(minutes=5),
    time_budget: float = 240.0,
    channel_interval: float = 1.0,
    workers: int = 4,
    conn_id: str = settings.SLACK_CONN_ID,
    airflow_url: str | None = None,
) -> DeliveryReport:
    """Deliver every due notification that has an address, one message per ``(group_key, address)``.

    ``now``: the time to act at (default: the clock), advancing with the call. ``claim_timeout``: how long
    a claimed row may stay ``sending`` before another call checks Slack for it. ``time_budget``: seconds
    after which no new message is started (keep it below the DAG's schedule interval).
    ``channel_interval``: seconds between two messages to one channel (Slack allows about one per
    second; a 429 ``Retry-After`` is honoured anyway). ``airflow_url``: base of run links; default
    ``[api] base_url``, ``""`` for none.
    """
    if max_attempts < 1 or workers < 1:
        raise ValueError("max_attempts and workers must be at least 1")
    if claim_timeout.total_seconds() <= 3 * HTTP_TIMEOUT:
        raise ValueError(
            f"claim_timeout must be well above the {HTTP_TIMEOUT} s Slack timeout, e.g. 5 minutes"
        )
    run = DeliveryRun(
        engine=engine,
        send_update=deliver_update,
        clock=Clock(now),
        deadline=time.monotonic() + time_budget,
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        claim_timeout=claim_timeout,
        channel_interval=channel_interval,
    )
    stale, due = run.stale_groups(), run.due_groups()
    if not stale and not due:
        return run.report()
    client = slack_client(conn_id)
    if client is None:
        return run.report(
            skipped=f"Slack connection {conn_id!r} is not configured (or has no token): notifications stay "
            f"pending. Add it (conn_type slack, bot token xoxb-… as password) to deliver them."
        )
    run.client = client
    run.airflow_url = airflow_base_url() if airflow_url is None else (airflow_url or None)
    for group in stale:
        if time.monotonic() > run.deadline or run.stop.is_set():
            break
        run.recover(group)
    run.deliver(run.due_groups(), workers=workers)
    return run.report()


def readdress(engine: Engine, *, addresses: Mapping[str, str | None]) -> int:
    """Give pending rows without an address the one their recipient has now (``_teams.yaml`` was fixed)."""
    unaddressed = sa.and_(n.c.state == "pending", n.c.address.is_(None))
    with engine.connect() as conn:
        if not conn.execute(sa.select(n.c.id).where(unaddressed).limit(1)).first():
            return 0  # the usual case: no write lock taken
    changed = 0
    with locked_transaction(engine, key="notification:readdress") as conn:
        for recipient, address in addresses.items():
            if address:
                changed += conn.execute(
                    sa.update(n).where(unaddressed, n.c.recipient == recipient).values(address=address)
                ).rowcount
    return changed


def requeue(engine: Engine, *, ids: list[int] | None = None, now: datetime | None = None) -> int:
    """``dead`` → ``pending`` (all dead rows, or those of ``ids``), tries reset: after the cause is fixed."""
    where = [n.c.state == "dead"]
    if ids is not None:
        where.append(n.c.id.in_(ids))
    with locked_transaction(engine, key="notification:requeue") as conn:
        return conn.execute(
            sa.update(n)
            .where(*where)
            .values(state="pending", attempts=0, next_attempt_at=(now or datetime.now(UTC)).astimezone(UTC))
        ).rowcount
