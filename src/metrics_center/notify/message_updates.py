"""Approval messages edited in place after the decision: every request and reminder, on every channel.

An ``approval_update`` row (enqueued by :mod:`metrics_center.notify.approval_followups`) posts nothing new:
it names the request/reminder rows whose messages it rewrites, on their recorded ``slack_channel`` and
``slack_ts`` (every channel's conversation and message id) — ``chat.update`` on Slack, a card patch on
Feishu; a robot or e-mail, which cannot edit, is sent the decided message once.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.mart.tables import notification as n
from metrics_center.notify.blocks import as_dict
from metrics_center.notify.delivery_run import LostClaim
from metrics_center.notify.outcomes import Posted, RateLimited

if TYPE_CHECKING:
    from metrics_center.notify.delivery_run import DeliveryRun, Group

log = logging.getLogger(__name__)
#: How long an update waits before looking again for its request message to be delivered.
WAIT_FOR_TARGET = timedelta(minutes=1)


def deliver_update(run: DeliveryRun, group: Group) -> float | None:
    """Deliver one ``approval_update`` group (called by the deliverer): ``chat.update`` on each target message.

    The targets are the request/reminder rows the updates name; until they are delivered the update waits
    (checked again after :data:`WAIT_FOR_TARGET`, not counted as a try). An interrupted update is simply
    done again: updating a message is idempotent.
    """
    targets = sorted({target_id(item.payload) for item in group.items})
    with run.engine.connect() as conn:
        rows = conn.execute(
            sa.select(n.c.id, n.c.state, n.c.slack_channel, n.c.slack_ts).where(n.c.id.in_(targets))
        ).all()
    missing = [r for r in rows if r.state != "delivered" or not r.slack_ts]
    if missing or len(rows) != len(targets):
        states = ", ".join(f"{r.id} {r.state}" for r in missing) or "deleted"
        with contextlib.suppress(LostClaim):
            run.update_rows(
                group,
                group.ids,
                was="pending",
                token=None,
                next_attempt_at=run.clock.now() + WAIT_FOR_TARGET,
                last_error=f"waiting for the request message to be delivered first (notification {states})",
            )
        return None
    if not run.claim(group):
        return None
    channel = run.channels[group.channel]
    message = channel.render(group.items, base_url=run.airflow_url, locale=group.locale)
    outcome: Any = None
    for conversation, message_id in sorted({(r.slack_channel, r.slack_ts) for r in rows}):
        outcome = channel.edit(
            conversation=conversation, message_id=message_id, address=group.address, message=message
        )
        if not isinstance(outcome, Posted):
            break
    if isinstance(outcome, Posted):
        run.delivered(group, outcome, counter="delivered")
        return None
    if isinstance(outcome, RateLimited):
        run.rate_limited(group, outcome.retry_after, reason=outcome.reason)
        return outcome.retry_after
    run.failed(group, error=outcome.error)
    if outcome.fatal:
        log.error("stopping delivery: %s", outcome.error)
        run.stop.set()
    return None


def target_id(payload: Any) -> int:
    """The notification id of the request/reminder message an ``approval_update`` payload rewrites."""
    return int(as_dict(payload)["target_id"])
