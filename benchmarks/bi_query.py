"""BI query benchmark: "SUM by region by week over two years" on a metric with 10,000,000 current values.

In a throwaway database on the local Postgres (created and dropped here):

- the metric ``bench_bi`` (dimensions region, channel, sku; 730 days x ~13,700 combinations) is registered and
  published through ``publish_values`` in monthly publications, as runs would, then half a year of it is
  restated once (so its storage also holds superseded values, as a real one does);
- ours: the query on the metric's relation ``metrics.bench_bi`` — what a BI tool reads, no hand SQL;
- baseline: the same query on a hand-made typed table ``handmade(period_start, region, channel, sku, value)``
  holding the same current values, with the same index (``period_start``);
- for reference, the same question on the tall view ``metric_value_current`` (dimensions as JSON), what a BI
  tool had to do before the per-metric relations.

Each query runs 5 times, alternating, after one warm-up each; medians. Both tables are VACUUM ANALYZEd.

Run: ``.venv/bin/python benchmarks/bi_query.py [--rows N] [--reps N]``.
URL of an admin connection: env ``METRICS_CENTER_BENCH_PG_URL``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="mc-bench-bi-"))
os.environ.setdefault("AIRFLOW_HOME", str(_TMP))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import sqlalchemy as sa  # noqa: E402

ADMIN_URL = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
METRIC = "bench_bi"
START = date(2025, 1, 1)
DAYS = 730
TARGET = 1.5
QUERY = (
    "SELECT region, date_trunc('week', period_start) AS week, SUM(value) AS value FROM {relation} "
    "WHERE period_start >= DATE '2025-01-01' AND period_start < DATE '2027-01-01' GROUP BY 1, 2"
)
TALL = (
    "SELECT dimensions->>'region' AS region, date_trunc('week', period_start) AS week, SUM(value) AS value "
    "FROM metrics_mart.metric_value_current WHERE metric_key = 'bench_bi' "
    "AND period_start >= DATE '2025-01-01' AND period_start < DATE '2027-01-01' GROUP BY 1, 2"
)


def spec():
    from metrics_center.definitions.spec import MetricSpec

    return MetricSpec.model_validate(
        {
            "key": METRIC,
            "name": "Bench GMV",
            "description": "d",
            "department": "sales",
            "owner": "alice",
            "version": 1,
            "change_note": "n",
            "unit": "CNY",
            "grain": "day",
            "schedule": None,
            "dimensions": ["region", "channel", "sku"],
            "aggregation": "sum",
            "sources": {"s": {"path": "s.csv"}},
            "transform": {"sql": "t.sql"},
            "approval": {"stages": [{"name": "review", "approvers": ["bob"]}]},
        }
    )


def month_of_values(first: date, days: int, per_day: int, *, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    regions = np.array([f"region_{i:02d}" for i in range(10)], dtype=object)
    channels = np.array(["app", "web", "store", "wechat", "partner"], dtype=object)
    skus = per_day // 50 + 1
    combo = np.arange(per_day)
    n = per_day * days
    day = np.repeat(np.arange(days), per_day)
    idx = np.tile(combo, days)
    dates = np.array([first + timedelta(days=int(d)) for d in range(days)], dtype=object)
    return pa.table(
        {
            "period_start": pa.array(dates[day], type=pa.date32()),
            "region": pa.array(regions[idx % 10], type=pa.string()),
            "channel": pa.array(channels[(idx // 10) % 5], type=pa.string()),
            "sku": pa.array(
                np.char.add("sku_", (idx // 50 % skus).astype(str)).astype(object), type=pa.string()
            ),
            "value": pa.array(rng.gamma(2.0, 500.0, n)),
        }
    )


def timed(conn, sql: str) -> float:
    t0 = time.perf_counter()
    conn.execute(sa.text(sql)).all()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="current values in all (default 10M)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    per_day = -(-args.rows // DAYS)
    t_all = time.perf_counter()

    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.publish import publish_values

    name = f"mc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        sa.make_url(ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name)
    engine = create_mart_engine(url)
    try:
        upgrade(engine)
        metric = spec()
        register_definition(engine, spec=metric, definition={}, definition_hash="h")
        day, month, published = START, 0, 0
        while day < START + timedelta(days=DAYS):
            days = min(30, (START + timedelta(days=DAYS) - day).days)
            values = month_of_values(day, days, per_day, seed=month)
            publish_values(
                engine,
                metric_key=METRIC,
                definition_version=1,
                grain="day",
                dimensions=list(metric.dimensions),
                values=values,
                run_id=f"month_{month}",
                approved_by="review: bob",
            )
            published += values.num_rows
            day += timedelta(days=days)
            month += 1
        restated = month_of_values(START, 180, per_day, seed=999)
        publish_values(
            engine,
            metric_key=METRIC,
            definition_version=1,
            grain="day",
            dimensions=list(metric.dimensions),
            values=restated,
            run_id="restatement",
            approved_by="review: bob",
            restatement=True,
        )
        print(
            f"published {published:,} values in {month} publications and restated {restated.num_rows:,} "
            f"({time.perf_counter() - t_all:.0f} s)",
            flush=True,
        )
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE public.handmade AS SELECT period_start, region, channel, sku, value "
                    "FROM metrics.bench_bi"
                )
            )
            conn.execute(sa.text("CREATE INDEX ON public.handmade (period_start)"))
        raw = engine.raw_connection()
        try:
            raw.driver_connection.autocommit = True
            with raw.driver_connection.cursor() as cur:
                cur.execute("VACUUM ANALYZE public.handmade")
                cur.execute("VACUUM ANALYZE metrics_mart.values__bench_bi")
        finally:
            raw.close()
        queries = {
            "ours": QUERY.format(relation="metrics.bench_bi"),
            "handmade": QUERY.format(relation="public.handmade"),
            "tall": TALL,
        }
        times: dict[str, list[float]] = {k: [] for k in queries}
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT count(*) FROM metrics.bench_bi")).scalar()
            stored = conn.execute(sa.text("SELECT count(*) FROM metrics_mart.values__bench_bi")).scalar()
            ours = conn.execute(sa.text(queries["ours"] + " ORDER BY 1, 2")).all()
            theirs = conn.execute(sa.text(queries["handmade"] + " ORDER BY 1, 2")).all()
            # Parallel sums add in any order: equal up to float rounding.
            same = len(ours) == len(theirs) and all(
                a[:2] == b[:2] and abs(a[2] - b[2]) <= 1e-9 * max(1.0, abs(b[2]))
                for a, b in zip(ours, theirs, strict=True)
            )
            for sql in queries.values():
                timed(conn, sql)  # warm-up
            for _ in range(args.reps):
                for key, sql in queries.items():
                    times[key].append(timed(conn, sql))
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["ours"] / med["handmade"]
        print(f"{current:,} current values ({stored:,} stored with superseded ones); same answers: {same}")
        for key, label in (
            ("ours", "metrics.bench_bi (the metric's relation)"),
            ("handmade", "hand-made typed table, same index"),
            ("tall", "metric_value_current, dimensions->>'region' (before)"),
        ):
            runs = ", ".join(f"{t:.2f}" for t in times[key])
            print(f"  {label:58} median {med[key]:6.2f} s   [{runs}]")
        print(
            f"ours / hand-made = {ratio:.2f}x   target <= {TARGET}: {'MET' if ratio <= TARGET else 'NOT MET'}; "
            f"the tall JSON view took {med['tall'] / med['handmade']:.2f}x"
        )
        print(f"benchmark wall time: {time.perf_counter() - t_all:.0f} s")
        return 0 if same else 1
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
