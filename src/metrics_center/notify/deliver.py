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
recorded ``slack_channel`` / ``slack_ts``), see :mod:`metrics_center.notify.approval_followups`.

Rows without an address, and every row while the Slack connection is missing, stay ``pending``.
Two deliverers may run at once: a claim is an ``UPDATE … WHERE state = 'pending'`` that must change
every row of its group, else it is rolled back and the group left to the other one.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center import settings
from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.tables import notification as n
from metrics_center.notify.pacing import send_paced
from metrics_center.notify.slack import Item, airflow_base_url, render_group
from metrics_center.notify.slack_api import EVENT_TYPE as EVENT_TYPE
from metrics_center.notify.slack_api import HTTP_TIMEOUT as HTTP_TIMEOUT
from metrics_center.notify.slack_api import Posted, RateLimited, describe, find_token, resolve_conversation
from metrics_center.notify.slack_api import post as post
from metrics_center.notify.slack_api import slack_client as slack_client

if TYPE_CHECKING:
    from sqlalchemy import Engine

# ``EVENT_TYPE``, ``HTTP_TIMEOUT``, ``post`` and ``slack_client`` live in slack_api; imported "as" themselves
# above, they stay importable from here.
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    """What one :func:`deliver_pending` call did (counts of notifications, i.e. rows)."""

    delivered: int = 0  #: posted by this call
    messages: int = 0  #: Slack messages posted by this call (one per group)
    recovered: int = 0  #: posted by a call that died before recording it; found in Slack, marked delivered
    retried: int = 0  #: failed this time, will be tried again
    dead: int = 0  #: gave up this time (``max_attempts`` reached)
    pending: int = 0  #: still waiting afterwards (not yet due, rate limited, no address, or unverified)
    unaddressed: int = 0  #: of those, with no Slack address (department without slack_channel)
    dead_total: int = 0  #: dead rows in the outbox, this call's included
    skipped: str | None = None  #: why nothing was attempted (no Slack connection), else None
    errors: tuple[str, ...] = ()  #: distinct errors met by this call


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
    run = _Run(
        engine=engine,
        clock=_Clock(now),
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


# --- one call ------------------------------------------------------------------------------------


class _Clock:
    """``now`` (or the wall clock) advancing with the monotonic clock: tests may act in the future."""

    def __init__(self, now: datetime | None) -> None:
        self._base = (now or datetime.now(UTC)).astimezone(UTC)
        self._start = time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._start)


@dataclass
class _Group:
    group_key: str
    address: str
    ids: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    oldest: datetime | None = None
    token: str | None = None


