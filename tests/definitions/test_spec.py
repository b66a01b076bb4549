"""Metric definitions: every example is accepted, every broken file is reported where it is broken.

Broken fixtures live in tests/fixtures/broken/metrics/, one defect per file (the header comment of
each file says which); valid_neighbour.yaml sits among them and must still load.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from metrics_center.definitions.loader import TEAMS_FILE, load_catalog, load_metric, load_teams
from metrics_center.definitions.rule_checks import known_expectations
from metrics_center.definitions.spec import FileSource, MetricSource, SqlSource
from metrics_center.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEMO_METRICS = REPO / "include" / "metrics"
DEMO_SQL = REPO / "include" / "sql"
DEMO_KEYS = ["gmv_daily", "lead_conversion_rate", "refund_rate_daily", "refund_rate_weekly", "refunds_daily"]
VALID = FIXTURES / "valid"
BROKEN = FIXTURES / "broken"


def _metric_yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def _line_containing(path: Path, marker: str) -> int:
    """1-based number of the only non-comment line containing ``marker`` (independent of the loader)."""
    lines = enumerate(path.read_text().splitlines(), 1)
    hits = [n for n, line in lines if marker in line and not line.startswith("#")]
    assert len(hits) == 1, f"marker {marker!r} should occur on exactly one line of {path.name}: {hits}"
    return hits[0]


# --- every example is accepted ------------------------------------------------------------------


def test_every_demo_metric_is_valid():
    files = _metric_yaml_files(DEMO_METRICS)
    assert len(files) >= 3, "the demo ships three metrics"
    catalog = load_catalog(DEMO_METRICS, sql_root=DEMO_SQL)
    assert catalog.problems == {}
    assert catalog.ok
    assert sorted(catalog.metrics) == [p.stem for p in files]
    assert {m.path for m in catalog.metrics.values()} == set(files)
    assert catalog.teams is not None and "alice" in catalog.teams.people


@pytest.mark.parametrize("path", _metric_yaml_files(DEMO_METRICS), ids=lambda p: p.stem)
def test_each_demo_metric_loads_alone(path: Path):
    teams = load_teams(DEMO_METRICS / TEAMS_FILE)
    spec = load_metric(path, teams=teams, sql_root=DEMO_SQL)
    assert spec.key == path.stem
    for source in spec.sources.values():
        if isinstance(source, SqlSource):
            assert (DEMO_SQL / source.sql).is_file()
        elif isinstance(source, MetricSource):
            assert (DEMO_METRICS / f"{source.metric}.yaml").is_file()
        else:
            assert source.resolved_format() in ("csv", "parquet", "excel")
    assert spec.approvers <= set(teams.people) | set(teams.departments)
    assert set(teams.resolve(sorted(spec.approvers))) <= set(teams.people)


def test_issue_example_is_accepted_as_written():
    """The issue's literal gmv_daily example, parsed into what it says."""
    catalog = load_catalog(VALID / "metrics", sql_root=VALID / "sql")
    assert catalog.problems == {}
    assert list(catalog.metrics) == ["gmv_daily"]
    spec = catalog.metrics["gmv_daily"].spec
    assert (spec.name, spec.department, spec.owner, spec.version) == ("GMV (成交额)", "sales", "alice", 1)
    assert (spec.unit, spec.grain, spec.schedule, spec.timezone) == ("CNY", "day", "@daily", None)
    assert spec.dimensions == ["region", "channel"]
    assert spec.output_columns == ["period_start", "region", "channel", "value"]
    orders, refunds = spec.sources["orders"], spec.sources["refunds"]
    assert isinstance(orders, SqlSource) and (orders.conn_id, orders.sql) == ("sales_db", "sales/orders.sql")
    assert isinstance(refunds, FileSource) and refunds.path == "finance/refunds_{{ ds }}.csv"
    assert refunds.resolved_format() == "csv"
    assert spec.transform.sql == "metrics/gmv_daily.sql"
    assert [(q.expect, q.kwargs) for q in spec.quality] == [
        ("expect_column_values_to_not_be_null", {"column": "value"}),
        ("expect_column_values_to_be_between", {"column": "value", "min_value": 0}),
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
    ]
    assert spec.anomaly is not None
    assert (spec.anomaly.method, spec.anomaly.effective_threshold, spec.anomaly.window) == ("zscore", 3.0, 28)
    assert (spec.anomaly.min_history, spec.anomaly.seasonality) == (7, "day_of_week")
    stages = spec.approval.stages
    assert [(s.name, s.slug, s.approvers) for s in stages] == [
        ("sales review", "sales_review", ["bob"]),
        ("finance sign-off", "finance_sign_off", ["carol", "dave"]),
    ]
    assert spec.approval.timeout_delta == timedelta(hours=24)
    assert spec.approval.on_timeout == "reject"
    assert spec.subscribers == ["finance", "marketing"]


# --- every broken file is reported precisely ----------------------------------------------------


@dataclass(frozen=True)
class Expected:
    key: str  # dotted key as printed ("" = the whole file)
    marker: str  # text on the line the problem must point at
    message: str  # regex the message must match
    fix: str  # regex the fix must match


