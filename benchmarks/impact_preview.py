"""Impact preview benchmark: a breaking version over 28 published periods of 100,000 rows each, on Postgres.

In a throwaway database on the local Postgres and a temp folder: a metric ``bench_sku`` whose source is one
Parquet file per day (100,000 SKUs), version 1 published for 28 days (2.8M values, untimed). Version 2 changes
the SQL (one category's value ×1.1). Then, timed, medians of interleaved repetitions:

(a) baseline: one normal transform of v2 over the same 28 periods — extract every period's source and run the
    transform, as a restatement of those periods would (``of_periods`` + ``extract_source`` +
    ``transform_table``);
(b) ours: the impact preview (``compute_impact``) — the same extract and transform, plus reading what v1
    published for those periods (one ``COPY``) and the comparison query in DuckDB.

Target: (b) <= 1.5x (a). Run: ``.venv/bin/python benchmarks/impact_preview.py [--rows N] [--periods N] [--reps N]``
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="mc-bench-preview-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_TMP / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "METRICS_CENTER_HOME": str(_TMP / "include"),
        "METRICS_CENTER_DATA_ROOT": str(_TMP / "data"),
        "METRICS_CENTER_STAGING": (_TMP / "staging").as_uri(),
    }
)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sqlalchemy as sa  # noqa: E402

ADMIN_URL = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LAST = date(2026, 11, 26)
TEAMS = """departments: {sales: {name: Sales}}
people: {alice: {name: Alice, department: sales}, bob: {name: Bob, department: sales}}
"""
METRIC = """key: bench_sku
name: Bench SKU revenue
description: Revenue per SKU and day.
department: sales
owner: alice
version: {version}
change_note: {note}
unit: CNY
grain: day
schedule: null
dimensions: [sku, category]
aggregation: sum
sources:
  sales:
    path: sales/day_{{{{ period_start }}}}.parquet
transform:
  sql: metrics/bench_v{version}.sql
approval:
  stages: [{{name: review, approvers: [bob]}}]
"""
V1 = """SELECT DATE '{{ period_start }}' AS period_start, sku, category, SUM(amount) AS value
FROM sales GROUP BY sku, category"""
V2 = """SELECT DATE '{{ period_start }}' AS period_start, sku, category,
       SUM(CASE WHEN category = 'c07' THEN amount * 1.1 ELSE amount END) AS value
