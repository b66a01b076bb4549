"""Staging retention against the real Airflow metadata DB: unfinished runs keep their staged data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics_center import cli
from metrics_center.tasks.retention import prune_staging
from metrics_center.tasks.runtime import staging_dir

DAG = "mc_retention_test"  # a metric key; DagRun rows of this DAG only, removed after each test
RUNNING = "manual__2026-10-01T08:00:00+00:00"  # waiting for approval for weeks
QUEUED = "manual__2026-10-02T08:00:00+00:00"
SUCCEEDED = "scheduled__2026-10-03T00:00:00+00:00"
FAILED = "scheduled__2026-10-04T00:00:00+00:00"
YOUNG = "scheduled__2026-11-26T00:00:00+00:00"  # finished yesterday
VANISHED = "manual__2026-09-01T00:00:00+00:00"  # its DagRun was deleted (e.g. `airflow db clean`)


@pytest.fixture
def staging(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "staging"
    monkeypatch.setenv("METRICS_CENTER_STAGING", root.as_uri())
    return root


@pytest.fixture
def dag_runs(airflow_db):
    """Create DagRun rows ``{run_id: state}`` with Airflow's ORM; delete them afterwards."""
    import sqlalchemy as sa
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    def create(states: dict[str, str]) -> None:
        with create_session() as session:
            for i, (run_id, state) in enumerate(states.items()):
                session.add(
                    DagRun(
                        dag_id=DAG,
                        run_id=run_id,
                        run_type="manual" if run_id.startswith("manual") else "scheduled",
                        state=state,
                        logical_date=datetime(2026, 10, 1, tzinfo=UTC) + timedelta(days=i),
                        run_after=datetime(2026, 10, 1, tzinfo=UTC) + timedelta(days=i),
                    )
                )

    yield create
    with create_session() as session:
        session.execute(sa.delete(DagRun).where(DagRun.dag_id == DAG))


def _stage(run_id: str, *, age_days: float) -> Path:
    """Stage a real Parquet part where the tasks would (``runtime.staging_dir``), ``age_days`` old."""
    folder = Path(staging_dir({"run_id": run_id}, SimpleNamespace(key=DAG)).path)
    part = folder / "sources" / "orders" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"region": ["east"], "amount": [1.0]}), part)
    when = time.time() - age_days * 86400
    os.utime(part, (when, when))
    return folder


def test_prune_keeps_unfinished_runs_whatever_their_age(staging, dag_runs):
    dag_runs({RUNNING: "running", QUEUED: "queued", SUCCEEDED: "success", FAILED: "failed", YOUNG: "success"})
    folders = {
        run_id: _stage(run_id, age_days=30) for run_id in (RUNNING, QUEUED, SUCCEEDED, FAILED, VANISHED)
    }
    folders[YOUNG] = _stage(YOUNG, age_days=1)
    assert folders[RUNNING].name == "manual__2026-10-01T08_00_00_00_00"  # path-safe, not the run id

    dry = prune_staging(older_than=timedelta(days=14), dry_run=True)
    assert (dry.runs, dry.files) == (3, 3)
    assert all(folder.is_dir() for folder in folders.values())

    pruned = prune_staging(older_than=timedelta(days=14))
    assert (pruned.runs, pruned.files) == (3, 3)
    assert sorted((r.run_id, r.state) for r in pruned.kept_unfinished) == [
        (RUNNING, "running"),
        (QUEUED, "queued"),
    ]
    remaining = {run_id for run_id, folder in folders.items() if folder.is_dir()}
    assert remaining == {RUNNING, QUEUED, YOUNG}
    assert (folders[RUNNING] / "sources" / "orders" / "part-0.parquet").is_file()


def test_cli_reports_the_runs_it_kept(staging, dag_runs, capsys):
    dag_runs({RUNNING: "running", SUCCEEDED: "success"})
    running, succeeded = _stage(RUNNING, age_days=30), _stage(SUCCEEDED, age_days=30)

    assert cli.main(["staging", "prune", "--older-than", "14d"]) == 0

    out = capsys.readouterr().out
    assert f"removed 1 staged run(s), 1 file(s) under {staging.as_uri()}" in out
    assert f"kept 1 unfinished run(s): {DAG}/{RUNNING} (running)" in out
    assert running.is_dir() and not succeeded.exists()


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("sqlite:////nonexistent-metrics-center-dir/airflow.db", id="unreachable"),
        pytest.param("airflow-db-not-allowed:///", id="inside-an-airflow-task"),
    ],
)
@pytest.mark.slow  # a separate process
def test_cli_refuses_to_prune_without_the_metadata_db(staging, database):
    """The real CLI in its own process, so Airflow configures its ORM from this (unusable) database URL."""
    old = _stage(VANISHED, age_days=30)
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database}
    cmd = [str(Path(sys.executable).with_name("metrics-center")), "staging", "prune", "--older-than", "14d"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot read run states from Airflow's metadata database" in result.stderr
    assert "nothing was pruned" in result.stderr
    assert "Traceback" not in result.stderr
    assert (old / "sources" / "orders" / "part-0.parquet").is_file()
