"""One `validate` run shows every problem of a file: schema errors together, the later checks past unknown keys,
and a "did you mean" for every misspelt key, top-level or nested."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metrics_center.cli.app import main
from metrics_center.definitions.loader import TEAMS_FILE, load_catalog, load_metric, load_teams
from metrics_center.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
VALID = Path(__file__).resolve().parents[1] / "fixtures" / "valid"


def _line(path: Path, marker: str) -> int:
    (line,) = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    return line


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A metrics folder holding the teams file and only the issue's example, its SQL beside it."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    shutil.copy(VALID / "metrics" / TEAMS_FILE, metrics / TEAMS_FILE)
    shutil.copytree(VALID / "sql", tmp_path / "sql", symlinks=False)
    return metrics


def _write(folder: Path, **edits: str) -> Path:
    text = (VALID / "metrics" / "gmv_daily.yaml").read_text()
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / "gmv_daily.yaml"
    path.write_text(text)
    return path


def test_two_typos_are_both_printed_in_one_validate_run(folder: Path, capsys):
    path = _write(
        folder, **{"dimensions: [region": "dimension: [region", "    min_value: 0\n": "    min_valu: 0\n"}
    )
    assert main(["validate", str(folder)]) == 1
    lines = capsys.readouterr().err.splitlines()
    dimension_line, rule_line = _line(path, "dimension: [region"), _line(path, "min_valu: 0")
    assert lines == [
        f"{path}:{dimension_line}: dimension: unknown key `dimension` — did you mean 'dimensions'? otherwise "
        "remove it (`metrics-center schema` lists every key)",
        f"{path}:{rule_line}: quality[1].min_valu: unknown argument of expect_column_values_to_be_between — "
        "did you mean 'min_value'? accepted: column, condition_parser, max_value, min_value, mostly, "
        "row_condition, strict_max, strict_min",
        "2 problem(s) in 1 metric file(s)",
    ]


def test_the_later_checks_see_the_misspelt_key_as_the_key_it_is_close_to(folder: Path):
    # `dimension` is checked as `dimensions`: a rule on the `region` column is no false alarm, while a
    # reconciliation by an unknown dimension is found at its own line in the same pass.
    path = _write(
        folder,
        **{
            "dimensions: [region": "dimension: [region",
            "    column: value\n  - expect: expect_column_values_to_be_between": "    column: region\n"
            "  - expect: expect_column_values_to_be_between",
            "anomaly:": "reconciliations:\n  - {name: cash, sql: metrics/gmv_daily.sql, by: [city], "
            "tolerance: {pct: 1}}\nanomaly:",
        },
    )
    teams = load_teams(folder / TEAMS_FILE)
    with pytest.raises(SpecError) as raised:
        load_metric(path, teams=teams, sql_root=folder.parent / "sql")
    found = {p.key: p for p in raised.value.problems}
    assert sorted(found) == ["dimension", "reconciliations[0].by[0]"]
    assert found["reconciliations[0].by[0]"].message == "'city' is not a dimension of the metric"
    assert found["reconciliations[0].by[0]"].line == _line(path, "by: [city]")


def test_a_misspelt_required_key_names_the_rename_and_its_value_is_still_checked(folder: Path):
    path = _write(folder, **{"owner: alice": "ownr: zoe"})
    teams = load_teams(folder / TEAMS_FILE)
    with pytest.raises(SpecError) as raised:
        load_metric(path, teams=teams, sql_root=folder.parent / "sql")
    found = {p.key: p for p in raised.value.problems}
    assert sorted(found) == ["owner", "ownr"]
    assert found["ownr"].fix.startswith("did you mean 'owner'?")
    # the missing key says which key to rename; the value written under the typo is checked at its line
    missing, unknown_person = (p for p in raised.value.problems if p.key == "owner")
    assert (missing.message, missing.fix) == ("required key `owner` is missing", "rename `ownr` to `owner`")
    assert unknown_person.message == "owner 'zoe' is not a person in _teams.yaml"
    assert unknown_person.line == _line(path, "ownr: zoe")


@pytest.mark.parametrize(
    ("old", "new", "key", "suggestion"),
    [
        ("  timeout: 24h", "  timout: 24h", "approval.timout", "timeout"),
        ("    approvers: [bob]", "    approver: [bob]", "approval.stages[0].approver", "approvers"),
        ("    conn_id: sales_db", "    conn_idd: sales_db", "sources.orders.conn_idd", "conn_id"),
        ("  threshold: 3", "  treshold: 3", "anomaly.treshold", "threshold"),
        ("subscribers: [finance", "subscriber: [finance", "subscriber", "subscribers"),
    ],
)
def test_nested_and_top_level_typos_get_the_close_name(folder: Path, old, new, key, suggestion):
    path = _write(folder, **{old: new})
    catalog = load_catalog(folder, sql_root=folder.parent / "sql")
    unknown = [p for p in catalog.problems[path] if p.key == key]
    assert [p.message for p in unknown] == [f"unknown key `{key.rsplit('.', 1)[-1]}`"]
    assert unknown[0].fix.startswith(f"did you mean '{suggestion}'?"), unknown[0].fix
    assert unknown[0].line == _line(path, new.strip())


def test_an_unknown_key_far_from_every_name_gets_no_guess(folder: Path):
    path = _write(folder, **{"subscribers: [finance": "zzz: 1\nsubscribers: [finance"})
    (problem,) = load_catalog(folder, sql_root=folder.parent / "sql").problems[path]
    assert problem.key == "zzz" and "did you mean" not in problem.fix
    assert "remove it" in problem.fix


def test_a_misspelt_choice_gets_the_close_value(folder: Path):
    path = _write(folder, **{"grain: day": "grain: dya"})
    (problem,) = load_catalog(folder, sql_root=folder.parent / "sql").problems[path]
    assert (problem.key, problem.fix) == ("grain", "did you mean 'day'?")


def test_quality_rules_are_checked_even_when_the_rest_fails_the_schema(folder: Path):
    # a missing required key stops the checks that need the whole spec, not those of each rule
    path = _write(folder, **{"unit: CNY\n": "", "    min_value: 0\n": "    min_valu: 0\n"})
    teams = load_teams(folder / TEAMS_FILE)
    with pytest.raises(SpecError) as raised:
        load_metric(path, teams=teams, sql_root=folder.parent / "sql")
    assert [(p.key, p.message) for p in raised.value.problems] == [
        ("unit", "required key `unit` is missing"),
        ("quality[1].min_valu", "unknown argument of expect_column_values_to_be_between"),
    ]


def test_a_file_with_only_schema_errors_reports_each_of_them(folder: Path):
    path = _write(folder, **{"grain: day": "grain: hour", "version: 1": "version: 0", "unit: CNY\n": ""})
    problems = load_catalog(folder, sql_root=folder.parent / "sql").problems[path]
    assert sorted(p.key for p in problems) == ["grain", "unit", "version"]


def test_teams_file_typos_get_the_close_name_too(tmp_path: Path):
    path = tmp_path / TEAMS_FILE
    path.write_text(
        "departments:\n  sales:\n    name: Sales\n    slack_chanel: '#sales'\n"
        "people:\n  bob: {name: Bob, department: sales, slack_user: U0BOB0001}\n"
    )
    with pytest.raises(SpecError) as raised:
        load_teams(path)
    fixes = {p.key: p.fix for p in raised.value.problems}
    assert sorted(fixes) == ["departments.sales.slack_chanel", "people.bob.slack_user"]
    assert fixes["departments.sales.slack_chanel"].startswith("did you mean 'slack_channel'?")
    assert fixes["people.bob.slack_user"].startswith("did you mean 'slack_user_id'?")
