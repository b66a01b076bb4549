"""A deprecated metric keeps running; the people who depend on it are told once, through the outbox, and every alert
about it says "deprecated — use X"."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.definitions.spec import Teams
from metrics_center.mart.tables import notification
from metrics_center.notify.blocks import Item
from metrics_center.notify.slack import render_group

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 26)


@pytest.fixture
def deprecated_home(tmp_path, monkeypatch) -> Path:
    """The demo definitions with gmv_daily deprecated in favour of refunds_daily (refund_rate_daily reads it)."""
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    path = home / "metrics" / "gmv_daily.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("grain: day", "grain: day\nstatus: deprecated\nreplaced_by: refunds_daily", 1)
    )
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


def _catalog(home: Path):
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert catalog.problems == {}
    return catalog


def _register_and_start(mart, spec, run_id: str) -> str:
    """What the register_definition task does: the version (unchanged after the first time) and the run."""
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.definitions.periods import period_containing
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.runs import start_run

    definition = load_definition(spec)
    status = register_definition(
        mart, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash
    )
    start_run(
        mart,
        metric_key=spec.key,
        run_id=run_id,
        definition_version=spec.version,
        definition_hash=definition.meaning_hash,
        timezone="UTC",
        periods=[period_containing(DAY, grain="day")],
        restatement=False,
        is_active=lambda _: False,
    )
    return status


def _notices(mart) -> list[sa.Row]:
    with mart.connect() as conn:
        return conn.execute(
            sa.select(notification)
            .where(notification.c.kind == "metric_deprecated")
            .order_by(notification.c.id)
        ).all()


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_a_deprecation_is_told_once_to_everyone_who_depends_on_the_metric(mart, deprecated_home):
    from metrics_center.tasks.impact_preview import run_impact_preview

    catalog = _catalog(deprecated_home)
    spec, teams = catalog.metrics["gmv_daily"].spec, catalog.teams
    assert (spec.status, spec.replaced_by) == ("deprecated", "refunds_daily")

    # Two runs, each registering the definition (the second finds it unchanged) and running impact_preview;
    # the first run's task retried as well.
    assert _register_and_start(mart, spec, "scheduled__2026-11-27") == "new_version"
    first = run_impact_preview(mart, spec=spec, teams=teams, context={"run_id": "scheduled__2026-11-27"})
    again = run_impact_preview(mart, spec=spec, teams=teams, context={"run_id": "scheduled__2026-11-27"})
    assert _register_and_start(mart, spec, "manual__second") == "unchanged"
    second = run_impact_preview(mart, spec=spec, teams=teams, context={"run_id": "manual__second"})

    rows = _notices(mart)
    assert first["deprecation_notifications"] == len({r.recipient for r in rows}) == 4  # recipients told
    assert again["deprecation_notifications"] == second["deprecation_notifications"] == 0
    # One row per recipient and chat: the owner's department (each of its chats), the subscribers, and the
    # owner of refund_rate_daily, which is built on it (dave, a DM).
    assert sorted((r.recipient, r.channel, r.address) for r in rows) == [
        ("dave", "slack", "U0DAVE001"),
        ("finance", "slack", "#finance-metrics"),
        ("marketing", "slack", "#marketing-metrics"),
        ("sales", "dingtalk", "sales_dingtalk"),
        ("sales", "feishu", "oc_salesmetrics0001"),
        ("sales", "slack", "#sales-metrics"),
        ("sales", "wecom", "sales_wecom"),
    ]
    assert {r.group_key for r in rows} == {"metric_deprecated:gmv_daily:deprecated:refunds_daily"}
    payload = rows[0].payload if isinstance(rows[0].payload, dict) else json.loads(rows[0].payload)
    assert (payload["replaced_by"], payload["replaced_by_name"]) == ("refunds_daily", "Refunds (退款额)")
    assert payload["downstream"] == ["refund_rate_daily"]

    dave = next(r for r in rows if r.recipient == "dave")
    message = render_group(
        [Item("metric_deprecated", dave.payload)], base_url="https://airflow.example.com", locale="en"
    )
    assert message.blocks[0]["text"]["text"] == "⚠️ Deprecated: GMV (成交额) — use Refunds (退款额)"
    text = "\n".join(b["text"]["text"] for b in message.blocks if b.get("type") == "section")
    assert "Use *Refunds (退款额)* (`refunds_daily`) instead." in text
    assert "you own refund_rate_daily, which is built on gmv_daily" in text
    assert "refund_rate_daily — move them to `refunds_daily` before it is retired" in text

    # Another replacement is news: told once more. An active metric tells nothing.
    moved = spec.model_copy(update={"replaced_by": "lead_conversion_rate"})
    third = run_impact_preview(mart, spec=moved, teams=teams, context={"run_id": "manual__second"})
    assert third["deprecation_notifications"] == 4
    assert len(_notices(mart)) == 2 * len(rows)
    active = spec.model_copy(update={"status": "active", "replaced_by": None})
    assert "deprecation_notifications" not in run_impact_preview(
        mart, spec=active, teams=teams, context={"run_id": "manual__second"}
    )


# --- alerts about a deprecated metric ----------------------------------------------------------------------

CONTEXT = {"logical_date": datetime(2026, 11, 27, tzinfo=UTC), "run_id": "manual__deprecated"}
TEAMS = Teams.model_validate(
    {
        "departments": {"sales": {"name": "Sales", "slack_channel": "#sales-metrics"}},
        "people": {
            "alice": {"name": "Alice", "department": "sales"},
            "bob": {"name": "Bob", "department": "sales"},
        },
    }
)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "home" / "sql").mkdir(parents=True)
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(data))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    pd.DataFrame({"region": ["east", "west"], "amount": [100.0, 50.0]}).to_csv(
        data / "orders.csv", index=False
    )
    pd.DataFrame(
        {"order_date": [DAY.isoformat()] * 2, "region": ["east", "west"], "amount": [90.0, 50.0]}
    ).to_csv(data / "cash.csv", index=False)
    (tmp_path / "home" / "sql" / "t.sql").write_text(
        "SELECT DATE '{{ period_start }}' AS period_start, region, SUM(amount) AS value FROM orders GROUP BY region"
    )
    (tmp_path / "home" / "sql" / "theirs.sql").write_text(
        "SELECT CAST(order_date AS DATE) AS period_start, region, SUM(amount) AS value FROM cash GROUP BY 1, 2"
    )
    return tmp_path


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_an_alert_about_a_deprecated_metric_says_what_to_use_instead(mart, workspace):
    """The real quality gate over a real (staged) result: its reconciliation alert carries the status."""
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.definitions.periods import period_containing
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.runs import record_result, start_run
    from metrics_center.tasks.extract import extract_source
    from metrics_center.tasks.quality_gate import run_quality_gate
    from metrics_center.tasks.transform import transform

    spec = metric_spec(
        dimensions=["region"],
        aggregation="sum",
        status="deprecated",
        replaced_by="m2",
        sources={"orders": {"path": "orders.csv"}, "cash": {"path": "cash.csv"}},
        transform={"sql": "t.sql"},
        reconciliations=[
            {
                "name": "cash",
                "sql": "theirs.sql",
                "by": ["region"],
                "tolerance": {"pct": 1},
                "severity": "warn",
            }
        ],
    )
    for name in spec.sources:
        extract_source(spec=spec, source_name=name, context=CONTEXT)
    summary = transform(spec=spec, context=CONTEXT)
    definition = load_definition(spec)
    register_definition(
        mart, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash
    )
    start_run(
        mart,
        metric_key="m",
        run_id=CONTEXT["run_id"],
        definition_version=1,
        definition_hash=definition.meaning_hash,
        timezone="UTC",
        periods=[period_containing(DAY, grain="day")],
        restatement=False,
        is_active=lambda _: False,
    )
    record_result(mart, metric_key="m", run_id=CONTEXT["run_id"], result_hash=summary["result_hash"], rows=2)
    run_quality_gate(mart, spec=spec, teams=TEAMS, context=CONTEXT)

    with mart.connect() as conn:
        (alert,) = conn.execute(sa.select(notification.c.kind, notification.c.payload)).all()
    assert alert.kind == "reconciliation"
    for locale, header, line in [
        ("en", "· deprecated", "⚠️ *Deprecated* — use `m2` instead."),
        ("zh-CN", "· 已弃用", "⚠️ *已弃用* — 请改用 `m2`。"),
    ]:
        message = render_group([Item(alert.kind, alert.payload)], locale=locale)
        assert message.blocks[0]["text"]["text"].endswith(header)
        assert message.blocks[1]["text"]["text"] == line
        assert message.text.startswith(line.replace("*", "").replace("`", ""))
