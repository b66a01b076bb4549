"""What the generated DAGs promise beyond their graph: periods run in parallel; a broken teams file shows once."""

from __future__ import annotations

import shutil
from pathlib import Path

from metrics_center.orchestration.dag_builder import BROKEN_TAG, build_dags

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_runs_of_different_periods_are_not_queued_behind_a_waiting_approval():
    dags = build_dags(REPO / "include" / "metrics")
    assert {dag.max_active_runs for dag in dags.values()} != {1}
    assert all(dag.max_active_runs > 1 for dag in dags.values())


def test_a_broken_teams_file_shows_each_metric_once(tmp_path):
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    metrics = home / "metrics"
    (metrics / "_teams.yaml").write_text("departments: {}\npeople: [oops]\n")
    shutil.copy(FIXTURES / "broken" / "metrics" / "unknown_key.yaml", metrics)  # broken on its own too
    dags = build_dags(metrics)
    expected = {*(p.stem for p in metrics.glob("[!_]*.yaml"))}
    assert {"gmv_daily", "refund_rate_daily", "unknown_key"} <= expected
    assert set(dags) == expected  # no `broken_…` duplicates
    assert all(BROKEN_TAG in dag.tags for dag in dags.values())
    doc = dags["unknown_key"].doc_md
    assert "_teams.yaml" in doc and "unknown key" in doc  # both problems on the one placeholder
