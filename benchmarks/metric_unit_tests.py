"""Metric unit tests benchmark: each demo case through the runner vs a bare DuckDB query of the same rows.

For every case of ``include/metrics/tests/*.yaml``:

(a) ours: ``run_case`` — stage each source's given rows as Parquet parts in a temp folder (inline rows,
    CSV files through the file sources' reader, a metric source's typed rows), ``transform_table`` (render the
    SQL, the locked-down DuckDB over the staged parts, the result's checks) and the row comparison;
(b) baseline: the same rows as Arrow tables registered in a fresh in-memory DuckDB, the same rendered SQL run
    and fetched as Arrow — the query alone, nothing staged, checked or compared.

Imports and first-use costs are paid once, untimed, before (``warm_up`` and one round of both). Medians of
interleaved repetitions. Also times ``metrics-center test`` as a user runs it: a fresh process, all cases.

Target: every case well under 1 s. Run: ``.venv/bin/python benchmarks/metric_unit_tests.py [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = REPO / "include" / "metrics"
SQL = REPO / "include" / "sql"
TARGET_S = 1.0


def bare_duckdb(*, loaded, case, spec, inputs) -> int:
    """The baseline: the case's rows as Arrow tables in a fresh DuckDB, the rendered SQL, the result as Arrow."""
    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from metrics_center.definitions.metric_tests import CsvRows, csv_path
    from metrics_center.definitions.spec import MetricSource
    from metrics_center.definitions.templates import render_with
    from metrics_center.mart.values import values_schema
    from metrics_center.tasks.computation import period_variables
    from metrics_center.tasks.metric_test_run import case_period

    period = case_period(case, spec)
    con = duckdb.connect()
    try:
        for name, source in spec.sources.items():
            given = case.given.get(name)
            if isinstance(given, CsvRows):
                table = pacsv.read_csv(csv_path(loaded, given))
            elif isinstance(source, MetricSource):
                upstream = inputs[source.metric]
                schema = values_schema(dimensions=upstream.dimensions, ratio=upstream.is_ratio)
                rows = [
                    {"period_start": period.start, "period_end": period.end, "definition_version": 1, **r}
                    for r in given or []
                ]
                table = pa.Table.from_pylist(rows, schema=schema)
            else:
                table = pa.Table.from_pylist(given or [{"not_given": None}])
            con.register(name, table)
        text = (SQL / spec.transform.sql).read_text(encoding="utf-8")
        sql = render_with(text, variables=period_variables(period, spec), what=spec.transform.sql)
        return con.sql(sql).to_arrow_table().num_rows
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    t_all = time.perf_counter()

    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.metric_tests import load_test_file, unit_test_files
    from metrics_center.definitions.spec import MetricSource
    from metrics_center.tasks.metric_test_run import run_case, warm_up

    catalog = load_catalog(METRICS, sql_root=SQL)
    cases = []
    for key, path in unit_test_files(METRICS).items():
        spec = catalog.metrics[key].spec
        inputs = {
            s.metric: catalog.metrics[s.metric].spec
            for s in spec.sources.values()
            if isinstance(s, MetricSource)
        }
        loaded = load_test_file(path)
        cases += [(loaded, case, spec, inputs) for case in loaded.cases]

    warm_up()
    for loaded, case, spec, inputs in cases:  # untimed: first uses, and both must work
        result = run_case(loaded=loaded, case=case, spec=spec, inputs=inputs, sql_root=SQL)
        assert result.passed, "\n".join(result.details())
        bare_duckdb(loaded=loaded, case=case, spec=spec, inputs=inputs)

    ours: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    bare: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for _ in range(args.reps):
        for i, (loaded, case, spec, inputs) in enumerate(cases):
            t0 = time.perf_counter()
            run_case(loaded=loaded, case=case, spec=spec, inputs=inputs, sql_root=SQL)
            ours[i].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_duckdb(loaded=loaded, case=case, spec=spec, inputs=inputs)
            bare[i].append(time.perf_counter() - t0)

    print(f"{len(cases)} cases, {args.reps} interleaved repetitions each (medians)\n")
    print(f"| {'case':<78} |     ours | bare DuckDB | ratio |")
    print(f"|{'-' * 80}|---------:|------------:|------:|")
    worst = 0.0
    for i, (_loaded, case, spec, _inputs) in enumerate(cases):
        a, b = statistics.median(ours[i]), statistics.median(bare[i])
        worst = max(worst, max(ours[i]))
        label = f"{spec.key}: {case.name}"
        label = label if len(label) <= 78 else label[:75] + "..."
        print(f"| {label:<78} | {a * 1000:5.0f} ms | {b * 1000:8.1f} ms | {a / b:4.1f}x |")
    total_a = sum(statistics.median(v) for v in ours.values())
    total_b = sum(statistics.median(v) for v in bare.values())
    print(
        f"\nall {len(cases)} cases: ours {total_a * 1000:.0f} ms, bare {total_b * 1000:.0f} ms "
        f"({total_a / total_b:.1f}x); per case ours {total_a / len(cases) * 1000:.0f} ms on average"
    )
    print(
        f"slowest single run of a case: {worst * 1000:.0f} ms   target < {TARGET_S:.0f} s: "
        f"{'MET' if worst < TARGET_S else 'MISSED'}"
    )

    script = Path(sys.executable).with_name("metrics-center")
    env = {**os.environ, "METRICS_CENTER_HOME": str(REPO / "include")}
    t0 = time.perf_counter()
    done = subprocess.run([str(script), "test"], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    print(
        f"`metrics-center test` in a fresh process (imports included): {wall:.2f} s, exit {done.returncode}"
    )
    print(f"  its summary: {done.stdout.strip().splitlines()[-1]}")
    print(f"benchmark wall time: {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
