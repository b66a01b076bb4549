"""DAG-parse benchmark: 1,000 metric definitions → 1,000 Airflow DAGs.

Compares, each in fresh interpreters and timed only after ``import airflow.sdk`` has finished:

(a) ``metrics_center.orchestration.dag_builder.build_dags()`` over 1,000 metric YAML files,
(b) dag-factory 1.1 (``dagfactory.load_yaml_dags``) over the equivalent 1,000 DAG YAML files,
(c) a plain hand-written Python loop building the same DAGs from ``EmptyOperator`` (reference floor),
(d) one DAG: ``build_dags(only_dag_id="metric_0500")``, and the real mechanism — the repo's
    ``dags/metrics_center_dags.py`` executed with Airflow's parsing-context env var set.

Every variant produces the same DAG ids, task ids and dependencies (checked). Timings are medians
of several repetitions; ratios are against baselines measured in the same run.

Imports are byte-compiled once (untimed warm-up, cache in the temp folder) as in a deployed image;
``--cold`` times without bytecode, ``--cold-one`` adds (d) without bytecode. ``--profile`` prints
cProfiles of (a) and (d) (also printed automatically when a target is missed).

Run: ``.venv/bin/python benchmarks/parse_dags.py [--reps N] [--one-reps N] [--metrics N] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_METRICS = 1_000
ONE_DAG = "metric_0500"  # with --metrics below 501: the last metric
TARGET_RATIO = 0.5  # ours / dag-factory
TARGET_ONE_DAG_S = 0.1

DEPARTMENTS = ("sales", "finance", "marketing", "data")
OWNERS = {"sales": "alice", "finance": "carol", "marketing": "erin", "data": "frank"}

# The 9 tasks of a metric with 2 sources and 2 approval stages, and their dependencies.
TASKS = (
    "register_definition",
    "impact_preview",
    "extract_orders",
    "extract_refunds",
    "transform",
    "quality_check",
    "approve_sales_review",
    "approve_finance_sign_off",
    "publish",
)
EDGES = (
    ("register_definition", "impact_preview"),
    ("impact_preview", "approve_sales_review"),
    ("register_definition", "extract_orders"),
    ("register_definition", "extract_refunds"),
    ("extract_orders", "transform"),
    ("extract_refunds", "transform"),
    ("transform", "quality_check"),
    ("quality_check", "approve_sales_review"),
    ("approve_sales_review", "approve_finance_sign_off"),
    ("approve_finance_sign_off", "publish"),
)


# --------------------------------------------------------------------------------------------- fixtures


def metric_yaml(i: int) -> str:
    key = f"metric_{i:04d}"
    dept = DEPARTMENTS[i % len(DEPARTMENTS)]
    return textwrap.dedent(
        f"""\
        key: {key}
        name: Metric {i:04d} (指标 {i})
        description: Generated variation {i} of gmv_daily — paid orders minus refunds.
        department: {dept}
        owner: {OWNERS[dept]}
        version: {1 + i % 3}
        change_note: Generated for the parse benchmark.
        unit: CNY
        grain: day
        schedule: "@daily"
        dimensions: [region, channel]
        sources:
          orders:
            conn_id: sales_db
            sql: sales/orders.sql
          refunds:
            path: finance/refunds_{{{{ ds }}}}.csv
        transform:
          sql: metrics/{key}.sql
        quality:
          - expect: expect_column_values_to_not_be_null
            column: value
          - expect: expect_column_values_to_be_between
            column: value
            min_value: 0
          - expect: expect_table_row_count_to_be_between
            min_value: 1
        anomaly:
          method: zscore
          threshold: 3
          window: 28
          min_history: 7
          seasonality: day_of_week
        approval:
          stages:
            - name: sales review
              approvers: [bob]
            - name: finance sign-off
              approvers: [carol, dave]
          timeout: 24h
          on_timeout: reject
        subscribers: [finance, marketing]
        tags: [generated]
        """
    )


def dagfactory_yaml(i: int) -> str:
    """The same DAG as dag-factory users write it: one file per DAG, EmptyOperator tasks."""
    key = f"metric_{i:04d}"
    dept = DEPARTMENTS[i % len(DEPARTMENTS)]
    owner = OWNERS[dept]
    upstream: dict[str, list[str]] = {t: [] for t in TASKS}
    for up, down in EDGES:
        upstream[down].append(up)
    lines = [
        f"{key}:",
        "  default_args:",
        f"    owner: {owner}",
        "    retries: 0",
        "    start_date: 2024-01-01",
        '  schedule: "@daily"',
        "  catchup: false",
        "  max_active_runs: 1",
        f'  description: "Metric {i:04d} (指标 {i}) — generated variation {i} of gmv_daily"',
        f'  tags: ["{dept}", "owner:{owner}", "metric", "generated"]',
        "  tasks:",
    ]
    for task in TASKS:
        lines.append(f"    - task_id: {task}")
        lines.append("      operator: airflow.providers.standard.operators.empty.EmptyOperator")
        if upstream[task]:
            lines.append(f"      dependencies: [{', '.join(upstream[task])}]")
    return "\n".join(lines) + "\n"


def make_fixtures(root: Path, n: int) -> dict[str, Path]:
    home = root / "metrics_center_home"
    metrics = home / "metrics"
    sql = home / "sql"
    (sql / "metrics").mkdir(parents=True)
    (sql / "sales").mkdir(parents=True)
    metrics.mkdir(parents=True)
    shutil.copy(REPO / "include/metrics/_teams.yaml", metrics / "_teams.yaml")
    shutil.copy(REPO / "include/sql/sales/orders.sql", sql / "sales/orders.sql")
    transform_sql = (REPO / "include/sql/metrics/gmv_daily.sql").read_text()
    dagfactory_dir = root / "dagfactory_dags"
    dagfactory_dir.mkdir()
    for i in range(n):
        key = f"metric_{i:04d}"
        (metrics / f"{key}.yaml").write_text(metric_yaml(i), encoding="utf-8")
        (sql / "metrics" / f"{key}.sql").write_text(transform_sql, encoding="utf-8")
        (dagfactory_dir / f"{key}.yaml").write_text(dagfactory_yaml(i), encoding="utf-8")
    airflow_home = root / "airflow_home"
    airflow_home.mkdir()
    return {"home": home, "dagfactory": dagfactory_dir, "airflow_home": airflow_home}


def child_env(
    root: Path, paths: dict[str, Path], extra: dict[str, str] | None = None, *, pyc_cache: bool = True
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(paths["airflow_home"]),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths["dagfactory"]),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "GX_ANALYTICS_ENABLED": "false",
            # dag-factory 1.1 telemetry (dagfactory/settings.py): [dag_factory] enable_telemetry, plus
            # the generic opt-outs it also honours.
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_NO_ANALYTICS": "true",
            "METRICS_CENTER_HOME": str(paths["home"]),
            "METRICS_CENTER_TIMEZONE": "UTC",
        }
    )
    # Imports are part of parse time, so compile them once like a deployed image would: bytecode goes
    # to a cache inside the temp folder (the repo and the venv stay untouched), warmed before timing.
    if pyc_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------------- child side


def _structure(dags: dict) -> dict[str, list[list[str]]]:
    return {
        dag_id: sorted([t.task_id, *sorted(t.downstream_task_ids)] for t in dag.tasks)
        for dag_id, dag in dags.items()
    }


def child(kind: str, profile_out: str | None) -> None:
    """Runs in a fresh interpreter; prints one JSON line of timings."""
    t_start = time.perf_counter()
    import airflow.sdk  # noqa: F401  — everything below is timed from here

    t_airflow = time.perf_counter()
    profiler = None
    if profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    t_lib = t_airflow
    if kind == "ours":
        from metrics_center.orchestration.dag_builder import build_dags

        t_lib = time.perf_counter()
        dags = build_dags()
    elif kind == "ours_one":
        from metrics_center.orchestration.dag_builder import build_dags

        t_lib = time.perf_counter()
        dags = build_dags(only_dag_id=ONE_DAG)
    elif kind == "ours_one_ctx":
        # The real mechanism: Airflow sets _AIRFLOW_PARSING_CONTEXT_DAG_ID for a task's worker and
        # the repo's DAG file reads it through airflow.sdk.get_parsing_context().
        import runpy

        t_lib = time.perf_counter()
        namespace = runpy.run_path(str(REPO / "dags" / "metrics_center_dags.py"), run_name="dag_file")
        from airflow.sdk import DAG

        dags = {v.dag_id: v for v in namespace.values() if isinstance(v, DAG)}
    elif kind == "dagfactory":
        from dagfactory import load_yaml_dags

        t_lib = time.perf_counter()
        namespace: dict = {}
        load_yaml_dags(globals_dict=namespace, dags_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        dags = namespace
    elif kind == "warmup":
        # Untimed: import (and so byte-compile) every module the variants use.
        from airflow.providers.standard.operators.empty import EmptyOperator
        from dagfactory import load_yaml_dags

        from metrics_center.orchestration.dag_builder import build_dags

        dags = build_dags(only_dag_id=ONE_DAG)
        first = sorted(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).glob("*.yaml"))[0]
        load_yaml_dags(globals_dict={}, config_filepath=str(first))
    elif kind == "plain":
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG
        from pendulum import datetime as pdatetime

        t_lib = time.perf_counter()
        dags = {}
        start = pdatetime(2024, 1, 1)
        for i in range(N_METRICS_CHILD):
            key = f"metric_{i:04d}"
            dept = DEPARTMENTS[i % len(DEPARTMENTS)]
            owner = OWNERS[dept]
            with DAG(
                dag_id=key,
                description=f"Metric {i:04d} — generated variation {i} of gmv_daily",
                schedule="@daily",
                start_date=start,
                catchup=False,
                max_active_runs=1,
                tags=[dept, f"owner:{owner}", "metric", "generated"],
                default_args={"owner": owner, "retries": 0},
            ) as dag:
                ops = {t: EmptyOperator(task_id=t) for t in TASKS}
                for up, down in EDGES:
                    ops[up] >> ops[down]
            dags[key] = dag
    else:
        raise SystemExit(f"unknown kind {kind}")
    t_end = time.perf_counter()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_out)
    structure = _structure(dags)
    print(
        json.dumps(
            {
                "airflow_import": t_airflow - t_start,
                "lib_import": t_lib - t_airflow,
                "build": t_end - t_lib,
                "total": t_end - t_airflow,
                "dags": len(dags),
                "tasks": sum(len(v) for v in structure.values()),
                "sample": structure.get(ONE_DAG),
            }
        )
    )


N_METRICS_CHILD = int(os.environ.get("MC_BENCH_N", N_METRICS))
if N_METRICS_CHILD <= 500:
    ONE_DAG = f"metric_{N_METRICS_CHILD - 1:04d}"


# --------------------------------------------------------------------------------------------- parent side


def run_child(kind: str, env: dict[str, str], *, profile_out: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind]
    if profile_out:
        cmd += ["--profile-out", profile_out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {kind} failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms" if seconds < 1 else f"{seconds:8.2f} s "


def print_profile(path: str, what: str, n: int = 25) -> None:
    import pstats

    print(f"\n--- cProfile of {what} (after `import airflow.sdk`): top by cumulative time ---")
    stats = pstats.Stats(path)
    stats.sort_stats("cumulative").print_stats(n)
    print("--- top by own (tottime) ---")
    stats.sort_stats("tottime").print_stats(n)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per variant (median reported)")
    parser.add_argument("--one-reps", type=int, default=3, help="repetitions of the one-DAG variants")
    parser.add_argument("--metrics", type=int, default=N_METRICS)
    parser.add_argument("--profile", action="store_true", help="always print a cProfile of our build")
    parser.add_argument(
        "--cold", action="store_true", help="no bytecode cache: every import compiles its .py (slower)"
    )
    parser.add_argument(
        "--cold-one", action="store_true", help="also time (d) without bytecode cache (adds ~15 s)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.profile_out)
        sys.stdout.flush()
        os._exit(0)  # skip interpreter teardown (freeing 1,000 DAGs): not part of parsing

    t_all = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="mc-bench-parse-"))
    try:
        t0 = time.perf_counter()
        paths = make_fixtures(root, args.metrics)
        print(
            f"Generated {args.metrics} metric YAMLs (+ SQL) and {args.metrics} dag-factory YAMLs "
            f"in {time.perf_counter() - t0:.1f} s under {root}"
        )
        global ONE_DAG
        if args.metrics <= 500:
            ONE_DAG = f"metric_{args.metrics - 1:04d}"
        base = {"MC_BENCH_N": str(args.metrics)}
        ctx = {**base, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": ONE_DAG}
        env = child_env(root, paths, base, pyc_cache=not args.cold)
        one_ctx_env = child_env(root, paths, ctx, pyc_cache=not args.cold)
        cold_env = child_env(root, paths, base, pyc_cache=False)
        # (id, child kind, label, env, repetitions)
        variants = [
            ("ours", "ours", "(a) metrics_center build_dags()", env, args.reps),
            ("dagfactory", "dagfactory", "(b) dag-factory 1.1 load_yaml_dags()", env, args.reps),
            ("plain", "plain", "(c) hand-written loop, EmptyOperator", env, args.reps),
            ("one", "ours_one", f"(d) build_dags(only_dag_id={ONE_DAG!r})", env, args.one_reps),
            (
                "one_ctx",
                "ours_one_ctx",
                "(d') dags/metrics_center_dags.py + parsing ctx",
                one_ctx_env,
                args.one_reps,
            ),
        ]
        if args.cold_one and not args.cold:
            variants.append(
                (
                    "one_cold",
                    "ours_one",
                    "(d'') as (d), no bytecode cache (.py compiled)",
                    cold_env,
                    args.one_reps,
                )
            )
        if not args.cold:
            t0 = time.perf_counter()
            run_child("warmup", env)
            print(f"Warm-up (byte-compiles imports into the temp cache): {time.perf_counter() - t0:.1f} s")
        results: dict[str, list[dict]] = {vid: [] for vid, *_ in variants}
        # Interleave repetitions so drift on a noisy machine hits every variant alike.
        for rep in range(max(v[4] for v in variants)):
            for vid, kind, _label, venv, reps in variants:
                if rep < reps:
                    results[vid].append(run_child(kind, venv))
            print(f"  repetition {rep + 1} done ({time.perf_counter() - t_all:.0f} s elapsed)", flush=True)

        # Same DAGs everywhere?
        expected_sample = sorted([t, *sorted(d for u, d in EDGES if u == t)] for t in TASKS)
        for vid, runs in results.items():
            last = runs[-1]
            want_dags = 1 if vid.startswith("one") else args.metrics
            ok = last["dags"] == want_dags and last["sample"] == expected_sample
            ok = ok and last["tasks"] == want_dags * len(TASKS)
            if not ok:
                raise SystemExit(f"{vid}: unexpected DAGs ({last['dags']} dags, {last['tasks']} tasks)")
        print(
            f"All variants built the same structure: {len(TASKS)} tasks / {len(EDGES)} edges per DAG "
            f"({', '.join(TASKS)})."
        )

        med = {
            vid: {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "sample"}
            for vid, runs in results.items()
        }
        print()
        header = (
            f"{'variant':50} {'DAGs':>5} {'import airflow':>14} {'lib import':>11} "
            f"{'build':>11} {'lib+build':>11} {'process wall':>13}  reps"
        )
        print(header)
        print("-" * len(header))
        for vid, _kind, label, _env, reps in variants:
            m = med[vid]
            print(
                f"{label:50} {int(m['dags']):5d} {fmt_s(m['airflow_import']):>14} "
                f"{fmt_s(m['lib_import']):>11} {fmt_s(m['build']):>11} {fmt_s(m['total']):>11} "
                f"{fmt_s(m['wall']):>13}  {reps}"
            )
        print(
            "\n'lib+build' (the timed figure) starts after `import airflow.sdk` has finished in the fresh "
            "interpreter: importing the library (metrics_center / dagfactory / EmptyOperator) plus building "
            "the DAGs. 'process wall' is the whole subprocess, interpreter start-up included. Medians. "
            + ("No bytecode cache (--cold)." if args.cold else "Imports byte-compiled once (warm-up).")
        )

        ours, dagf, plain = med["ours"], med["dagfactory"], med["plain"]
        ratio = ours["total"] / dagf["total"]
        one = med["one"]["total"]
        n = args.metrics

        def verdict(ok: bool) -> str:
            return "MET" if ok else "NOT MET"

        print()
        print(
            f"per DAG (lib+build / {n}): ours {ours['total'] / n * 1000:.2f} ms, "
            f"dag-factory {dagf['total'] / n * 1000:.2f} ms, plain loop {plain['total'] / n * 1000:.2f} ms"
        )
        print(
            f"ours / dag-factory    (lib+build)  = {ratio:.3f}   target <= {TARGET_RATIO}: "
            f"{verdict(ratio <= TARGET_RATIO)}"
        )
        print(f"ours / dag-factory    (build only) = {ours['build'] / dagf['build']:.3f}")
        print(f"ours / plain loop     (lib+build)  = {ours['total'] / plain['total']:.3f}")
        print(f"dag-factory / plain   (lib+build)  = {dagf['total'] / plain['total']:.3f}")
        target_ms = TARGET_ONE_DAG_S * 1000
        for vid, what in (
            ("one", "build_dags(only_dag_id)"),
            ("one_ctx", "DAG file + parsing context"),
            ("one_cold", "(d) without bytecode cache"),
        ):
            if vid in med:
                t = med[vid]["total"]
                print(
                    f"one DAG, {what:27} = {t * 1000:6.1f} ms   target <= {target_ms:.0f} ms: "
                    f"{verdict(t <= TARGET_ONE_DAG_S)}   (build alone {med[vid]['build'] * 1000:.1f} ms)"
                )
        print(f"one DAG / all {n} DAGs (ours)       = {one / ours['total']:.4f}")
        print(f"\nbenchmark wall time: {time.perf_counter() - t_all:.0f} s")

        if args.profile or ratio > TARGET_RATIO:
            prof = str(root / "ours.prof")
            run_child("ours", env, profile_out=prof)
            print_profile(prof, f"build_dags() over {n} metrics")
        if args.profile or one > TARGET_ONE_DAG_S:
            prof = str(root / "ours_one.prof")
            run_child("ours_one", env, profile_out=prof)
            print_profile(prof, f"build_dags(only_dag_id={ONE_DAG!r})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
