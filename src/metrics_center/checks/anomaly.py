"""Anomaly detection: each new value against the metric's own published history, per dimension combination.

One SQL query reads the history a run needs (current values only, this definition version unless the
YAML says ``compare_across_versions``, values approvers marked "expected" left out); scoring is
vectorised in pandas. The period under test is never part of its own baseline: only periods before it
count. Too little history is "not enough history", never an alarm; a flat history (no spread) makes
any change an anomaly and no change normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from metrics_center.mart.relations import dimensions_json, metric_storage
from metrics_center.mart.tables import anomaly as anomaly_table

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy import Connection, Engine

    from metrics_center.definitions.spec import Anomaly, Grain, MetricSpec

Verdict = Literal["ok", "anomaly", "not_enough_history"]
_PERIOD_DAYS = {"day": 1, "week": 7, "month": 31}
#: pct_change compares with "the same period one season back": a week ago for days, a year otherwise.
_SEASON_PERIODS = {"day": 7, "week": 52, "month": 12}
_MAD_SCALE = 0.6745  # robust z = 0.6745 (x - median) / MAD: comparable with a z-score for normal data


@dataclass(frozen=True)
class Scored:
    """The scoring of one run: one row per (period, dimension combination) of the result."""

    frame: pd.DataFrame  # period_start, <dims…>, value, expected, band_low, band_high, score, points, verdict

    @property
    def anomalies(self) -> pd.DataFrame:
        return self.frame[self.frame["verdict"] == "anomaly"]


def history_start(*, first_period: date, grain: Grain, config: Anomaly) -> date:
    """How far back one query must reach so each combination can fill its window (twice, for gaps)."""
    season = 7 if config.seasonality == "day_of_week" else 1
    periods = max(config.window * season, _SEASON_PERIODS[grain] + 1) * 2
    return first_period - timedelta(days=periods * _PERIOD_DAYS[grain])


def load_history(
    conn: Connection,
    *,
    metric_key: str,
    dimensions: list[str],
    definition_version: int,
    config: Anomaly,
    grain: Grain,
    first_period: date,
    last_period: date,
) -> pd.DataFrame:
    """``period_start, <dims…>, value`` of the current published values the baselines may use — one query."""
    import pandas as pd

    columns = ["period_start", *dimensions, "value"]
    v, a = metric_storage(conn, metric_key=metric_key), anomaly_table
    if v is None or any(d not in v.c for d in dimensions):  # never published (with these dimensions)
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns}).assign(
            period_start=pd.Series(dtype="datetime64[ns]"), value=pd.Series(dtype="float64")
        )
    row_dims = dimensions_json(v, dimensions, dialect=conn.dialect.name)
    same_dims = (
        a.c.dimensions == row_dims
        if conn.dialect.name == "postgresql"
        else sa.cast(a.c.dimensions, sa.Text) == sa.cast(row_dims, sa.Text)
    )
    marked_expected = (
        sa.select(a.c.id)
        .where(
            a.c.metric_key == metric_key,
            a.c.period_start == v.c.period_start,
            same_dims,
            a.c.marked_expected_at.is_not(None),
        )
        .exists()
    )
    query = sa.select(v.c.period_start, *(v.c[d] for d in dimensions), v.c.value).where(
        v.c.superseded_at.is_(None),
        v.c.period_start >= history_start(first_period=first_period, grain=grain, config=config),
        v.c.period_start <= last_period,
        ~marked_expected,
    )
    if not config.compare_across_versions:
        query = query.where(v.c.definition_version == definition_version)
    if conn.dialect.name == "postgresql":
        frame = _copy_out(conn, query, columns=columns)
    else:
        frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
    frame["period_start"] = pd.to_datetime(frame["period_start"])
    frame["value"] = frame["value"].astype("float64")
    return frame


def _copy_out(conn: Connection, query: sa.Select, *, columns: list[str]) -> pd.DataFrame:
    """Postgres: the history through ``COPY … TO STDOUT`` (see :func:`metrics_center.mart.values.copy_out`)."""
    import pyarrow as pa

    from metrics_center.mart.values import copy_out

    types = {"period_start": pa.date32(), "value": pa.float64(), **dict.fromkeys(columns[1:-1], pa.string())}
    return copy_out(conn, query, schema=pa.schema([(c, types[c]) for c in columns])).to_pandas()


def score_against_history(
    engine: Engine, *, spec: MetricSpec, frame: pd.DataFrame, definition_version: int
) -> Scored | None:
    """``frame``'s values (a run's result) scored against ``spec``'s published history; None when the metric
    declares no anomaly check or the result is empty."""
    if spec.anomaly is None or frame.empty:
        return None
    with engine.connect() as conn:
        history = load_history(
            conn,
            metric_key=spec.key,
            dimensions=list(spec.dimensions),
            definition_version=definition_version,
            config=spec.anomaly,
            grain=spec.grain,
            first_period=frame["period_start"].min(),
            last_period=frame["period_start"].max(),
        )
    return score(
        current=frame,
        history=history,
        dimensions=list(spec.dimensions),
        config=spec.anomaly,
        grain=spec.grain,
    )


def score(
    *, current: pd.DataFrame, history: pd.DataFrame, dimensions: list[str], config: Anomaly, grain: Grain
) -> Scored:
    """Score ``current`` (``period_start, <dims…>, value``) against ``history`` (same columns)."""
    import pandas as pd

    cur = current[["period_start", *dimensions, "value"]].copy()
    cur["period_start"] = pd.to_datetime(cur["period_start"])
    for d in dimensions:  # history's dimension values come back as text
        if not (cur[d].dtype == object or pd.api.types.is_string_dtype(cur[d].dtype)):
            cur[d] = cur[d].astype("string").astype(object).where(cur[d].notna(), None)
    # A restatement may bring several periods; none is part of another's (or its own) baseline.
    history = history[~history["period_start"].isin(cur["period_start"].unique())]
    baseline = _Baseline.of(cur, history, dimensions)
    if config.method == "pct_change":
        stats = _pct_change_stats(cur, history, dimensions, config, grain, baseline)
    else:
        stats = _spread_stats(cur, config, baseline)
    return Scored(_verdicts(stats, config))


@dataclass(frozen=True)
class _Baseline:
    """Current rows and history as integer combination codes and day numbers: numpy-speed grouping."""

    cur_codes: np.ndarray
    cur_days: np.ndarray
    hist_codes: np.ndarray
    hist_days: np.ndarray
    hist_values: np.ndarray
    combinations: int

    @classmethod
    def of(cls, cur: pd.DataFrame, history: pd.DataFrame, dimensions: list[str]) -> _Baseline:
        import numpy as np
        import pandas as pd

        combined = np.zeros(len(cur) + len(history), dtype=np.int64)
        for d in dimensions:
            # Arrow-backed strings factorize natively (dictionary encoding), ~10x faster than objects.
            values = pd.concat(
                [cur[d].astype("string[pyarrow]"), history[d].astype("string[pyarrow]")], ignore_index=True
            )
            codes, uniques = pd.factorize(values, use_na_sentinel=False)
            combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes)
        combinations = int(combined.max()) + 1 if len(combined) else 0
        return cls(
            cur_codes=combined[: len(cur)],
            cur_days=_days(cur["period_start"]),
            hist_codes=combined[len(cur) :],
            hist_days=_days(history["period_start"]),
            hist_values=history["value"].to_numpy(dtype="float64"),
            combinations=combinations,
        )

    def window(self, day: int, config: Anomaly) -> tuple[np.ndarray, np.ndarray]:
        """Codes and values of the newest ``window`` points before ``day`` of each combination."""
        import numpy as np

        keep = self.hist_days < day
        if config.seasonality == "day_of_week":
            keep &= (day - self.hist_days) % 7 == 0
        codes, days, values = self.hist_codes[keep], self.hist_days[keep], self.hist_values[keep]
        counts = np.bincount(codes, minlength=self.combinations)
        if counts.max(initial=0) > config.window:
            order = np.lexsort((-days, codes))
            codes, values = codes[order], values[order]
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            newest = np.arange(len(codes)) - starts[codes] < config.window
            codes, values = codes[newest], values[newest]
        return codes, values


def _days(periods: pd.Series) -> np.ndarray:
    import numpy as np

    return periods.to_numpy(dtype="datetime64[D]").astype(np.int64)


def _spread_stats(cur: pd.DataFrame, config: Anomaly, baseline: _Baseline) -> pd.DataFrame:
    """Per current row: the window's centre (mean, or median for ``mad``), spread and size."""
    import numpy as np
    import pandas as pd

    expected = np.full(len(cur), np.nan)
    spread = np.full(len(cur), np.nan)
    points = np.zeros(len(cur), dtype=np.int64)
    for day in np.unique(baseline.cur_days):
        rows = baseline.cur_days == day
        codes, values = baseline.window(int(day), config)
        n = np.bincount(codes, minlength=baseline.combinations)
        if config.method == "mad":
            centre = (
                pd.Series(values).groupby(codes).median().reindex(range(baseline.combinations)).to_numpy()
            )
            deviation = pd.Series(np.abs(values - centre[codes])).groupby(codes).median()
            width = deviation.reindex(range(baseline.combinations)).to_numpy() / _MAD_SCALE
        else:
            with _quiet_division():
                centre = np.bincount(codes, weights=values, minlength=baseline.combinations) / n
                squares = np.bincount(
                    codes, weights=(values - centre[codes]) ** 2, minlength=baseline.combinations
                )
                width = np.sqrt(squares / (n - 1))
            width[n == 1] = 0.0  # one point has no spread to speak of: treat it as flat
        wanted = baseline.cur_codes[rows]
        expected[rows], spread[rows], points[rows] = centre[wanted], width[wanted], n[wanted]
    stats = cur.assign(expected=expected, points=points)
    threshold = config.effective_threshold
    stats["band_low"] = expected - threshold * spread
    stats["band_high"] = expected + threshold * spread
    with _quiet_division():
        stats["score"] = (stats["value"].to_numpy() - expected) / spread
    # A flat history (no spread): no change is normal, any change is infinitely far from it.
    flat = spread == 0
    change = stats["value"].to_numpy()[flat] - expected[flat]
    stats.loc[flat, "score"] = np.where(change > 0, math.inf, np.where(change < 0, -math.inf, 0.0))
    return stats


