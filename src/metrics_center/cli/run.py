"""``metrics-center run KEY --period DAY``: compute a metric locally, before committing it.

Reads the definition from the working tree (a metric that exists nowhere else works), extracts through
the same Airflow connections, transforms, runs the quality gate, the reconciliations and the anomaly
scoring, and prints the values and the approval evidence exactly as an approver would read them, with
the difference against what is published. Writes nothing but ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from metrics_center import settings

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from sqlalchemy import Engine

    from metrics_center.tasks.local_run import LocalRun

SHOWN_ROWS = 50


def _run(args: argparse.Namespace) -> int:
    import logging

    from metrics_center.errors import MetricsCenterError

    if not args.verbose:  # the tasks' and Great Expectations' info lines belong in task logs, not here
        logging.disable(logging.INFO)
    own_process = getattr(args, "from_console", False)
    # Its own process: Great Expectations (~2.4 s to import) is imported by a forked helper while the
    # sources are extracted, and the interpreter's ~1 s of shutdown (GX, Airflow) is skipped at the end.
    pool = _expectations_pool() if own_process else None
    try:
        code = _compute(args, pool=pool)
    except MetricsCenterError as exc:
        print(f"metrics-center run: {exc}", file=sys.stderr)
        code = 2
    finally:
        logging.disable(logging.NOTSET)
        if pool is not None:
            _stop(pool)
    if own_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # everything is written (--out is closed): nothing left for atexit to do
    return code


def _stop(pool: Executor) -> None:
    """Stop the helper now: idle or busy, it holds our stdout open (a caller reading it would wait)."""
    import multiprocessing

    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.kill()
        child.join(5)


def _expectations_pool() -> Executor | None:
    """One forked worker that starts importing Great Expectations now; None where fork is unavailable."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from metrics_center.tasks.local_run import warm_expectations

    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(warm_expectations)
    return pool


def _compute(args: argparse.Namespace, *, pool: Executor | None = None) -> int:
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.retirement import retired_refusal
    from metrics_center.errors import MetricsCenterError
    from metrics_center.tasks.local_run import compute_locally, parse_periods

    if args.home:  # extract and transform read the SQL through settings: point them at the same folder
        os.environ["METRICS_CENTER_HOME"] = str(Path(args.home).resolve())
    metrics_dir = settings.metrics_dir()
    catalog = load_catalog(metrics_dir, sql_root=settings.sql_dir())
    if args.key not in catalog.metrics:
        mine = [p for path, problems in catalog.problems.items() if path.stem == args.key for p in problems]
        if mine:
            for problem in mine:
                print(problem, file=sys.stderr)
            raise MetricsCenterError(
                f"{args.key} is not valid: fix the problem(s) above (metrics-center validate)"
            )
        known = ", ".join(sorted(catalog.metrics)) or "none"
        raise MetricsCenterError(f"no metric {args.key!r} under {metrics_dir} (metrics there: {known})")
    spec = catalog.metrics[args.key].spec
    if refusal := retired_refusal(spec):
        raise MetricsCenterError(refusal)
    periods = parse_periods(spec=spec, period=args.period, periods=args.periods)
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise MetricsCenterError(f"--out {out}: write .csv or .parquet")
    engine, why_not = _readable_mart(args.url)
    result = compute_locally(spec=spec, periods=periods, engine=engine, no_mart=why_not, expectations=pool)
    _print(result, rows=args.rows, evidence=not args.no_evidence)
    if out is not None:
        _write(result, out)
        print(f"\nwrote {result.table.num_rows} row(s) to {out}")
    if result.blocking_failures:
        names = ", ".join(q["expectation"] for q in result.blocking_failures)
        print(
            f"\nFAILED: blocking check(s) {names} — a run would publish nothing and ask nobody",
            file=sys.stderr,
        )
        return 1
    return 0