BROKEN_CASES: dict[str, list[Expected]] = {
    # A typo of a required key is two facts: the typo is unknown, and the real key is missing.
    "unknown_key": [
        Expected(
            "ownr", "ownr: alice", r"unknown key `ownr`", r"did you mean 'owner'\?.*metrics-center schema"
        ),
        Expected(
            "owner", "key: unknown_key", r"required key `owner` is missing", r"rename `ownr` to `owner`"
        ),
    ],
    "missing_key": [Expected("unit", "key: missing_key", r"required key `unit` is missing", r"add this key")],
    "bad_yaml": [
        Expected("", "name: Paid order amount: by region", r"not valid YAML.*mapping values", r"indentation")
    ],
    "unsafe_dimension": [
        Expected(
            "dimensions[1]",
            "- Region-Name",
            r"'Region-Name' is not a safe identifier",
            r"lower-case letters, digits",
        )
    ],
    "sql_word_dimension": [
        Expected("dimensions", "dimensions:", r"\['order'\] is a reserved SQL word", r"rename the dimension")
    ],
    "a_metric_key_that_is_far_too_long_for_the_mart_relations_x": [
        Expected("key", "key: a_metric_key", r"58 characters; a metric key has at most 55", r"shorten it")
    ],
    "unknown_reader": [
        Expected(
            "readers[1]",
            "readers: [finance, legal]",
            r"reader 'legal' is neither a department nor a person",
            r"use a department",
        )
    ],
    "restricted_without_readers": [
        Expected(
            "access",
            "access: restricted",
            r"lets in only the readers listed, and none is",
            r"list departments",
        )
    ],
    "reserved_dimension": [
        Expected("dimensions", "dimensions:", r"\['value'\] is a column the mart adds", r"rename")
    ],
    "source_without_origin": [
        Expected(
            "sources.refunds",
            "  refunds:",
            r"either `conn_id` \+ `sql`, `path` or `metric`",
            r"`path:`.*`conn_id:` and `sql:`",
        )
    ],
    "missing_sql": [
        Expected(
            "transform.sql",
            "metrics/no_such_file.sql",
            r"'metrics/no_such_file.sql' does not exist",
            r"create it",
        )
    ],
    "unknown_approver": [
        Expected(
            "approval.stages[0].approvers[0]",
            "- mallory",
            r"approver 'mallory' is not a person \(or a department with people\) in _teams\.yaml",
            r"add them to _teams\.yaml",
        )
    ],
    "unknown_department": [
        Expected(
            "department",
            "department: legal",
            r"department 'legal' is not in _teams\.yaml",
            r"\['data', 'finance', 'marketing', 'sales'\]",
        )
    ],
    "unknown_expectation": [
        Expected(
            "quality[1].expect",
            "expect_value_to_be_nice",
            r"'expect_value_to_be_nice' is not a Great Expectations expectation",
            r"expect_column_values_to_not_be_null",
        )
    ],
    "unknown_quality_column": [
        Expected(
            "quality[1].column",
            "column: revenue",
            r"column 'revenue' is not a column of the result",
            r"\['period_start', 'region', 'channel', 'value'\]",
        )
    ],
    "bad_timeout": [Expected("approval.timeout", "timeout: soon", r"'soon' is not a duration", r"30m, 24h")],
    "key_mismatch": [
        Expected(
            "key",
            "key: gross_sales",
            r"'gross_sales' differs from the file name 'key_mismatch\.yaml'",
            r"rename the file to gross_sales\.yaml",
        )
    ],
    "duplicate_stages": [
        Expected("approval", "approval:", r"stage names collide.*\(sales_review\)", r"rename a stage")
    ],
    "bad_timezone": [
        Expected(
            "timezone",
            "timezone: Mars/Olympus_Mons",
            r"'Mars/Olympus_Mons' is not an IANA time zone",
            r"Asia/Shanghai",
        )
    ],
    "unknown_subscriber": [
        Expected(
            "subscribers[1]",
            "  - legal",
            r"subscriber 'legal' is not a department in _teams\.yaml",
            r"'finance'",
        )
    ],
    "not_a_mapping": [Expected("", "- key: not_a_mapping", r"not a YAML mapping", r"key: value")],
}


def test_every_broken_fixture_has_a_case():
    on_disk = {p.stem for p in _metric_yaml_files(BROKEN / "metrics")} - {"valid_neighbour"}
    assert on_disk == set(BROKEN_CASES)


@pytest.mark.parametrize("name", sorted(BROKEN_CASES))
def test_broken_file_is_reported_at_the_right_key_and_line(name: str):
    path = BROKEN / "metrics" / f"{name}.yaml"
    teams = load_teams(BROKEN / "metrics" / TEAMS_FILE)
    with pytest.raises(SpecError) as raised:
        load_metric(path, teams=teams, sql_root=BROKEN / "sql")
    problems = raised.value.problems
    expected = BROKEN_CASES[name]
    assert sorted(p.key for p in problems) == sorted(e.key for e in expected), [str(p) for p in problems]
    by_key = {p.key: p for p in problems}
    for want in expected:
        problem = by_key[want.key]
        assert problem.path == path
        assert problem.line == _line_containing(path, want.marker), str(problem)
        assert re.search(want.message, problem.message), problem.message
        assert re.search(want.fix, problem.fix), problem.fix
        assert problem.fix.strip() and problem.fix != problem.message
        # The printed form is the one editors and CI logs link to: path:line: key: what — fix.
        assert str(problem) == (
            f"{path}:{problem.line}: {want.key or '<file>'}: {problem.message} — {problem.fix}"
        )
    assert str(raised.value) == "\n".join(str(p) for p in problems)


