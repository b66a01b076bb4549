"""Staging benchmark: the 1M-row publish path with staging on S3 (a local S3-compatible server) vs local disk.

A throwaway Postgres mart and moto's S3 server on 127.0.0.1 (both created and removed here). For each staging
root — ``file://`` (local disk) and ``s3://`` (through the ``aws_default`` connection) — timed, medians of
interleaved repetitions:

(a) the publish path of a 1,000,000-row result: the transform stages it (``PartWriter``), publish reads it back
    with its digest (``read_result``) and writes it to the mart (``publish_values``, COPY);
(b) the staging part alone (stage + read back), without the mart;
(c) the transform's read of a staged 1,000,000-row source: DuckDB reading the parts in place (``direct``, through
    the connection's fsspec filesystem) vs downloading them to a temporary folder first (``copy``).

Ratios S3 / local for (a) and (b), and direct / copy for (c). No target in the issue beyond reporting them.
Run: ``.venv/bin/python benchmarks/staging_s3.py [--rows N] [--reps N]``
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="mc-bench-staging-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.update({"AIRFLOW_HOME": str(_TMP / "airflow_home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import sqlalchemy as sa  # noqa: E402

ADMIN_URL = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"}
DAY = date(2026, 11, 26)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _s3() -> tuple[subprocess.Popen, str]:
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=url, **KEYS).create_bucket(Bucket="bench-staging")
            return proc, url
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("moto_server did not start")


def _result(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    return pa.table(
        {
            "period_start": pa.array([DAY] * rows, pa.date32()),
            "region": pa.array([f"r{i % 100:02d}" for i in range(rows)]),
            "sku": pa.array([f"s{i:07d}" for i in range(rows)]),
            "value": rng.gamma(2.0, 100.0, rows),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    moto, endpoint = _s3()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": KEYS["aws_access_key_id"],
            "password": KEYS["aws_secret_access_key"],
            "extra": {"endpoint_url": endpoint, "region_name": KEYS["region_name"]},
        }
    )
    from metrics_center import settings
    from metrics_center.definitions.periods import period_containing
    from metrics_center.definitions.spec import MetricSpec
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.publish import publish_values
    from metrics_center.tasks.computation import Computation, PeriodPart
    from metrics_center.tasks.duck import staged_duckdb
    from metrics_center.tasks.staging import PartWriter
    from metrics_center.tasks.transform import read_result

    spec = MetricSpec.model_validate(
        {
            "key": "bench_staging",
            "name": "Bench",
            "description": "d",
            "department": "sales",
            "owner": "alice",
            "version": 1,
            "change_note": "n",
            "unit": "CNY",
            "grain": "day",
            "schedule": None,
            "dimensions": ["region", "sku"],
            "sources": {"src": {"path": "unused.parquet"}},
            "transform": {"sql": "unused.sql"},
            "approval": {"stages": [{"name": "review", "approvers": ["bob"]}]},
        }
    )
    table = _result(args.rows)
    name = f"mc_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = create_mart_engine(
        sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    )
    roots = {"local": (_TMP / "staging").as_uri(), "s3": "s3://bench-staging/staging"}
    try:
        upgrade(engine)
        register_definition(engine, spec=spec, definition={"spec": {}}, definition_hash="h", announced=True)
        period = period_containing(DAY, grain="day")

        days = iter(range(10_000))

        def stage(kind: str, run_id: str) -> dict:
            """Stage the result of a period of its own (each publish adds values, none supersedes)."""
            os.environ["METRICS_CENTER_STAGING"] = roots[kind]
            os.environ.pop("METRICS_CENTER_STAGING_CONN", None)
            root = settings.staging_path() / spec.key / run_id
            day = DAY - timedelta(days=next(days))
            result = table.set_column(0, "period_start", pa.array([day] * table.num_rows, pa.date32()))
            PartWriter(root / "result").write(result)
            return {"run_id": run_id}

        def path_a(kind: str) -> None:
            context = stage(kind, f"{kind}_{uuid.uuid4().hex[:8]}")
            values, _digest = read_result(spec=spec, context=context)
            publish_values(
                engine,
                metric_key=spec.key,
                definition_version=1,
                grain="day",
                dimensions=["region", "sku"],
                values=values,
                run_id=context["run_id"],
                approved_by="benchmark",
            )

        def path_b(kind: str) -> None:
            context = stage(kind, f"{kind}_{uuid.uuid4().hex[:8]}")
            read_result(spec=spec, context=context)

        source_roots = {}
        for kind in ("local", "s3"):
            os.environ["METRICS_CENTER_STAGING"] = roots[kind]
            root = settings.staging_path() / spec.key / f"source_{kind}"
            PartWriter(root / "sources" / "src").write(table)
            source_roots[kind] = root

        def path_c(mode: str) -> None:
            os.environ["METRICS_CENTER_STAGING_READ"] = mode
            os.environ["METRICS_CENTER_STAGING"] = roots["s3"]
            computation = Computation(
                spec=spec, root=source_roots["s3"], parts=(PeriodPart(period=period, variables={}),)
            )
            with staged_duckdb(computation=computation, part=computation.parts[0]) as con:
                con.sql("SELECT region, sum(value) FROM src GROUP BY region").fetchall()

        cases = {
            "(a) publish path, local": lambda: path_a("local"),
            "(a) publish path, s3": lambda: path_a("s3"),
            "(b) stage + read back, local": lambda: path_b("local"),
            "(b) stage + read back, s3": lambda: path_b("s3"),
            "(c) DuckDB over a staged source on s3, copy": lambda: path_c("copy"),
            "(c) DuckDB over a staged source on s3, direct": lambda: path_c("direct"),
        }
        for fn in cases.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):
            for label, fn in cases.items():
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"\n{args.rows:,} rows, medians of {args.reps} (2-core machine; moto's S3 server is Python, on the same cores):"
        )
        for label, value in med.items():
            print(f"  {label:<50} {value:6.2f} s  {[round(t, 2) for t in times[label]]}")
        print(
            f"  ratio (a) s3 / local      = {med['(a) publish path, s3'] / med['(a) publish path, local']:.2f}x"
        )
        print(
            f"  ratio (b) s3 / local      = {med['(b) stage + read back, s3'] / med['(b) stage + read back, local']:.2f}x"
        )
        print(
            "  ratio (c) direct / copy   = "
            f"{med['(c) DuckDB over a staged source on s3, direct'] / med['(c) DuckDB over a staged source on s3, copy']:.2f}x"
        )
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        moto.terminate()


if __name__ == "__main__":
    main()
