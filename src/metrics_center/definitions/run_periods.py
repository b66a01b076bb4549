"""Which periods a run computes: the period rule, an explicit restatement (重算), or its inputs' Asset events.

- A scheduled or plain manual run computes the period rule's period (:mod:`metrics_center.definitions.periods`).
- A run triggered with ``periods`` or ``from``/``to`` (the trigger's configuration JSON, ``metrics-center restate``)
  restates those periods: validated here, each a complete period of the metric's grain, one approval
  for the whole range, published by superseding.
- A run of a metric scheduled on its inputs (``schedule: inputs``) computes the periods named in the
  Asset events that triggered it (``extra["periods"]`` of each ``publish``), mapped to its own grain.

Pure functions: the caller passes what Airflow and the mart know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from metrics_center.definitions.periods import Period, period_containing, period_for_run
from metrics_center.definitions.spec import Grain
from metrics_center.errors import MetricsCenterError

#: A restatement covers at most this many periods (a year of days, plus slack for a leap year).
MAX_PERIODS = 400
#: ``dag_run.conf`` keys a restatement may use (a trigger's configuration).
CONF_KEYS = ("restate", "periods", "from", "to")

Reason = Literal["schedule", "restatement", "inputs"]


class InvalidRestatement(MetricsCenterError):
    """The periods asked for cannot be restated (not dates, not complete, too many)."""


@dataclass(frozen=True)
class RunPeriods:
    """What a run computes and why; ``deferred`` are periods named by events whose inputs are not all published."""

    periods: tuple[Period, ...]
    restatement: bool
    reason: Reason
    deferred: tuple[Period, ...] = ()

    def label(self) -> str:
        if not self.periods:
            return "nothing"
        if len(self.periods) == 1:
            return self.periods[0].label()
        return f"{len(self.periods)} periods, {self.periods[0].label()} … {self.periods[-1].label()}"


def _date(value: Any, *, key: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise InvalidRestatement(f"restatement: {key} {value!r} is not a date; write YYYY-MM-DD")


def periods_between(first: date, last: date, *, grain: Grain) -> list[Period]:
    """Every period of ``grain`` from the one containing ``first`` to the one containing ``last``."""
    periods: list[Period] = []
    period = period_containing(first, grain=grain)
    while period.start <= last:
        periods.append(period)
        if len(periods) > MAX_PERIODS:
            break
        period = period_containing(period.end, grain=grain)
    return periods


def requested_restatement(
    conf: Mapping[str, Any] | None, *, grain: Grain
) -> tuple[list[Period], bool] | None:
    """The periods a trigger's conf asks for, and whether it is a restatement; None when it asks for none.

    ``{"periods": ["2026-11-02", …]}`` names periods by any day in them; ``{"from": …, "to": …}`` is a
    range (``to`` defaults to ``from``); ``{"restate": true}`` alone restates the period rule's period. The
    trigger's configuration JSON may put the same in ``restate`` as text: ``"2026-11-03"``, ``"2026-11-01..2026-11-30"``
    or ``"2026-11-03, 2026-11-10"``. Empty values count as absent.
    """
    conf = conf or {}
    unknown = sorted(k for k in conf if k not in CONF_KEYS)
    if unknown:
        raise InvalidRestatement(
            f"restatement: unknown trigger parameter(s) {unknown}; use periods, or from and to (and restate)"
        )
    named = conf.get("periods") or []
    first, last = conf.get("from") or None, conf.get("to") or None
    if isinstance(named, str):
        named = [p for p in named.replace(",", " ").split() if p]
    if not isinstance(named, list):
        raise InvalidRestatement("restatement: periods must be a list of dates (YYYY-MM-DD)")
    if named and (first or last):
        raise InvalidRestatement("restatement: give either periods or from/to, not both")
    if last and not first:
        raise InvalidRestatement("restatement: `to` needs `from`; give the first day of the range too")
    restate = conf.get("restate")
    if isinstance(restate, str) and restate.strip():  # as text: "2026-11-03", "a..b" or "a, b, c"
        if named or first or last:
            raise InvalidRestatement(
                "restatement: give the periods in `restate` or in periods/from/to, not both"
            )
        text = restate.strip()
        if text.lower() in ("true", "yes"):
            restate = True
        elif text.lower() in ("false", "no"):
            restate = False
        elif ".." in text:
            first, _, last = (part.strip() for part in text.partition(".."))
            if not first or not last:
                raise InvalidRestatement(
                    f"restatement: {text!r} is not a range; write 2026-11-01..2026-11-30"
                )
        else:
            named = [p for p in text.replace(",", " ").split() if p]
    restate = restate is True  # the periods named in the text (if any) make it a restatement below
    if named:
        days = [_date(p, key="period") for p in named]
        periods = sorted({period_containing(d, grain=grain) for d in days}, key=lambda p: p.start)
    elif first:
        start, end = _date(first, key="from"), _date(last or first, key="to")
        if end < start:
            raise InvalidRestatement(f"restatement: to {end} is before from {start}; swap them")
        periods = periods_between(start, end, grain=grain)
    else:
        return ([], True) if restate else None
    if len(periods) > MAX_PERIODS:
        raise InvalidRestatement(
            f"restatement: {len(periods)}+ periods asked for; at most {MAX_PERIODS} at once — split the range"
        )
    return periods, True


def event_periods(events: Iterable[Any], *, grain: Grain) -> list[Period]:
    """The periods of ``grain`` containing any period named in the triggering Asset events' ``extra``."""
    found: set[Period] = set()
    for event in events:
        extra = getattr(event, "extra", None) or {}
        for value in extra.get("periods") or []:
            try:
                found.add(period_containing(date.fromisoformat(str(value)[:10]), grain=grain))
            except ValueError:
                continue  # another producer's event on our URI scheme: not a period we can compute
    return sorted(found, key=lambda p: p.start)


