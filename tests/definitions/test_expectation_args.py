"""Quality rules' arguments are checked against Great Expectations' own models.

Without GX (DAG parsing): unknown and missing arguments, from the committed gx_expectations.json.
With GX (`metrics-center validate`): each rule is built through GX's model, so wrong types and values
are reported too. At run time a rule GX cannot run is a failed result, not a crashed task.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metrics_center.definitions.loader import TEAMS_FILE, load_catalog, load_metric, load_teams
from metrics_center.definitions.rule_checks import expectation_args, gx_internal_fields, known_expectations
from metrics_center.errors import QualityCheckFailed, SpecError, SpecProblem

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "metrics_center" / "definitions"
BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "broken"
NEIGHBOUR = BROKEN / "metrics" / "valid_neighbour.yaml"
NOT_NULL_RULE = "  - expect: expect_column_values_to_not_be_null\n    column: value\n"
IN_SET_ARGS = "    value_set: [east, north, south, west]\n"


def _metric(folder: Path, key: str, old: str, new: str) -> Path:
    """valid_neighbour.yaml with one mistake (``old`` → ``new``), saved as ``<key>.yaml`` in ``folder``."""
    text = NEIGHBOUR.read_text()
    assert text.count(old) == 1, old
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / TEAMS_FILE).exists():
        (folder / TEAMS_FILE).write_bytes((NEIGHBOUR.parent / TEAMS_FILE).read_bytes())
    path = folder / f"{key}.yaml"
    path.write_text(text.replace(old, new).replace("key: valid_neighbour", f"key: {key}"))
    return path


def _line_containing(path: Path, marker: str) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def _problems(path: Path, *, check_with_gx: bool = False) -> list[SpecProblem]:
    with pytest.raises(SpecError) as raised:
        load_metric(
            path,
            teams=load_teams(path.parent / TEAMS_FILE),
            sql_root=BROKEN / "sql",
            check_with_gx=check_with_gx,
        )
    return raised.value.problems


# --- the snapshot ---------------------------------------------------------------------------------


def test_gx_snapshot_matches_installed_great_expectations():
    """Regenerate the snapshot from the installed GX: it must equal the committed files."""
    from metrics_center.definitions.gx_rules import gx_expectation_snapshot, snapshot_texts

    for name, text in snapshot_texts(gx_expectation_snapshot()).items():
        assert (PACKAGE / name).read_text() == text, (
            f"src/metrics_center/definitions/{name} is stale: run `python -m metrics_center.definitions.gx_rules`"
        )


def test_gx_snapshot_content():
    args = expectation_args()
    assert set(args) == known_expectations() and len(args) > 40
    between = args["expect_column_values_to_be_between"]
    assert {"column", "min_value", "max_value", "mostly", "strict_min"} <= set(between.accepted)
    assert between.required == ("column",)
    assert args["expect_column_values_to_be_in_set"].required == ("column", "value_set")
    assert args["expect_table_row_count_to_be_between"].required == ()
    # GX's bookkeeping and run-behaviour fields are nobody's argument here.
    internal = {"id", "meta", "notes", "description", "rendered_content", "batch_id", "result_format"}
    assert internal | {"catch_exceptions", "windows", "severity", "library_metadata"} <= gx_internal_fields()
    assert not any(gx_internal_fields() & set(a.accepted) for a in args.values())


def test_loading_a_catalog_does_not_import_great_expectations(tmp_path: Path):
    """DAG parsing loads the catalog; it must check arguments without importing GX."""
    bad = _metric(tmp_path / "metrics", "typo", NOT_NULL_RULE, NOT_NULL_RULE + "    mostli: 0.9\n")
    code = (
        "import sys; from pathlib import Path; from metrics_center.definitions.loader import load_catalog\n"
        f"c = load_catalog(Path({str(bad.parent)!r}), sql_root=Path({str(BROKEN / 'sql')!r}))\n"
        "assert [p.key for p in c.problems[Path(" + repr(str(bad)) + ")]] == ['quality[0].mostli']\n"
        "assert 'great_expectations' not in sys.modules, 'GX was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- without GX: unknown and missing arguments ----------------------------------------------------


def test_unknown_argument_names_the_key_line_and_the_likely_fix(tmp_path: Path):
    between = "  - expect: expect_column_values_to_be_between\n    column: value\n    min_vale: 0\n"
    path = _metric(tmp_path / "metrics", "typo", NOT_NULL_RULE, between)
    [problem] = _problems(path)
    assert problem.key == "quality[0].min_vale"
    assert problem.line == _line_containing(path, "min_vale: 0")
    assert problem.message == "unknown argument of expect_column_values_to_be_between"
    assert problem.fix.startswith("did you mean 'min_value'? accepted: ")
    assert "max_value" in problem.fix and "mostly" in problem.fix
    assert str(problem).startswith(f"{path}:{problem.line}: quality[0].min_vale: unknown argument of ")


def test_unknown_argument_without_a_close_match(tmp_path: Path):
    path = _metric(tmp_path / "metrics", "odd", NOT_NULL_RULE, NOT_NULL_RULE + "    threshold: 3\n")
    [problem] = _problems(path)
    assert (problem.key, problem.line) == ("quality[0].threshold", _line_containing(path, "threshold: 3"))
    assert problem.fix == "remove it; accepted: column, condition_parser, mostly, row_condition"


def test_gx_internal_fields_may_not_be_set_by_a_rule(tmp_path: Path):
    path = _metric(
        tmp_path / "metrics", "internal", NOT_NULL_RULE, NOT_NULL_RULE + "    catch_exceptions: false\n"
    )
    [problem] = _problems(path)
    assert problem.key == "quality[0].catch_exceptions"
    assert "does not let a rule set" in problem.message and problem.fix.startswith("remove it")


def test_missing_required_argument_points_at_the_rule(tmp_path: Path):
    path = _metric(tmp_path / "metrics", "no_set", IN_SET_ARGS, "")
    [problem] = _problems(path)
    assert problem.key == "quality[1].value_set"
    assert problem.line == _line_containing(path, "- expect: expect_column_values_to_be_in_set")
    assert problem.message == "required argument `value_set` of expect_column_values_to_be_in_set is missing"
    assert problem.fix == "add `value_set:` to this rule"


def test_catalog_reports_argument_problems_beside_good_metrics(tmp_path: Path):
    folder = tmp_path / "metrics"
    _metric(folder, "no_set", IN_SET_ARGS, "")
    (folder / "valid_neighbour.yaml").write_bytes(NEIGHBOUR.read_bytes())
    catalog = load_catalog(folder, sql_root=BROKEN / "sql")
    assert list(catalog.metrics) == ["valid_neighbour"]
    assert [p.key for p in catalog.problems[folder / "no_set.yaml"]] == ["quality[1].value_set"]


# --- with GX: wrong types and values --------------------------------------------------------------


def test_gx_model_rejects_wrong_types_and_values(tmp_path: Path):
    between = (
        "  - expect: expect_column_values_to_be_between\n"
        "    column: value\n    min_value: abc\n    max_value: 10\n    mostly: 2\n"
    )
    path = _metric(tmp_path / "metrics", "types", NOT_NULL_RULE, between)
    assert load_metric(path, teams=load_teams(path.parent / TEAMS_FILE), sql_root=BROKEN / "sql"), (
        "without GX only names are checked"
    )
    by_key = {p.key: p for p in _problems(path, check_with_gx=True)}
    assert set(by_key) == {"quality[0].min_value", "quality[0].mostly"}
    low, mostly = by_key["quality[0].min_value"], by_key["quality[0].mostly"]
    assert low.line == _line_containing(path, "min_value: abc")
    assert low.message.startswith("'abc' is not valid for expect_column_values_to_be_between (")
    assert low.fix.startswith("write a number")
    assert mostly.line == _line_containing(path, "mostly: 2")
    assert "less than or equal to 1" in mostly.message and mostly.fix == "write a number ≤ 1.0"


def test_gx_model_reports_whole_rule_problems_at_the_rule(tmp_path: Path):
    between = "  - expect: expect_column_values_to_be_between\n    column: value\n"
    path = _metric(tmp_path / "metrics", "unbounded", NOT_NULL_RULE, between)
    [problem] = _problems(path, check_with_gx=True)
    assert problem.key == "quality[0]"
    assert problem.line == _line_containing(path, "- expect: expect_column_values_to_be_between")
    assert "min_value and max_value cannot both be None" in problem.message
    assert "expect_column_values_to_be_between" in problem.fix


def test_gx_model_accepts_every_demo_and_fixture_metric():
    demo = load_catalog(REPO / "include" / "metrics", sql_root=REPO / "include" / "sql", check_with_gx=True)
    assert demo.ok, demo.problems
    fixtures = load_catalog(NEIGHBOUR.parent, sql_root=BROKEN / "sql", check_with_gx=True)
    assert "valid_neighbour" in fixtures.metrics


@pytest.mark.slow  # a separate process
def test_validate_cli_reports_gx_type_errors_without_a_traceback(tmp_path: Path):
    path = _metric(tmp_path / "metrics", "types", "    column: value\n", "    column: value\n    mostly: 2\n")
    script = Path(sys.executable).with_name("metrics-center")
    result = subprocess.run(
        [str(script), "validate", str(path), "--sql-root", str(BROKEN / "sql")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = _line_containing(path, "mostly: 2")
    assert result.stderr.splitlines() == [
        f"{path}:{line}: quality[0].mostly: 2 is not valid for expect_column_values_to_not_be_null "
        "(ensure this value is less than or equal to 1.0) — write a number ≤ 1.0",
        "1 problem(s) in 1 metric file(s)",
    ]


# --- run time: a rule GX cannot run is a failed rule ---------------------------------------------


def test_a_rule_gx_cannot_run_is_a_failed_result_and_the_others_still_run():
    import pandas as pd

    from metrics_center.checks.expectations import raise_on_failures, run_expectations
    from metrics_center.definitions.spec import Expectation

    rules = [
        Expectation.model_validate(r)
        for r in (
            {"expect": "expect_column_values_to_be_between", "column": "value", "min_vale": 0},
            {"expect": "expect_column_values_to_not_be_null", "column": "value"},
            {"expect": "expect_column_values_to_be_between", "column": "value", "min_value": "abc"},
            {"expect": "expect_no_such_thing_at_all"},
            {"expect": "expect_column_values_to_match_regex", "column": "region", "regex": "("},
            {"expect": "expect_table_row_count_to_be_between", "min_value": 1},
        )
    ]
    frame = pd.DataFrame({"period_start": ["2026-01-01"] * 2, "region": ["a", "b"], "value": [1.0, 2.0]})
    results = run_expectations(frame=frame, rules=rules, suite_name="broken_rules")

    assert [r["expectation"] for r in results] == [r.expect for r in rules]
    assert [r["success"] for r in results] == [False, True, False, False, False, True]
    for result in results:
        assert set(result) == {"expectation", "kwargs", "success", "observed"}
        json.dumps(result)  # stored in the audit table and XCom
    errors = [r["observed"].get("error", "") for r in results]
    assert re.search(r"min_vale", errors[0]) and "\n" not in errors[0]
    assert "min_value" in errors[2] and "'abc'" in errors[2]
    assert "expect_no_such_thing_at_all" in errors[3]
    assert "regular expression" in errors[4]
    assert results[0]["kwargs"] == {"column": "value", "min_vale": 0}
    assert "error" not in results[1]["observed"] and "error" not in results[5]["observed"]
    assert all(len(e) <= 300 for e in errors)

    with pytest.raises(QualityCheckFailed, match=r"4 of 6 checks failed"):
        raise_on_failures(metric_key="broken_rules", results=results)
