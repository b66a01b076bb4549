"""Anomaly scoring against published history: planted spikes and drops, seasonality, short and flat
histories, version boundaries and values marked "expected" — the history read with one query."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from mart_helpers import register

from metrics_center.checks.anomaly import load_history, record_anomalies, score
from metrics_center.definitions.spec import Anomaly
from metrics_center.mart.publish import publish_values

DAY = date(2026, 11, 26)
REGIONS = ["east", "north", "south", "west"]


def _history(days: int = 28, *, weekly: bool = False, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for offset in range(1, days + 1):
        day = DAY - timedelta(days=offset)
        weekend = 1.35 if weekly and day.weekday() >= 5 else 1.0
        for region in REGIONS:
            rows.append(
                {
                    "period_start": pd.Timestamp(day),
                    "region": region,
                    "value": 100 * weekend + rng.normal(0, 2),
                }
            )
    return pd.DataFrame(rows)


def _today(values: dict[str, float], day: date = DAY) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "period_start": [pd.Timestamp(day)] * len(values),
            "region": list(values),
            "value": list(values.values()),
        }
    )


def _verdicts(current, history, **config) -> dict[str, str]:
    scored = score(
        current=current, history=history, dimensions=["region"], config=Anomaly(**config), grain="day"
    )
    return dict(zip(scored.frame["region"], scored.frame["verdict"], strict=True))


def test_a_planted_spike_and_drop_are_found_and_the_rest_is_not():
    verdicts = _verdicts(_today({"east": 180.0, "north": 101.0, "south": 40.0, "west": 99.0}), _history())
    assert verdicts == {"east": "anomaly", "north": "ok", "south": "anomaly", "west": "ok"}


def test_direction_limits_which_deviations_alarm():
    current = _today({"east": 180.0, "south": 40.0})
    assert _verdicts(current, _history(), direction="up") == {"east": "anomaly", "south": "ok"}
    assert _verdicts(current, _history(), direction="down") == {"east": "ok", "south": "anomaly"}


def test_a_weekly_seasonal_series_is_not_flagged_with_day_of_week_seasonality():
    history = _history(days=70, weekly=True)  # weekends run 35% above weekdays
    saturday = DAY + timedelta(days=(5 - DAY.weekday()) % 7 or 7)
    monday = saturday + timedelta(days=2)
    shifted = history.assign(period_start=history["period_start"] + pd.Timedelta(days=(monday - DAY).days))
    normal_saturday = _today(dict.fromkeys(REGIONS, 135.0), day=saturday)
    assert set(_verdicts(normal_saturday, history, seasonality="day_of_week").values()) == {"ok"}
    # A weekend-sized Monday is what like-weekday baselines catch and a mixed baseline misses.
    weekend_level_monday = _today({"east": 135.0}, day=monday)
    assert _verdicts(weekend_level_monday, shifted, seasonality="day_of_week") == {"east": "anomaly"}
    assert _verdicts(weekend_level_monday, shifted) == {"east": "ok"}


def test_short_history_is_not_enough_history_never_an_alarm():
    verdicts = _verdicts(_today({"east": 1e9}), _history(days=5))
    assert verdicts == {"east": "not_enough_history"}


def test_a_flat_history_alarms_on_any_change_and_divides_by_nothing():
    flat = _history().assign(value=100.0)
    verdicts = _verdicts(_today({"east": 100.0, "west": 100.01}), flat)
    assert verdicts == {"east": "ok", "west": "anomaly"}
    assert _verdicts(_today({"east": 100.0, "west": 100.01}), flat, method="mad") == verdicts


def test_mad_is_robust_to_an_outlier_in_the_baseline():
    history = _history()
    history.loc[
        (history["region"] == "east") & (history["period_start"] == pd.Timestamp(DAY - timedelta(days=3))),
        "value",
    ] = 10_000.0
    current = _today({"east": 130.0})
    assert _verdicts(current, history) == {"east": "ok"}  # the outlier inflates the std: the spike hides
    assert _verdicts(current, history, method="mad") == {"east": "anomaly"}


def test_pct_change_compares_with_the_previous_period_and_one_season_back():
    history = _history()
    current = _today({"east": 170.0, "west": 101.0})
    assert _verdicts(current, history, method="pct_change") == {"east": "anomaly", "west": "ok"}
    scored = score(
        current=current,
        history=history,
        dimensions=["region"],
        config=Anomaly(method="pct_change"),
        grain="day",
    )
    east = scored.frame.set_index("region").loc["east"]
    value_on = history[history["region"] == "east"].set_index("period_start")["value"]
    previous, week_ago = (
        value_on[pd.Timestamp(DAY - timedelta(days=1))],
        value_on[pd.Timestamp(DAY - timedelta(days=7))],
    )
    assert east["expected"] == previous
    assert east["score"] == pytest.approx(max(170 / previous - 1, 170 / week_ago - 1))


def test_the_period_under_test_is_never_its_own_baseline():
    history = pd.concat([_history(), _today({"east": 500.0})])  # e.g. a restatement of a published day
    assert _verdicts(_today({"east": 500.0}), history) == {"east": "anomaly"}


# --- against the mart ---------------------------------------------------------------------------------


def _publish_days(engine, *, version: int, days: range, value: float, run_prefix: str) -> None:
    for offset in days:
        day = DAY - timedelta(days=offset)
        publish_values(
            engine,
            metric_key="m",
            definition_version=version,
            grain="day",
            dimensions=["region"],
            values=pa.table(
                {
                    "period_start": pa.array([day], pa.date32()),
                    "region": ["east"],
                    "value": [value + offset % 3],
                }
            ),
            run_id=f"{run_prefix}_{offset}",
            approved_by="seed",
        )


def _load(engine, *, version: int, **config) -> pd.DataFrame:
    with engine.connect() as conn:
        return load_history(
            conn,
            metric_key="m",
            dimensions=["region"],
            definition_version=version,
            config=Anomaly(**config),
            grain="day",
            first_period=DAY,
            last_period=DAY,
        )


def test_history_is_one_query_and_a_version_boundary_resets_the_baseline(mart, monkeypatch):
    register(mart, 1, "h1")
    _publish_days(mart, version=1, days=range(10, 40), value=100.0, run_prefix="v1")
    register(mart, 2, "h2")
    _publish_days(mart, version=2, days=range(1, 4), value=200.0, run_prefix="v2")

    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    from metrics_center.checks import anomaly

    copy_out = anomaly._copy_out  # Postgres streams the query through COPY, beside SQLAlchemy's events

    def counted_copy(conn, query, **kwargs):
        statements.append(f"COPY {query}")
        return copy_out(conn, query, **kwargs)

    monkeypatch.setattr(anomaly, "_copy_out", counted_copy)
    sa.event.listen(mart, "before_cursor_execute", count)
    v2 = _load(mart, version=2)
    sa.event.remove(mart, "before_cursor_execute", count)
    assert len([s for s in statements if "values__m" in s]) == 1  # the metric's storage, read once
    assert len(v2) == 3 and set(v2["value"].round()) <= {200.0, 201.0, 202.0}
    verdict = score(
        current=_today({"east": 201.0}), history=v2, dimensions=["region"], config=Anomaly(), grain="day"
    )
    assert verdict.frame["verdict"].tolist() == ["not_enough_history"]  # v1's 30 days do not count
    across = _load(mart, version=2, compare_across_versions=True)
    assert len(across) == 33


def test_values_marked_expected_leave_future_baselines(mart):
    register(mart)
    _publish_days(mart, version=1, days=range(1, 20), value=100.0, run_prefix="r")
    spike = DAY - timedelta(days=5)
    with mart.begin() as conn:
        conn.execute(sa.text("UPDATE values__m SET value = 900 WHERE period_start = :d"), {"d": spike})
    assert 900.0 in _load(mart, version=1)["value"].tolist()
    scored = score(
        current=_today({"east": 900.0}, day=spike),
        history=_load(mart, version=1).pipe(lambda h: h[h.period_start < pd.Timestamp(spike)]),
        dimensions=["region"],
        config=Anomaly(),
        grain="day",
    )
    with mart.begin() as conn:
        stored = record_anomalies(
            conn,
            metric_key="m",
            run_id="r_5",
            dimensions=["region"],
            definition_version=1,
            config=Anomaly(),
            scored=scored,
            detected_at=datetime.now(UTC),
        )
        conn.execute(
            sa.text("UPDATE anomaly SET marked_expected_by = 'carol', marked_expected_at = CURRENT_TIMESTAMP")
        )
    assert [(r["dimensions"], r["value"]) for r in stored] == [({"region": "east"}, 900.0)]
    assert 900.0 not in _load(mart, version=1)["value"].tolist()


def test_a_metric_without_history_is_not_enough_history(mart):
    register(mart)
    empty = _load(mart, version=1)
    assert list(empty.columns) == ["period_start", "region", "value"] and empty.empty
    scored = score(
        current=_today({"east": 5.0}), history=empty, dimensions=["region"], config=Anomaly(), grain="day"
    )
    assert scored.frame["verdict"].tolist() == ["not_enough_history"]
