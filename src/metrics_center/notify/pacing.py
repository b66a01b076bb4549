"""Per-channel pacing: worker threads send one message at a time per channel, spaced, until a deadline.

Knows nothing of Slack or the outbox: an item is anything with a ``lane`` (one conversation), and
``send`` is called for each, returning the ``Retry-After`` Slack asked for, or None.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar


class Addressed(Protocol):
    """What pacing needs of an item: the lane it goes down (one conversation of one chat tool)."""

    @property
    def lane(self) -> str: ...


T = TypeVar("T", bound=Addressed)


def send_paced(
    items: list[T],
    *,
    send: Callable[[T], float | None],
    workers: int,
    interval: float | Callable[[T], float],
    deadline: float,
    stop: threading.Event,
) -> None:
    """``send`` every item from ``workers`` threads, paced per lane by a :class:`ChannelQueue`.

    ``send`` returns the seconds Slack asked to wait (HTTP 429): the item is then sent again after that
    long, if that is before ``deadline`` (a ``time.monotonic()`` value). Setting ``stop`` ends it early.
    """
    queue = ChannelQueue(items, interval=interval, deadline=deadline, stop=stop)

    def work() -> None:
        while (item := queue.next()) is not None:
            retry_after: float | None = None
            try:
                retry_after = send(item)
            finally:
                queue.done(item, retry_after=retry_after)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()


class ChannelQueue(Generic[T]):
    """Hands items to worker threads: one message at a time per channel, the next ``interval`` after the
    previous answer, until the deadline.

    Channels are served earliest-allowed first, so one slow or rate-limited channel never holds up the others.
    """

    def __init__(
        self,
        items: list[T],
        *,
        interval: float | Callable[[T], float],
        deadline: float,
        stop: threading.Event,
    ) -> None:
        self.queues: dict[str, deque[T]] = {}
        self.spacing: dict[str, float] = {}
        for item in items:
            self.queues.setdefault(item.lane, deque()).append(item)
            self.spacing[item.lane] = interval(item) if callable(interval) else interval
        self.ready_at = dict.fromkeys(self.queues, 0.0)
        self.busy: set[str] = set()
        self.deadline, self.stop = deadline, stop
        self.cond = threading.Condition()

    def next(self) -> T | None:
        """The next item whose channel is free and due (waiting for it), or None when there is none."""
        with self.cond:
            while not self.stop.is_set():
                waiting = [a for a, q in self.queues.items() if q and a not in self.busy]
                if not waiting:
                    if not self.busy:
                        return None
                    self.cond.wait()
                    continue
                address = min(waiting, key=self.ready_at.__getitem__)
                pause = self.ready_at[address] - time.monotonic()
                if time.monotonic() + max(pause, 0) > self.deadline:
                    return None
                if pause > 0:
                    self.cond.wait(pause)
                    continue
                self.busy.add(address)
                return self.queues[address].popleft()
            return None

    def done(self, item: T, *, retry_after: float | None) -> None:
        """``item`` was answered: its channel is free again after ``interval`` (or ``retry_after``)."""
        with self.cond:
            self.busy.discard(item.lane)
            # From the answer, not the request: Slack counts arrivals, and requests take varying time.
            self.ready_at[item.lane] = time.monotonic() + self.spacing[item.lane]
            if retry_after is not None:
                ready = time.monotonic() + retry_after
                if ready <= self.deadline:
                    self.queues[item.lane].appendleft(item)  # due again by then
                    self.ready_at[item.lane] = max(self.ready_at[item.lane], ready)
                else:
                    self.queues[item.lane].clear()  # this channel is done for this call
            self.cond.notify_all()
