"""``metrics-center staging``: the staging area of extracted and transformed Parquet."""

from __future__ import annotations

import argparse
import sys

from metrics_center import settings
from metrics_center.cli.failures import AIRFLOW_DATABASE
from metrics_center.cli.groups import command_group


def _duration(text: str):
    """``--older-than``: a duration (``36h``, ``14d``), or argparse's one-line usage error."""
    from metrics_center.definitions.spec import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _staging_prune(args: argparse.Namespace) -> int:
    from metrics_center.tasks.retention import MetadataDatabaseUnavailable, prune_staging

    try:
        pruned = prune_staging(older_than=args.older_than, dry_run=args.dry_run)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    staging_sub = command_group(sub, "staging", help="the staging area of extracted and transformed Parquet")
    prune = staging_sub.add_parser(
        "prune",
        help="delete staged runs older than a duration, except runs that have not finished",
        description="Delete <staging>/<metric>/<run>/ folders whose newest file is older than --older-than. "
        "Runs still queued or running in Airflow (e.g. waiting for approval) are kept whatever their age, "
        "so this needs Airflow's metadata database: run it where the scheduler runs, not inside a task.",
    )
    prune.add_argument("--older-than", type=_duration, default="14d", help="e.g. 36h, 14d, 2w (default 14d)")
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(func=_staging_prune, database=AIRFLOW_DATABASE)
    init = staging_sub.add_parser(
        "init",
        help="create the staging root (the bucket of s3://bucket/prefix) and check it is writable",
        description="Uses METRICS_CENTER_STAGING and its connection (METRICS_CENTER_STAGING_CONN, default "
        "aws_default for s3://). docker-compose's airflow-init runs it.",
    )
    init.set_defaults(func=_staging_init)
