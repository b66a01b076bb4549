"""A file source's `path:` must stay inside METRICS_CENTER_DATA_ROOT (checked on the raw template)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metrics_center.definitions.loader import TEAMS_FILE, data_root_escape, load_metric, load_teams
from metrics_center.errors import SpecError

BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken"
NEIGHBOUR = BROKEN / "metrics" / "valid_neighbour.yaml"
GOOD_PATH = "    path: finance/refunds_{{ ds }}.csv\n"
FIX = "give a path relative to METRICS_CENTER_DATA_ROOT"


def _metric(folder: Path, path_value: str) -> Path:
    """valid_neighbour.yaml with the refunds source's ``path:`` replaced."""
    text = NEIGHBOUR.read_text()
    assert text.count(GOOD_PATH) == 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TEAMS_FILE).write_bytes((NEIGHBOUR.parent / TEAMS_FILE).read_bytes())
    metric = folder / "valid_neighbour.yaml"
    metric.write_text(text.replace(GOOD_PATH, f"    path: {path_value}\n"))
    return metric


@pytest.mark.parametrize(
    "raw",
    [
        "../../../etc/pass*.csv",
        "..",
        "finance/../../secrets.csv",
        "finance/{{ ds }}/../../x.csv",
        "../{{ ds }}.csv",
        "{{ ds }}/../../x.csv",
        "finance/..{{ suffix }}/x.csv",
        "finance\\..\\..\\x.csv",
        "/etc/passwd.csv",
        "/{{ ds }}.csv",
        "\\\\server\\share\\x.csv",
        "C:\\exports\\x.csv",
        "C:/exports/x.csv",
    ],
)
def test_paths_leaving_the_data_root_are_rejected(raw: str):
    assert data_root_escape(raw) is not None


@pytest.mark.parametrize(
    "raw",
    [
        "finance/refunds_{{ ds }}.csv",
        "finance/refunds_*.csv",
        "marketing/leads.parquet",
        "finance/refunds..2026.csv",
        "finance/{{ ds }}..csv",
        "./finance/x.csv",
        "finance/{{ macros.ds_add(ds, -1) }}.csv",
    ],
)
def test_paths_inside_the_data_root_are_accepted(raw: str):
    assert data_root_escape(raw) is None


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ("../../../etc/pass*.csv", r"'../../../etc/pass\*.csv' climbs out of METRICS_CENTER_DATA_ROOT"),
        ("finance/{{ ds }}/../../x.csv", r"climbs out of METRICS_CENTER_DATA_ROOT with a `\.\.` part"),
        ("/etc/passwd.csv", r"'/etc/passwd.csv' is an absolute path"),
    ],
)
def test_loader_reports_the_key_line_and_fix(tmp_path: Path, raw: str, what: str):
    metric = _metric(tmp_path / "metrics", raw)
    with pytest.raises(SpecError) as raised:
        load_metric(metric, teams=load_teams(metric.parent / TEAMS_FILE), sql_root=BROKEN / "sql")
    [problem] = raised.value.problems
    assert problem.key == "sources.refunds.path"
    assert problem.line == next(n for n, line in enumerate(metric.read_text().splitlines(), 1) if raw in line)
    assert re.search(what, problem.message), problem.message
    assert problem.fix == FIX


@pytest.mark.slow  # a separate process
def test_validate_cli_rejects_the_issue_example(tmp_path: Path):
    """`path: ../../../etc/pass*` used to validate fine."""
    metric = _metric(tmp_path / "metrics", "../../../etc/pass*")
    script = Path(sys.executable).with_name("metrics-center")
    result = subprocess.run(
        [str(script), "validate", str(metric), "--sql-root", str(BROKEN / "sql")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{metric}:21: sources.refunds.path: '../../../etc/pass*' climbs out of " in lines[0]
    assert lines[0].endswith(f" — {FIX}")