FROM sales GROUP BY sku, category"""


def _setup(rows: int, periods: int) -> list[date]:
    (_TMP / "include" / "metrics").mkdir(parents=True)
    (_TMP / "include" / "sql" / "metrics").mkdir(parents=True)
    (_TMP / "include" / "metrics" / "_teams.yaml").write_text(TEAMS)
    (_TMP / "include" / "sql" / "metrics" / "bench_v1.sql").write_text(V1)
    (_TMP / "include" / "sql" / "metrics" / "bench_v2.sql").write_text(V2)
    (_TMP / "data" / "sales").mkdir(parents=True)
    rng = np.random.default_rng(7)
    skus = np.array([f"s{i:06d}" for i in range(rows)])
    categories = np.array([f"c{i % 20:02d}" for i in range(rows)])
    days = [LAST - timedelta(days=periods - 1 - i) for i in range(periods)]
    for day in days:
        table = pa.table({"sku": skus, "category": categories, "amount": rng.gamma(2.0, 50.0, rows)})
        pq.write_table(table, _TMP / "data" / "sales" / f"day_{day.isoformat()}.parquet")
    return days


def _spec(version: int):
    from metrics_center.definitions.loader import load_catalog

    path = _TMP / "include" / "metrics" / "bench_sku.yaml"
    path.write_text(METRIC.format(version=version, note=f"Version {version}."))
    catalog = load_catalog(path.parent, sql_root=_TMP / "include" / "sql")
    assert not catalog.problems, catalog.problems
    return catalog.metrics["bench_sku"].spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows (SKUs) per period")
    parser.add_argument("--periods", type=int, default=28)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="also time reading v1 and the comparison alone"
    )
    args = parser.parse_args()

    from airflow.sdk import ObjectStoragePath

    from metrics_center.definitions.meaning import load_definition
    from metrics_center.definitions.periods import period_containing
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.publish import publish_values
    from metrics_center.tasks.computation import of_periods
    from metrics_center.tasks.extract import extract_source
    from metrics_center.tasks.impact_preview import compute_impact, stored_versions
    from metrics_center.tasks.transform import transform_table

    name = f"mc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = create_mart_engine(
        sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    )
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        days = _setup(args.rows, args.periods)
        periods = [period_containing(d, grain="day") for d in days]
        v1 = _spec(1)
        definition = load_definition(v1)
        register_definition(
            engine, spec=v1, definition=definition.document, definition_hash=definition.meaning_hash
        )
        history = of_periods(
            spec=v1, root=ObjectStoragePath((_TMP / "staging" / "v1").as_uri()), periods=periods
        )
        extract_source(spec=v1, source_name="sales", computation=history)
        values = transform_table(history)
        publish_values(
            engine,
            metric_key="bench_sku",
            definition_version=1,
            grain="day",
            dimensions=["sku", "category"],
            values=values,
            run_id="bench_v1",
            approved_by="benchmark",
            periods=days,
        )
        v2 = _spec(2)
        definition = load_definition(v2)
        register_definition(
            engine, spec=v2, definition=definition.document, definition_hash=definition.meaning_hash
        )
        _current, previous = stored_versions(engine, key="bench_sku", version=2)
        print(
            f"published v1: {values.num_rows:,} values over {len(days)} days in {time.perf_counter() - t0:.1f} s "
            f"(untimed setup); v2 registered",
            flush=True,
        )

        def baseline() -> int:
            root = ObjectStoragePath((_TMP / "staging" / f"base_{uuid.uuid4().hex[:6]}").as_uri())
            computation = of_periods(spec=v2, root=root, periods=periods)
            extract_source(spec=v2, source_name="sales", computation=computation)
            return transform_table(computation).num_rows

        def ours():
            root = ObjectStoragePath((_TMP / "staging" / f"ours_{uuid.uuid4().hex[:6]}").as_uri())
            return compute_impact(engine, spec=v2, root=root, previous=previous)

        if args.profile:
            from metrics_center.checks.impact import compare_versions
            from metrics_center.mart.values import current_values_table

            start = time.perf_counter()
            old = current_values_table(
                engine,
                metric_key="bench_sku",
                dimensions=["sku", "category"],
                period_starts=days,
                before_version=2,
            )
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            compare_versions(
                old=old,
                new=values,
                old_dimensions=["sku", "category"],
                new_dimensions=["sku", "category"],
                additive=True,
                from_version=1,
                to_version=2,
                periods=days,
            )
            print(
                f"  profile: read v1 {read_s:.2f} s ({old.num_rows:,} rows); compare {time.perf_counter() - start:.2f} s"
            )
        baseline()  # warm-up: imports, DuckDB, the page cache
        impact = ours()
        times: dict[str, list[float]] = {"baseline": [], "ours": []}
        for _ in range(args.reps):
            for label, fn in (("baseline", baseline), ("ours", ours)):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        base, mine = statistics.median(times["baseline"]), statistics.median(times["ours"])
        print(
            f"\n{args.periods} periods × {args.rows:,} rows ({values.num_rows:,} values), medians of {args.reps}:"
        )
        print(
            f"  (a) baseline: one transform of v2 over the periods   {base:6.2f} s  {[round(t, 2) for t in times['baseline']]}"
        )
        print(
            f"  (b) ours: impact preview (transform + read v1 + compare) {mine:6.2f} s  {[round(t, 2) for t in times['ours']]}"
        )
        print(
            f"  ratio (b)/(a) = {mine / base:.2f}× — target ≤ 1.5×: {'met' if mine / base <= 1.5 else 'MISSED'}"
        )
        print(f"  the preview found: {impact.headline('CNY')}")
        expected = args.rows // 20 * args.periods
        assert impact.affected_combinations == expected, (impact.affected_combinations, expected)
        assert abs((impact.max_rel_diff or 0) - 0.1) < 1e-9
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
