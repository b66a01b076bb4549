"""Metric unit tests (include/metrics/tests/<key>.yaml): every demo case passes, each as its own pytest test,
and the runner says what is wrong — a row diff naming the row, a missing fixture column naming the file,
the case and the column, an unknown source with the metric's sources listed. In-process DuckDB only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metrics_center.cli.app import main
from metrics_center.definitions.loader import load_catalog
from metrics_center.definitions.metric_tests import (
    check_tests,
    json_schema,
    load_test_file,
    unit_test_files,
)
from metrics_center.definitions.spec import MetricSource
from metrics_center.errors import SpecError
from metrics_center.tasks.metric_test_run import run_case, warm_up
from metrics_center.tasks.result_diff import compare_rows

REPO = Path(__file__).resolve().parents[2]
METRICS = REPO / "include" / "metrics"
SQL = REPO / "include" / "sql"
#: Every case takes well under a second (a run measures ~30–100 ms on the 2-core sandbox); generous for CI noise.
CASE_BUDGET_S = 1.0


def _catalog(metrics_dir: Path = METRICS, sql_root: Path = SQL):
    return load_catalog(metrics_dir, sql_root=sql_root)


def _inputs(catalog, spec):
    return {
        s.metric: catalog.metrics[s.metric].spec for s in spec.sources.values() if isinstance(s, MetricSource)
    }


def _demo_cases() -> list:
    params = []
    for key, path in unit_test_files(METRICS).items():
        for case in load_test_file(path).cases:
            params.append(pytest.param(key, case.name, id=f"{key}: {case.name}"))
    return params


@pytest.fixture(scope="module")
def demo_catalog():
    warm_up()
    return _catalog()


def test_every_demo_metric_has_unit_tests():
    metrics = {p.stem for p in METRICS.glob("[!_]*.yaml")}
    assert metrics, "the demo has metrics"
    assert set(unit_test_files(METRICS)) == metrics


def test_test_files_are_not_metric_files():
    """The loader reads <metrics>/*.yaml only: the tests/ subfolder is never taken for metrics."""
    catalog = _catalog()
    assert not any(path.parent.name == "tests" for path in catalog.problems)
    assert {m.path.parent for m in catalog.metrics.values()} == {METRICS}


@pytest.mark.parametrize(("key", "name"), _demo_cases())
def test_demo_case_passes(demo_catalog, key: str, name: str):
    spec = demo_catalog.metrics[key].spec
    loaded = load_test_file(METRICS / "tests" / f"{key}.yaml")
    inputs = _inputs(demo_catalog, spec)
    assert check_tests(loaded, spec=spec, inputs=inputs) == []
    case = next(c for c in loaded.cases if c.name == name)
    result = run_case(loaded=loaded, case=case, spec=spec, inputs=inputs, sql_root=SQL)
    assert result.status == "PASS", "\n".join(result.details())
    assert result.seconds < CASE_BUDGET_S, f"{result.line()} took more than {CASE_BUDGET_S} s"


def test_committed_schema_is_current():
    committed = json.loads((REPO / "schemas" / "metric_test.schema.json").read_text())
    assert committed == json_schema(), (
        "regenerate: metrics-center test --schema > schemas/metric_test.schema.json"
    )


# --- the runner itself, on a temp copy of include/ -----------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A copy of include/ (metrics with their tests, teams, SQL) to break."""
    shutil.copytree(REPO / "include", tmp_path / "include")
    return tmp_path / "include"


def _write(home: Path, key: str, text: str) -> Path:
    path = home / "metrics" / "tests" / f"{key}.yaml"
    path.write_text(text)
    return path


GMV_CASE = """\
- name: {name}
  period: 2026-11-26
  given:
    orders:
      - {{order_id: 1, region: east, channel: app, amount: 100.0, {status}}}
      - {{order_id: 2, region: west, channel: web, amount: 20.0, {status}}}
    refunds: {{csv: no_refunds.csv}}
  expect:
    - {{region: east, channel: app, value: {east}}}
    - {{region: west, channel: web, value: 20}}
"""


def _run_file(home: Path, key: str):
    catalog = _catalog(home / "metrics", home / "sql")
    spec = catalog.metrics[key].spec
    loaded = load_test_file(home / "metrics" / "tests" / f"{key}.yaml")
    inputs = _inputs(catalog, spec)
    problems = check_tests(loaded, spec=spec, inputs=inputs)
    assert problems == []
    return [
        run_case(loaded=loaded, case=c, spec=spec, inputs=inputs, sql_root=home / "sql") for c in loaded.cases
    ]


def test_a_wrong_expected_value_fails_with_a_diff_naming_the_row(home: Path, capsys):
    path = _write(home, "gmv_daily", GMV_CASE.format(name="east is wrong", status="status: paid", east=90))
    [result] = _run_file(home, "gmv_daily")
    assert result.status == "FAIL"
    details = "\n".join(result.details())
    assert f"{path}: case 'east is wrong':" in details
    assert "differing values: 1" in details
    assert "region=east, channel=app: value expected 90, got 100" in details
    assert "west" not in details  # the matching row is not reported

    code = main(["test", "gmv_daily", "--metrics-dir", str(home / "metrics")])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("FAIL  gmv_daily: east is wrong (2026-11-26, ")
    assert "value expected 90, got 100" in out
    assert "0 passed, 1 failed, 0 error(s): 1 case(s) of 1 metric(s)" in out


def test_missing_and_unexpected_rows_are_listed(home: Path):
    text = GMV_CASE.format(name="rows differ", status="status: paid", east=100).replace(
        "region: west, channel: web, value: 20", "region: north, channel: web, value: 20"
    )
    _write(home, "gmv_daily", text)
    [result] = _run_file(home, "gmv_daily")
    assert result.status == "FAIL"
    lines = result.details()
    assert "  missing rows (expected, not returned): 1" in lines
    assert "    - region=north, channel=web, value=20" in lines
    assert "  unexpected rows (returned, not expected): 1" in lines
    assert "    + region=west, channel=web, value=20" in lines


def test_a_column_the_sql_reads_but_the_fixture_lacks_names_file_case_and_column(home: Path, capsys):
    path = _write(home, "gmv_daily", GMV_CASE.format(name="no status", status="note: x", east=100))
    [result] = _run_file(home, "gmv_daily")
    assert result.status == "ERROR"
    [detail] = result.details()
    assert detail.startswith(f"{path}: case 'no status': the transform reads column `status`")
    assert "orders (order_id, region, channel, amount, note)" in detail
    assert "settlements (not given)" in detail
    assert main(["test", "gmv_daily", "--metrics-dir", str(home / "metrics")]) == 1
    assert "ERROR gmv_daily: no status" in capsys.readouterr().out


def test_an_expected_column_the_result_lacks_is_bad_input(home: Path, capsys):
    path = _write(
        home,
        "gmv_daily",
        GMV_CASE.format(name="typo", status="status: paid", east=100).replace("value: 20", "valeu: 20"),
    )
    code = main(["test", "gmv_daily", "--metrics-dir", str(home / "metrics")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:" in err
    assert (
        "case 'typo': expect[1]: row 2 has ['valeu'] which row 1 has not and lacks ['value'] which row 1 has"
        in err
    )
    assert "no case ran" in err

    _write(
        home,
        "gmv_daily",
        GMV_CASE.format(name="typo", status="status: paid", east=100).replace("value:", "valeu:"),
    )
    assert main(["test", "gmv_daily", "--metrics-dir", str(home / "metrics")]) == 2
    err = capsys.readouterr().err
    assert (
        "case 'typo': expect[0].valeu: expected column `valeu` is not in the result of gmv_daily "
        "(period_start, region, channel, value)" in err
    )


def test_an_unknown_source_is_named_with_the_metrics_sources(home: Path, capsys):
    path = _write(
        home,
        "gmv_daily",
        GMV_CASE.format(name="typo", status="status: paid", east=100).replace("orders:", "ordres:"),
    )
    assert main(["test", "gmv_daily", "--metrics-dir", str(home / "metrics")]) == 2
    err = capsys.readouterr().err
    assert (
        f"{path}:4: case 'typo': given.ordres: `ordres` is not a source of gmv_daily; its sources are: orders, "
        "refunds, settlements — give rows for those sources only (check the spelling)"
    ) in err


def test_schema_errors_name_the_file_the_case_and_the_key(home: Path):
    path = _write(
        home,
        "refunds_daily",
        "- name: first\n  perod: 2026-11-26\n  given: {refunds: {amount: 1}}\n  expect: []\n"
        "- name: second\n  period: 2026-11-26\n  given: {refunds: [{a: [1]}]}\n  expect: []\n",
    )
    with pytest.raises(SpecError) as raised:
        load_test_file(path)
    problems = [str(p) for p in raised.value.problems]
    assert f"{path}:2: case 'first': perod: unknown key `perod`" in "\n".join(problems)
    assert any(
        p.startswith(f"{path}:1: case 'first': period: required key `period` is missing") for p in problems
    )
    assert any("case 'first': given.refunds: `refunds` is a mapping" in p for p in problems)
    assert any("case 'second': given.refunds[0].a: list is no cell" in p for p in problems)


def test_metric_sources_take_the_input_metrics_rows(home: Path):
    """A derived metric's given rows are the input's dimensions and value; other columns are refused."""
    _write(
        home,
        "refund_rate_daily",
        "- name: extra column\n  period: 2026-11-26\n  given:\n    gmv:\n"
        "      - {region: east, channel: app, value: 1, sku: x}\n  expect: []\n",
    )
    catalog = _catalog(home / "metrics", home / "sql")
    spec = catalog.metrics["refund_rate_daily"].spec
    loaded = load_test_file(home / "metrics" / "tests" / "refund_rate_daily.yaml")
    [problem] = check_tests(loaded, spec=spec, inputs=_inputs(catalog, spec))
    assert problem.case == "extra column"
    assert problem.key == "given.gmv[0].sku"
    assert (
        "gmv_daily: period_start, period_end, region, channel, value, definition_version" in problem.message
    )


def test_cli_exit_codes_and_summary(home: Path, capsys):
    assert main(["test", "--metrics-dir", str(home / "metrics")]) == 0
    out = capsys.readouterr().out
    cases = sum(len(load_test_file(p).cases) for p in unit_test_files(home / "metrics").values())
    assert f"{cases} passed, 0 failed, 0 error(s): {cases} case(s) of 5 metric(s)" in out
    assert all(line.startswith("PASS  ") for line in out.splitlines()[:-1])

    assert main(["test", "nope", "--metrics-dir", str(home / "metrics")]) == 2
    assert "no tests for nope" in capsys.readouterr().err
    (home / "metrics" / "tests" / "ghost.yaml").write_text("[]\n")
    assert main(["test", "ghost", "--metrics-dir", str(home / "metrics")]) == 2
    assert "there is no metric ghost" in capsys.readouterr().err


def test_comparison_tolerance_and_order():
    actual = [
        {"period_start": None, "region": "b", "value": 1 / 3},
        {"period_start": None, "region": "a", "value": 2.0},
    ]
    ok = compare_rows(
        expected=[{"region": "a", "value": 2}, {"region": "b", "value": 0.333333}],
        actual=actual,
        key_columns=["period_start", "region"],
    )
    assert ok.ok
    off = compare_rows(
        expected=[{"region": "a", "value": 2.00001}, {"region": "b", "value": 0.333333}],
        actual=actual,
        key_columns=["period_start", "region"],
    )
    assert not off.ok
    assert off.lines() == ["differing values: 1", "  ~ region=a: value expected 2.00001, got 2"]


def test_editing_a_unit_test_keeps_the_dag_parse_cache(home: Path, tmp_path: Path, monkeypatch):
    """Test files are never metrics: the validated catalog cached between DAG parses stays valid."""
    from metrics_center.definitions.catalog_cache import cached_catalog

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("METRICS_CENTER_PARSE_CACHE", raising=False)
    cached_catalog(home / "metrics", sql_root=home / "sql")
    (home / "metrics" / "tests" / "gmv_daily.yaml").write_text("[]\n")
    cached_catalog(home / "metrics", sql_root=home / "sql")
    assert len(list((tmp_path / "airflow" / "metrics_center_cache").rglob("catalog-*.pickle"))) == 1
