"""quality_check benchmark: a 1,000,000-row result, the demo's expectations plus anomaly scoring.

(a) ours: ``run_expectations`` (Great Expectations 1.x, the three rules of ``gmv_daily``) and
    ``checks.anomaly.score`` (z-score, window 7, min 7) of every row against 7 days of history;
(b) baseline: the same checks hand-written in pandas — the three rules as vectorised boolean tests,
    the anomaly as a groupby mean/std of the history, a join and the z test.
Interpreter start and imports are excluded (Great Expectations alone takes ~4 s to import): both run
once untimed first. Medians of interleaved repetitions; the two must agree on every verdict.

Target: (a) <= 2x (b). Run: ``.venv/bin/python benchmarks/quality_check.py [--rows N] [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import numpy as np
import pandas as pd

DAY = pd.Timestamp("2026-11-26")
HISTORY_DAYS = 7


def make_frames(rows: int, *, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    regions = np.array([f"r{i:04d}" for i in range(rows // 100)])
    channels = np.array([f"c{i:02d}" for i in range(100)])
    region = np.repeat(regions, 100)[:rows]
    channel = np.tile(channels, rows // 100 + 1)[:rows]
    level = rng.gamma(2.0, 500.0, rows)
    history = pd.DataFrame(
        {
            "period_start": np.repeat([DAY - pd.Timedelta(days=d) for d in range(HISTORY_DAYS, 0, -1)], rows),
            "region": np.tile(region, HISTORY_DAYS),
            "channel": np.tile(channel, HISTORY_DAYS),
            "value": np.concatenate([level * (1 + rng.normal(0, 0.05, rows)) for _ in range(HISTORY_DAYS)]),
        }
    )
    current = pd.DataFrame(
        {
            "period_start": DAY,
            "region": region,
            "channel": channel,
            "value": level * (1 + rng.normal(0, 0.05, rows)),
        }
    )
    current.loc[:999, "value"] *= 3
    return current, history


def ours(current: pd.DataFrame, history: pd.DataFrame, rules, config) -> tuple[list[bool], np.ndarray]:
    from metrics_center.checks.anomaly import score
    from metrics_center.checks.expectations import run_expectations

    results = run_expectations(frame=current, rules=rules, suite_name="bench")
    scored = score(
        current=current, history=history, dimensions=["region", "channel"], config=config, grain="day"
    )
    flags = scored.frame.sort_values(["region", "channel"])["verdict"].eq("anomaly").to_numpy()
    return [r["success"] for r in results], flags


def pandas_by_hand(current: pd.DataFrame, history: pd.DataFrame) -> tuple[list[bool], np.ndarray]:
    value = current["value"]
    checks = [bool(value.notna().all()), bool((value >= 0).all()), len(current) >= 1]
    stats = history.groupby(["region", "channel"])["value"].agg(["mean", "std"])
    joined = current.join(stats, on=["region", "channel"])
    z = (joined["value"] - joined["mean"]) / joined["std"]
    flags = joined.assign(flag=z.abs() > 3).sort_values(["region", "channel"])["flag"].to_numpy()
    return checks, flags


def main() -> None:
    from metrics_center.definitions.spec import Anomaly, Expectation

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    t_all = time.perf_counter()
    current, history = make_frames(args.rows)
    rules = [
        Expectation.model_validate({"expect": "expect_column_values_to_not_be_null", "column": "value"}),
        Expectation.model_validate(
            {"expect": "expect_column_values_to_be_between", "column": "value", "min_value": 0}
        ),
        Expectation.model_validate({"expect": "expect_table_row_count_to_be_between", "min_value": 1}),
    ]
    config = Anomaly(window=HISTORY_DAYS, min_history=HISTORY_DAYS)
    print(f"{len(current):,} result rows; {len(history):,} history rows ({HISTORY_DAYS} days)")
    mine, by_hand = ours(current, history, rules, config), pandas_by_hand(current, history)  # warm-up
    assert mine[0] == by_hand[0], (mine[0], by_hand[0])
    assert np.array_equal(mine[1], by_hand[1]), "verdicts differ"
    print(f"both agree: expectations {mine[0]}, {int(mine[1].sum()):,} anomalies")
    timings: dict[str, list[float]] = {"ours": [], "pandas": []}
    for _ in range(args.reps):
        t0 = time.perf_counter()
        ours(current, history, rules, config)
        timings["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pandas_by_hand(current, history)
        timings["pandas"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(
        f"(a) ours: GX expectations + anomaly scoring  {med['ours']:6.2f} s   runs {[round(t, 2) for t in timings['ours']]}"
    )
    print(
        f"(b) the same checks by hand in pandas       {med['pandas']:6.2f} s   runs {[round(t, 2) for t in timings['pandas']]}"
    )
    ratio = med["ours"] / med["pandas"]
    print(f"ours / pandas by hand = {ratio:.2f}x   target <= 2x: {'MET' if ratio <= 2 else 'MISSED'}")
    print(f"benchmark wall time: {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
