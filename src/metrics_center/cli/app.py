"""``metrics-center``: validate definitions, review changes, operate the mart, the outbox and the demo.

One module per command group; each adds its commands with ``add_commands``. Nothing heavy is imported
until a command runs.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from metrics_center.cli import (
    bi,
    changes,
    demo,
    mart,
    new,
    notifications,
    pools,
    review,
    run,
    staging,
    unit_tests,
    validate,
)

#: The environment the commands read (settings.py, the mart's engine, Airflow's connections), for ``--help``.
ENVIRONMENT = (
    ("METRICS_CENTER_HOME", "the folder holding metrics/ and sql/ (default: the repository's include/)"),
    (
        "METRICS_CENTER_MART_URL",
        "SQLAlchemy URL of the mart; else the Airflow connection metrics_mart, else SQLite in $AIRFLOW_HOME",
    ),
    ("AIRFLOW_CONN_METRICS_MART", "the metrics_mart connection, when it is not defined in Airflow"),
    (
        "AIRFLOW_CONN_<ID>",
        "any other Airflow connection by its id in upper case: sources (AIRFLOW_CONN_SALES_DB), chats "
        "(AIRFLOW_CONN_METRICS_CENTER_SLACK, _FEISHU, _SMTP) and the robots named in _teams.yaml",
    ),
    ("AIRFLOW_HOME", "Airflow's home (default ~/airflow): its metadata database, the SQLite mart, staging"),
    ("METRICS_CENTER_DATA_ROOT", "root of relative file-source paths (default: demo_data beside the home)"),
    ("METRICS_CENTER_STAGING", "staging root URL (default: $AIRFLOW_HOME/metrics_center_staging)"),
    ("METRICS_CENTER_STAGING_CONN", "connection of the staging store (default: aws_default for s3://)"),
    ("METRICS_CENTER_TIMEZONE", "business time zone closing periods when a metric sets none (default UTC)"),
    ("METRICS_CENTER_INBOX", "folder where messages for channels without a connection are written"),
    (
        "METRICS_CENTER_SIGNOFF_POLL",
        "seconds between looks of a publish waiting for a definition's sign-off (300)",
    ),
    (
        "METRICS_CENTER_LOCALE",
        "language of the commands' messages: en or zh-CN (简体中文); default from LC_ALL, LC_MESSAGES, LANG",
    ),
)

#: Commands whose words reach other people (chat messages to recipients, published history): they keep each
#: recipient's own language (English when none is set), never the operator's terminal's.
_FOR_OTHERS = frozenset({"notifications", "demo"})


def _environment_help() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT) + 4
    lines = [
        textwrap.fill(what, width=100, initial_indent=f"  {name}".ljust(width), subsequent_indent=" " * width)
        for name, what in ENVIRONMENT
    ]
    exits = (
        "A command that cannot do its job prints one line, `metrics-center <command>: <what> — <fix>`, and "
        "exits 2; validate exits 1 when it finds problems."
    )
    return "\n".join(["environment:", *lines, "", textwrap.fill(exits, width=100)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-center",
        description="Metrics Center: validate metric definitions, review their changes, operate the mart, the "
        "outbox and the demo.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (
        validate,
        unit_tests,
        new,
        run,
        mart,
        staging,
        notifications,
        demo,
        review,
        changes,
        pools,
        bi,
    ):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.from_console = argv is None  # a process of its own (not main([...]) inside another program)
    from metrics_center import settings
    from metrics_center.i18n.translate import normalize, using

    locale = None if args.command in _FOR_OTHERS else normalize(settings.cli_locale())
    try:
        with using(locale):
            return args.func(args)
    except Exception as exc:
        from metrics_center.cli.failures import EXIT_FAILED, command_name, explain

        with using(locale):
            line = explain(exc, args=args)
        if line is None:
            raise  # a bug: keep the traceback
        print(f"metrics-center {command_name(args)}: {line}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