def _pct_change_stats(
    cur: pd.DataFrame,
    history: pd.DataFrame,
    dimensions: list[str],
    config: Anomaly,
    grain: Grain,
    baseline: _Baseline,
) -> pd.DataFrame:
    """Relative change vs the previous period (the expected value) and vs one season back; the larger counts."""
    import numpy as np
    import pandas as pd

    stats = cur.copy()
    for label, periods in (("previous", 1), ("season", _SEASON_PERIODS[grain])):
        shifted = history.rename(columns={"value": label, "period_start": "at"})
        stats["at"] = _shift(stats["period_start"], grain=grain, by=-periods)
        stats = stats.merge(shifted, on=["at", *dimensions], how="left").drop(columns=["at"])
    points = np.zeros(len(cur), dtype=np.int64)
    for day in np.unique(baseline.cur_days):
        rows = baseline.cur_days == day
        codes, _values = baseline.window(int(day), config)
        points[rows] = np.bincount(codes, minlength=baseline.combinations)[baseline.cur_codes[rows]]
    stats["points"] = points  # rows keep their order through the left merges above
    with _quiet_division():
        change_prev = (stats["value"] - stats["previous"]) / stats["previous"].abs()
        change_season = (stats["value"] - stats["season"]) / stats["season"].abs()
    both = pd.concat([change_prev, change_season], axis=1)
    pick = both.abs().fillna(-1).to_numpy().argmax(axis=1)
    stats["score"] = both.to_numpy()[np.arange(len(both)), pick]
    stats.loc[stats["previous"].isna(), "points"] = 0  # no previous period: nothing to compare with
    threshold = config.effective_threshold
    stats["expected"] = stats["previous"]
    stats["band_low"] = stats["previous"] - threshold * stats["previous"].abs()
    stats["band_high"] = stats["previous"] + threshold * stats["previous"].abs()
    same = stats["value"] == stats["previous"]
    stats.loc[(stats["previous"] == 0) & same, "score"] = 0.0
    return stats.drop(columns=["previous", "season"])


