"""Command groups (``metrics-center mart …``, ``pools …``): one parser with required sub-commands."""

from __future__ import annotations

import argparse


def command_group(sub: argparse._SubParsersAction, name: str, *, help: str) -> argparse._SubParsersAction:
    """Add ``name`` to the command line and return the parser of its sub-commands."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)
