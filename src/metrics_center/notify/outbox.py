"""The outbox: a notification is a row written in the same transaction as the fact that caused it.

Delivery happens later (:mod:`metrics_center.notify.deliver`, from the maintenance DAG): a rolled
back fact leaves no alert behind, a committed one is never lost, and the unique ``dedupe_key`` makes
a retried task write nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metrics_center.mart.tables import notification

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
]


@dataclass(frozen=True)
class Recipient:
    """Who is told: a department (its channel) or a person (a DM); ``address`` is None when unknown."""

    name: str
    address: str | None


def department_recipient(spec: MetricSpec, teams: Teams | None) -> Recipient:
    """The metric's department channel, from ``_teams.yaml``."""
    department = teams.departments.get(spec.department) if teams else None
    return Recipient(name=spec.department, address=department.slack_channel if department else None)


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
    """Add a pending notification inside the caller's transaction; False if ``dedupe_key`` exists.

    ``group_key``: notifications sharing it (and an address) are delivered as one message, e.g. all
    anomalies of one run for one channel.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = datetime.now(UTC)
    result = conn.execute(
        insert(notification)
        .values(
            kind=kind,
            dedupe_key=dedupe_key[:255],
            metric_key=metric_key,
            run_id=run_id,
            recipient=recipient.name,
            address=recipient.address,
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
    return result.scalar() is not None
