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

from metrics_center.mart.tables import anomaly as anomaly_table
from metrics_center.mart.tables import metric_value

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Connection

    from metrics_center.spec import Anomaly, Grain

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

    v, a = metric_value, anomaly_table
    marked_expected = (
        sa.select(a.c.id)
        .where(
            a.c.metric_key == v.c.metric_key,
            a.c.period_start == v.c.period_start,
            sa.cast(a.c.dimensions, sa.Text) == sa.cast(v.c.dimensions, sa.Text),
            a.c.marked_expected_at.is_not(None),
        )
        .exists()
    )
    query = sa.select(
        v.c.period_start, *(v.c.dimensions[d].as_string().label(d) for d in dimensions), v.c.value
    ).where(
        v.c.metric_key == metric_key,
        v.c.superseded_at.is_(None),
        v.c.period_start >= history_start(first_period=first_period, grain=grain, config=config),
        v.c.period_start <= last_period,
        ~marked_expected,
    )
    if not config.compare_across_versions:
        query = query.where(v.c.definition_version == definition_version)
    columns = ["period_start", *dimensions, "value"]
    if conn.dialect.name == "postgresql":
        frame = _copy_out(conn, query, columns=columns)
    else:
        frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
    frame["period_start"] = pd.to_datetime(frame["period_start"])
    frame["value"] = frame["value"].astype("float64")
    return frame


def _copy_out(conn: Connection, query: sa.Select, *, columns: list[str]) -> pd.DataFrame:
    """Postgres: stream the query through ``COPY … TO STDOUT`` into Arrow (10× faster than fetching rows).

    The statement is SQLAlchemy's own rendering with its bound values escaped as literals: the metric
    key (a validated identifier), dates and a version number — no user text.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    buffer = io.BytesIO()
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    types = {"period_start": pa.date32(), "value": pa.float64(), **dict.fromkeys(columns[1:-1], pa.string())}
    table = pacsv.read_csv(
        io.BytesIO(buffer.getvalue()),
        read_options=pacsv.ReadOptions(column_names=columns),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    return table.to_pandas()


def score(
    *, current: pd.DataFrame, history: pd.DataFrame, dimensions: list[str], config: Anomaly, grain: Grain
) -> Scored:
    """Score ``current`` (``period_start, <dims…>, value``) against ``history`` (same columns)."""
    import pandas as pd

    cur = current[["period_start", *dimensions, "value"]].copy()
    cur["period_start"] = pd.to_datetime(cur["period_start"])
    for d in dimensions:  # history's dimension values come back as text
        cur[d] = cur[d].astype("string")
        history = history.assign(**{d: history[d].astype("string")})
    # A restatement may bring several periods; none is part of another's (or its own) baseline.
    history = history[~history["period_start"].isin(cur["period_start"].unique())]
    if config.method == "pct_change":
        stats = _pct_change_stats(cur, history, dimensions, config, grain)
    else:
        stats = _spread_stats(cur, history, dimensions, config)
    return Scored(_verdicts(stats, config))


def _baselines(
    cur: pd.DataFrame, history: pd.DataFrame, dimensions: list[str], config: Anomaly
) -> pd.DataFrame:
    """Each current row joined with the newest ``window`` history points before it (same weekday if asked)."""
    keys = ["period_start", *dimensions]
    joined = cur[keys].merge(history, on=dimensions, how="inner", suffixes=("", "_h"))
    joined = joined[joined["period_start_h"] < joined["period_start"]]
    if config.seasonality == "day_of_week":
        joined = joined[(joined["period_start"] - joined["period_start_h"]).dt.days % 7 == 0]
    joined = joined.sort_values("period_start_h", ascending=False, kind="stable")
    joined = joined[joined.groupby(keys, dropna=False).cumcount() < config.window]
    return joined


def _spread_stats(
    cur: pd.DataFrame, history: pd.DataFrame, dimensions: list[str], config: Anomaly
) -> pd.DataFrame:
    import numpy as np

    keys = ["period_start", *dimensions]
    base = _baselines(cur, history, dimensions, config)
    grouped = base.groupby(keys, dropna=False)["value"]
    if config.method == "mad":
        centre = grouped.median().rename("expected")
        base = base.merge(centre, left_on=keys, right_index=True)
        base["deviation"] = (base["value"] - base["expected"]).abs()
        spread = base.groupby(keys, dropna=False)["deviation"].median().rename("spread") / _MAD_SCALE
    else:
        centre = grouped.mean().rename("expected")
        spread = grouped.std(ddof=1).fillna(0.0).rename("spread")
    stats = cur.merge(
        centre.to_frame().join(spread).join(grouped.size().rename("points")),
        left_on=keys,
        right_index=True,
        how="left",
    )
    stats["points"] = stats["points"].fillna(0).astype("int64")
    threshold = config.effective_threshold
    stats["band_low"] = stats["expected"] - threshold * stats["spread"]
    stats["band_high"] = stats["expected"] + threshold * stats["spread"]
    with _quiet_division():
        stats["score"] = (stats["value"] - stats["expected"]) / stats["spread"]
    # A flat history (no spread): no change is normal, any change is infinitely far from it.
    flat = stats["spread"] == 0
    stats.loc[flat, "score"] = np.sign(stats["value"] - stats["expected"]) * math.inf
    stats.loc[flat & (stats["value"] == stats["expected"]), "score"] = 0.0
    return stats.drop(columns=["spread"])


def _pct_change_stats(
    cur: pd.DataFrame, history: pd.DataFrame, dimensions: list[str], config: Anomaly, grain: Grain
) -> pd.DataFrame:
    """Relative change vs the previous period (the expected value) and vs one season back; the larger counts."""
    import numpy as np
    import pandas as pd

    keys = ["period_start", *dimensions]
    stats = cur.copy()
    for label, periods in (("previous", 1), ("season", _SEASON_PERIODS[grain])):
        shifted = history.rename(columns={"value": label, "period_start": "at"})
        stats["at"] = _shift(stats["period_start"], grain=grain, by=-periods)
        stats = stats.merge(shifted, on=["at", *dimensions], how="left").drop(columns=["at"])
    base = _baselines(cur, history, dimensions, config)
    stats = stats.merge(
        base.groupby(keys, dropna=False).size().rename("points"), left_on=keys, right_index=True, how="left"
    )
    stats["points"] = stats["points"].fillna(0).astype("int64")
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