def test_broken_files_do_not_stop_the_good_one_beside_them():
    catalog = load_catalog(BROKEN / "metrics", sql_root=BROKEN / "sql")
    assert list(catalog.metrics) == ["valid_neighbour"]
    assert catalog.metrics["valid_neighbour"].spec.approvers == {"bob", "carol", "dave"}
    assert catalog.teams is not None
    assert {p.stem for p in catalog.problems} == set(BROKEN_CASES)
    assert not catalog.ok
    for path, problems in catalog.problems.items():
        assert problems and all(p.path == path for p in problems)


def test_one_broken_file_among_the_demo_metrics(tmp_path: Path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for path in DEMO_METRICS.glob("*.yaml"):
        (metrics / path.name).write_bytes(path.read_bytes())
    broken = metrics / "bad_timeout.yaml"
    broken.write_bytes((BROKEN / "metrics" / "bad_timeout.yaml").read_bytes())
    catalog = load_catalog(metrics, sql_root=DEMO_SQL)
    assert sorted(catalog.metrics) == DEMO_KEYS
    assert list(catalog.problems) == [broken]
    assert [p.key for p in catalog.problems[broken]] == ["approval.timeout"]


def test_missing_teams_file_is_a_problem_but_metrics_still_load(tmp_path: Path):
    (tmp_path / "gmv_daily.yaml").write_bytes((VALID / "metrics" / "gmv_daily.yaml").read_bytes())
    catalog = load_catalog(tmp_path, sql_root=VALID / "sql")
    assert list(catalog.metrics) == ["gmv_daily"]
    assert [p.message for p in catalog.problems[tmp_path / TEAMS_FILE]] == ["teams file is missing"]


def test_teams_file_person_in_unknown_department(tmp_path: Path):
    teams = tmp_path / TEAMS_FILE
    teams.write_text(
        "departments:\n  sales:\n    name: Sales\npeople:\n  zoe:\n    name: Zoe\n    department: legal\n"
    )
    with pytest.raises(SpecError, match=r"people\.zoe\.department 'legal' is not a department"):
        load_teams(teams)


# --- snapshots that must track the installed software -------------------------------------------


def test_gx_expectation_snapshot_matches_installed_great_expectations(monkeypatch):
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation import Expectation

    installed = {
        cls.expectation_type
        for cls in vars(gxe).values()
        if inspect.isclass(cls) and issubclass(cls, Expectation) and cls is not Expectation
    }
    # A metric names expectations as `expect: expect_…` (spec pattern ^expect_[a-z0-9_]+$). GX also
    # exports UnexpectedRowsExpectation (needs raw SQL) and a class with an empty type: not nameable.
    nameable = {name for name in installed if re.fullmatch(r"expect_[a-z0-9_]+", name)}
    assert len(nameable) > 40
    assert set(known_expectations()) == nameable


def test_committed_json_schemas_are_current(tmp_path: Path, capsys):
    from metrics_center.cli.app import main

    assert main(["schema", "--write", str(tmp_path)]) == 0
    for name in ("metric", "teams"):
        generated = (tmp_path / f"{name}.schema.json").read_text()
        committed = (REPO / "schemas" / f"{name}.schema.json").read_text()
        assert committed == generated, f"schemas/{name}.schema.json is stale: run `make schema`"
    assert "metric.schema.json" in capsys.readouterr().out


def test_chat_addresses_in_teams_are_checked_and_the_fix_is_named(tmp_path: Path):
    path = tmp_path / TEAMS_FILE
    path.write_text(
        "departments:\n"
        "  sales:\n"
        "    name: Sales\n"
        "    feishu_chat_id: sales-group\n"
        "    dingtalk_webhook: 'https://oapi.dingtalk.com/robot/send?access_token=secret'\n"
        "    locale: zh-TW\n"
        "    notify: {anomaly: [telegram]}\n"
        "people:\n"
        "  bob: {name: Bob, department: sales, feishu_open_id: ou_bob, locale: zh-CN}\n"
    )
    with pytest.raises(SpecError) as raised:
        load_teams(path)
    text = str(raised.value)
    assert (
        "departments.sales.feishu_chat_id: 'sales-group' is not a feishu_chat_id — copy the group's chat id"
        in text
    )
    # a secret in the YAML is refused: the robot's token belongs in an Airflow connection
    assert (
        "dingtalk_webhook: 'https://oapi.dingtalk.com/robot/send?access_token=secret' is not a dingtalk_webhook"
        in text
    )
    assert "departments.sales.locale" in text and "departments.sales.notify.anomaly" in text
