"""Which business period a run computes — one rule, decided here and nowhere else.

Airflow 3's cron schedules have zero-length data intervals, so the period is derived from the run's
logical date (or ``run_after`` for manual runs without one): **the last complete period of the
metric's grain that ends at or before that instant, in the business time zone.** A ``@daily`` run at
2026-11-27 00:00 Asia/Shanghai computes 2026-11-26; a run at 06:00 computes the same day; a
``@monthly`` run on 2026-12-01 computes November. Weeks are ISO weeks (Monday to Sunday).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from metrics_center.definitions.spec import Grain


@dataclass(frozen=True)
class Period:
    """A half-open business period ``[start, end)`` of whole days."""

    grain: Grain
    start: date
    end: date

    def previous(self) -> Period:
        return period_containing(self.start - timedelta(days=1), grain=self.grain)

    def label(self) -> str:
        """``2026-11-26`` for a day, ``2026-11-16 – 2026-11-22`` (inclusive) otherwise."""
        last = self.end - timedelta(days=1)
        return self.start.isoformat() if last == self.start else f"{self.start} – {last}"

    def template_vars(self) -> dict[str, str]:
        """Variables every metric SQL/path template may use."""
        return {
            "period_start": self.start.isoformat(),
            "period_end": self.end.isoformat(),
            "period_last_day": (self.end - timedelta(days=1)).isoformat(),
            "period_ds": self.start.isoformat(),
            "period_ds_nodash": self.start.strftime("%Y%m%d"),
            "grain": self.grain,
        }


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_containing(day: date, *, grain: Grain) -> Period:
    if grain == "day":
        return Period(grain, day, day + timedelta(days=1))
    if grain == "week":
        start = day - timedelta(days=day.weekday())
        return Period(grain, start, start + timedelta(days=7))
    start = day.replace(day=1)
    return Period(grain, start, _add_months(start, 1))


def period_for_run(instant: datetime, *, grain: Grain, timezone: str) -> Period:
    """The last complete ``grain`` period ending at or before ``instant`` (aware) in ``timezone``."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware; Airflow's logical dates always are")
    local_day = instant.astimezone(ZoneInfo(timezone)).date()
    # The period containing local_day has not ended yet (it ends after the instant's midnight), so
    # the one before it is the last complete one.
    return period_containing(local_day, grain=grain).previous()
