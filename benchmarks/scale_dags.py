"""Scale benchmark: a real dag-processor and scheduler with 1,000 metric DAGs vs 1,000 plain DAGs of the same shape.

Two Airflow installations (Postgres metadata each, created and dropped here), identical but for their DAG file:

(a) ours: ``dags/metrics_center_dags.py`` over 1,000 metric YAML files (``benchmarks/parse_dags.py``'s fixtures,
    manual schedule);
(b) baseline: one Python file building 1,000 DAGs of ``EmptyOperator`` with the same ids, tasks, edges and Asset
    outlet (``publish`` → ``metrics_mart://<key>``).

Airflow's own StatsD metrics are captured on a UDP socket here: the dag-processor's
``dag_processing.total_parse_time`` (one full cycle over the DAG folder: parse, serialise, write) and the
scheduler's ``scheduler.scheduler_loop_duration`` with every DAG unpaused. Components run alternately, ours then
the baseline, ``--rounds`` times, so machine noise hits both. Medians; target: ours ≤ 1.5× the baseline for each.

Run: ``.venv/bin/python benchmarks/scale_dags.py [--metrics N] [--rounds N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("METRICS_CENTER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_spec = importlib.util.spec_from_file_location("parse_dags", REPO / "benchmarks" / "parse_dags.py")
parse_dags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parse_dags)  # type: ignore[union-attr]

PLAIN_FILE = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

TASKS = {tasks!r}
EDGES = {edges!r}
for i in range({n}):
    key = f"metric_{{i:04d}}"
    with DAG(dag_id=key, schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
             tags=["metric", "generated"], default_args={{"retries": 0}}) as dag:
        # The same shape as a metric DAG, its Asset outlet included (the parent writes asset references).
        ops = {{
            t: EmptyOperator(
                task_id=t, outlets=[Asset(uri=f"metrics_mart://{{key}}", name=key)] if t == "publish" else []
            )
            for t in TASKS
        }}
        for up, down in EDGES:
            ops[up] >> ops[down]
    globals()[f"dag_{{i}}"] = dag
"""


