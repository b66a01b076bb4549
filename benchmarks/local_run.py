"""``metrics-center run`` vs ``airflow dags test``: one demo day of ``gmv_daily``, each in a fresh process.

A developer who wants to see a metric's numbers for a day before committing it has two ways:

(a) ours: ``metrics-center run gmv_daily --period 2026-11-26`` — extract the 3 sources, transform, the
    quality rules, the reconciliation, anomaly scoring against the published history, the comparison with
    what is published, the approval evidence printed. No scheduler, no metadata database, the mart only read.
(b) baseline: ``airflow dags test gmv_daily 2026-11-27T00:00:0N+00:00 --mark-success-pattern
    '^(approve(_.*)?|publish)$'`` — the DAG's run for the same period (a run on day D computes D-1),
    register_definition, impact_preview, the 3 extracts, transform and quality_check really run; the two
    approval stages (HITL tasks that would wait for a person) and publish are marked successful instead.
    Every repetition uses another logical date (one second later: still the same period), so every
    ``dags test`` is a new run that really executes its tasks.

Untimed setup, in a temp folder removed at the end (``AIRFLOW_HOME`` with Airflow's SQLite metadata
database and the SQLite mart, the demo data, staging, a bytecode cache): ``airflow db migrate``,
``metrics-center mart upgrade``, ``metrics-center demo seed --end 2026-11-27``, ``metrics-center demo
history --end 2026-11-27`` (74 published past days of every demo metric), then one untimed run of each
variant (byte-compiles the imports into the cache, first uses). Then ``--reps`` interleaved repetitions of
(a) and (b), wall time of the whole process each; medians.

Every repetition is checked, or the ratio would mean nothing: (a) must exit 0 and print the 12 rows of
2026-11-26 (4 regions x 3 channels); (b) must exit 0 with its dag run ``success`` in Airflow's metadata
database, register/extracts/transform/quality_check ``success`` and run (not marked), the approvals and
publish marked, and in the mart the run's ``metric_run`` ``computed`` for 2026-11-26 with 12 rows and its
quality results recorded.

Target (issue): (a) <= 0.3 x (b), medians of the same run. Timing never fails the script. When the target
is missed (or with ``--profile``) it also prints where (a)'s time goes: its phases (each timed by a thin
wrapper, installed when its module is first imported so no import moves) and ``-X importtime`` by package.

Run: ``.venv/bin/python benchmarks/local_run.py [--reps 3] [--profile] [--cold] [--ref REF]`` (~2.5 min by
default). ``--ref HEAD`` measures a commit instead of the working tree (while others are mid-edit).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
KEY = "gmv_daily"
PERIOD = "2026-11-26"
DEMO_END = "2026-11-27"  # the demo data covers the 90 days before; a run on 2026-11-27 computes 2026-11-26
FIRST_LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)
MARK_SUCCESS = r"^(approve(_.*)?|publish)$"
EXPECTED_ROWS = 12  # 4 regions x 3 channels
RAN = (
    "register_definition",
    "impact_preview",
    "extract_orders",
    "extract_refunds",
    "extract_settlements",
    "transform",
    "quality_check",
)
MARKED = ("approve_sales_review", "approve_finance_sign_off", "publish")
TARGET = 0.3
SETUP_TIMEOUT_S = 600
#: A dags test that waits for a person (an approval stage the pattern missed) must not hang the script.
RUN_TIMEOUT_S = 180

ROW = re.compile(rf"^{PERIOD}\s+(east|north|south|west)\s+(app|web|store)\s+[\d,.]+\s*$", re.M)


# ------------------------------------------------------------------------------------------- environment


def child_env(
    root: Path, *, pyc_cache: bool, sales_db: str | None = None, tree: Path = REPO
) -> dict[str, str]:
    """Every child's environment. ``tree``: the code measured (the working tree, or a ``--ref`` snapshot)."""
    env = dict(os.environ)
    for name in list(env):  # nothing of the caller's Airflow or mart may leak in
        if name.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "METRICS_CENTER_")):
            env.pop(name)
    env.update(
        {
            "AIRFLOW_HOME": str(root / "airflow_home"),  # Airflow's SQLite database and the SQLite mart
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tree / "dags"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "GX_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "SCARF_NO_ANALYTICS": "true",
            "METRICS_CENTER_HOME": str(tree / "include"),
            "METRICS_CENTER_DATA_ROOT": str(root / "demo_data"),
            "METRICS_CENTER_STAGING": (root / "staging").as_uri(),
            "METRICS_CENTER_TIMEZONE": "UTC",  # the period rule depends on it: pinned
        }
    )
    if sales_db:
        env["AIRFLOW_CONN_SALES_DB"] = sales_db
    if tree != REPO:  # the snapshot's src/ ahead of the venv's editable path to the working tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree / "src"), env.get("PYTHONPATH")]))
    # A developer's machine has bytecode; this sandbox sets PYTHONDONTWRITEBYTECODE=1. Compile once, in the
    # untimed setup and warm-up, into a cache inside the temp folder (the repo and the venv stay untouched).
    if pyc_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    cmd: list[str], env: dict[str, str], *, what: str, log: Path | None = None, timeout: float = RUN_TIMEOUT_S
) -> tuple[float, str]:
    """Run ``cmd``; (wall seconds, stdout+stderr). Raises with the output's tail if it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd,
        env=env,
        cwd=Path(env["METRICS_CENTER_HOME"]).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-25:])
        raise RuntimeError(f"{what} exited {done.returncode}:\n{tail}")
    return wall, done.stdout


# ---------------------------------------------------------------------------------------------- variants


def ours(env: dict[str, str], root: Path, n: int) -> float:
    wall, out = run(
        [str(VENV_BIN / "metrics-center"), "run", KEY, "--period", PERIOD],
        env,
        what="(a) metrics-center run",
        log=root / f"a_{n}.log",
    )
    rows = ROW.findall(out)
    if f"{KEY} v" not in out or len(rows) != EXPECTED_ROWS or len(set(rows)) != EXPECTED_ROWS:
        raise RuntimeError(f"(a) printed {len(rows)} row(s) of {PERIOD}, not {EXPECTED_ROWS}:\n{out[:2000]}")
    if "approval evidence" not in out:
        raise RuntimeError("(a) printed no approval evidence")
    return wall


def dags_test(env: dict[str, str], root: Path, n: int) -> tuple[float, dict[str, float]]:
    """One ``airflow dags test`` of a new logical date; checked; (wall, seconds per task that ran)."""
    logical = (FIRST_LOGICAL + timedelta(seconds=n)).isoformat()
    wall, out = run(
        [str(VENV_BIN / "airflow"), "dags", "test", KEY, logical, "--mark-success-pattern", MARK_SUCCESS],
        env,
        what=f"(b) airflow dags test {logical}",
        log=root / f"b_{n}.log",
    )
    found = re.search(r"DagRun Finished: dag_id=\S+ logical_date=([^,]+), run_id=([^,]+),.*?state=(\w+)", out)
    if not found:
        raise RuntimeError(f"(b) {logical}: no 'DagRun Finished' line; see {root / f'b_{n}.log'}")
    run_id, state = found.group(2), found.group(3)
    problems = [] if state == "success" else [f"dag run {state}"]
    home = Path(env["AIRFLOW_HOME"])
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        tis = {
            task: (ti_state, start, end)
            for task, ti_state, start, end in db.execute(
                "SELECT task_id, state, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (KEY, run_id),
            )
        }
    marked = set(re.findall(r"\[DAG TEST\] Marking success for <Task\(\w+\): (\w+)>", out))
    ran = set(re.findall(rf"\[DAG TEST\] running task <TaskInstance: {KEY}\.(\w+) ", out))
    for task in RAN:
        if tis.get(task, ("missing",))[0] != "success" or task not in ran:
            problems.append(f"{task}: {tis.get(task, ('missing',))[0]}, ran={task in ran}")
    for task in MARKED:
        if task not in marked or tis.get(task, ("missing",))[0] != "success":
            problems.append(f"{task}: not marked successful")
    with contextlib.closing(sqlite3.connect(f"file:{home / 'metrics_mart.db'}?mode=ro", uri=True)) as mart:
        mr = mart.execute(
            "SELECT state, period_start, result_rows FROM metric_run WHERE metric_key = ? AND run_id = ?",
            (KEY, run_id),
        ).fetchone()
        checks = mart.execute(
            "SELECT count(*) FROM quality_result WHERE metric_key = ? AND run_id = ?", (KEY, run_id)
        ).fetchone()[0]
    if mr is None or mr[0] != "computed" or str(mr[1])[:10] != PERIOD or mr[2] != EXPECTED_ROWS:
        problems.append(f"metric_run {mr} (want computed, {PERIOD}, {EXPECTED_ROWS} rows)")
    if checks < 3:
        problems.append(f"{checks} quality result(s) recorded")
    if problems:
        raise RuntimeError(f"(b) {logical} ({run_id}) did not compute the day: " + "; ".join(problems))
    per_task = {}
    for task, (_s, start, end) in tis.items():
        if task in RAN and start and end:
            per_task[task] = (_ts(end) - _ts(start)).total_seconds()
    return wall, per_task


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace(" ", "T"))


# ------------------------------------------------------------------------------------ where (a)'s time goes

#: module -> (attribute, label): wrapped with a timer right after the module is first imported.
PHASES = {
    "metrics_center.cli.run": [
        ("_compute", "whole command after argument parsing"),
        ("_readable_mart", "open the mart (read-only) and check it"),
        ("_print", "print values + evidence"),
    ],
    "metrics_center.mart.engine": [("_url_from_connection", "  look up the metrics_mart connection")],
    "metrics_center.definitions.loader": [("load_catalog", "load + validate the catalog (all metric YAMLs)")],
    "metrics_center.tasks.local_run": [
        ("compute_locally", "compute_locally (everything below)"),
        ("_extract", "  extract (3 sources)"),
        ("_quality", "  quality rules + reconciliation"),
        ("_anomalies", "  anomaly scoring vs history"),
        ("_against_published", "  compare with what is published"),
        ("_evidence", "  approval evidence text"),
    ],
    "metrics_center.tasks.computation": [("of_periods", "  set up the computation (of_periods)")],
    "metrics_center.tasks.transform": [("transform_table", "  transform (DuckDB)")],
    "metrics_center.checks.expectations": [("run_expectations", "    Great Expectations: 3 rules")],
    "metrics_center.tasks.reconciliation": [("run_reconciliations", "    reconciliation (DuckDB)")],
}

COMPUTE_PARTS = {
    "  set up the computation (of_periods)",
    "  extract (3 sources)",
    "  transform (DuckDB)",
    "  quality rules + reconciliation",
    "  anomaly scoring vs history",
    "  compare with what is published",
    "  approval evidence text",
}
REST = "  the rest of compute_locally (its `from airflow.sdk import ObjectStoragePath`, temp folder)"
#: How the phases are shown: nested as they run.
PHASE_ORDER = [
    "interpreter start-up (until the first line runs)",
    "import the CLI (argparse tree)",
    "main()",
    "whole command after argument parsing",
    "load + validate the catalog (all metric YAMLs)",
    "open the mart (read-only) and check it",
    "  import airflow.sdk",
    "  look up the metrics_mart connection",
    "compute_locally (everything below)",
    "  set up the computation (of_periods)",
    "  extract (3 sources)",
    "  transform (DuckDB)",
    "  quality rules + reconciliation",
    "    import great_expectations",
    "    Great Expectations: 3 rules",
    "    reconciliation (DuckDB)",
    "  anomaly scoring vs history",
    "  compare with what is published",
    "  approval evidence text",
    REST,
    "print values + evidence",
    "interpreter exit (after main() returned: finalisation, atexit)",
]

PHASE_DRIVER = r"""
import time
T0, W0 = time.perf_counter(), time.time()
import importlib.abc, importlib.util, json, sys
PHASES = json.loads(sys.argv[1]); OUT = sys.argv[2]; ARGV = sys.argv[3:]
spent = {}

