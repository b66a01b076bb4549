"""After an approval request: remind the approvers once, then update every message in place after the decision.

Run by the maintenance DAG before delivery. The *open* messages are the ``approval_request`` and
``approval_reminder`` rows that have no ``approval_update`` yet. For each stage try among them:

- its answer is in ``approval_event`` (recorded by the approval task itself, whether the answer came from
  Slack, our page, Airflow's UI or a timeout) → one ``approval_update`` per message, delivered by
  ``chat.update`` on the message's recorded channel and ``ts``: who, what, when, why;
- a newer try of the stage was asked → the old messages are updated as out of date;
- its run ended without an answer (marked by hand, deleted) → updated as no longer waiting;
- otherwise, at ``approval.remind_at`` × timeout and while the task still waits → one reminder per
  approver (once per stage try).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from metrics_center.notify.approval_messages import REMINDER, REQUEST, UPDATE, ActionRef, Decision

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import Teams
    from metrics_center.notify.addresses import Recipient

log = logging.getLogger(__name__)
StageState = Literal["waiting", "active", "ended"]


@dataclass(frozen=True)
class FollowUps:
    """What one :func:`follow_up` call enqueued (rows)."""

    reminders: int = 0
    updates: int = 0
    waiting: int = 0  #: stage tries still waiting for an answer


@dataclass(frozen=True)
class _Open:
    id: int
    kind: str
    recipient: str
    channel: str
    address: str | None
    locale: str | None
    group_key: str
    payload: dict[str, Any]


def follow_up(
    engine: Engine,
    *,
    teams: Teams | None,
    stage_state: Callable[[ActionRef], StageState],
    now: datetime | None = None,
) -> FollowUps:
    """Enqueue the updates and reminders due now.

    ``stage_state``: what Airflow says of a stage try — ``waiting`` (for an answer), ``active`` (its run
    goes on, the stage does not wait: being resumed, or cleared) or ``ended`` (its run finished or is gone).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    by_try: dict[ActionRef, list[_Open]] = {}
    for row in _open_messages(engine):
        try:
            by_try.setdefault(_ref(row.payload), []).append(row)
        except (KeyError, TypeError, ValueError):
            log.warning("approval notification %s has an unreadable payload; it is left alone", row.id)
    reminders = updates = waiting = 0
    for ref, rows in by_try.items():
        decision = decision_for(engine, ref=ref, payload=rows[0].payload, teams=teams)
        state = stage_state(ref) if decision is None else "ended"
        if decision is None and state == "ended":  # read again: the task may have recorded it meanwhile
            decision = decision_for(engine, ref=ref, payload=rows[0].payload, teams=teams) or Decision(
                outcome="closed", detail="its run ended without an answer to this stage"
            )
        if decision is not None:
            updates += _enqueue_updates(engine, rows, decision)
            continue
        waiting += 1
        requests = [r for r in rows if r.kind == REQUEST]
        reminded = {r.recipient for r in rows if r.kind == REMINDER}
        due = [r for r in requests if r.recipient not in reminded and _reminder_due(r.payload, now)]
        if due and state == "waiting":
            reminders += _enqueue_reminders(engine, due, now=now)
    return FollowUps(reminders=reminders, updates=updates, waiting=waiting)


def decision_for(
    engine: Engine, *, ref: ActionRef, payload: dict[str, Any], teams: Teams | None
) -> Decision | None:
    """The recorded answer to this stage try, or "superseded" when the stage was asked again; None: open."""
    from metrics_center.approvals.rules import ANSWERS
    from metrics_center.mart.tables import approval_event as e

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                e.c.decision,
                e.c.decided_by,
                e.c.decided_at,
                e.c.via,
                e.c.reason,
                e.c.detail,
                e.c.ti_id,
                e.c.try_number,
            )
            .where(e.c.metric_key == ref.dag_id, e.c.run_id == ref.run_id, e.c.stage == payload.get("stage"))
            .order_by(e.c.id)
        ).all()
    ti_id = payload.get("ti_id")
    for row in reversed(rows):
        if row.decision in ANSWERS and row.try_number == ref.try_number and (not ti_id or row.ti_id == ti_id):
            return Decision(
                outcome=row.decision,
                by=_name(teams, row.decided_by),
                at=_utc(row.decided_at),
                via=row.via,
                reason=row.reason,
                detail=row.detail,
            )
    newer = [r.try_number for r in rows if r.decision == "requested" and (r.try_number or 0) > ref.try_number]
    if newer:
        return Decision(outcome="superseded", detail=f"the stage was asked again (try {max(newer)})")
    return None


