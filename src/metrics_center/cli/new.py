"""``metrics-center new KEY --department D --owner P``: a new metric, its SQL and a passing unit test."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metrics_center import settings


def _new(args: argparse.Namespace) -> int:
    from metrics_center.definitions.scaffold import ScaffoldRefused, scaffold_metric

    metrics_dir = Path(args.metrics_dir) if args.metrics_dir else settings.metrics_dir()
    sql_root = Path(args.sql_root) if args.sql_root else metrics_dir.parent / "sql"
    try:
        made = scaffold_metric(
            key=args.key,
            department=args.department,
            owner=args.owner,
            metrics_dir=metrics_dir,
            sql_root=sql_root,
            approvers=args.approver or (),
        )
    except ScaffoldRefused as exc:
        print(
            f"metrics-center new: {exc}", file=sys.stderr
        )  # the house form of a command that cannot do its job
        return 2
    for path in made.files:
        print(f"created {path}")
    print(
        f"next: change the lines marked TODO, then `metrics-center validate` and `metrics-center test {args.key}`"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    new = sub.add_parser(
        "new",
        help="create a metric to start from: <key>.yaml (every section commented), its SQL and a passing unit test",
    )
    new.add_argument(
        "key", metavar="KEY", help="the metric key: lower-case letters, digits and _ (e.g. orders_daily)"
    )
    new.add_argument(
        "--department", required=True, help="the owning department (a key of departments: in _teams.yaml)"
    )
    new.add_argument("--owner", required=True, help="the person answering for the number (a key of people:)")
    new.add_argument(
        "--approver",
        action="append",
        metavar="WHO",
        help="a person or department approving its values (repeatable; default: the department's people but the owner)",
    )
    new.add_argument("--metrics-dir", help="folder of metric files (default: $METRICS_CENTER_HOME/metrics)")
    new.add_argument("--sql-root", help="folder of SQL files (default: <metrics folder>/../sql)")
    new.set_defaults(func=_new)
