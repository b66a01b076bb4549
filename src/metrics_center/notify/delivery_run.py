"""One delivery call's machinery: due and stale groups, claims, outcomes, backoff and the report.

Used by :func:`metrics_center.notify.deliver.deliver_pending` (which documents the states a row moves
through). A claim or a state change touches every row of a group or none: when another deliverer got
there first, :class:`LostClaim` rolls the change back and this call leaves the group alone.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.tables import notification as n
from metrics_center.notify.blocks import Item
from metrics_center.notify.outcomes import Posted, RateLimited
from metrics_center.notify.pacing import send_paced
from metrics_center.notify.slack_api import describe

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.notify.channels import Channel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    """What one :func:`deliver_pending` call did (counts of notifications, i.e. rows)."""

    delivered: int = 0  #: posted by this call
    messages: int = 0  #: messages posted by this call (one per group and channel)
    recovered: int = 0  #: posted by a call that died before recording it; found (or re-sent idempotently)
    retried: int = 0  #: failed this time, will be tried again
    dead: int = 0  #: gave up this time (``max_attempts`` reached)
    pending: int = 0  #: still waiting afterwards (not yet due, rate limited, no address, or unverified)
    unaddressed: int = 0  #: of those, with no address at all (nobody in _teams.yaml to reach them)
    dead_total: int = 0  #: dead rows in the outbox, this call's included
    skipped: str | None = None  #: why some channels or addresses waited (a missing connection), else None
    errors: tuple[str, ...] = ()  #: distinct errors met by this call


class Clock:
    """``now`` (or the wall clock) advancing with the monotonic clock: tests may act in the future."""

    def __init__(self, now: datetime | None) -> None:
        self._base = (now or datetime.now(UTC)).astimezone(UTC)
        self._start = time.monotonic()

    def now(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._start)


@dataclass
class Group:
    group_key: str
    address: str
    channel: str = "slack"
    locale: str | None = None
    ids: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    oldest: datetime | None = None
    token: str | None = None

    @property
    def lane(self) -> str:
        """What pacing spaces messages by: one conversation of one chat tool."""
        return f"{self.channel}:{self.address}"


@dataclass
class DeliveryRun:
    engine: Engine
    clock: Clock
    deadline: float
    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta
    claim_timeout: timedelta
    #: Delivers an ``approval_update`` group (:func:`metrics_center.notify.message_updates.deliver_update`).
    send_update: Callable[[DeliveryRun, Group], float | None]
    #: The configured channels of this call by name; groups of the others wait (:func:`deliver_pending`).
    channels: dict[str, Channel] = field(default_factory=dict)
    #: Seconds between two messages to one conversation, for every channel (tests); None: each channel's own.
    interval_override: float | None = None
    airflow_url: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    errors: dict[str, None] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- reading --

    def due_groups(self) -> list[Group]:
        return self._groups(sa.and_(n.c.state == "pending", n.c.address.is_not(None)))

    def stale_groups(self) -> list[Group]:
        return self._groups(n.c.state == "sending", by_token=True)

    def waiting_channels(self) -> set[str]:
        """Channels with rows due or being sent (whether configured or not)."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(n.c.channel)
                    .where(n.c.state.in_(["pending", "sending"]), n.c.address.is_not(None))
                    .where(n.c.next_attempt_at <= self.clock.now())
                    .distinct()
                ).scalars()
            )

    def _groups(self, where: Any, *, by_token: bool = False) -> list[Group]:
        query = (
            sa.select(n.c.id, n.c.kind, n.c.payload, n.c.address, n.c.group_key, n.c.attempts)
            .add_columns(n.c.channel, n.c.locale, n.c.created_at, n.c.delivery_token)
            .where(where, n.c.next_attempt_at <= self.clock.now())
            .where(n.c.channel.in_(sorted(self.channels)))
            .order_by(n.c.next_attempt_at, n.c.id)
        )
        groups: dict[tuple[str, str, str, str | None], Group] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                token = row.delivery_token if by_token else None
                group = groups.setdefault(
                    (row.group_key, row.channel, row.address, token),
                    Group(row.group_key, row.address, channel=row.channel, locale=row.locale),
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

    def update_rows(
        self,
        group: Group,
        ids: list[int],
        *,
        was: str,
        token: str | None,
        due: datetime | None = None,
        **values: Any,
    ) -> None:
        """Change every row of ``ids`` still in state ``was`` (holding ``token``; due by ``due``), or none
        of them: then raise :class:`LostClaim`."""
        if not ids:
            return
        where = [n.c.id.in_(ids), n.c.state == was]
        if token is not None:
            where.append(n.c.delivery_token == token)
        if due is not None:
            where.append(n.c.next_attempt_at <= due)
        with locked_transaction(
            self.engine, key=f"notification:{group.group_key}|{group.channel}|{group.address}"
        ) as conn:
            if conn.execute(sa.update(n).where(*where).values(**values)).rowcount != len(ids):
                raise LostClaim  # rolls the transaction back: all of the group or nothing

    def claim(self, group: Group) -> bool:
        """``pending`` → ``sending`` with a fresh token, committed before the platform is called; False if taken."""
        token, now = secrets.token_hex(16), self.clock.now()
        try:
            self.update_rows(
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
        except LostClaim:
            return False
        group.attempts = {i: a + 1 for i, a in group.attempts.items()}
        group.token = token
        return True

    def lease(self, group: Group, *, count_try: bool = False) -> bool:
        """Take over a ``sending`` group whose lease has passed (its deliverer died or gave up)."""
        now = self.clock.now()
        tries = {"attempts": n.c.attempts + 1} if count_try else {}
        try:
            self.update_rows(
                group,
                group.ids,
                was="sending",
                token=group.token,
                due=now,
                next_attempt_at=now + self.claim_timeout,
                **tries,
            )
        except LostClaim:
            return False
        if count_try:
            group.attempts = {i: a + 1 for i, a in group.attempts.items()}
        return True

    def delivered(self, group: Group, posted: Posted, *, counter: str) -> None:
        try:
            self.update_rows(
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
        except LostClaim:
            log.warning(
                "notifications %s were posted (ts %s) but another deliverer had taken them over meanwhile: "
                "raise claim_timeout",
                group.ids,
                posted.ts,
            )
            return
        self._count(**{counter: len(group.ids)})

    def failed(self, group: Group, *, error: str, unverified: bool = False, count_try: bool = False) -> None:
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
            self.update_rows(
                group, dead, was="sending", token=group.token, state="dead", last_error=error, **tries
            )
            self.update_rows(
                group,
                again,
                was="sending",
                token=group.token,
                state="sending" if unverified else "pending",
                next_attempt_at=retry_at,
                last_error=error,
                **tries,
            )
        except LostClaim:
            log.warning("notifications %s were taken over by another deliverer meanwhile", group.ids)
            return
        self._count(dead=len(dead), retried=len(again), error=error)

    def rate_limited(self, group: Group, retry_after: float, *, reason: str = "HTTP 429") -> None:
        """The platform refused to look at it (429): back to ``pending`` after ``Retry-After``, not a try."""
        try:
            self.update_rows(
                group,
                group.ids,
                was="sending",
                token=group.token,
                state="pending",
                attempts=n.c.attempts - 1,
                next_attempt_at=self.clock.now() + timedelta(seconds=retry_after),
                last_error=f"rate limited by {group.channel} ({reason}), retry after {retry_after:g} s",
            )
        except LostClaim:
            return
        group.attempts = {i: a - 1 for i, a in group.attempts.items()}

    def _count(self, *, error: str | None = None, **counts: int) -> None:
        with self.lock:
            self.counts.update(counts)
            if error:
                self.errors[error] = None

    # -- recovering a group that may have been posted --

    def recover(self, group: Group) -> None:
        """Settle a ``sending`` group whose outcome is unknown (see :mod:`metrics_center.notify.channels`)."""
        if is_update(group):  # updating a message is idempotent: due again now
            with contextlib.suppress(LostClaim):
                self.update_rows(
                    group,
                    group.ids,
                    was="sending",
                    token=group.token,
                    due=self.clock.now(),
                    state="pending",
                    next_attempt_at=_EPOCH,
                )
            return
        channel = self.channels[group.channel]
        if not channel.searchable:
            # Nothing to ask: send it again under the same token — Feishu drops it by its uuid; a robot or a
            # mail server shows it twice, with the same reference line. Each such send is a try.
            if max(group.attempts.values()) >= self.max_attempts:
                if self.lease(group):
                    self.failed(
                        group, error=f"not delivered: the last try's outcome on {group.channel} was unknown"
                    )
                return
            if not self.lease(group, count_try=True):
                return
            if not channel.idempotent:
                log.warning(
                    "notifications %s may have reached %s %s before the last deliverer lost the answer; it "
                    "cannot be asked, so they are sent again (at least once)",
                    group.ids,
                    group.channel,
                    group.address,
                )
            self.post(group, channel, counter="recovered")
            return
        if not self.lease(group):
            return
        try:
            found = channel.find(
                address=group.address,
                conversation=self.known_conversation(group),
                token=group.token or "",
                since=group.oldest,
            )
        except Exception as exc:
            self.failed(
                group,
                error=f"cannot check whether {group.channel} already has these notifications "
                f"({describe(exc)}); they are not re-posted until it can — give the app the history "
                "scopes (README → Notifications)",
                unverified=True,
                count_try=True,
            )
            return
        if found is not None:
            log.info(
                "notifications %s were already in %s (%s %s): marked delivered",
                group.ids,
                group.channel,
                found.channel,
                found.ts,
            )
            self.delivered(group, found, counter="recovered")
            return
        if max(group.attempts.values()) >= self.max_attempts:
            self.failed(
                group,
                error=f"not delivered: the last try's outcome was unknown and {group.channel} does not have it",
            )
            return
        try:  # not there: due again now, re-posted by this call under a fresh token
            self.update_rows(
                group, group.ids, was="sending", token=group.token, state="pending", next_attempt_at=_EPOCH
            )
        except LostClaim:
            return

    def known_conversation(self, group: Group) -> str | None:
        """The conversation id the platform answered with when this address was last posted to."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(n.c.slack_channel)
                .where(
                    n.c.channel == group.channel,
                    n.c.address == group.address,
                    n.c.slack_channel.is_not(None),
                )
                .order_by(n.c.id.desc())
                .limit(1)
            ).scalar()

    # -- delivering due groups --

    def deliver(self, groups: list[Group], *, workers: int) -> None:
        send_paced(
            groups,
            send=self.deliver_group,
            workers=workers,
            interval=self.interval_of,
            deadline=self.deadline,
            stop=self.stop,
        )

    def interval_of(self, group: Group) -> float:
        if self.interval_override is not None:
            return self.interval_override
        return self.channels[group.channel].interval

    def deliver_group(self, group: Group) -> float | None:
        """Claim, post, record; the ``Retry-After`` if the platform asked to wait, else None."""
        if is_update(group):  # an approval message updated in place, not a new message
            return self.send_update(self, group)
        if not self.claim(group):
            return None
        return self.post(group, self.channels[group.channel], counter="delivered")

    def post(self, group: Group, channel: Channel, *, counter: str) -> float | None:
        """Post a claimed (or leased) group under its token and record the outcome."""
        try:
            message = channel.render(group.items, base_url=self.airflow_url, locale=group.locale)
        except Exception as exc:  # a rendering bug must not leave the group claimed forever
            self.failed(group, error=f"cannot render for {group.channel}: {describe(exc)}")
            return None
        outcome = channel.post(address=group.address, message=message, token=group.token or "")
        if isinstance(outcome, Posted):
            self.delivered(group, outcome, counter=counter)
            self._count(messages=1)
            return None
        if isinstance(outcome, RateLimited):
            self.rate_limited(group, outcome.retry_after, reason=outcome.reason)
            return outcome.retry_after
        self.failed(group, error=outcome.error, unverified=not outcome.certain)
        if outcome.fatal:
            log.error("stopping delivery: %s", outcome.error)
            self.stop.set()
        return None


class LostClaim(Exception):
    """Another deliverer changed these rows first; this one leaves them alone."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UPDATE_KIND = "approval_update"


def is_update(group: Group) -> bool:
    return bool(group.items) and all(item.kind == _UPDATE_KIND for item in group.items)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
