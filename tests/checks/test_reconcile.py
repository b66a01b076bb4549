"""Cross-department reconciliation (对账) and the quality gate around it, with real DuckDB and the mart."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.definitions.loader import load_metric
from metrics_center.definitions.periods import period_containing
from metrics_center.definitions.spec import Teams
from metrics_center.errors import QualityCheckFailed, SpecError
from metrics_center.mart.runs import record_result, start_run
from metrics_center.tasks.extract import extract_source
from metrics_center.tasks.quality_gate import run_quality_gate
from metrics_center.tasks.reconciliation import run_reconciliations
from metrics_center.tasks.transform import transform

CONTEXT = {"logical_date": datetime(2026, 11, 27, tzinfo=UTC), "run_id": "manual__recon"}  # computes 11-26
TEAMS = Teams.model_validate(
    {
        "departments": {"sales": {"name": "Sales", "slack_channel": "#sales-metrics"}},
        "people": {
            "alice": {"name": "Alice", "department": "sales"},
            "bob": {"name": "Bob", "department": "sales"},
        },
    }
)
TRANSFORM = "SELECT DATE '{{ period_start }}' AS period_start, region, SUM(amount) AS value FROM orders GROUP BY region"
THEIRS = (
    "SELECT CAST(order_date AS DATE) AS period_start, region, SUM(amount) AS value FROM cash "
    "WHERE CAST(order_date AS DATE) = DATE '{{ period_start }}' GROUP BY 1, 2"
)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "home" / "sql").mkdir(parents=True)
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(data))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    pd.DataFrame({"region": ["east", "east", "west", "north"], "amount": [60.0, 40.0, 50.0, 10.0]}).to_csv(
        data / "orders.csv", index=False
    )
    (tmp_path / "home" / "sql" / "t.sql").write_text(TRANSFORM)
    (tmp_path / "home" / "sql" / "theirs.sql").write_text(THEIRS)
    return tmp_path


def _spec(*, cash: dict[str, float], workspace, **check):
    pd.DataFrame(
        {"order_date": ["2026-11-26"] * len(cash), "region": list(cash), "amount": list(cash.values())}
    ).to_csv(workspace / "data" / "cash.csv", index=False)
    spec = metric_spec(
        dimensions=["region"],
        aggregation="sum",
        sources={"orders": {"path": "orders.csv"}, "cash": {"path": "cash.csv"}},
        transform={"sql": "t.sql"},
        reconciliations=[
            {
                "name": "cash",
                "sql": "theirs.sql",
                "by": ["region"],
                "tolerance": {"pct": 1},
                "severity": "warn",
                **check,
            }
        ],
    )
    for name in spec.sources:
        extract_source(spec=spec, source_name=name, context=CONTEXT)
    summary = transform(spec=spec, context=CONTEXT)
    from metrics_center.tasks.transform import read_result

    return spec, read_result(spec=spec, context=CONTEXT)[0], summary


def test_numbers_that_agree_within_tolerance_pass(workspace):
    spec, result, _ = _spec(cash={"east": 100.5, "west": 50.0, "north": 10.0}, workspace=workspace)
    [outcome] = run_reconciliations(spec=spec, context=CONTEXT, result=result)
    assert outcome["expectation"] == "reconcile:cash" and outcome["success"] is True
    assert outcome["observed"]["ours"] == 160.0 and outcome["observed"]["theirs"] == 160.5
    assert outcome["observed"]["mismatched"] == 0


def test_a_region_off_by_more_than_the_tolerance_and_a_missing_one_are_mismatches(workspace):
    spec, result, _ = _spec(cash={"east": 100.0, "west": 47.5}, workspace=workspace)
    [outcome] = run_reconciliations(spec=spec, context=CONTEXT, result=result)
    assert outcome["success"] is False and outcome["severity"] == "warn"
    rows = {r["dimensions"]["region"]: r for r in outcome["observed"]["rows"]}
    assert rows["west"]["difference"] == 2.5 and rows["west"]["within"] is False
    assert rows["north"]["theirs"] is None and rows["north"]["within"] is False
    assert rows["east"]["within"] is True
    assert outcome["observed"]["mismatched"] == 2


def test_the_total_can_be_compared_and_absolute_tolerances_work(workspace):
    spec, result, _ = _spec(
        cash={"east": 103.0, "west": 50.0, "north": 10.0}, workspace=workspace, by=[], tolerance={"abs": 5}
    )
    (workspace / "home" / "sql" / "theirs.sql").write_text(
        "SELECT DATE '{{ period_start }}' AS period_start, SUM(amount) AS value FROM cash"
    )
    [outcome] = run_reconciliations(spec=spec, context=CONTEXT, result=result)
    assert outcome["success"] is True and outcome["observed"]["difference"] == -3.0


def test_a_broken_reconciliation_query_is_a_failed_check_not_a_crash(workspace):
    spec, result, _ = _spec(cash={"east": 100.0}, workspace=workspace)
    (workspace / "home" / "sql" / "theirs.sql").write_text("SELECT region, amount FROM cash")
    [outcome] = run_reconciliations(spec=spec, context=CONTEXT, result=result)
    assert outcome["success"] is False
    assert "must return exactly ['period_start', 'region', 'value']" in outcome["observed"]["error"]


def _gate(mart, spec, summary):
    from mart_helpers import register

    register(mart)
    start_run(
        mart,
        metric_key="m",
        run_id=CONTEXT["run_id"],
        definition_version=1,
        definition_hash="h1",
        timezone="UTC",
        periods=[period_containing(datetime(2026, 11, 26).date(), grain="day")],
        restatement=False,
        is_active=lambda _: False,
    )
    record_result(mart, metric_key="m", run_id=CONTEXT["run_id"], result_hash=summary["result_hash"], rows=3)
    return run_quality_gate(mart, spec=spec, teams=TEAMS, context=CONTEXT)


def test_a_warning_mismatch_alerts_and_a_blocking_one_fails_the_gate(workspace, mart):
    spec, _result, summary = _spec(cash={"east": 100.0, "west": 40.0, "north": 10.0}, workspace=workspace)
    gate = _gate(mart, spec, summary)
    assert gate["passed"] == 0 and [r["severity"] for r in gate["results"]] == ["warn"]
    with mart.connect() as conn:
        stored = conn.execute(sa.text("SELECT expectation, success, severity FROM quality_result")).all()
        alerts = conn.execute(
            sa.text("SELECT kind, recipient, address, state, payload FROM notification")
        ).all()
    assert [tuple(r) for r in stored] == [("reconcile:cash", False, "warn")]
    assert [(a.kind, a.recipient, a.address, a.state) for a in alerts] == [
        ("reconciliation", "sales", "#sales-metrics", "pending")
    ]
    payload = (
        alerts[0].payload
        if isinstance(alerts[0].payload, dict)
        else __import__("json").loads(alerts[0].payload)
    )
    assert payload["name"] == "cash" and payload["severity"] == "warn" and payload["difference"] == 10.0

    blocking = spec.model_copy(
        update={"reconciliations": [spec.reconciliations[0].model_copy(update={"severity": "block"})]}
    )
    with pytest.raises(QualityCheckFailed, match=r"reconcile:cash"):
        run_quality_gate(mart, spec=blocking, teams=TEAMS, context=CONTEXT)
    with mart.connect() as conn:  # the retry's alert is the same fact: not enqueued twice
        assert conn.execute(sa.text("SELECT count(*) FROM notification")).scalar() == 1


@pytest.mark.parametrize(
    ("check", "key", "message"),
    [
        ({"by": ["channel"]}, "reconciliations[0].by[0]", "'channel' is not a dimension of the metric"),
        ({"by": []}, "reconciliations[0].by", "the metric is not additive"),
        ({"tolerance": {}}, "reconciliations[0].tolerance", "a tolerance needs pct or abs"),
    ],
)
def test_validate_names_the_key_of_a_wrong_reconciliation(tmp_path, check, key, message):
    import yaml

    sql = tmp_path / "sql"
    (sql / "metrics").mkdir(parents=True)
    (sql / "metrics" / "t.sql").write_text("SELECT 1")
    (sql / "theirs.sql").write_text("SELECT 1")
    spec = metric_spec(dimensions=["region"], transform={"sql": "metrics/t.sql"}).model_dump(mode="json")
    spec["reconciliations"] = [
        {"name": "cash", "sql": "theirs.sql", "by": ["region"], "tolerance": {"pct": 1}, **check}
    ]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as problems:
        load_metric(path, teams=TEAMS, sql_root=sql)
    assert any(p.key == key and message in p.message for p in problems.value.problems), problems.value


def test_the_outbox_writes_each_fact_once(mart):
    from metrics_center.notify.addresses import Recipient
    from metrics_center.notify.outbox import enqueue

    def add(conn) -> bool:
        return enqueue(
            conn,
            kind="anomaly",
            dedupe_key="anomaly:m:run:east",
            recipient=Recipient.at("sales", "#sales"),
            group_key="anomaly:m:run",
            payload={"value": 1.0},
        )

    with mart.begin() as conn:
        assert add(conn) is True
        assert add(conn) is False
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), min(state) FROM notification")).one() == (1, "pending")
