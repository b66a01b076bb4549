"""Which periods a run computes: the rule, a restatement asked for in the trigger's configuration, or its inputs' Asset events."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from metrics_center.definitions.periods import period_containing
from metrics_center.definitions.run_periods import (
    InvalidRestatement,
    choose_periods,
    event_periods,
    requested_restatement,
)
from metrics_center.errors import MetricsCenterError

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RUN = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)  # a @daily run: computes 2026-12-02


def _choose(conf=None, events=(), *, grain="day", on_inputs=False, ready=lambda p: True, tz="UTC"):
    return choose_periods(
        grain=grain,
        timezone=tz,
        instant=RUN,
        conf=conf,
        events=list(events),
        on_inputs=on_inputs,
        ready=ready,
        now=NOW,
    )


def _event(*periods: str):
    return SimpleNamespace(extra={"metric_key": "gmv_daily", "periods": list(periods)})


def test_a_scheduled_or_plain_manual_run_computes_the_rule_period():
    for conf in (
        None,
        {},
        {"from": None, "to": None, "periods": [], "restate": False},
    ):  # empty fields
        chosen = _choose(conf)
        assert [p.start for p in chosen.periods] == [date(2026, 12, 2)]
        assert (chosen.restatement, chosen.reason) == (False, "schedule")
    restate = _choose({"restate": True})
    assert ([p.start for p in restate.periods], restate.restatement) == ([date(2026, 12, 2)], True)


def test_a_range_restates_every_period_in_it_snapped_to_the_grain():
    chosen = _choose({"from": "2026-11-03", "to": "2026-11-20"}, grain="week")
    assert [p.start for p in chosen.periods] == [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)]
    assert (chosen.restatement, chosen.reason) == (True, "restatement")
    days = _choose({"from": "2026-11-28", "to": "2026-12-01"})
    assert [p.start.day for p in days.periods] == [28, 29, 30, 1]
    named = _choose({"periods": ["2026-11-30", "2026-11-01", "2026-11-15"]}, grain="month")
    assert [p.start for p in named.periods] == [date(2026, 11, 1)]  # three days of one month: one period
    assert _choose({"from": "2026-11-05"}).periods == (period_containing(date(2026, 11, 5), grain="day"),)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"from": "2026-11-31"}, "from '2026-11-31' is not a date"),
        ({"from": "2026-11-20", "to": "2026-11-10"}, "to 2026-11-10 is before from 2026-11-20"),
        ({"to": "2026-11-10"}, "`to` needs `from`"),
        ({"periods": ["2026-11-01"], "from": "2026-11-02"}, "either periods or from/to"),
        ({"from": "2026-12-02", "to": "2026-12-03"}, "2026-12-03 is not over yet in UTC"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 400 at once"),
        ({"since": "2026-11-01"}, "unknown trigger parameter(s) ['since']"),
        ({"periods": 7}, "periods must be a list"),
    ],
)
def test_bad_restatements_are_refused_with_the_fix(conf, message):
    with pytest.raises(InvalidRestatement) as caught:
        _choose(conf)
    assert message in str(caught.value)


def test_the_business_zone_decides_what_is_complete():
    # 2026-12-03 09:00 UTC is 17:00 in Shanghai: 12-02 is over there and here; 12-03 is over nowhere.
    assert _choose({"from": "2026-12-02"}, tz="Asia/Shanghai").periods[0].start == date(2026, 12, 2)
    with pytest.raises(InvalidRestatement, match="not over yet in Asia/Shanghai"):
        _choose({"from": "2026-12-03"}, tz="Asia/Shanghai")


def test_a_restatement_needs_its_inputs_published():
    with pytest.raises(MetricsCenterError, match="an input metric has not published 2026-11-02"):
        _choose({"from": "2026-11-01", "to": "2026-11-02"}, ready=lambda p: p.start != date(2026, 11, 2))


def test_an_input_triggered_run_computes_the_events_periods_that_every_input_published():
    events = [_event("2026-11-25"), _event("2026-11-26", "2026-11-25"), _event("2026-12-03")]
    ready = {date(2026, 11, 25)}
    chosen = _choose(events=events, on_inputs=True, ready=lambda p: p.start in ready)
    assert [p.start for p in chosen.periods] == [date(2026, 11, 25)]
    # 11-26: an input has not published it yet; 12-03: not over. Both left for a later run.
    assert [p.start for p in chosen.deferred] == [date(2026, 11, 26), date(2026, 12, 3)]
    assert (chosen.reason, chosen.restatement) == ("inputs", False)
    nothing = _choose(events=[_event("2026-11-26")], on_inputs=True, ready=lambda p: False)
    assert (nothing.periods, nothing.label()) == ((), "nothing")


def test_event_periods_map_to_the_metrics_grain():
    weeks = event_periods([_event("2026-11-24", "2026-11-25"), _event("2026-12-01")], grain="week")
    assert [p.start for p in weeks] == [date(2026, 11, 23), date(2026, 11, 30)]
    assert (
        event_periods(
            [SimpleNamespace(extra={"periods": ["not a date"]}), SimpleNamespace(extra=None)], grain="day"
        )
        == []
    )


def test_the_trigger_forms_empty_fields_ask_for_nothing():
    assert requested_restatement({"periods": "", "from": "", "to": None}, grain="day") is None
    assert requested_restatement({"periods": "2026-11-01, 2026-11-03"}, grain="day")[0][1].start == date(
        2026, 11, 3
    )


def test_the_trigger_forms_one_field_takes_a_day_a_range_or_a_list():
    assert [p.start.day for p in _choose({"restate": "2026-11-28..2026-11-30"}).periods] == [28, 29, 30]
    assert [p.start.day for p in _choose({"restate": "2026-11-03, 2026-11-10"}).periods] == [3, 10]
    assert _choose({"restate": "2026-11-05"}).periods[0].start == date(2026, 11, 5)
    assert _choose({"restate": " "}).restatement is False  # an emptied field
    assert _choose({"restate": "true"}).periods[0].start == date(2026, 12, 2)  # the rule's period, replacing
    with pytest.raises(InvalidRestatement, match="not a range"):
        _choose({"restate": "2026-11-01.."})
    with pytest.raises(InvalidRestatement, match="not both"):
        _choose({"restate": "2026-11-01", "from": "2026-11-02"})
