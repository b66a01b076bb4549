"""``make mc ARGS="run gmv_daily --period 2026-11-26"``: ``metrics-center`` in the demo's environment.

The same data root, sales database connection, Airflow home and mart as ``make demo``, so an author can
``test``, ``run`` and ``validate`` a new metric against the demo company without exporting anything. The
demo's data is written first when it is not there yet (deterministic; ``make demo`` writes the same).
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path


def main(argv: list[str]) -> int:
    from metrics_center.demo.run import demo_setup

    setup = demo_setup(environ=os.environ)
    env = {**os.environ, **setup.env}
    data_root = Path(env["METRICS_CENTER_DATA_ROOT"])
    if not (data_root / "sales" / "sales.db").is_file():
        from metrics_center.demo.seed import seed_demo

        summary = seed_demo(root=data_root, end=date.today())
        print(
            f"• wrote the demo company's data to {data_root} ({summary.start}..{summary.end})",
            file=sys.stderr,
        )
    command = [str(Path(sys.executable).with_name("metrics-center")), *argv]
    os.execve(command[0], command, env)
    return 0  # not reached: the command replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