def _shift(starts: pd.Series, *, grain: Grain, by: int) -> pd.Series:
    """Period starts moved ``by`` periods of ``grain`` (negative: back)."""
    import pandas as pd

    if grain == "month":
        return starts + pd.DateOffset(months=by)
    return starts + pd.to_timedelta(by * _PERIOD_DAYS[grain], unit="D")


def _verdicts(stats: pd.DataFrame, config: Anomaly) -> pd.DataFrame:
    import numpy as np

    threshold = config.effective_threshold
    score = stats["score"]
    if config.direction == "up":
        outside = score > threshold
    elif config.direction == "down":
        outside = score < -threshold
    else:
        outside = score.abs() > threshold
    enough = stats["points"] >= config.min_history
    stats["verdict"] = np.where(
        ~enough, "not_enough_history", np.where(outside.fillna(False), "anomaly", "ok")
    )
    return stats


class _quiet_division:
    """numpy warns on x/0 and 0/0; the flat-history rules above decide those cases explicitly."""

    def __enter__(self) -> None:
        import numpy as np

        self._saved = np.seterr(divide="ignore", invalid="ignore")

    def __exit__(self, *exc: Any) -> None:
        import numpy as np

        np.seterr(**self._saved)


def record_anomalies(
    conn: Connection,
    *,
    metric_key: str,
    run_id: str,
    dimensions: list[str],
    definition_version: int,
    config: Anomaly,
    scored: Scored,
    detected_at: Any,
) -> list[dict[str, Any]]:
    """Store every anomaly of ``scored`` (inside the caller's transaction); return the stored rows."""
    rows = []
    for record in scored.anomalies.to_dict("records"):
        dims = {d: record[d] for d in dimensions}
        rows.append(
            {
                "metric_key": metric_key,
                "run_id": run_id,
                "period_start": record["period_start"].date(),
                "dimensions": {k: (None if _missing(v) else str(v)) for k, v in dims.items()},
                "value": float(record["value"]),
                "expected": _finite(record["expected"]),
                "band_low": _finite(record["band_low"]),
                "band_high": _finite(record["band_high"]),
                "score": _finite(record["score"]),
                "method": config.method,
                "baseline_points": int(record["points"]),
                "definition_version": definition_version,
                "detected_at": detected_at,
            }
        )
    conn.execute(
        sa.delete(anomaly_table).where(
            anomaly_table.c.metric_key == metric_key,
            anomaly_table.c.run_id == run_id,
            anomaly_table.c.marked_expected_at.is_(None),
        )
    )  # a retried quality check replaces its own verdicts
    if rows:
        conn.execute(sa.insert(anomaly_table), rows)
    return rows


def _finite(value: Any) -> float | None:
    """JSON and the evidence want numbers: ±inf (a flat history) and NaN are stored as NULL."""
    if value is None or _missing(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
