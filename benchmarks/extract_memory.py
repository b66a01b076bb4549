"""Extract memory benchmark: a 10,000,000-row Postgres source, streamed vs read whole (peak memory of the task).

In a throwaway database on the local Postgres, table ``big`` (10M rows: an integer, a text, a numeric and a
timestamp). Each variant runs ``extract_source`` for one SQL source ``SELECT * FROM big`` in a fresh Python
process and reports that process's peak resident memory (``ru_maxrss``):

- ours: the extract as tasks run it — a server-side cursor, 100,000 rows per batch written to Parquet as they come;
- baseline: the same code with a client-side cursor (psycopg's default), which receives the whole result first.

Target: ours <= 1 GiB. Run: ``.venv/bin/python benchmarks/extract_memory.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ADMIN_URL = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MIB = 1024
CHILD = r"""
import json, os, resource, sys, time
from datetime import UTC, datetime

from metrics_center.definitions.spec import MetricSpec
from metrics_center.tasks import extract

if os.environ["MC_BENCH_VARIANT"] == "whole":
    extract._streaming_cursor = lambda conn: conn.cursor()  # psycopg's default: the whole result, client-side
spec = MetricSpec.model_validate({
    "key": "bench_extract", "name": "B", "description": "d", "department": "sales", "owner": "alice",
    "version": 1, "change_note": "n", "unit": "CNY", "grain": "day", "schedule": None,
    "sources": {"big": {"conn_id": "bench_src", "sql": "big.sql"}}, "transform": {"sql": "t.sql"},
    "approval": {"stages": [{"name": "review", "approvers": ["bob"]}]},
})
t0 = time.perf_counter()
summary = extract.extract_source(
    spec=spec, source_name="big", context={"logical_date": datetime(2026, 11, 27, tzinfo=UTC), "run_id": "bench"}
)
print(json.dumps({
    "rows": summary["rows"],
    "seconds": time.perf_counter() - t0,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run(variant: str, *, url: str, home: Path) -> dict:
    env = {
        **os.environ,
        "MC_BENCH_VARIANT": variant,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "METRICS_CENTER_HOME": str(home / "include"),
        "METRICS_CENTER_STAGING": (home / f"staging_{variant}").as_uri(),
        "AIRFLOW_CONN_BENCH_SRC": url,
    }
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mc-bench-extract-"))
    (home / "include" / "sql").mkdir(parents=True)
    (home / "include" / "metrics").mkdir()
    (home / "include" / "sql" / "big.sql").write_text("SELECT * FROM big")
    name = f"mc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        sa.make_url(ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        source = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
        t0 = time.perf_counter()
        with source.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE big AS SELECT n, 'region_' || (n % 10) AS region, (n % 997)::numeric(12, 2) "
                    "AS amount, timestamp '2026-01-01' + n * interval '1 second' AS ts "
                    "FROM generate_series(1, :rows) AS n"
                ),
                {"rows": args.rows},
            )
        source.dispose()
        print(f"source table: {args.rows:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        results = {variant: run(variant, url=url, home=home) for variant in ("ours", "whole")}
        for variant, label in (
            ("ours", "server-side cursor, batches (ours)"),
            ("whole", "client-side cursor (whole)"),
        ):
            r = results[variant]
            print(f"  {label:40} peak {r['peak_mib']:8.0f} MiB   {r['seconds']:6.1f} s   {r['rows']:,} rows")
        ours, whole = results["ours"]["peak_mib"], results["whole"]["peak_mib"]
        print(
            f"ours: {ours:.0f} MiB (target <= {TARGET_MIB}: {'MET' if ours <= TARGET_MIB else 'NOT MET'}); "
            f"read whole: {whole:.0f} MiB = {whole / ours:.1f}x"
        )
        return 0
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
