"""``metrics-center lineage``, ``restate`` and ``preview``: metrics built from metrics and changes to history."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from metrics_center import settings
from metrics_center.cli.failures import AIRFLOW_DATABASE, EXIT_FAILED


def _catalog():
    from metrics_center.definitions.loader import load_catalog

    return load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())


def _unknown_metric(command: str, key: str) -> int:
    print(
        f"metrics-center {command}: no valid metric {key!r} under {settings.metrics_dir()} — check the key "
        "(and METRICS_CENTER_HOME); `metrics-center validate` shows a file that does not load",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _lineage(args: argparse.Namespace) -> int:
    from metrics_center.definitions.lineage import Lineage

    catalog = _catalog()
    if args.key not in catalog.metrics:
        return _unknown_metric("lineage", args.key)
    lineage = Lineage.of(m.spec for m in catalog.metrics.values())
    spec = catalog.metrics[args.key].spec
    print(f"{spec.key} — {spec.name} ({spec.grain}, v{spec.version})")
    up, down = lineage.tree(args.key, direction="up"), lineage.tree(args.key, direction="down")
    print("reads (upstream):" + ("" if up else " nothing — an atomic metric (原子指标)"))
    for line in up:
        print(f"  {line}")
    print("read by (downstream):" + ("" if down else " no metric"))
    for line in down:
        print(f"  {line}")
    return 0


def _restate(args: argparse.Namespace) -> int:
    """Validate the range against the metric's grain here, then trigger the run (Airflow checks the rest)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy.exc import SQLAlchemyError

    from metrics_center.definitions.meaning import effective_timezone
    from metrics_center.definitions.run_periods import requested_restatement
    from metrics_center.errors import MetricsCenterError

    catalog = _catalog()
    if args.key not in catalog.metrics:
        return _unknown_metric("restate", args.key)
    spec = catalog.metrics[args.key].spec
    conf: dict[str, object] = {"restate": True}
    if args.periods:
        conf["periods"] = args.periods
    else:
        conf["from"], conf["to"] = args.date_from, args.date_to or args.date_from
    try:
        asked = requested_restatement(conf, grain=spec.grain)
    except MetricsCenterError as exc:
        print(f"metrics-center restate: {exc}", file=sys.stderr)
        return 1
    periods = asked[0] if asked else []
    now = datetime.now(UTC)
    run_id = f"restate__{now:%Y%m%dT%H%M%S}__{periods[0].start}_{periods[-1].start}"
    if args.dry_run:
        print(
            f"would restate {spec.key}: {len(periods)} {spec.grain}(s) {periods[0].label()} … {periods[-1].label()}"
        )
        return 0
    try:
        trigger_dag(
            dag_id=spec.key,
            run_id=run_id,
            conf=conf,
            logical_date=None,
            triggered_by=DagRunTriggeredByType.CLI,
            triggering_user_name="metrics-center restate",
        )
    except SQLAlchemyError:
        raise  # no or an unmigrated metadata database: main says so in one line
    except Exception as exc:  # DagNotFound, DagRunAlreadyExists…
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(
            f"metrics-center restate: Airflow refused the run ({reason}) — check that the scheduler has parsed "
            f"the DAG {spec.key} (`airflow dags list`) and that no run {run_id} exists",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(
        f"triggered {run_id}: {spec.key} restates {len(periods)} {spec.grain}(s) "
        f"{periods[0].label()} … {periods[-1].label()} ({effective_timezone(spec)}); one approval for the range, "
        "published by superseding the current values"
    )
    return 0


def _preview(args: argparse.Namespace) -> int:
    """The working tree's definition over the last N published periods, against what was published."""
    import tempfile

    from airflow.sdk import ObjectStoragePath

    from metrics_center.mart.definitions import newest_version
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.tasks.impact_preview import compute_impact, stored_versions

    catalog = _catalog()
    if args.key not in catalog.metrics:
        return _unknown_metric("preview", args.key)
    spec = catalog.metrics[args.key].spec
    if args.periods is not None:
        spec = spec.model_copy(update={"preview_periods": args.periods})
    engine = create_mart_engine(args.url)
    newest = newest_version(engine, metric_key=spec.key)
    if newest is None:
        print(
            f"metrics-center preview: {spec.key} has no registered version to compare with — a version is "
            "registered by its DAG's first run; check --url, or compare with git: metrics-center diff "
            f"{spec.key} --against origin/main",
            file=sys.stderr,
        )
        return EXIT_FAILED
    _current, previous = stored_versions(engine, key=spec.key, version=newest + 1)
    with tempfile.TemporaryDirectory(prefix="mc-preview-") as tmp:
        impact = compute_impact(
            engine,
            spec=spec,
            root=ObjectStoragePath(Path(tmp).as_uri()),
            previous=previous,
            before_version=newest + 1,
        )
    if args.json:
        print(
            json.dumps(
                {**impact.as_json(), "headline": impact.headline(spec.unit)}, indent=2, ensure_ascii=False
            )
        )
        return 0
    print(f"{spec.key}: the working tree's definition (v{spec.version}) against the values published now")
    print(f"  {impact.headline(spec.unit)}")
    for row in impact.largest:
        dims = ", ".join(f"{k}={v}" for k, v in row["dimensions"].items()) or "total"
        rel = f" ({row['rel']:+.2%})" if row["rel"] is not None else ""
        print(f"  {row['period']} {dims}: {row['old']} → {row['new']}{rel}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``lineage``, ``restate`` and ``preview``."""
    lineage = sub.add_parser("lineage", help="the metrics a metric reads and the metrics that read it")
    lineage.add_argument("key")
    lineage.set_defaults(func=_lineage)

    restate = sub.add_parser(
        "restate",
        help="recompute past periods under the current definition (one run, one approval, published by superseding)",
        description="Triggers a run of the metric's DAG with the periods as parameters (like Trigger with a configuration in "
        "Airflow's UI). Needs Airflow's metadata database: run it where the scheduler runs.",
    )
    restate.add_argument("key")
    span = restate.add_mutually_exclusive_group(required=True)
    span.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day of the range")
    span.add_argument(
        "--periods", nargs="+", metavar="YYYY-MM-DD", help="periods, each named by any day in it"
    )
    restate.add_argument(
        "--to", dest="date_to", metavar="YYYY-MM-DD", help="last day of the range (default: --from)"
    )
    restate.add_argument("--dry-run", action="store_true", help="only say which periods would be restated")
    restate.set_defaults(func=_restate, database=AIRFLOW_DATABASE)

    preview = sub.add_parser(
        "preview",
        help="compute the working tree's definition over recent published periods and compare (publishes nothing)",
    )
    preview.add_argument("key")
    preview.add_argument(
        "--periods", type=int, help="how many published periods (default: the YAML's preview_periods)"
    )
    preview.add_argument("--json", action="store_true")
    preview.add_argument("--url", help="mart SQLAlchemy URL (default: connection metrics_mart / SQLite)")
    preview.set_defaults(func=_preview)