def timed(fn, label, pre=None):
    def wrapper(*a, **k):
        if pre is not None:
            pre()
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            n, s = spent.get(label, (0, 0.0)); spent[label] = (n + 1, s + time.perf_counter() - t)
    return wrapper

def first_import(module, label):  # split a package's import off the phase that first uses it
    def pre():
        if module not in sys.modules:
            t = time.perf_counter(); importlib.import_module(module)
            spent[label] = (1, time.perf_counter() - t)
    return pre

PRE = {"run_expectations": first_import("great_expectations", "    import great_expectations"),
       "_url_from_connection": first_import("airflow.sdk", "  import airflow.sdk")}

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PHASES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        real = spec.loader.exec_module
        def exec_module(module):
            real(module)
            for attr, label in PHASES[name]:
                if hasattr(module, attr):
                    setattr(module, attr, timed(getattr(module, attr), label, PRE.get(attr)))
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
t = time.perf_counter()
from metrics_center.cli import main
from metrics_center.cli import app  # noqa: F401  (main imports it first thing)
spent["import the CLI (argparse tree)"] = (1, time.perf_counter() - t)
import io, contextlib
buf = io.StringIO()
t = time.perf_counter()
with contextlib.redirect_stdout(buf):
    code = main(ARGV)
spent["main()"] = (1, time.perf_counter() - t)
json.dump({"code": code, "spent": spent, "started": W0, "ended": time.time()}, open(OUT, "w"))
"""


def profile_ours(env: dict[str, str], root: Path, wall_median: float) -> None:
    args = ["run", KEY, "--period", PERIOD]
    out = root / "phases.json"
    t0, w0 = time.perf_counter(), time.time()
    subprocess.run(
        [str(VENV_BIN / "python"), "-c", PHASE_DRIVER, json.dumps(PHASES), str(out), *args],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall, w1 = time.perf_counter() - t0, time.time()
    found = json.loads(out.read_text())
    spent = found["spent"]
    spent["interpreter start-up (until the first line runs)"] = (1, found["started"] - w0)
    spent["interpreter exit (after main() returned: finalisation, atexit)"] = (1, w1 - found["ended"])
    print(
        f"\nWhere (a)'s time goes — one more run with a timer around each phase: {wall:.2f} s wall "
        f"(median above {wall_median:.2f} s)\n"
    )
    compute = spent.get("compute_locally (everything below)", (0, 0.0))[1]
    inner = sum(s for lab, (_n, s) in spent.items() if lab in COMPUTE_PARTS)
    if compute:
        spent[REST] = (1, compute - inner)
    print("| phase | s | share of wall |")
    print("|---|---:|---:|")
    for label in PHASE_ORDER:
        if label in spent:
            n, s = spent[label]
            shown = re.sub(r"^((?:  )+)", lambda m: "· " * (len(m.group(1)) // 2), label)
            print(f"| {shown}{f' ×{n}' if n > 1 else ''} | {s:.2f} | {s / wall:.0%} |")

    # -X importtime: self time per top-level package (no double counting), and the biggest imports.
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-X", "importtime", "-m", "metrics_center.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    by_pkg: dict[str, int] = {}
    top: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)
        by_pkg[name.split(".")[0]] = by_pkg.get(name.split(".")[0], 0) + self_us
        if indent == 1:
            top.append((cum_us, name))
    total = sum(by_pkg.values()) / 1e6
    print(f"\n`-X importtime` (another run; importtime inflates a little): {total:.2f} s of imports in all")
    print(
        "  biggest top-level imports (cumulative): "
        + ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in sorted(top, reverse=True)[:6])
    )
    print(
        "  self time by package: "
        + ", ".join(
            f"{pkg} {us / 1e6:.2f} s" for pkg, us in sorted(by_pkg.items(), key=lambda kv: -kv[1])[:10]
        )
    )


# ------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each (default 3)")
    parser.add_argument(
        "--profile", action="store_true", help="where (a)'s time goes, even if the target is met"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no bytecode cache: every import compiles its .py"
    )
    parser.add_argument(
        "--ref",
        help="measure this commit (src/, dags/, include/ extracted with `git archive` into the temp folder) "
        "instead of the working tree — when others are editing it",
    )
    args = parser.parse_args()
    t_all = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mc-bench-local-run-"))
    kept: list[bool] = []  # on an error the temp folder (every variant's output, the databases) stays
    atexit.register(lambda: kept or shutil.rmtree(root, ignore_errors=True))
    try:
        measure(args, root, t_all)
    except Exception:
        kept.append(True)
        print(
            f"\nFAILED — kept {root} (a_N.log / b_N.log: each repetition's output) for a look",
            file=sys.stderr,
        )
        raise


def measure(args: argparse.Namespace, root: Path, t_all: float) -> None:
    tree = REPO
    if args.ref:
        tree = root / "tree"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", args.ref, "src", "dags", "include"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        print(f"Measuring {args.ref} (extracted into {tree}), not the working tree")
    env = child_env(root, pyc_cache=not args.cold, tree=tree)
    mc, airflow = str(VENV_BIN / "metrics-center"), str(VENV_BIN / "airflow")

    t0 = time.perf_counter()
    run([airflow, "db", "migrate"], env, what="airflow db migrate", timeout=SETUP_TIMEOUT_S)
    run([mc, "mart", "upgrade"], env, what="metrics-center mart upgrade", timeout=SETUP_TIMEOUT_S)
    _w, out = run(
        [mc, "demo", "seed", "--root", env["METRICS_CENTER_DATA_ROOT"], "--end", DEMO_END],
        env,
        what="metrics-center demo seed",
        timeout=SETUP_TIMEOUT_S,
    )
    sales_db = re.search(r"AIRFLOW_CONN_SALES_DB=(.+)", out).group(1).strip()
    env = child_env(root, pyc_cache=not args.cold, sales_db=sales_db, tree=tree)
    _w, out = run(
        [mc, "demo", "history", "--end", DEMO_END],
        env,
        what="metrics-center demo history",
        timeout=SETUP_TIMEOUT_S,
    )
    seeded = re.search(rf"{KEY}: published (\d+) past period", out)
    print(
        f"Setup (untimed; db migrate, mart upgrade, demo seed, demo history: {KEY} "
        f"{seeded.group(1) if seeded else '?'} past days published): {time.perf_counter() - t0:.0f} s"
    )

    n = 0  # every dags test gets its own logical date (and so its own run)
    t0 = time.perf_counter()
    ours(env, root, n)
    dags_test(env, root, n)
    n += 1
    print(
        f"Warm-up, one untimed run of each ({'no bytecode cache' if args.cold else 'byte-compiles imports'}, "
        f"first uses): {time.perf_counter() - t0:.0f} s"
    )

    walls_a: list[float] = []
    walls_b: list[float] = []
    tasks: dict[str, list[float]] = {}
    for rep in range(args.reps):  # interleaved: drift on a noisy machine hits both alike
        first_b = rep % 2 == 1  # and alternate who goes first
        for which in ("b", "a") if first_b else ("a", "b"):
            if which == "a":
                walls_a.append(ours(env, root, n))
            else:
                wall, per_task = dags_test(env, root, n)
                walls_b.append(wall)
                for task, s in per_task.items():
                    tasks.setdefault(task, []).append(s)
            n += 1
        print(
            f"  repetition {rep + 1}: (a) {walls_a[-1]:.2f} s, (b) {walls_b[-1]:.2f} s "
            f"({time.perf_counter() - t_all:.0f} s elapsed)",
            flush=True,
        )

    a, b = statistics.median(walls_a), statistics.median(walls_b)
    ratio = a / b
    met = ratio <= TARGET
    print(
        f"\n{KEY}, period {PERIOD}, {args.reps} interleaved repetitions, fresh process each, medians "
        f"({'no bytecode cache' if args.cold else 'bytecode cached'}); every repetition checked\n"
    )
    print("| variant | median wall | runs (s) |")
    print("|---|---:|---|")
    print(
        f"| (a) `metrics-center run {KEY} --period {PERIOD}` | {a:.2f} s | "
        f"{', '.join(f'{w:.2f}' for w in walls_a)} |"
    )
    print(
        f"| (b) `airflow dags test {KEY} <logical date> --mark-success-pattern '{MARK_SUCCESS}'` | {b:.2f} s | "
        f"{', '.join(f'{w:.2f}' for w in walls_b)} |"
    )
    in_tasks = sum(statistics.median(v) for v in tasks.values())
    print(
        "\n(b)'s tasks that ran (median s, start→end in Airflow's database): "
        + ", ".join(
            f"{t} {statistics.median(v):.2f}"
            for t, v in sorted(tasks.items(), key=lambda kv: RAN.index(kv[0]))
        )
        + f"; sum {in_tasks:.2f} s, the rest of its wall ({b - in_tasks:.2f} s) is the CLI, parsing the DAG "
        "file, creating the run and scheduling the tasks in-process"
    )
    print(
        f"\n**(a) / (b) = {ratio:.2f}**  (target ≤ {TARGET}: **{'met' if met else 'MISSED'}**); "
        f"(a) would need ≤ {TARGET * b:.2f} s against this (b)"
    )
    if args.profile or not met:
        profile_ours(env, root, a)
    print(f"\nbenchmark wall time: {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
