"""`make mc ARGS="…"`: metrics-center in the demo's environment — the data written when missing, the sales
database connection set — so the README's first-metric guide needs no exported variable."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import pytest

pytestmark = pytest.mark.slow  # a separate process


def test_run_in_the_demos_environment_seeds_the_data_and_computes_yesterday(tmp_path):
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "METRICS_CENTER_"))}
    env.update(
        METRICS_CENTER_DATA_ROOT=str(tmp_path / "demo_data"),
        DEMO_AIRFLOW_HOME=str(tmp_path / "airflow"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "metrics_center.demo.with_env", "run", "gmv_daily", "--period", yesterday, "--no-evidence"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote the demo company's data" in done.stderr
    assert f"gmv_daily v1 (working tree) — {yesterday}: 12 row(s)" in done.stdout
    assert (tmp_path / "demo_data" / "sales" / "sales.db").is_file()
    assert not (tmp_path / "airflow" / "metrics_mart.db").exists()  # read-only: no mart was created