def choose_periods(
    *,
    grain: Grain,
    timezone: str,
    instant: datetime,
    conf: Mapping[str, Any] | None,
    events: Sequence[Any],
    on_inputs: bool,
    ready: Callable[[Period], bool],
    now: datetime | None = None,
) -> RunPeriods:
    """Decide a run's periods.

    ``ready(period)`` says whether every input metric has published all of ``period`` (always True for a
    metric without metric sources). A restatement or a scheduled run whose inputs are not ready fails
    with the missing periods named; an input-triggered run defers them to the run the missing input's
    own publish triggers.
    """
    last_complete = period_for_run(now or datetime.now(ZoneInfo(timezone)), grain=grain, timezone=timezone)
    asked = requested_restatement(conf, grain=grain)
    if asked is not None and asked[0]:
        periods = asked[0]
        future = [p for p in periods if p.start > last_complete.start]
        if future:
            raise InvalidRestatement(
                f"restatement: {future[0].label()} is not over yet in {timezone} (the last complete {grain} is "
                f"{last_complete.label()}); restate complete periods only"
            )
        return RunPeriods(tuple(_require_ready(periods, ready)), restatement=True, reason="restatement")
    restatement = asked is not None  # {"restate": true}: the rule's period, replacing newer values
    if on_inputs and events and not restatement:
        named = event_periods(events, grain=grain)
        complete = [p for p in named if p.start <= last_complete.start]
        runnable = tuple(p for p in complete if ready(p))
        deferred = tuple(p for p in named if p not in runnable)
        return RunPeriods(runnable, restatement=False, reason="inputs", deferred=deferred)
    period = period_for_run(instant, grain=grain, timezone=timezone)
    return RunPeriods(tuple(_require_ready([period], ready)), restatement=restatement, reason="schedule")


def _require_ready(periods: list[Period], ready: Callable[[Period], bool]) -> list[Period]:
    missing = [p for p in periods if not ready(p)]
    if missing:
        shown = ", ".join(p.label() for p in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise MetricsCenterError(
            f"an input metric has not published {shown} yet; nothing computed — run this after its inputs "
            "publish those periods (or schedule it on them: schedule: inputs)"
        )
    return periods
