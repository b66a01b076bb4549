"""Publish benchmark: 1,000,000 metric values into the Postgres mart.

In a throwaway database on the local Postgres (created and dropped here), with the mart migrated by
``metrics_center.mart.migrate.upgrade`` and the metric registered (which builds its typed storage):

(a) ``publish_values(...)`` of all rows into an empty mart — the whole call: DuckDB preparation,
    content hash, one transaction (advisory lock, idempotency check, publication row, supersede
    UPDATE, COPY into the metric's storage ``values__<key>``), commit;
(b) baseline: raw ``COPY ... FROM STDIN (FORMAT csv)`` of the same rows, as already-prepared CSV
    bytes, into ``CREATE TABLE x (LIKE values__<key> INCLUDING ALL)`` (same columns, indexes and
    defaults) — timing only COPY + commit;
(c) pandas ``DataFrame.to_sql`` (method=None, chunksize 10,000) of the same prepared rows into another
    such table. A 1M-row to_sql takes 45-60 s on the 2-core dev machine, so by default it is measured on
    the first 100k rows and scaled x10 (said so in the output). ``--to-sql-rows 0`` measures all rows.

Tables are truncated and Postgres checkpointed before every timed write; medians of 3 interleaved
repetitions. Then ``publish_values`` is re-run for the same run_id and rows: it must be a no-op.
``--profile`` adds a step-by-step breakdown of publish_values and a cProfile.

Run: ``.venv/bin/python benchmarks/publish.py [--rows N] [--reps N] [--profile]``
URL of an admin connection: env ``METRICS_CENTER_BENCH_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

# Environment first: nothing below may import airflow before it is set.
_TMP = Path(tempfile.mkdtemp(prefix="mc-bench-publish-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_TMP / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_NO_ANALYTICS": "true",
        "METRICS_CENTER_STAGING": (_TMP / "staging").as_uri(),
    }
)
os.environ.pop("METRICS_CENTER_MART_URL", None)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from metrics_center.mart.relations import storage_name  # noqa: E402

ADMIN_URL = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
N_ROWS = 1_000_000
N_DAYS = 100
METRIC = "bench_metric"
STORAGE = storage_name(METRIC)  # the metric's typed storage, values__bench_metric
COPY_COLUMNS = (
    "period_start",
    "period_end",
    "region",
    "channel",
    "value",
    "definition_version",
    "publication_id",
)
TARGET_VS_COPY = 0.7  # ours / raw COPY throughput
TARGET_VS_TO_SQL = 2.0  # ours / to_sql throughput
TO_SQL_SAMPLE = 100_000


def make_values(n: int, *, seed: int = 7) -> pa.Table:
    """``period_start, region, channel, value``: ~n/100 dimension combinations on each of 100 days."""
    rng = np.random.default_rng(seed)
    per_day = -(-n // N_DAYS)
    n_regions = max(1, int(per_day**0.5))
    n_channels = -(-per_day // n_regions)
    combo = np.arange(per_day)
    regions = np.array([f"region_{i:03d}_{'xyz' * (i % 4)}" for i in range(n_regions)], dtype=object)
    channels = np.array([f"channel-{i:03d}" for i in range(n_channels)], dtype=object)
    day = np.repeat(np.arange(N_DAYS), per_day)[:n]
    idx = np.tile(combo, N_DAYS)[:n]
    order = rng.permutation(n)  # arrival order is not sorted; publish sorts
    start = date(2026, 1, 1)
    days = np.array([start + timedelta(days=int(d)) for d in range(N_DAYS)], dtype=object)
    return pa.table(
        {
            "period_start": pa.array(days[day[order]], type=pa.date32()),
            "region": pa.array(regions[idx[order] // n_channels], type=pa.string()),
            "channel": pa.array(channels[idx[order] % n_channels], type=pa.string()),
            "value": pa.array(rng.gamma(2.0, 5_000.0, n)),
        }
    )


def prepared_rows(values: pa.Table, *, publication_id: int) -> pa.Table:
    """The exact rows publish writes, built here independently (untimed) for the baselines."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("v", values)
        prepared = con.sql(
            """
            SELECT CAST(period_start AS DATE) AS period_start,
                   CAST(CAST(period_start AS DATE) + INTERVAL 1 DAY AS DATE) AS period_end,
                   CAST(region AS VARCHAR) AS region, CAST(channel AS VARCHAR) AS channel,
                   CAST(value AS DOUBLE) AS value
            FROM v ORDER BY 1, 3, 4
            """
        ).to_arrow_table()
    finally:
        con.close()
    n = prepared.num_rows
    table = prepared
    for name, value in {"definition_version": 1, "publication_id": publication_id}.items():
        table = table.append_column(name, pa.repeat(pa.scalar(value), n))
    return table.select(list(COPY_COLUMNS))