# --- internals -------------------------------------------------------------------------------------


def _open_messages(engine: Engine) -> list[_Open]:
    from metrics_center.mart.tables import notification as n

    u = n.alias("u")
    update_key = sa.literal(f"{UPDATE}:") + sa.cast(n.c.id, sa.String)
    query = (
        sa.select(
            n.c.id, n.c.kind, n.c.recipient, n.c.channel, n.c.address, n.c.locale, n.c.group_key, n.c.payload
        )
        .where(
            n.c.kind.in_([REQUEST, REMINDER]),
            # an update's key is the target's id, with its channel after a bar when it is not Slack
            ~sa.exists().where(
                sa.or_(u.c.dedupe_key == update_key, u.c.dedupe_key == update_key + "|" + n.c.channel)
            ),
        )
        .order_by(n.c.id)
    )
    with engine.connect() as conn:
        return [
            _Open(r.id, r.kind, r.recipient, r.channel, r.address, r.locale, r.group_key, _dict(r.payload))
            for r in conn.execute(query)
        ]


def _enqueue_updates(engine: Engine, rows: list[_Open], decision: Decision) -> int:
    from metrics_center.notify.outbox import enqueue

    added = 0
    with engine.begin() as conn:
        for row in rows:
            added += enqueue(
                conn,
                kind=UPDATE,
                dedupe_key=f"{UPDATE}:{row.id}",
                recipient=_recipient(row),
                group_key=f"{UPDATE}:{row.group_key}",
                payload={"target_id": row.id, "request": row.payload, "decision": decision.as_payload()},
                metric_key=row.payload.get("metric_key"),
                run_id=row.payload.get("run_id"),
            )
    return added


def _enqueue_reminders(engine: Engine, requests: list[_Open], *, now: datetime) -> int:
    from metrics_center.notify.outbox import enqueue

    added = 0
    with engine.begin() as conn:
        for row in requests:
            ref = _ref(row.payload)
            added += enqueue(
                conn,
                kind=REMINDER,
                dedupe_key=f"{REMINDER}:{ref.key}:{row.recipient}",
                recipient=_recipient(row),
                group_key=f"{REMINDER}:{ref.key}",
                payload={**row.payload, "kind": REMINDER, "reminded_at": now.isoformat()},
                metric_key=row.payload.get("metric_key"),
                run_id=row.payload.get("run_id"),
            )
    return added


def _recipient(row: _Open) -> Recipient:
    """The recipient of a follow-up: the same person, on the same channel and address as the request."""
    from metrics_center.notify.addresses import Recipient

    return Recipient.at(row.recipient, row.address, channel=row.channel, locale=row.locale)


def _reminder_due(payload: dict[str, Any], now: datetime) -> bool:
    remind_at, timeout_at = payload.get("remind_at"), payload.get("timeout_at")
    if not remind_at:
        return False
    if timeout_at and now >= _utc(datetime.fromisoformat(timeout_at)):
        return False
    return now >= _utc(datetime.fromisoformat(remind_at))


def _ref(payload: dict[str, Any]) -> ActionRef:
    return ActionRef(
        dag_id=str(payload["dag_id"]),
        run_id=str(payload["run_id"]),
        task_id=str(payload["task_id"]),
        try_number=int(payload["try_number"]),
    )


def _dict(payload: Any) -> dict[str, Any]:
    import json

    value = json.loads(payload) if isinstance(payload, str) else payload
    return dict(value) if isinstance(value, dict) else {}


def _name(teams: Teams | None, person: str | None) -> str | None:
    if person and teams is not None and person in teams.people:
        return teams.people[person].name
    return person


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
