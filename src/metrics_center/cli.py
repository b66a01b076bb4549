"""``metrics-center``: validate definitions, print the JSON Schema, migrate the mart, seed the demo."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

from metrics_center import settings


def json_schemas() -> dict[str, dict]:
    from metrics_center.spec import MetricSpec, Teams

    metric = MetricSpec.model_json_schema()
    metric["title"] = "Metrics Center metric definition"
    teams = Teams.model_json_schema()
    teams["title"] = "Metrics Center teams file (_teams.yaml)"
    return {"metric": metric, "teams": teams}


def _validate(args: argparse.Namespace) -> int:
    from metrics_center.loader import load_catalog

    paths = [Path(p) for p in args.paths] or [settings.metrics_dir()]
    problems = 0
    checked = 0
    for target in paths:
        if target.is_dir():
            metrics_dir, only = target, None
        else:
            metrics_dir, only = target.parent, [target.resolve()]
        sql_root = Path(args.sql_root) if args.sql_root else metrics_dir.parent / "sql"
        # A CLI may import Great Expectations (DAG parsing may not): build every rule through GX's model.
        # The whole folder is loaded even for one file: metric sources are checked against the others.
        catalog = load_catalog(metrics_dir, sql_root=sql_root, check_with_gx=True)
        reported = {
            path: file_problems
            for path, file_problems in catalog.problems.items()
            if only is None or path.resolve() in only or path.name.startswith("_")
        }
        if only is None:
            checked += len(catalog.metrics) + sum(1 for p in reported if not p.name.startswith("_"))
        else:
            checked += len(only)
        for file_problems in reported.values():
            for problem in file_problems:
                print(problem, file=sys.stderr)
                problems += 1
        if args.against:
            from metrics_center.cli_review import print_review

            problems += print_review(
                ref=args.against, metrics_dir=metrics_dir, sql_root=sql_root, catalog=catalog, only=only
            )
    if problems:
        print(f"{problems} problem(s) in {checked} metric file(s)", file=sys.stderr)
        return 1
    print(f"ok: {checked} metric file(s) valid")
    return 0


def _schema(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {', '.join(f'{n}.schema.json' for n in schemas)} to {out}")
    else:
        print(json.dumps(schemas[args.kind], indent=2, ensure_ascii=False))
    return 0


def _mart_upgrade(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.roles import grant_reader, view_readers

    engine = create_mart_engine(args.url)
    # A migration that recreates a view drops its grants: BI readers get theirs back right after.
    readers = view_readers(engine=engine) if engine.dialect.name == "postgresql" else []
    revision = upgrade(engine)
    for role in readers:
        grant_reader(engine=engine, role=role)
    print(f"mart at revision {revision} ({engine.url.render_as_string(hide_password=True)})")
    if readers:
        print(f"granted the views again to {', '.join(readers)}")
    return 0


def _demo_seed(args: argparse.Namespace) -> int:
    from metrics_center.demo.seed import sales_db_connection_uri, seed_demo

    root = Path(args.root) if args.root else settings.data_root()
    end = date.fromisoformat(args.end) if args.end else date.today()
    summary = seed_demo(root=root, end=end, days=args.days)
    print(
        f"demo data {summary.start}..{summary.end - timedelta(days=1)} in {root}: {summary.orders} orders, "
        f"{summary.refunds} refunds, {summary.leads} leads\n"
        f"sales_db connection: AIRFLOW_CONN_SALES_DB={sales_db_connection_uri(root)}"
    )
    return 0


def _demo_history(args: argparse.Namespace) -> int:
    import logging

    from metrics_center.demo.history import seed_history
    from metrics_center.loader import load_catalog
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade

    # Each of ~150 extracts logs its rendered SQL (useful in a task log, noise here).
    logging.getLogger("metrics_center.tasks.extract").setLevel(logging.WARNING)

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    engine = create_mart_engine(args.url)
    upgrade(engine)
    end = date.fromisoformat(args.end) if args.end else date.today()
    specs = [m.spec for m in catalog.metrics.values()]
    for item in seed_history(engine=engine, specs=specs, first=end - timedelta(days=args.days), end=end):
        print(f"{item.key}: published {item.periods} past period(s), {item.rows} value(s)")
    return 0


def _staging_prune(args: argparse.Namespace) -> int:
    from metrics_center.spec import parse_duration
    from metrics_center.tasks.retention import MetadataDatabaseUnavailable, prune_staging

    older_than = parse_duration(args.older_than)
    try:
        pruned = prune_staging(older_than=older_than, dry_run=args.dry_run)
    except MetadataDatabaseUnavailable as exc:
        print(f"metrics-center staging prune: {exc}", file=sys.stderr)
        return 1
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {pruned.runs} staged run(s), {pruned.files} file(s) under {settings.staging_root()}")
    if pruned.kept_unfinished:
        runs = ", ".join(str(run) for run in pruned.kept_unfinished)
        print(f"kept {len(pruned.kept_unfinished)} unfinished run(s): {runs}")
    return 0


def _staging_init(args: argparse.Namespace) -> int:
    """Create the staging root (for ``s3://bucket/prefix``: the bucket too) through its connection."""
    root = settings.staging_path()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".metrics-center"
        probe.write_text("staging root of Metrics Center\n")
    except Exception as exc:  # credentials, endpoint, permissions: say which store and connection
        print(
            f"metrics-center staging init: cannot write to {settings.staging_root()} (connection "
            f"{settings.staging_conn_id() or 'none'}): {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"staging ready at {settings.staging_root()} (connection {settings.staging_conn_id() or 'none'})")
    return 0


def _notifications_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.tables import notification as n

    engine = create_mart_engine(args.url)
    states = {"undelivered": ["pending", "sending", "dead"], "all": None}.get(args.state, [args.state])
    query = sa.select(n).order_by(n.c.id.desc()).limit(args.limit)
    if states is not None:
        query = query.where(n.c.state.in_(states))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        counts = dict(conn.execute(sa.select(n.c.state, sa.func.count()).group_by(n.c.state)).all())
    for row in reversed(rows):
        to = f"{row.recipient} → {row.address or '(no Slack address)'}"
        when = (
            f"next {row.next_attempt_at:%Y-%m-%d %H:%M}" if row.state != "delivered" else f"ts {row.slack_ts}"
        )
        error = f"  {row.last_error}" if row.last_error and row.state != "delivered" else ""
        print(
            f"{row.id:>6} {row.state:<9} {row.kind:<16} {row.metric_key or '-':<24} {to}  tries {row.attempts}  "
            f"{when}{error}"
        )
    print(", ".join(f"{counts.get(s, 0)} {s}" for s in ("pending", "sending", "delivered", "dead")))
    return 0


def _notifications_deliver(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.notify.deliver import deliver_pending

    report = deliver_pending(create_mart_engine(args.url), max_attempts=args.max_attempts)
    print(
        f"{report.delivered} delivered in {report.messages} message(s), {report.recovered} recovered, "
        f"{report.retried} to retry, {report.dead} dead now ({report.dead_total} in all), {report.pending} "
        f"pending ({report.unaddressed} without a Slack address)"
    )
    for line in ([report.skipped] if report.skipped else []) + list(report.errors):
        print(f"metrics-center notifications deliver: {line}", file=sys.stderr)
    return 0


def _notifications_requeue(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.notify.deliver import requeue

    count = requeue(create_mart_engine(args.url), ids=args.ids or None)
    print(f"{count} dead notification(s) pending again; the maintenance DAG delivers them within 5 minutes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metrics-center", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check metric files; print path:line: key: problem — fix")
    validate.add_argument(
        "paths", nargs="*", help="metric files or folders (default: $METRICS_CENTER_HOME/metrics)"
    )
    validate.add_argument("--sql-root", help="folder of SQL files (default: <metrics folder>/../sql)")
    validate.add_argument(
        "--against",
        metavar="REF",
        help="also review changes against a git ref (e.g. origin/main): a meaning change needs a version bump "
        "and a new change_note; versions only go up",
    )
    validate.set_defaults(func=_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of metric (or teams) files")
    schema.add_argument("kind", nargs="?", choices=["metric", "teams"], default="metric")
    schema.add_argument(
        "--write", metavar="DIR", help="write metric.schema.json and teams.schema.json to DIR"
    )
    schema.set_defaults(func=_schema)

    mart = sub.add_parser("mart", help="mart schema management")
    mart_sub = mart.add_subparsers(dest="mart_command", required=True)
    up = mart_sub.add_parser("upgrade", help="create or migrate the mart schema (Alembic)")
    up.add_argument(
        "--url", help="SQLAlchemy URL (default: connection metrics_mart, else SQLite in $AIRFLOW_HOME)"
    )
    up.set_defaults(func=_mart_upgrade)
    from metrics_center import cli_ops

    cli_ops.add_mart_commands(mart_sub)

    staging = sub.add_parser("staging", help="the staging area of extracted and transformed Parquet")
    staging_sub = staging.add_subparsers(dest="staging_command", required=True)
    prune = staging_sub.add_parser(
        "prune",
        help="delete staged runs older than a duration, except runs that have not finished",
        description="Delete <staging>/<metric>/<run>/ folders whose newest file is older than --older-than. "
        "Runs still queued or running in Airflow (e.g. waiting for approval) are kept whatever their age, "
        "so this needs Airflow's metadata database: run it where the scheduler runs, not inside a task.",
    )
    prune.add_argument("--older-than", default="14d", help="e.g. 36h, 14d, 2w (default 14d)")
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(func=_staging_prune)
    init = staging_sub.add_parser(
        "init",
        help="create the staging root (the bucket of s3://bucket/prefix) and check it is writable",
        description="Uses METRICS_CENTER_STAGING and its connection (METRICS_CENTER_STAGING_CONN, default "
        "aws_default for s3://). docker-compose's airflow-init runs it.",
    )
    init.set_defaults(func=_staging_init)

    notifications = sub.add_parser("notifications", help="the outbox of Slack notifications")
    notifications_sub = notifications.add_subparsers(dest="notifications_command", required=True)
    url_help = "mart SQLAlchemy URL (default: connection metrics_mart / SQLite)"
    listing = notifications_sub.add_parser("list", help="show notifications (default: those not delivered)")
    listing.add_argument(
        "--state",
        default="undelivered",
        choices=["undelivered", "pending", "sending", "delivered", "dead", "all"],
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--url", help=url_help)
    listing.set_defaults(func=_notifications_list)
    deliver = notifications_sub.add_parser(
        "deliver",
        help="deliver what is due now (what the maintenance DAG does every 5 minutes)",
        description="Needs the Airflow connection metrics_center_slack (e.g. AIRFLOW_CONN_METRICS_CENTER_SLACK).",
    )
    deliver.add_argument("--max-attempts", type=int, default=10)
    deliver.add_argument("--url", help=url_help)
    deliver.set_defaults(func=_notifications_deliver)
    requeue = notifications_sub.add_parser("requeue", help="make dead notifications pending again")
    requeue.add_argument("ids", nargs="*", type=int, help="notification ids (default: every dead one)")
    requeue.add_argument("--url", help=url_help)
    requeue.set_defaults(func=_notifications_requeue)

    demo = sub.add_parser("demo", help="the demo company")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    seed = demo_sub.add_parser("seed", help="write the demo departments' data (deterministic)")
    seed.add_argument("--root", help="default: $METRICS_CENTER_DATA_ROOT")
    seed.add_argument("--end", help="ISO date after the last day of data (default: today)")
    seed.add_argument("--days", type=int, default=90)
    seed.set_defaults(func=_demo_seed)
    history = demo_sub.add_parser("history", help="publish past periods of every metric (marked as seeded)")
    history.add_argument("--end", help="the demo's end date (default: today)")
    history.add_argument("--days", type=int, default=75, help="how far back to start")
    history.add_argument("--url", help="mart SQLAlchemy URL (default: connection metrics_mart / SQLite)")
    history.set_defaults(func=_demo_history)
    from metrics_center import cli_changes, cli_review

    cli_review.add_commands(sub)
    cli_changes.add_commands(sub)
    from metrics_center import cli_pools

    cli_pools.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
