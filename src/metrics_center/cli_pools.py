"""``metrics-center pools``: per-department limits on source queries (Airflow pools)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``pools``."""