@dataclass
class _Run:
    engine: Engine
    clock: _Clock
    deadline: float
    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta
    claim_timeout: timedelta
    channel_interval: float
    client: Any = None
    airflow_url: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    errors: dict[str, None] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- reading --

    def due_groups(self) -> list[_Group]:
        return self._groups(sa.and_(n.c.state == "pending", n.c.address.is_not(None)))

    def stale_groups(self) -> list[_Group]:
        return self._groups(n.c.state == "sending", by_token=True)

    def _groups(self, where: Any, *, by_token: bool = False) -> list[_Group]:
        query = (
            sa.select(n.c.id, n.c.kind, n.c.payload, n.c.address, n.c.group_key, n.c.attempts)
            .add_columns(n.c.created_at, n.c.delivery_token)
            .where(where, n.c.next_attempt_at <= self.clock.now())
            .order_by(n.c.next_attempt_at, n.c.id)
        )
        groups: dict[tuple[str, str, str | None], _Group] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                token = row.delivery_token if by_token else None
                group = groups.setdefault(
                    (row.group_key, row.address, token), _Group(row.group_key, row.address)
                )
                group.ids.append(row.id)
                group.attempts[row.id] = row.attempts
                group.items.append(Item(kind=row.kind, payload=row.payload))
                created = _utc(row.created_at)
                group.oldest = min(group.oldest or created, created)
                group.token = token
        return list(groups.values())

    def report(self, *, skipped: str | None = None) -> DeliveryReport:
        with self.engine.connect() as conn:
            states = dict(conn.execute(sa.select(n.c.state, sa.func.count()).group_by(n.c.state)).all())
            unaddressed = conn.execute(
                sa.select(sa.func.count()).where(n.c.state == "pending", n.c.address.is_(None))
            ).scalar_one()
        c = self.counts
        return DeliveryReport(
            delivered=c["delivered"],
            messages=c["messages"],
            recovered=c["recovered"],
            retried=c["retried"],
            dead=c["dead"],
            pending=states.get("pending", 0) + states.get("sending", 0),
            unaddressed=unaddressed,
            dead_total=states.get("dead", 0),
            skipped=skipped,
            errors=tuple(self.errors),
        )

    # -- writing --

    def _update(
        self,
        group: _Group,
        ids: list[int],
        *,
        was: str,
        token: str | None,
        due: datetime | None = None,
        **values: Any,
    ) -> None:
        """Change every row of ``ids`` still in state ``was`` (holding ``token``; due by ``due``), or none
        of them: then raise :class:`_Lost`."""
        if not ids:
            return
        where = [n.c.id.in_(ids), n.c.state == was]
        if token is not None:
            where.append(n.c.delivery_token == token)
        if due is not None:
            where.append(n.c.next_attempt_at <= due)
        with locked_transaction(self.engine, key=f"notification:{group.group_key}|{group.address}") as conn:
            if conn.execute(sa.update(n).where(*where).values(**values)).rowcount != len(ids):
                raise _Lost  # rolls the transaction back: all of the group or nothing

    def claim(self, group: _Group) -> bool:
        """``pending`` → ``sending`` with a fresh token, committed before Slack is called; False if taken."""
        token, now = secrets.token_hex(16), self.clock.now()
        try:
            self._update(
                group,
                group.ids,
                was="pending",
                token=None,
                due=now,
                state="sending",
                delivery_token=token,
                attempts=n.c.attempts + 1,
                next_attempt_at=now + self.claim_timeout,
            )
        except _Lost:
            return False
        group.attempts = {i: a + 1 for i, a in group.attempts.items()}
        group.token = token
        return True

    def lease(self, group: _Group) -> bool:
        """Take over a ``sending`` group whose lease has passed (its deliverer died or gave up)."""
        now = self.clock.now()
        try:
            self._update(
                group,
                group.ids,
                was="sending",
                token=group.token,
                due=now,
                next_attempt_at=now + self.claim_timeout,
            )
        except _Lost:
            return False
        return True

    def delivered(self, group: _Group, posted: Posted, *, counter: str) -> None:
        try:
            self._update(
                group,
                group.ids,
                was="sending",
                token=group.token,
                state="delivered",
                slack_channel=posted.channel,
                slack_ts=posted.ts,
                delivered_at=self.clock.now(),
                last_error=None,
            )
        except _Lost:
            log.warning(
                "notifications %s were posted (ts %s) but another deliverer had taken them over meanwhile: "
                "raise claim_timeout",
                group.ids,
                posted.ts,
            )
            return
        self._count(**{counter: len(group.ids)})

    def failed(self, group: _Group, *, error: str, unverified: bool = False, count_try: bool = False) -> None:
        """After a failed try: ``pending`` again after a backoff, ``dead`` at ``max_attempts``.

        ``unverified``: Slack may have posted it, so it stays ``sending`` until its history is checked.
        ``count_try``: this was a try of its own (a failed history check), not a claimed post.
        """
        if count_try:
            group.attempts = {i: a + 1 for i, a in group.attempts.items()}
        attempts = max(group.attempts.values())
        retry_at = self.clock.now() + min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0))
        at_limit = [i for i in group.ids if group.attempts[i] >= self.max_attempts]
        dead = [] if unverified and not count_try else at_limit
        again = [i for i in group.ids if i not in dead]
        tries = {"attempts": n.c.attempts + 1} if count_try else {}
        try:
            self._update(
                group, dead, was="sending", token=group.token, state="dead", last_error=error, **tries
            )
            self._update(
                group,
                again,
                was="sending",
                token=group.token,
                state="sending" if unverified else "pending",
                next_attempt_at=retry_at,
                last_error=error,
                **tries,
            )
        except _Lost:
            log.warning("notifications %s were taken over by another deliverer meanwhile", group.ids)
            return
        self._count(dead=len(dead), retried=len(again), error=error)

    def rate_limited(self, group: _Group, retry_after: float) -> None:
        """Slack refused to look at it (429): back to ``pending`` after ``Retry-After``, not counted as a try."""
        try:
            self._update(
                group,
                group.ids,
                was="sending",
                token=group.token,
                state="pending",
                attempts=n.c.attempts - 1,
                next_attempt_at=self.clock.now() + timedelta(seconds=retry_after),
                last_error=f"rate limited by Slack (HTTP 429), retry after {retry_after:g} s",
            )
        except _Lost:
            return
        group.attempts = {i: a - 1 for i, a in group.attempts.items()}

    def _count(self, *, error: str | None = None, **counts: int) -> None:
        with self.lock:
            self.counts.update(counts)
            if error:
                self.errors[error] = None

    # -- recovering a group that may have been posted --

    def recover(self, group: _Group) -> None:
        """Search the channel for the token of a ``sending`` group: delivered if found, else retried."""
        if _is_update(group):  # updating a message is idempotent: due again now
            with contextlib.suppress(_Lost):
                self._update(
                    group,
                    group.ids,
                    was="sending",
                    token=group.token,
                    due=self.clock.now(),
                    state="pending",
                    next_attempt_at=_EPOCH,
                )
            return
        if not self.lease(group):
            return
        try:
            channel = self.conversation_id(group.address)
            ts = find_token(self.client, channel=channel, token=group.token or "", since=group.oldest)
        except Exception as exc:
            self.failed(
                group,
                error=f"cannot check whether Slack already has these notifications ({describe(exc)}); they "
                "are not re-posted until it can — give the app the history scopes (README → Notifications)",
                unverified=True,
                count_try=True,
            )
            return
        if ts is not None:
            log.info(
                "notifications %s were already in Slack (%s %s): marked delivered", group.ids, channel, ts
            )
            self.delivered(group, Posted(channel=channel, ts=ts), counter="recovered")
            return
        if max(group.attempts.values()) >= self.max_attempts:
            self.failed(
                group, error="not delivered: the last try's outcome was unknown and Slack does not have it"
            )
            return
        try:  # not in Slack: due again now, re-posted by this call under a fresh token
            self._update(
                group, group.ids, was="sending", token=group.token, state="pending", next_attempt_at=_EPOCH
            )
        except _Lost:
            return

    def conversation_id(self, address: str) -> str:
        """The conversation id ``conversations.history`` needs: the one last posted to, else asked of Slack."""
        with self.engine.connect() as conn:
            known = conn.execute(
                sa.select(n.c.slack_channel)
                .where(n.c.address == address, n.c.slack_channel.is_not(None))
                .order_by(n.c.id.desc())
                .limit(1)
            ).scalar()
        if known:
            return known
        return resolve_conversation(self.client, address=address)

    # -- delivering due groups --

    def deliver(self, groups: list[_Group], *, workers: int) -> None:
        send_paced(
            groups,
            send=self.deliver_group,
            workers=workers,
            interval=self.channel_interval,
            deadline=self.deadline,
            stop=self.stop,
        )

    def deliver_group(self, group: _Group) -> float | None:
        """Claim, post, record; the 429 ``Retry-After`` if Slack asked to wait, else None."""
        if _is_update(group):  # an approval message updated in place (chat.update), not a new message
            from metrics_center.notify.approval_followups import deliver_update

            return deliver_update(self, group)
        if not self.claim(group):
            return None
        message = render_group(group.items, base_url=self.airflow_url)
        outcome = post(
            self.client,
            channel=group.address,
            text=message.text,
            blocks=message.blocks,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"token": group.token}},
        )
        if isinstance(outcome, Posted):
            self.delivered(group, outcome, counter="delivered")
            self._count(messages=1)
            return None
        if isinstance(outcome, RateLimited):
            self.rate_limited(group, outcome.retry_after)
            return outcome.retry_after
        self.failed(group, error=outcome.error, unverified=not outcome.certain)
        if outcome.fatal:
            log.error("stopping delivery: %s", outcome.error)
            self.stop.set()
        return None


class _Lost(Exception):
    """Another deliverer changed these rows first; this one leaves them alone."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UPDATE_KIND = "approval_update"


def _is_update(group: _Group) -> bool:
    return bool(group.items) and all(item.kind == _UPDATE_KIND for item in group.items)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
