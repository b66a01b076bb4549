"""``metrics-center new``: the metric it writes passes `validate` and `test` at once; bad requests are refused,
naming what is known, and leave nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from metrics_center.cli.app import main
from metrics_center.definitions.loader import load_teams
from metrics_center.definitions.scaffold import ScaffoldRefused, scaffold_metric

REPO = Path(__file__).resolve().parents[2]
SECTIONS = (
    "key",
    "name",
    "description",
    "department",
    "owner",
    "version",
    "change_note",
    "unit",
    "grain",
    "schedule",
    "dimensions",
    "aggregation",
    "sources",
    "transform",
    "quality",
    "anomaly",
    "approval",
    "subscribers",
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A temp copy of include/: _teams.yaml, the demo metrics and their tests, the SQL."""
    shutil.copytree(REPO / "include", tmp_path / "include")
    return tmp_path / "include"


def _files(home: Path) -> set[Path]:
    return {p for p in home.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("key", "department", "owner", "extra", "approvers"),
    [
        ("orders_count", "sales", "alice", [], ["bob"]),
        ("cash_weekly_2", "finance", "dave", [], ["carol"]),
        ("lead_quality", "marketing", "erin", ["--approver", "frank"], ["frank"]),
    ],
)
def test_a_new_metric_passes_validate_and_test_at_once(
    home, capsys, key, department, owner, extra, approvers
):
    metrics = home / "metrics"
    before = _files(home)
    code = main(
        ["new", key, "--department", department, "--owner", owner, "--metrics-dir", str(metrics), *extra]
    )
    out = capsys.readouterr().out
    assert code == 0
    made = [
        metrics / f"{key}.yaml",
        home / "sql" / "metrics" / f"{key}.sql",
        metrics / "tests" / f"{key}.yaml",
    ]
    assert _files(home) - before == set(made)
    for path in made:
        assert f"created {path}" in out

    assert main(["validate", str(metrics)]) == 0, capsys.readouterr().err
    assert "ok: 6 metric file(s) valid" in capsys.readouterr().out
    assert main(["test", key, "--metrics-dir", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PASS  {key}: ")
    assert "1 passed, 0 failed, 0 error(s)" in out

    text = made[0].read_text()
    assert text.startswith("# yaml-language-server: $schema=../../schemas/metric.schema.json\n")
    data = yaml.safe_load(text)
    assert [k for k in SECTIONS if k not in data] == []
    assert (data["key"], data["department"], data["owner"]) == (key, department, owner)
    assert data["approval"]["stages"][0]["approvers"] == approvers
    assert owner not in approvers  # the owner may never be the only approver
    commented = {line.split(":")[0] for line in text.splitlines() if "#" in line and not line.startswith("#")}
    assert {"unit", "grain", "dimensions", "aggregation", "quality", "anomaly", "subscribers"} <= commented
    assert (
        made[2]
        .read_text()
        .startswith("# yaml-language-server: $schema=../../../schemas/metric_test.schema.json")
    )


def test_approvers_default_to_the_departments_other_people(home):
    teams = load_teams(home / "metrics" / "_teams.yaml")
    made = scaffold_metric(key="x_count", department="finance", owner="carol", metrics_dir=home / "metrics")
    approvers = yaml.safe_load(made.metric.read_text())["approval"]["stages"][0]["approvers"]
    assert approvers == [p for p in teams.members("finance") if p != "carol"] == ["dave"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gmv_daily", "--department", "sales", "--owner", "alice"], "metric gmv_daily exists already"),
        (["Orders", "--department", "sales", "--owner", "alice"], "'Orders' is not a metric key"),
        (["1orders", "--department", "sales", "--owner", "alice"], "'1orders' is not a metric key"),
        (["orders-daily", "--department", "sales", "--owner", "alice"], "'orders-daily' is not a metric key"),
        (
            ["o" * 56, "--department", "sales", "--owner", "alice"],
            "has 56 characters; a metric key has at most 55",
        ),
        (
            ["orders", "--department", "ops", "--owner", "alice"],
            "department 'ops' is not in _teams.yaml — use one of ['data', 'finance', 'marketing', 'sales']",
        ),
        (
            ["orders", "--department", "sales", "--owner", "zoe"],
            "owner 'zoe' is not a person in _teams.yaml — use one of ['alice', 'bob', 'carol', 'dave', 'erin', "
            "'frank']",
        ),
        (
            ["orders", "--department", "marketing", "--owner", "erin"],
            "marketing has nobody but erin to approve erin's metric, who may not be its only approver — name one "
            "with --approver",
        ),
        (
            ["orders", "--department", "sales", "--owner", "alice", "--approver", "alice"],
            "alice would be the only approver of their own metric",
        ),
        (
            ["orders", "--department", "sales", "--owner", "alice", "--approver", "zoe"],
            "approver(s) ['zoe'] are neither people nor departments in _teams.yaml",
        ),
    ],
    ids=[
        "existing key",
        "upper case",
        "leading digit",
        "hyphen",
        "too long",
        "unknown department",
        "unknown owner",
        "owner alone in the department",
        "owner as the only approver",
        "unknown approver",
    ],
)
def test_refusals_name_the_problem_and_write_nothing(home, capsys, args, message):
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert main(["new", *args, "--metrics-dir", str(home / "metrics")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metrics-center new: ")
    assert message in err
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before


def test_existing_test_or_sql_file_also_refuses(home):
    (home / "sql" / "metrics" / "orphan.sql").write_text("SELECT 1\n")
    with pytest.raises(ScaffoldRefused, match="metric orphan exists already"):
        scaffold_metric(key="orphan", department="sales", owner="alice", metrics_dir=home / "metrics")
    assert not (home / "metrics" / "orphan.yaml").exists()
