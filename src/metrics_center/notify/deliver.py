"""Delivery of the outbox to every channel: one message per group, retried with backoff, never lost.

A ``notification`` row moves through these states (the same on Slack, Feishu / Lark, DingTalk, WeCom,
e-mail and the local inbox; :mod:`metrics_center.notify.channels` is the seam):

- ``pending`` → ``sending``: claimed with a fresh ``delivery_token``, committed *before* the platform is called.
- ``sending`` → ``delivered``: the platform accepted the message (``slack_channel``, ``slack_ts`` — every
  channel's conversation and message id —, ``delivered_at``).
- ``sending`` → ``pending`` at now + backoff: the platform refused it, or could not be reached; ``dead``
  once it has had ``max_attempts`` tries. A rate limit (429, DingTalk 130101, WeCom 45009, Feishu
  99991400) puts it back at now + the wait asked for, not counted as a try.
- ``sending`` stays ``sending`` when the outcome is unknown (HTTP 5xx, timeout) or the process died. Once its
  lease (``next_attempt_at``) has passed it is settled the channel's way: Slack's history is searched for
  the token (found → ``delivered``); Feishu is sent the same message under the same ``uuid`` (it drops
  the second); robots and e-mail cannot be asked, so the message is sent again (at least once).

``approval_update`` rows post nothing new: they edit the request messages they name (``chat.update``,
Feishu's card patch; robots and e-mail, which cannot edit, get the decided message as a new one), see
:mod:`metrics_center.notify.message_updates`.

Rows without an address, and every row of a channel whose connection is missing, stay ``pending`` —
unless ``METRICS_CENTER_INBOX`` names a folder: then they are written there (:mod:`metrics_center.notify.inbox`).
Two deliverers may run at once: a claim is an ``UPDATE … WHERE state = 'pending'`` that must change
every row of its group, else it is rolled back and the group left to the other one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center import settings
from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.tables import notification as n
from metrics_center.notify.blocks import airflow_base_url
from metrics_center.notify.delivery_run import Clock, DeliveryReport, DeliveryRun
from metrics_center.notify.message_updates import deliver_update
from metrics_center.notify.slack_api import EVENT_TYPE, HTTP_TIMEOUT, slack_client
from metrics_center.notify.slack_channel import SlackChannel

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.notify.channels import Channel

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
    channel_interval: float | None = None,
    workers: int = 4,
    conn_id: str = settings.SLACK_CONN_ID,
    airflow_url: str | None = None,
) -> DeliveryReport:
    """Deliver every due notification that has an address, one message per ``(group_key, address)``.

    ``now``: the time to act at (default: the clock), advancing with the call. ``claim_timeout``: how long
    a claimed row may stay ``sending`` before another call checks Slack for it. ``time_budget``: seconds
    after which no new message is started (keep it below the DAG's schedule interval).
    ``channel_interval``: seconds between two messages to one conversation, for every channel (default:
    each channel's own — Slack about one a second, robots one every 3.2 s; a ``Retry-After`` is honoured
    anyway). ``airflow_url``: base of run links; default
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
        interval_override=channel_interval,
    )
    waiting = run.waiting_channels()
    if not waiting:
        return run.report()
    run.channels, missing = configured_channels(waiting, slack_conn_id=conn_id)
    skipped = "; ".join(missing[c] for c in sorted(missing)) or None
    if not run.channels:
        return run.report(skipped=skipped)
    run.airflow_url = airflow_base_url() if airflow_url is None else (airflow_url or None)
    for group in run.stale_groups():
        if time.monotonic() > run.deadline or run.stop.is_set():
            break
        run.recover(group)
    due, waiting_for = [], {}
    for group in run.due_groups():
        problem = getattr(run.channels[group.channel], "unready", lambda address: None)(group.address)
        if problem is None:
            due.append(group)
        else:
            waiting_for[problem] = None
    run.deliver(due, workers=workers)
    skipped = "; ".join([*([skipped] if skipped else []), *waiting_for]) or None
    return run.report(skipped=skipped)


def configured_channels(
    wanted: set[str], *, slack_conn_id: str = settings.SLACK_CONN_ID
) -> tuple[dict[str, Channel], dict[str, str]]:
    """The channels of ``wanted`` that can deliver now, and why each of the others cannot.

    With ``METRICS_CENTER_INBOX`` set, a channel without its connection writes to the local inbox instead
    (:mod:`metrics_center.notify.inbox`).
    """
    from metrics_center.notify.email_channel import EmailChannel, smtp_connection
    from metrics_center.notify.feishu import FeishuChannel, feishu_app, feishu_client
    from metrics_center.notify.feishu_cards import card
    from metrics_center.notify.inbox import InboxChannel
    from metrics_center.notify.robots import DingTalkRobot, RobotOrInbox, WeComRobot

    inbox = settings.inbox_dir()
    channels: dict[str, Channel] = {}
    missing: dict[str, str] = {}

    def stand_in(name: str, why: str, wire: Any = None) -> None:
        if inbox is not None:
            channels[name] = InboxChannel(name=name, folder=inbox, **({"wire": wire} if wire else {}))
        else:
            missing[name] = why

    if "slack" in wanted:
        client = slack_client(slack_conn_id)
        if client is not None:
            channels["slack"] = SlackChannel(client=client)
        else:
            stand_in(
                "slack",
                f"Slack connection {slack_conn_id!r} is not configured (or has no token): Slack notifications "
                "stay pending. Add it (conn_type slack, bot token xoxb-… as password) to deliver them.",
            )
    if "feishu" in wanted:
        app = feishu_app()
        if app is not None:
            channels["feishu"] = FeishuChannel(client=feishu_client(app))
        else:
            stand_in(
                "feishu",
                f"Feishu connection {settings.FEISHU_CONN_ID!r} is not configured (App ID as login, App Secret "
                "as password): Feishu notifications stay pending.",
                wire=lambda rich, token: card(rich, token=token),
            )
    for robot in (DingTalkRobot(), WeComRobot()):
        if robot.name in wanted:  # each address is a connection id: checked per message
            channels[robot.name] = (
                RobotOrInbox(
                    robot,
                    InboxChannel(
                        name=robot.name,
                        folder=inbox,
                        wire=lambda rich, token, r=robot: r.body(rich, token=token),
                    ),
                )
                if inbox is not None
                else robot
            )
    if "email" in wanted:
        if (smtp := smtp_connection()) is not None:
            channels["email"] = EmailChannel(connection=smtp)
        else:
            stand_in(
                "email",
                f"SMTP connection {settings.SMTP_CONN_ID!r} is not configured: e-mails stay pending.",
            )
    return channels, missing


def readdress(engine: Engine, *, addresses: Mapping[str, str | tuple[str, str] | None]) -> int:
    """Give pending rows without an address the one their recipient has now (``_teams.yaml`` was fixed).

    ``addresses``: recipient → a Slack address, or ``(channel, address)`` for another channel.
    """
    unaddressed = sa.and_(n.c.state == "pending", n.c.address.is_(None))
    with engine.connect() as conn:
        if not conn.execute(sa.select(n.c.id).where(unaddressed).limit(1)).first():
            return 0  # the usual case: no write lock taken
    changed = 0
    with locked_transaction(engine, key="notification:readdress") as conn:
        for recipient, found in addresses.items():
            if not found:
                continue
            channel, address = found if isinstance(found, tuple) else ("slack", found)
            changed += conn.execute(
                sa.update(n)
                .where(unaddressed, n.c.recipient == recipient)
                .values(channel=channel, address=address)
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