class StatsdSink:
    """Airflow's StatsD packets, by metric name (``name:value|type``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.values: dict[str, list[float]] = defaultdict(list)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            data, _ = self.sock.recvfrom(65535)
            for line in data.decode(errors="replace").splitlines():
                name, _, rest = line.partition(":")
                value = rest.split("|", 1)[0]
                try:
                    with self._lock:
                        self.values[name].append(float(value))
                        self.arrivals[name].append(time.monotonic())
                except ValueError:
                    continue

    def take(self, suffix: str) -> list[float]:
        return [v for v, _ in self.take_timed(suffix)]

    def take_timed(self, suffix: str) -> list[tuple[float, float]]:
        """(value, arrival time) of every packet whose name ends with ``suffix``, oldest first; then forgets them."""
        with self._lock:
            found = sorted(
                (
                    (v, t)
                    for k in self.values
                    if k.endswith(suffix)
                    for v, t in zip(self.values[k], self.arrivals[k], strict=True)
                ),
                key=lambda pair: pair[1],
            )
            for key in [k for k in self.values if k.endswith(suffix)]:
                self.values[key].clear()
                self.arrivals[key].clear()
        return found


class Install:
    def __init__(
        self, *, name: str, root: Path, dags: Path, home_env: dict[str, str], sink: StatsdSink
    ) -> None:
        self.name = name
        self.db = f"mc_bench_{uuid.uuid4().hex[:8]}_{name}"
        url = sa.make_url(PG_ADMIN).set(drivername="postgresql+psycopg", database=self.db)
        self.url = url.render_as_string(hide_password=False)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / f"home_{name}"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.url,
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(sink.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": name,
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
            "AIRFLOW__API_AUTH__JWT_SECRET": "bench-" + "0" * 64,
            "GX_ANALYTICS_ENABLED": "false",
            **home_env,
        }
        self.bin = Path(sys.executable).parent

    def run(self, *cmd: str) -> None:
        subprocess.run([str(self.bin / cmd[0]), *cmd[1:]], env=self.env, check=True, capture_output=True)

    def component(self, name: str, seconds: float, log: Path) -> None:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.bin / "airflow"), name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            time.sleep(seconds)
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60, help="each component run, per round")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mc-bench-scale-"))
    admin = sa.create_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    sink = StatsdSink()
    installs: list[Install] = []
    try:
        fixtures = parse_dags.make_fixtures(root, args.metrics)
        for path in (fixtures["home"] / "metrics").glob("metric_*.yaml"):  # manual runs only, as the baseline
            text = path.read_text()
            path.write_text(
                "\n".join(
                    "schedule: null" if line.startswith("schedule:") else line for line in text.splitlines()
                )
            )
        plain = root / "plain_dags"
        plain.mkdir()
        (plain / "plain_dags.py").write_text(
            textwrap.dedent(PLAIN_FILE.format(tasks=parse_dags.TASKS, edges=parse_dags.EDGES, n=args.metrics))
        )
        ours_dags = root / "ours_dags"  # the metrics' DAG file alone (not the maintenance DAG): one file each
        ours_dags.mkdir()
        shutil.copy(REPO / "dags" / "metrics_center_dags.py", ours_dags)
        installs = [
            Install(
                name="ours",
                root=root,
                dags=ours_dags,
                home_env={"METRICS_CENTER_HOME": str(fixtures["home"])},
                sink=sink,
            ),
            Install(name="plain", root=root, dags=plain, home_env={}, sink=sink),
        ]
        for install in installs:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{install.db}"'))
            install.run("airflow", "db", "migrate")
        print(
            f"{args.metrics} DAGs each; {args.rounds} round(s) of {args.seconds:.0f} s per component",
            flush=True,
        )
        results: dict[tuple[str, str], list[float]] = defaultdict(list)
        for round_ in range(args.rounds):
            for install in installs:
                log = root / f"{install.name}.log"
                sink.take("")
                install.component("dag-processor", args.seconds, log)
                # dag_processing.last_duration: one parse of the DAG file in its child process (parse + serialise);
                # the time between two of them is the full cycle (plus writing the DAGs to the database).
                parsed = sink.take_timed("dag_processing.last_duration")
                size = sink.take("dagbag_size")
                durations = [
                    v / 1000 if v > 100 else v for v, _ in parsed[1:]
                ]  # the first run writes every DAG
                cycles = [b - a for (_, a), (_, b) in itertools.pairwise(parsed[1:])]
                results[(install.name, "parse")] += durations
                results[(install.name, "cycle")] += cycles
                engine = sa.create_engine(install.url)
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE dag SET is_paused = false"))
                    dags = conn.execute(sa.text("SELECT count(*) FROM dag")).scalar()
                engine.dispose()
                install.component("scheduler", args.seconds, log)
                loops = sink.take("scheduler.scheduler_loop_duration")
                results[(install.name, "loop")] += loops
                print(
                    f"  round {round_ + 1} {install.name:5}: {len(parsed)} parses, child {[round(d, 2) for d in durations]} s, "
                    f"cycles {[round(c, 2) for c in cycles]} s (dagbag {size[-1:] or '?'}), {dags} DAGs in the DB; "
                    f"{len(loops)} scheduler loops, median {statistics.median(loops) if loops else float('nan'):.1f} ms",
                    flush=True,
                )
        print()
        for what, unit, label in (
            ("cycle", "s", "dag-processor full cycle"),
            ("loop", "ms", "scheduler loop"),
        ):
            ours, base = results[("ours", what)], results[("plain", what)]
            if not ours or not base:
                print(f"  {label}: not measured (ours {len(ours)}, baseline {len(base)} samples)")
                continue
            o, b = statistics.median(ours), statistics.median(base)
            ratio = o / b
            print(
                f"  {label:<26} ours {o:8.2f} {unit} (n={len(ours)})  baseline {b:8.2f} {unit} (n={len(base)})  "
                f"ratio {ratio:.2f}x — target ≤ 1.5x: {'met' if ratio <= 1.5 else 'MISSED'}"
            )
    finally:
        for install in installs:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{install.db}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
