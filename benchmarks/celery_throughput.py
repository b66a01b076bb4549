"""Throughput benchmark: N demo-shaped metric runs through CeleryExecutor with 1 and with 2 workers.

For each worker count, a fresh installation on loopback (``metrics_center.orchestration.local_airflow``): Postgres metadata and
mart (throwaway databases), Redis broker (a spare database index, flushed), staging on moto's S3 server, api-server,
scheduler, dag-processor, triggerer and the Celery workers (``--concurrency 2`` each, prefetch 1). ``--runs`` runs
of ``lead_conversion_rate`` (the demo's, one approval stage), each of another day, are triggered at once; a script
answers every stage as frank as soon as it has waited ``answers.HOLD_S`` (Airflow 3.3.2's early-answer race).

Reported per worker count: wall time from the first trigger until every run finished, runs per minute, CPU seconds
per component (process trees sampled every second with psutil), and the median wall time of each task. With
``METRICS_CENTER_TASK_TIMING=1`` set for the workers, each task logs its own time in imports, the mart and staging
(``metrics_center.timing``); the script reads them back from the task logs and reports our overhead as a share of
each task's wall time (target ≤ 20 %).

Run: ``.venv/bin/python benchmarks/celery_throughput.py [--runs 200] [--workers 1 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DAG = "lead_conversion_rate"
END = date(2026, 11, 27)
KEYS = {"login": "bench", "password": "bench-secret"}
PEOPLE = ("bob", "carol", "dave", "erin", "frank")
BROKER_DB = 13


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto(root: Path) -> tuple[subprocess.Popen, str]:
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id=KEYS["login"],
                aws_secret_access_key=KEYS["password"],
                region_name="us-east-1",
            ).create_bucket(Bucket="bench-staging")
            return proc, url
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("moto_server did not start")


class CpuSampler:
    """CPU seconds per component: each root process and all its descendants, sampled every second."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.seen: dict[str, dict[int, float]] = defaultdict(dict)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for proc in procs:
                    try:
                        times = proc.cpu_times()
                        self.seen[name][proc.pid] = times.user + times.system
                    except psutil.Error:
                        continue
            self._stop.wait(1.0)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {name: sum(pids.values()) for name, pids in self.seen.items()}