def _readable_mart(url: str | None) -> tuple[Engine | None, str | None]:
    """The mart, opened for reading only; None (and why) when there is none to read."""
    import sqlalchemy as sa

    from metrics_center.errors import MetricsCenterError
    from metrics_center.mart.engine import create_mart_engine, mart_url

    try:
        found = sa.make_url(url) if url else mart_url()
    except (MetricsCenterError, ValueError) as exc:
        return None, f"no mart ({exc})"
    if found.get_backend_name() == "sqlite":
        path = Path(found.database or "")
        if not found.database or not path.is_file():
            return (
                None,
                f"no mart at {path} (give --url to read one): anomaly scoring and the comparison skipped",
            )
        # Read-only: an author's run must not create, migrate or lock the demo's mart.
        found = sa.make_url(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    engine = create_mart_engine(found)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("metric_value_current"):
                return (
                    None,
                    f"the mart at {found.render_as_string()} has no tables (metrics-center mart upgrade)",
                )
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        return None, f"the mart is not reachable ({first}): anomaly scoring and the comparison skipped"
    return engine, None


def _print(result: LocalRun, *, rows: int, evidence: bool) -> None:
    spec, table = result.spec, result.table
    label = (
        result.periods[0].label()
        if len(result.periods) == 1
        else (f"{result.periods[0].label()} … {result.periods[-1].label()} ({len(result.periods)} periods)")
    )
    print(f"{spec.key} v{spec.version} (working tree) — {label}: {table.num_rows} row(s)")
    for note in result.notes:
        print(f"  note: {note}")
    print()
    print(_values_table(result, rows=rows))
    if result.published is not None and result.published.rows_old == 0:
        print("\nAgainst what is published: nothing is published for these periods yet")
    elif result.published is not None:
        print(f"\nAgainst what is published for the same periods: {result.published.headline(spec.unit)}")
        for row in result.published.largest:
            dims = ", ".join(f"{k}={v}" for k, v in row["dimensions"].items()) or "total"
            rel = f" ({row['rel']:+.2%})" if row.get("rel") is not None else ""
            print(f"  {row['period']} {dims}: {row['old']} → {row['new']}{rel}")
    if evidence:
        print("\n--- the approval evidence, as an approver reads it ---\n")
        print(result.evidence)


def _values_table(result: LocalRun, *, rows: int) -> str:
    columns = ["period_start", *result.spec.dimensions, "value"]
    if result.spec.is_ratio:
        columns += ["numerator", "denominator"]
    shown = result.table.slice(0, rows).select(columns).to_pylist()
    cells = [[_cell(r[c]) for c in columns] for r in shown]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) if i >= len(columns) - (3 if result.spec.is_ratio else 1) else v.ljust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True))) for row in cells]  # fmt: skip
    if result.table.num_rows > rows:
        lines.append(f"… {result.table.num_rows - rows} more row(s) (--rows N, or --out FILE for all)")
    if not cells:
        lines.append("(no rows)")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def _write(result: LocalRun, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(result.table, out)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(result.table, out)


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="compute a metric locally for some periods (nothing published): values, checks, anomalies, evidence",
        description="Compute a metric from the working tree for some periods, as a run would — same connections "
        "(AIRFLOW_CONN_<ID> or the secrets backend), same SQL, checks and anomaly scoring — and print the values, "
        "the approval evidence and the difference against what is published. Reads the mart "
        "(METRICS_CENTER_MART_URL, the metrics_mart connection or --url) but writes nothing; exit 1 when a "
        "blocking check fails, 2 on bad input.",
    )
    run.add_argument("key", help="the metric's key (its YAML may exist only in the working tree)")
    run.add_argument(
        "--period", metavar="DAY", help="the first day of one period, e.g. 2026-11-27 (a week: its Monday)"
    )
    run.add_argument(
        "--periods", metavar="FROM..TO", help="every period from FROM to TO, e.g. 2026-11-20..2026-11-27"
    )
    run.add_argument("--out", metavar="FILE", help="also write every row to FILE (.csv or .parquet)")
    run.add_argument("--url", help="the mart's SQLAlchemy URL to read history and published values from")
    run.add_argument("--rows", type=int, default=SHOWN_ROWS, help=f"rows to print (default {SHOWN_ROWS})")
    run.add_argument(
        "--no-evidence", action="store_true", help="print the values only, not the approval evidence"
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="also print what each step logs (the SQL run)"
    )
    run.add_argument(
        "--home", metavar="DIR", help="the folder holding metrics/ and sql/ (default: $METRICS_CENTER_HOME)"
    )
    run.set_defaults(func=_run)
