"""The ``metrics-center`` command line: one module per command group, a thin layer over the library.

Every layer below may be used here; nothing below imports the CLI. ``main`` is the console script.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from metrics_center.cli.app import main as run

    return run(argv)