def csv_bytes(rows: pa.Table) -> bytes:
    import io

    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(rows, buffer, write_options=pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


class Bench:
    def __init__(self, url: str) -> None:
        import psycopg

        from metrics_center.mart.engine import MART_SCHEMA, create_mart_engine

        self.url = url
        self.schema = MART_SCHEMA
        self.engine = create_mart_engine(url)
        self.pg = psycopg.connect(
            sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            options=f"-c search_path={MART_SCHEMA}",
        )

    def sql(self, statement: str) -> None:
        with self.pg.cursor() as cur:
            cur.execute(statement)
        self.pg.commit()

    def count(self, table: str) -> int:
        with self.pg.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            n = cur.fetchone()[0]
        self.pg.commit()
        return n

    def reset(self, *tables: str) -> None:
        self.sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        self.pg.autocommit = True
        try:
            with self.pg.cursor() as cur:
                cur.execute("CHECKPOINT")  # start each timed write from the same clean state
        finally:
            self.pg.autocommit = False

    def copy(self, table: str, payload: bytes) -> float:
        columns = ", ".join(COPY_COLUMNS)
        view = memoryview(payload)
        t0 = time.perf_counter()
        with self.pg.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            chunk = 8 << 20
            for offset in range(0, len(view), chunk):
                copy.write(view[offset : offset + chunk])
        self.pg.commit()
        return time.perf_counter() - t0

    def publish(self, values: pa.Table, run_id: str):
        from metrics_center.mart.publish import publish_values

        t0 = time.perf_counter()
        result = publish_values(
            self.engine,
            metric_key=METRIC,
            definition_version=1,
            grain="day",
            dimensions=["region", "channel"],
            values=values,
            run_id=run_id,
            approved_by="review: bob; sign-off: carol",
        )
        return time.perf_counter() - t0, result

    def to_sql(self, frame, table: str) -> float:
        t0 = time.perf_counter()
        with self.engine.begin() as conn:
            frame.to_sql(table, conn, schema=self.schema, if_exists="append", index=False, chunksize=10_000)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.pg.close()
        self.engine.dispose()


def create_database() -> tuple[sa.Engine, str, str]:
    name = f"mc_bench_{uuid.uuid4().hex[:10]}"
    admin_url = sa.make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return admin, name, admin_url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:>12,.0f} rows/s"


def register(engine: sa.Engine) -> None:
    """Register the bench metric (publish refuses an unregistered version); this builds its storage."""
    from metrics_center.definitions.spec import MetricSpec
    from metrics_center.mart.definitions import register_definition

    spec = MetricSpec.model_validate(
        {
            "key": METRIC,
            "name": "Bench",
            "description": "d",
            "department": "sales",
            "owner": "alice",
            "version": 1,
            "change_note": "n",
            "unit": "CNY",
            "grain": "day",
            "schedule": None,
            "dimensions": ["region", "channel"],
            "aggregation": "sum",
            "sources": {"s": {"path": "s.csv"}},
            "transform": {"sql": "t.sql"},
            "approval": {"stages": [{"name": "review", "approvers": ["bob"]}]},
        }
    )
    register_definition(engine, spec=spec, definition={}, definition_hash="h")


