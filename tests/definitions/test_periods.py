"""The one period rule: a run computes the last complete period of its grain, in the business zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from metrics_center.definitions.periods import Period, period_containing, period_for_run

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "zone", "start", "end"),
    [
        # A @daily run at midnight computes the day that just ended.
        (_utc(2026, 11, 27), "UTC", date(2026, 11, 26), date(2026, 11, 27)),
        # …and a late (or manual) run later that day computes the same day.
        (_utc(2026, 11, 27, 6), "UTC", date(2026, 11, 26), date(2026, 11, 27)),
        (_utc(2026, 11, 27, 23, 59, 59), "UTC", date(2026, 11, 26), date(2026, 11, 27)),
        # One second before midnight the day is not complete yet.
        (_utc(2026, 11, 26, 23, 59, 59), "UTC", date(2026, 11, 25), date(2026, 11, 26)),
        # 17:00Z is already 01:00 on the 27th in Shanghai: the 26th is complete there, not in UTC.
        (_utc(2026, 11, 26, 17), "Asia/Shanghai", date(2026, 11, 26), date(2026, 11, 27)),
        (_utc(2026, 11, 26, 17), "UTC", date(2026, 11, 25), date(2026, 11, 26)),
        # Shanghai midnight exactly (16:00Z) closes the day; a second earlier does not.
        (_utc(2026, 11, 26, 16), "Asia/Shanghai", date(2026, 11, 26), date(2026, 11, 27)),
        (_utc(2026, 11, 26, 15, 59, 59), "Asia/Shanghai", date(2026, 11, 25), date(2026, 11, 26)),
        # West of UTC the local day lags behind: 03:00Z is still the 26th in New York.
        (_utc(2026, 11, 27, 3), "America/New_York", date(2026, 11, 25), date(2026, 11, 26)),
        # Month and year boundaries.
        (_utc(2026, 12, 1), "UTC", date(2026, 11, 30), date(2026, 12, 1)),
        (_utc(2027, 1, 1), "UTC", date(2026, 12, 31), date(2027, 1, 1)),
        (_utc(2028, 3, 1), "UTC", date(2028, 2, 29), date(2028, 3, 1)),
    ],
)
def test_day(instant: datetime, zone: str, start: date, end: date):
    assert period_for_run(instant, grain="day", timezone=zone) == Period("day", start, end)


@pytest.mark.parametrize(
    ("instant", "zone", "start"),
    [
        # refund_rate_weekly runs Mondays 02:00: it computes the ISO week (Mon–Sun) that just ended.
        (_utc(2026, 11, 30, 2), "UTC", date(2026, 11, 23)),
        # Any day of the following week computes the same complete week.
        (_utc(2026, 12, 2, 12), "UTC", date(2026, 11, 23)),
        (_utc(2026, 12, 6, 23, 59), "UTC", date(2026, 11, 23)),
        # Sunday is still inside the running week.
        (_utc(2026, 11, 29, 23), "UTC", date(2026, 11, 16)),
        # Sunday 17:00Z is Monday 01:00 in Shanghai: the week is complete there.
        (_utc(2026, 11, 29, 17), "Asia/Shanghai", date(2026, 11, 23)),
        # Weeks across the year boundary: ISO week 2026-W53 is Mon 2026-12-28 … Sun 2027-01-03.
        (_utc(2027, 1, 4), "UTC", date(2026, 12, 28)),
        (_utc(2026, 1, 5), "UTC", date(2025, 12, 29)),
        (_utc(2027, 1, 1), "UTC", date(2026, 12, 21)),
    ],
)
def test_iso_week(instant: datetime, zone: str, start: date):
    period = period_for_run(instant, grain="week", timezone=zone)
    assert period == Period("week", start, start + timedelta(days=7))
    assert period.start.isoweekday() == 1  # Monday
    assert period.end <= instant.astimezone(ZoneInfo(zone)).date()


@pytest.mark.parametrize(
    ("instant", "zone", "start", "end"),
    [
        # A @monthly run on the 1st computes the month before.
        (_utc(2026, 12, 1), "UTC", date(2026, 11, 1), date(2026, 12, 1)),
        (_utc(2026, 12, 15, 8), "UTC", date(2026, 11, 1), date(2026, 12, 1)),
        (_utc(2026, 11, 30, 23, 59), "UTC", date(2026, 10, 1), date(2026, 11, 1)),
        # Year boundary.
        (_utc(2027, 1, 1), "UTC", date(2026, 12, 1), date(2027, 1, 1)),
        (_utc(2027, 1, 31), "UTC", date(2026, 12, 1), date(2027, 1, 1)),
        # February, leap and not.
        (_utc(2026, 3, 1), "UTC", date(2026, 2, 1), date(2026, 3, 1)),
        (_utc(2028, 3, 2), "UTC", date(2028, 2, 1), date(2028, 3, 1)),
        # 16:00Z on Nov 30 is Dec 1 00:00 in Shanghai: November is complete there, not in UTC.
        (_utc(2026, 11, 30, 16), "Asia/Shanghai", date(2026, 11, 1), date(2026, 12, 1)),
        (_utc(2026, 11, 30, 16), "UTC", date(2026, 10, 1), date(2026, 11, 1)),
        (_utc(2026, 12, 31, 16), "Asia/Shanghai", date(2026, 12, 1), date(2027, 1, 1)),
    ],
)
def test_month(instant: datetime, zone: str, start: date, end: date):
    assert period_for_run(instant, grain="month", timezone=zone) == Period("month", start, end)


def test_aware_instants_in_any_offset_are_the_same_instant():
    utc = _utc(2026, 11, 26, 17)
    same = [utc.astimezone(SHANGHAI), utc.astimezone(timezone(timedelta(hours=-5)))]
    for instant in same:
        assert period_for_run(instant, grain="day", timezone="Asia/Shanghai").start == date(2026, 11, 26)
        assert period_for_run(instant, grain="day", timezone="UTC").start == date(2026, 11, 25)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        period_for_run(datetime(2026, 11, 27), grain="day", timezone="UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        period_for_run(datetime(2026, 11, 27, 1), grain="month", timezone="Asia/Shanghai")


def test_daylight_saving_day_is_one_calendar_day():
    # New York springs forward on 2026-03-08 (a 23-hour day); the period is still that date.
    midnight_after = datetime(2026, 3, 9, tzinfo=ZoneInfo("America/New_York"))
    period = period_for_run(midnight_after, grain="day", timezone="America/New_York")
    assert period == Period("day", date(2026, 3, 8), date(2026, 3, 9))


@pytest.mark.parametrize(
    ("day", "grain", "start", "end"),
    [
        (date(2026, 11, 26), "day", date(2026, 11, 26), date(2026, 11, 27)),
        (date(2026, 11, 26), "week", date(2026, 11, 23), date(2026, 11, 30)),  # a Thursday
        (date(2026, 11, 23), "week", date(2026, 11, 23), date(2026, 11, 30)),  # the Monday itself
        (date(2026, 11, 29), "week", date(2026, 11, 23), date(2026, 11, 30)),  # the Sunday
        (date(2026, 12, 31), "month", date(2026, 12, 1), date(2027, 1, 1)),
        (date(2026, 2, 1), "month", date(2026, 2, 1), date(2026, 3, 1)),
    ],
)
def test_period_containing(day: date, grain, start: date, end: date):
    assert period_containing(day, grain=grain) == Period(grain, start, end)


def test_previous_chains_across_boundaries():
    assert Period("day", date(2027, 1, 1), date(2027, 1, 2)).previous() == Period(
        "day", date(2026, 12, 31), date(2027, 1, 1)
    )
    assert Period("week", date(2027, 1, 4), date(2027, 1, 11)).previous() == Period(
        "week", date(2026, 12, 28), date(2027, 1, 4)
    )
    assert Period("month", date(2027, 1, 1), date(2027, 2, 1)).previous() == Period(
        "month", date(2026, 12, 1), date(2027, 1, 1)
    )
    assert Period("month", date(2026, 3, 1), date(2026, 4, 1)).previous().end == date(2026, 3, 1)


def test_template_vars():
    period = period_for_run(_utc(2026, 11, 26, 17), grain="day", timezone="Asia/Shanghai")
    assert period.template_vars() == {
        "period_start": "2026-11-26",
        "period_end": "2026-11-27",
        "period_last_day": "2026-11-26",
        "period_ds": "2026-11-26",
        "period_ds_nodash": "20261126",
        "grain": "day",
    }
