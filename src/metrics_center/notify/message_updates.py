"""Approval messages edited in place after the decision: ``chat.update`` on every request and reminder.

An ``approval_update`` row (enqueued by :mod:`metrics_center.notify.approval_followups`) posts nothing:
it names the request/reminder rows whose Slack messages it rewrites, on their recorded ``slack_channel``
and ``slack_ts``.
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
from metrics_center.notify.slack import render_group
from metrics_center.notify.slack_api import Posted, RateLimited, update

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
    message = render_group(group.items, base_url=run.airflow_url)
    outcome: Any = None
    for channel, ts in sorted({(r.slack_channel, r.slack_ts) for r in rows}):
        outcome = update(run.client, channel=channel, ts=ts, text=message.text, blocks=message.blocks)
        if not isinstance(outcome, Posted):
            break
    if isinstance(outcome, Posted):
        run.delivered(group, outcome, counter="delivered")
        return None
    if isinstance(outcome, RateLimited):
        run.rate_limited(group, outcome.retry_after)
        return outcome.retry_after
    run.failed(group, error=outcome.error)
    if outcome.fatal:
        log.error("stopping delivery: %s", outcome.error)
        run.stop.set()
    return None


def target_id(payload: Any) -> int:
    """The notification id of the request/reminder message an ``approval_update`` payload rewrites."""
    return int(as_dict(payload)["target_id"])
