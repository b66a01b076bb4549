"""``metrics-center mart grant-reader``: operating the mart (roles for BI)."""

from __future__ import annotations

import argparse


def add_mart_commands(mart_sub: argparse._SubParsersAction) -> None:
    """Register ``mart grant-reader``."""
