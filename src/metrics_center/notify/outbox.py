"""The outbox: a notification is a row written in the same transaction as the fact that caused it.

Delivery happens later (:mod:`metrics_center.notify.deliver`, from the maintenance DAG): a rolled
back fact leaves no alert behind, a committed one is never lost, and the unique ``dedupe_key`` makes
a retried task write nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metrics_center.mart.tables import notification
from metrics_center.notify.addresses import CHAT_CHANNELS, EMAIL, Recipient, metric_department_recipient

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from metrics_center.definitions.spec import MetricSpec, Teams

Kind = Literal[
    "anomaly",
    "quality_failure",
    "reconciliation",
    "approval_request",
    "approval_reminder",
    "approval_update",
    "definition_change",
    "history_changed",
    "metric_deprecated",
    "definition_signoff",
]


def department_recipient(spec: MetricSpec, teams: Teams | None) -> Recipient:
    """The metric's department (its group chats), from ``_teams.yaml``."""
    return metric_department_recipient(spec, teams)


def channel_key(dedupe_key: str, channel: str) -> str:
    """The stored ``dedupe_key`` of a notification's row for ``channel``.

    Slack keeps the key it always had, so rows written before other channels existed still dedupe.
    """
    key = dedupe_key if channel == "slack" else f"{dedupe_key[:240]}|{channel}"
    return key[:255]


def already_enqueued(conn: Connection, *, dedupe_key: str) -> bool:
    """Whether a notification was written under ``dedupe_key``, for any channel (one indexed lookup)."""
    import sqlalchemy as sa

    keys = [channel_key(dedupe_key, channel) for channel in (*CHAT_CHANNELS, EMAIL)]
    found = conn.execute(sa.select(notification.c.id).where(notification.c.dedupe_key.in_(keys)).limit(1))
    return found.first() is not None


def enqueue(
    conn: Connection,
    *,
    kind: Kind,
    dedupe_key: str,
    recipient: Recipient,
    group_key: str,
    payload: dict[str, Any],
    metric_key: str | None = None,
    run_id: str | None = None,
) -> bool:
    """Add a pending notification per channel of the recipient inside the caller's transaction; False if
    ``dedupe_key`` exists (for every channel).

    ``group_key``: notifications sharing it (and a channel and address) are delivered as one message, e.g.
    all anomalies of one run for one chat. A recipient without any address gets one unaddressed Slack row
    (:func:`metrics_center.notify.deliver.readdress` gives it one later).
    """
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = datetime.now(UTC)
    targets: dict[str, str | None] = {**recipient.for_kind(kind)} or {"slack": None}
    added = False
    for channel, address in targets.items():
        result = conn.execute(
            insert(notification)
            .values(
                kind=kind,
                dedupe_key=channel_key(dedupe_key, channel),
                metric_key=metric_key,
                run_id=run_id,
                recipient=recipient.name,
                channel=channel,
                address=address,
                locale=recipient.locale,
                group_key=group_key[:255],
                payload=payload,
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(notification.c.id)
        )
        added = result.scalar() is not None or added
    return added
