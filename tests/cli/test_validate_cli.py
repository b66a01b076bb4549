"""`metrics-center validate` and `metrics-center schema`, run as a user runs them: a separate process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)

REPO = Path(__file__).resolve().parents[2]
N_DEMO = len(list((REPO / "include" / "metrics").glob("[!_]*.yaml")))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BROKEN = FIXTURES / "broken" / "metrics"

#: ``path:line: key: what — fix``; key is a dotted path (``approval.stages[0].approvers[0]``) or <file>.
PROBLEM_LINE = re.compile(
    r"^(?P<path>[^:\n]+\.ya?ml):(?P<line>[1-9]\d*): (?P<key><file>|[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*|\[\d+\])*)"
    r": (?P<what>\S.*?) — (?P<fix>\S.*)$"
)
SUMMARY = re.compile(r"^(\d+) problem\(s\) in (\d+) metric file\(s\)$")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("metrics-center")
    assert script.exists(), "the metrics-center console script is installed with the package"
    return subprocess.run(
        [str(script), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _metric_files(folder: Path) -> set[Path]:
    return {p.resolve() for p in folder.glob("*.yaml") if not p.name.startswith("_")}


def test_demo_metrics_are_ok():
    result = _cli("validate", "include/metrics")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok: {N_DEMO} metric file(s) valid"
    assert result.stderr == ""


def test_default_folder_is_metrics_center_home(tmp_path: Path):
    home = tmp_path / "home"
    (home / "metrics").mkdir(parents=True)
    (home / "metrics" / "_teams.yaml").write_bytes((FIXTURES / "valid/metrics/_teams.yaml").read_bytes())
    (home / "metrics" / "bad_timeout.yaml").write_bytes((BROKEN / "bad_timeout.yaml").read_bytes())
    result = _cli("validate", env={"METRICS_CENTER_HOME": str(home)})
    assert result.returncode == 1
    assert "bad_timeout.yaml:39: approval.timeout: 'soon' is not a duration" in result.stderr

    ok = _cli("validate", env={"METRICS_CENTER_HOME": str(REPO / "include")})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: {N_DEMO} metric file(s)")


def test_issue_example_fixture_is_ok():
    result = _cli("validate", "tests/fixtures/valid/metrics")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 1 metric file(s) valid"


def test_broken_folder_reports_every_file_in_the_documented_format():
    result = _cli("validate", "tests/fixtures/broken/metrics")
    assert result.returncode == 1
    assert "ok:" not in result.stdout
    *lines, summary = result.stderr.strip().splitlines()
    parsed = []
    for line in lines:
        match = PROBLEM_LINE.match(line)
        assert match, f"not `path:line: key: what — fix`: {line!r}"
        parsed.append(match)

    broken = _metric_files(BROKEN) - {(BROKEN / "valid_neighbour.yaml").resolve()}
    reported = {(REPO / m["path"]).resolve() for m in parsed}
    assert reported == broken, "every broken file is checked and reported; the valid one is not"
    for m in parsed:
        total_lines = len((REPO / m["path"]).read_text().splitlines())
        assert 1 <= int(m["line"]) <= total_lines

    counts = SUMMARY.match(summary)
    assert counts, summary
    assert int(counts[1]) == len(lines)
    assert int(counts[2]) == len(broken) + 1  # the valid neighbour was checked too

    assert any(m["key"] == "approval.stages[0].approvers[0]" and "'mallory'" in m["what"] for m in parsed), (
        "the unknown approver is named at its exact key"
    )


def test_only_the_named_files_are_checked():
    result = _cli(
        "validate",
        "tests/fixtures/broken/metrics/valid_neighbour.yaml",
        "tests/fixtures/broken/metrics/unknown_department.yaml",
    )
    assert result.returncode == 1
    *lines, summary = result.stderr.strip().splitlines()
    assert len(lines) == 1
    match = PROBLEM_LINE.match(lines[0])
    assert match and match["path"].endswith("unknown_department.yaml") and match["key"] == "department"
    assert match["line"] == "5"
    assert summary == "1 problem(s) in 2 metric file(s)"


def test_sql_root_option_is_used():
    # --sql-root replaces the default <metrics folder>/../sql: point it where the SQL files are not.
    result = _cli("validate", "tests/fixtures/valid/metrics", "--sql-root", "tests/fixtures/broken/metrics")
    assert result.returncode == 1
    assert "transform.sql: SQL file 'metrics/gmv_daily.sql' does not exist" in result.stderr
    assert "sources.orders.sql: SQL file 'sales/orders.sql' does not exist" in result.stderr


@pytest.mark.parametrize(("kind", "prop"), [("metric", "key"), ("teams", "people")])
def test_schema_prints_json_schema(kind: str, prop: str):
    result = _cli("schema", kind)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert prop in schema["properties"]
    assert schema["additionalProperties"] is False, "editors must flag typos such as `ownr:`"
    if kind == "metric":
        assert schema["properties"]["key"]["pattern"] == "^[a-z][a-z0-9_]*$"
        assert schema["properties"]["key"]["maxLength"] == 55
        assert {"key", "owner", "sources", "approval"} <= set(schema["required"])


def test_schema_defaults_to_metric():
    result = _cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "Metrics Center metric definition"
