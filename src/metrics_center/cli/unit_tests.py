"""``metrics-center test [KEY…]``: run metrics' unit tests (``<metrics folder>/tests/<key>.yaml``) in-process.

Each case stages its given rows in a temporary folder and runs the metric's real transform in DuckDB: no
Airflow scheduler, no database, no network. Exit 0 when every case passes, 1 when one fails (or errors),
2 when the input is bad (a test file, a metric or a key) — then nothing runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from metrics_center import settings


def _plan(args: argparse.Namespace, *, metrics_dir: Path, sql_root: Path) -> tuple[list[tuple], list[str]]:
    """``(loaded tests, spec, inputs)`` for each metric to test, and every problem found (bad input)."""
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.metric_tests import (
        check_tests,
        load_test_file,
        unit_test_file,
        unit_test_files,
    )
    from metrics_center.definitions.spec import MetricSource
    from metrics_center.errors import SpecError

    files = unit_test_files(metrics_dir)
    keys = list(dict.fromkeys(args.keys)) or list(files)
    if not keys:
        return [], [
            f"{metrics_dir}: no metric has tests — add tests/<key>.yaml beside the metrics "
            "(`metrics-center new` scaffolds one; format: README, Metric unit tests)"
        ]
    catalog = load_catalog(metrics_dir, sql_root=sql_root)
    plan, problems = [], []
    for key in keys:
        path = files.get(key)
        if path is None:
            problems.append(
                f"{unit_test_file(metrics_dir, key)}: no tests for {key} — create the file (a list of cases: name, "
                "period, given, expect)"
            )
            continue
        metric = catalog.metrics.get(key)
        if metric is None:
            own = catalog.problems.get(metrics_dir / f"{key}.yaml")
            if own:
                problems += [str(p) for p in own]
            else:
                problems.append(
                    f"{path}: there is no metric {key} in {metrics_dir} — name the test file <metric key>.yaml"
                )
            continue
        try:
            loaded = load_test_file(path)
        except SpecError as exc:
            problems += [str(p) for p in exc.problems]
            continue
        spec = metric.spec
        inputs = {
            s.metric: catalog.metrics[s.metric].spec
            for s in spec.sources.values()
            if isinstance(s, MetricSource) and s.metric in catalog.metrics
        }
        found = check_tests(loaded, spec=spec, inputs=inputs)
        if found:
            problems += [str(p) for p in found]
            continue
        plan.append((loaded, spec, inputs))
    return plan, problems


def _test(args: argparse.Namespace) -> int:
    if args.schema:
        from metrics_center.definitions.metric_tests import json_schema

        print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
        return 0
    from metrics_center.tasks.metric_test_run import run_case, warm_up

    started = time.perf_counter()
    metrics_dir = Path(args.metrics_dir) if args.metrics_dir else settings.metrics_dir()
    sql_root = Path(args.sql_root) if args.sql_root else metrics_dir.parent / "sql"
    plan, problems = _plan(args, metrics_dir=metrics_dir, sql_root=sql_root)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) in the tests' input; no case ran", file=sys.stderr)
        return 2
    warm_up()
    results = []
    for loaded, spec, inputs in plan:
        for case in loaded.cases:
            if args.case and args.case.lower() not in case.name.lower():
                continue
            result = run_case(loaded=loaded, case=case, spec=spec, inputs=inputs, sql_root=sql_root)
            results.append(result)
            print(result.line())
            for line in result.details():
                print(f"      {line}")
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL", "ERROR")}
    metrics = len({r.metric for r in results})
    print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} error(s): {len(results)} case(s) of "
        f"{metrics} metric(s) in {time.perf_counter() - started:.2f} s"
    )
    if not results:
        print(f"no case matches --case {args.case!r}", file=sys.stderr)
        return 2
    return 0 if counts["PASS"] == len(results) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    test = sub.add_parser(
        "test",
        help="run metrics' unit tests (tests/<key>.yaml beside the metrics: given rows → expected rows) in DuckDB",
    )
    test.add_argument(
        "keys", nargs="*", metavar="KEY", help="metrics to test (default: every one with tests)"
    )
    test.add_argument(
        "--metrics-dir",
        help="folder of metric files, with tests/ inside (default: $METRICS_CENTER_HOME/metrics)",
    )
    test.add_argument("--sql-root", help="folder of SQL files (default: <metrics folder>/../sql)")
    test.add_argument("--case", metavar="TEXT", help="run only the cases whose name contains TEXT")
    test.add_argument("--schema", action="store_true", help="print the JSON Schema of test files and exit")
    test.set_defaults(func=_test)
