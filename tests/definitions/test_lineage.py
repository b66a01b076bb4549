"""Metrics built from metrics: validation of the graph, lineage both ways, and the DAG scheduled on Assets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metrics_center.cli.app import main
from metrics_center.definitions.lineage import Lineage
from metrics_center.definitions.loader import load_catalog

REPO = Path(__file__).resolve().parents[2]
DERIVED = REPO / "include" / "metrics" / "refund_rate_daily.yaml"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "include", tmp_path / "include")
    return tmp_path / "include"


def _derived(home: Path, key: str, **edits: str) -> Path:
    text = DERIVED.read_text().replace("key: refund_rate_daily", f"key: {key}")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = home / "metrics" / f"{key}.yaml"
    path.write_text(text)
    return path


def _problems(home: Path) -> dict[str, list[str]]:
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    return {
        path.stem: [f"{p.line}: {p.key}: {p.message}" for p in found]
        for path, found in catalog.problems.items()
    }


def test_the_demo_lineage_both_ways():
    catalog = load_catalog(REPO / "include" / "metrics", sql_root=REPO / "include" / "sql")
    assert catalog.problems == {}
    lineage = Lineage.of(m.spec for m in catalog.metrics.values())
    assert lineage.upstream["refund_rate_daily"] == ("gmv_daily", "refunds_daily")
    assert lineage.downstream["gmv_daily"] == ("refund_rate_daily",)
    assert lineage.descendants("refunds_daily") == ["refund_rate_daily"]
    assert lineage.ancestors("refund_rate_daily") == ["gmv_daily", "refunds_daily"]


def test_a_cycle_is_an_error_on_every_metric_in_it_and_the_others_still_load(home: Path):
    _derived(home, "a", **{"metric: gmv_daily": "metric: b"})
    _derived(home, "b", **{"metric: refunds_daily": "metric: a"})
    found = _problems(home)
    assert sorted(found) == ["a", "b"]
    line_a = next(
        i for i, t in enumerate((home / "metrics" / "a.yaml").read_text().splitlines(), 1) if "metric: b" in t
    )
    assert found["a"] == [f"{line_a}: sources.gmv.metric: metrics read each other in a cycle: a → b → a"]
    assert "cycle: b → a → b" in found["b"][0]
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert {"gmv_daily", "refund_rate_daily"} <= set(catalog.metrics)  # the rest is untouched


def test_reading_itself_an_unknown_metric_or_a_coarser_grain_is_refused(home: Path):
    _derived(home, "self_ref", **{"metric: gmv_daily": "metric: self_ref"})
    _derived(home, "unknown_input", **{"metric: gmv_daily": "metric: gmv_hourly"})
    _derived(home, "from_weeks", **{"metric: gmv_daily": "metric: refund_rate_weekly"})
    _derived(
        home,
        "weekly_from_days",
        **{"grain: day": "grain: week", "schedule: inputs ": 'schedule: "0 3 * * 1" '},
    )
    found = _problems(home)
    assert "a metric cannot read itself" in found["self_ref"][0]
    assert "metric 'gmv_hourly' is not defined" in found["unknown_input"][0]
    assert "refund_rate_weekly is a week metric; a day metric cannot read it" in found["from_weeks"][0]
    assert "weekly_from_days" not in found  # days fit in a week


def test_schedule_inputs_needs_a_metric_to_follow(home: Path):
    (home / "metrics" / "lead_conversion_rate.yaml").write_text(
        (home / "metrics" / "lead_conversion_rate.yaml")
        .read_text()
        .replace('schedule: "@daily"', "schedule: inputs")
    )
    (problem,) = _problems(home)["lead_conversion_rate"]
    assert problem.endswith(
        "schedule: schedule: inputs runs the metric when a metric it reads publishes, but it reads no metric"
    )


def test_an_input_whose_file_is_broken_keeps_the_derived_metric(home: Path):
    gmv = home / "metrics" / "gmv_daily.yaml"
    gmv.write_text(gmv.read_text().replace("grain: day", "grain: hour"))
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert "refund_rate_daily" in catalog.metrics  # gmv_daily shows its own error
    assert [p.stem for p in catalog.problems] == ["gmv_daily"]


def test_validate_of_one_file_checks_it_against_the_others(home: Path, capsys):
    path = _derived(home, "unknown_input", **{"metric: gmv_daily": "metric: gmv_hourly"})
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:" in err and "sources.gmv.metric: metric 'gmv_hourly' is not defined" in err
    assert main(["validate", str(home / "metrics" / "gmv_daily.yaml")]) == 0  # others' problems stay theirs


def test_lineage_cli_prints_both_directions(capsys):
    assert main(["lineage", "gmv_daily"]) == 0
    out = capsys.readouterr().out
    assert "reads (upstream): nothing — an atomic metric" in out and "  - refund_rate_daily" in out
    assert main(["lineage", "refund_rate_daily"]) == 0
    out = capsys.readouterr().out
    assert "  - gmv_daily\n  - refunds_daily" in out and "read by (downstream): no metric" in out
    assert main(["lineage", "nope"]) == 2  # the command cannot do its job (1: problems found)
    assert "no valid metric 'nope'" in capsys.readouterr().err


def test_the_derived_dag_is_scheduled_on_its_inputs_assets():
    from airflow.sdk import Asset, AssetAny

    from metrics_center.orchestration.dag_builder import build_dags

    dag = build_dags(only_dag_id="refund_rate_daily")["refund_rate_daily"]
    condition = dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [(a.uri, a.name) for a in condition.objects] == [
        ("metrics_mart://gmv_daily", "gmv_daily"),
        ("metrics_mart://refunds_daily", "refunds_daily"),
    ]
    gmv = build_dags(only_dag_id="gmv_daily")["gmv_daily"]
    assert gmv.get_task("publish").outlets == [Asset(uri="metrics_mart://gmv_daily", name="gmv_daily")]