def run_once(*, workers: int, runs: int, data_root: Path, preload: bool = True) -> dict:
    import redis

    from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment

    root = Path(tempfile.mkdtemp(prefix=f"mc-bench-celery{workers}-"))
    admin = sa.create_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    dbs = {k: f"mc_bench_{uuid.uuid4().hex[:8]}_{k}" for k in ("af", "mart")}
    with admin.connect() as conn:
        for name in dbs.values():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    urls = {
        k: sa.make_url(PG_ADMIN).set(database=n).render_as_string(hide_password=False) for k, n in dbs.items()
    }
    include = root / "include"
    shutil.copytree(REPO / "include", include)
    for path in (include / "metrics").glob("[!_]*.yaml"):
        text = path.read_text()
        path.write_text(
            "\n".join(
                "schedule: null" if line.startswith("schedule:") and "inputs" not in line else line
                for line in text.splitlines()
            )
        )
    # The demo limits sales_db to 2 queries at once (a pool); lift it here so the benchmark measures Airflow and
    # our tasks, not that limit (tests/orchestration/test_pools.py shows the limit itself).
    teams_path = include / "metrics" / "_teams.yaml"
    teams_path.write_text(
        teams_path.read_text().replace("max_concurrent_queries: 2", "max_concurrent_queries: 64")
    )
    broker = redis.Redis(host="127.0.0.1", port=6379, db=BROKER_DB)
    broker.flushdb()
    moto, endpoint = _moto(root)
    port = _free_port()
    env = airflow_environment(
        home=root / "airflow",
        port=port,
        passwords={"admin": "admin", **{p: f"{p}-pw" for p in PEOPLE}},
        roles={"admin": "admin", **{p: "user" for p in PEOPLE}},
        extra={
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["af"].replace(
                "postgresql://", "postgresql+psycopg://"
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + urls["af"],
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            **(
                {
                    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "metrics_center.orchestration.celery_config.CELERY_CONFIG"
                }
                if preload
                else {}
            ),
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": str(runs),
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "METRICS_CENTER_HOME": str(include),
            "METRICS_CENTER_DATA_ROOT": str(data_root),
            "METRICS_CENTER_STAGING": "s3://bench-staging/staging",
            "METRICS_CENTER_TASK_TIMING": "1",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    **KEYS,
                    "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                }
            ),
            "AIRFLOW_CONN_METRICS_MART": urls["mart"],
            "AIRFLOW_CONN_SALES_DB": json.dumps(
                {"conn_type": "sqlite", "host": str(data_root / "sales" / "sales.db")}
            ),
        },
    )
    airflow = LocalAirflow(env=env, port=port)
    result: dict = {"workers": workers, "runs": runs, "preload": preload}
    try:
        airflow.run("airflow", "db", "migrate")
        airflow.run("metrics-center", "mart", "upgrade")
        airflow.run("metrics-center", "pools", "sync")  # extracts of a limited source wait for their pool
        airflow.start(components=("api-server", "scheduler", "dag-processor", "triggerer"))
        airflow.start_celery_workers(names=[f"w{i}" for i in range(workers)], concurrency=2)
        admin_api = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", admin_api.healthy)
        airflow.wait_for_dags(admin_api, [DAG])
        components = [
            "api-server",
            "scheduler",
            "dag-processor",
            "triggerer",
            *[f"worker w{i}" for i in range(workers)],
        ]
        sampler = CpuSampler(
            {name: p.pid for name, p in zip(components, airflow.processes, strict=True)}
        ).start()
        frank = airflow.api(user="frank", password="frank-pw")
        run_ids = []
        start = time.monotonic()
        for i in range(runs):
            day = END - timedelta(days=runs - i)
            run_id = f"bench_{day.isoformat()}"
            logical = datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
            admin_api.post(f"/api/v2/dags/{DAG}/dagRuns", {"dag_run_id": run_id, "logical_date": logical})
            run_ids.append(run_id)
        admin_api.patch(f"/api/v2/dags/{DAG}", {"is_paused": False})
        answered: set[str] = set()

        def done() -> bool:
            waiting = frank.get("/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false&limit=100")
            now = datetime.now(UTC)
            for detail in waiting["hitl_details"]:
                ti = detail["task_instance"]
                asked = datetime.fromisoformat(detail["created_at"])
                if ti["dag_run_id"] in answered or (now - asked).total_seconds() < 2.5:
                    continue
                frank.patch(
                    f"/api/v2/dags/{DAG}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/-1/hitlDetails",
                    {"chosen_options": ["Approve"], "params_input": {}},
                )
                answered.add(ti["dag_run_id"])
            states = admin_api.get(f"/api/v2/dags/{DAG}/dagRuns?limit=1000")["dag_runs"]
            finished = [r for r in states if r["state"] in ("success", "failed")]
            return len(finished) == runs

        airflow.wait(f"{runs} runs", done, timeout=4 * 3600, every=2.0)
        wall = time.monotonic() - start
        cpu = sampler.stop()
        states = admin_api.get(f"/api/v2/dags/{DAG}/dagRuns?limit=1000")["dag_runs"]
        durations: dict[str, list[float]] = defaultdict(list)
        for run_id in run_ids[:: max(1, runs // 20)]:  # a sample of runs' task durations
            for ti in admin_api.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]:
                if ti["duration"] is not None and not ti["task_id"].startswith("approve"):
                    durations[ti["task_id"]].append(ti["duration"])
        result.update(
            wall=wall,
            per_minute=runs / wall * 60,
            states=dict(
                sorted(
                    {s["state"]: sum(1 for r in states if r["state"] == s["state"]) for s in states}.items()
                )
            ),
            cpu=cpu,
            task_median={k: statistics.median(v) for k, v in sorted(durations.items())},
            overhead=_overhead(airflow.home / "logs"),
        )
    finally:
        airflow.stop()
        moto.terminate()
        broker.flushdb()
        with admin.connect() as conn:
            for name in dbs.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(root, ignore_errors=True)
    return result


_TIMING = re.compile(r"metrics_center\.timing (\{.*?\})")


def _overhead(logs: Path) -> dict[str, dict[str, float]]:
    """Per task: median share of its wall time spent in imports, the mart and staging (from the task logs)."""
    shares: dict[str, list[dict[str, float]]] = defaultdict(list)
    for log in logs.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            # task logs are JSON lines: the timing record sits, escaped, in the event text
            with contextlib.suppress(ValueError, AttributeError):
                line = json.loads(line).get("event", "")
            for match in _TIMING.finditer(str(line)):
                try:
                    record = json.loads(match.group(1))
                except ValueError:
                    continue
                shares[record["task"]].append(record)
    found = {}
    for task, records in sorted(shares.items()):
        found[task] = {
            part: statistics.median(r[part] / r["wall"] for r in records if r["wall"])
            for part in ("imports", "mart", "staging", "ours")
        } | {
            "wall": statistics.median(r["wall"] for r in records),
            "ours_s": statistics.median(r["ours"] for r in records),
            "n": len(records),
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--baseline-without-preload",
        action="store_true",
        help="also run 1 worker without metrics_center.orchestration.celery_config (each task imports its libraries itself)",
    )
    args = parser.parse_args()

    from metrics_center.demo.seed import seed_demo

    data_root = Path(tempfile.mkdtemp(prefix="mc-bench-celery-data-"))
    try:
        seed_demo(root=data_root, end=END, days=args.runs + 10)
        results = [run_once(workers=w, runs=args.runs, data_root=data_root) for w in args.workers]
        if args.baseline_without_preload:
            results.append(run_once(workers=1, runs=args.runs, data_root=data_root, preload=False))
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    print()
    for r in results:
        print(
            f"{r['workers']} worker(s){'' if r['preload'] else ', no preload'}: {r['runs']} runs in {r['wall']:.0f} s = {r['per_minute']:.1f} runs/min; "
            f"states {r['states']}"
        )
        total = sum(r["cpu"].values())
        print(
            "  CPU seconds: "
            + ", ".join(
                f"{k} {v:.0f} ({v / total:.0%})" for k, v in sorted(r["cpu"].items(), key=lambda kv: -kv[1])
            )
        )
        print("  median task wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["task_median"].items()))
        for task, share in r["overhead"].items():
            ti_wall = r["task_median"].get(task)
            of_ti = (
                f", {share['ours_s'] / ti_wall:.0%} of the task instance's {ti_wall:.1f} s" if ti_wall else ""
            )
            print(
                f"  {task}: ours {share['ours']:.0%} of execute() {share['wall']:.2f} s{of_ti} (imports "
                f"{share['imports']:.0%}, mart {share['mart']:.0%}, staging {share['staging']:.0%}; "
                f"n={share['n']:.0f}) — target ≤ 20 %"
            )
    by = {(r["workers"], r["preload"]): r["per_minute"] for r in results}
    if (1, True) in by and (2, True) in by:
        print(f"\n2 workers / 1 worker: {by[2, True] / by[1, True]:.2f}x runs per minute")
    if (1, True) in by and (1, False) in by:
        print(f"1 worker, preloaded / not: {by[1, True] / by[1, False]:.2f}x runs per minute")


if __name__ == "__main__":
    main()