def profile_publish(bench: Bench, values: pa.Table) -> None:
    """Where publish_values spends its time: its steps timed one by one, then a cProfile of the call."""
    import cProfile
    import io
    import pstats

    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from metrics_center.mart import publish as pub

    print("\n--- publish_values() step by step (same steps as the function, timed separately) ---")
    timings: list[tuple[str, float]] = []

    def step(label: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timings.append((label, time.perf_counter() - t0))
        return out

    prepared = step(
        "_prepare: DuckDB typed dimensions + sort",
        lambda: pub._prepare(values, dimensions=["region", "channel"], grain="day"),
    )
    step("content_hash: Arrow IPC + SHA-256", lambda: pub.content_hash(prepared))
    step("periods: pyarrow.compute.unique", lambda: sorted(pc.unique(prepared["period_start"]).to_pylist()))
    rows = step(
        "_with_constants",
        lambda: pub._with_constants(prepared, {"definition_version": 1, "publication_id": 1}),
    )

    def write_csv() -> bytes:
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, write_options=pacsv.WriteOptions(include_header=False))
        return buffer.getvalue()

    payload = step("write_csv of the COPY payload", write_csv)
    for label, seconds in timings:
        print(f"  {label:48} {seconds:7.2f} s")
    print(f"  payload {len(payload) / 2**20:.0f} MiB")

    bench.reset(STORAGE, "publication")
    profiler = cProfile.Profile()
    profiler.enable()
    bench.publish(values, "run_profile")
    profiler.disable()
    print("\n--- cProfile of publish_values() (cumulative, top 20) ---")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=N_ROWS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--to-sql-rows",
        type=int,
        default=TO_SQL_SAMPLE,
        help="rows given to to_sql, its time scaled to --rows (default 100k: 1M rows take 45-60 s a run "
        "here, 3 runs alone would exceed the 2-minute budget); 0 = all rows",
    )
    parser.add_argument("--profile", action="store_true", help="print the step timings and a cProfile")
    args = parser.parse_args()
    t_all = time.perf_counter()
    n = args.rows
    to_sql_rows = min(n, args.to_sql_rows or n)

    t0 = time.perf_counter()
    values = make_values(n)
    print(
        f"{n:,} value rows: {N_DAYS} days x {n // N_DAYS:,} (region, channel) combinations "
        f"({values.nbytes / 2**20:.0f} MiB arrow), generated in {time.perf_counter() - t0:.1f} s"
    )

    admin, db_name, url = create_database()
    bench = None
    try:
        from metrics_center.mart.migrate import upgrade

        bench = Bench(url)
        print(f"throwaway database {db_name}: mart migrated to revision {upgrade(bench.engine)}")
        register(bench.engine)
        bench.sql(f"CREATE TABLE bench_copy (LIKE {STORAGE} INCLUDING ALL)")
        bench.sql(f"CREATE TABLE bench_to_sql (LIKE {STORAGE} INCLUDING ALL)")

        # Baseline inputs, prepared once and untimed: the same rows publish writes.
        t0 = time.perf_counter()
        rows = prepared_rows(values, publication_id=1)
        payload = csv_bytes(rows)
        frame = rows.slice(0, to_sql_rows).to_pandas()
        print(
            f"baselines prepared in {time.perf_counter() - t0:.1f} s: CSV payload "
            f"{len(payload) / 2**20:.0f} MiB, DataFrame {len(frame):,} rows"
        )
        scale = n / to_sql_rows
        to_sql_note = (
            f"measured on all {n:,} rows"
            if scale == 1
            else f"measured on the first {to_sql_rows:,} rows and scaled x{scale:g} to {n:,} "
            "(a 1M-row to_sql takes 45-60 s on 2 cores; 3 of them alone would exceed the 2-minute budget. "
            "--to-sql-rows 0 measures all rows)"
        )

        times: dict[str, list[float]] = {"ours": [], "copy": [], "to_sql": []}
        result = None
        for rep in range(args.reps):
            bench.reset("bench_copy")
            times["copy"].append(bench.copy("bench_copy", payload))
            assert bench.count("bench_copy") == n

            bench.reset("bench_to_sql")
            times["to_sql"].append(bench.to_sql(frame, "bench_to_sql") * scale)
            assert bench.count("bench_to_sql") == to_sql_rows

            # Ours last, so the final repetition leaves its publication for the re-publish check.
            bench.reset(STORAGE, "publication")
            elapsed, result = bench.publish(values, f"run_{rep}")
            assert result.rows == n and not result.already_published, result
            assert bench.count(STORAGE) == n
            times["ours"].append(elapsed)
            print(f"  repetition {rep + 1} done ({time.perf_counter() - t_all:.0f} s elapsed)", flush=True)

        # The baselines wrote the same rows as publish (cheap fingerprint of both tables).
        fingerprint = (
            "SELECT count(*), round(sum(value)::numeric, 3), min(period_start), max(period_end), "
            "count(DISTINCT (region, channel)), max(region || channel) FROM {}"
        )
        with bench.pg.cursor() as cur:
            ours_fp = cur.execute(fingerprint.format(STORAGE)).fetchone()
            copy_fp = cur.execute(fingerprint.format("bench_copy")).fetchone()
        bench.pg.commit()
        if ours_fp != copy_fp:
            raise SystemExit(f"baseline rows differ from published rows: {ours_fp} != {copy_fp}")
        print(f"published rows and baseline rows match: {ours_fp[0]:,} rows, sum(value) {ours_fp[1]}")

        # Idempotency: the same run_id and rows again must change nothing.
        before = bench.count(STORAGE), bench.count("publication")
        again, again_result = bench.publish(values, f"run_{args.reps - 1}")
        after = bench.count(STORAGE), bench.count("publication")

        med = {k: statistics.median(v) for k, v in times.items()}
        labels = {
            "ours": "(a) publish_values() into an empty mart, whole call",
            "copy": "(b) raw COPY, prepared CSV, LIKE values__<key> INCLUDING ALL",
            "to_sql": "(c) DataFrame.to_sql(method=None, chunksize=10k)" + (" *scaled" if scale != 1 else ""),
        }
        print()
        print(f"{'variant (' + format(n, ',') + ' rows)':62} {'median':>9} {'throughput':>20}   runs (s)")
        for key, label in labels.items():
            if key in med:
                runs = ", ".join(f"{t:.2f}" for t in times[key])
                print(f"{label:62} {med[key]:8.2f}s {rate(n, med[key])}   [{runs}]")
        print(f"\nto_sql: {to_sql_note}.")
        print("Timed: (a) the whole publish_values call; (b) COPY + commit only; (c) to_sql + commit.")
        vs_copy = med["copy"] / med["ours"]
        vs_to_sql = med["to_sql"] / med["ours"]
        print(
            f"ours / raw COPY        (throughput) = {vs_copy:.3f}   target >= {TARGET_VS_COPY}: "
            f"{'MET' if vs_copy >= TARGET_VS_COPY else 'NOT MET'}"
        )
        print(
            f"ours / to_sql          (throughput) = {vs_to_sql:.3f}   target >= {TARGET_VS_TO_SQL}: "
            f"{'MET' if vs_to_sql >= TARGET_VS_TO_SQL else 'NOT MET'}"
        )
        noop = again_result.already_published and before == after
        print(
            f"re-publish, same run_id + rows: already_published={again_result.already_published}, "
            f"stored rows {before[0]:,} -> {after[0]:,}, publications {before[1]} -> {after[1]}: "
            f"{'no-op' if noop else 'NOT A NO-OP'}, took {again * 1000:.0f} ms"
        )
        if args.profile:
            profile_publish(bench, values)
        elif vs_copy < TARGET_VS_COPY or vs_to_sql < TARGET_VS_TO_SQL:
            print("(target missed: run with --profile for the step-by-step breakdown and a cProfile)")
        print(f"\nbenchmark wall time: {time.perf_counter() - t_all:.0f} s")
    finally:
        if bench is not None:
            bench.close()
        drop_database(admin, db_name)
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
