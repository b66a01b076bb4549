"""``metrics-center``: validate definitions, review changes, operate the mart, the outbox and the demo.

One module per command group; each adds its commands with ``add_commands``. Nothing heavy is imported
until a command runs.
"""

from __future__ import annotations

import argparse
import sys

from metrics_center.cli import bi, changes, demo, mart, notifications, pools, review, staging, validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-center",
        description="Metrics Center: validate metric definitions, review their changes, operate the mart, the "
        "outbox and the demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (validate, mart, staging, notifications, demo, review, changes, pools, bi):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
