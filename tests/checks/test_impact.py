"""A breaking version: its impact on recently published numbers, and one broadcast to everyone who depends on it.

Real mart (Postgres and SQLite), the demo company's sources, DuckDB, and the Slack stub over HTTP for the
delivery. The planted change multiplies region east by 1.1: the preview must find exactly that.
"""

from __future__ import annotations

import shutil
import threading
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from slack_stub import SlackStub

from metrics_center.checks.impact import compare_versions

REPO = Path(__file__).resolve().parents[2]
FIRST, END = date(2026, 11, 19), date(2026, 11, 27)  # history 11-19 … 11-25 (11-26 is left for the run)
EAST_UP = """
-- v2: east's GMV is restated ×1.1 (a planted change the preview must find)
SELECT period_start, region, channel, CASE WHEN region = 'east' THEN value * 1.1 ELSE value END AS value
FROM ({base}) AS v1
"""


def test_compare_versions_counts_what_changed_appeared_and_vanished():
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    old = pa.table(
        {"period_start": days * 2, "region": ["e", "e", "w", "w"], "value": [100.0, 100.0, 50.0, 50.0]}
    )
    new = pa.table(
        {
            "period_start": [days[0], days[1], days[0], days[1]],
            "region": ["e", "e", "w", "n"],
            "value": [110.0, 100.0, 50.0, 7.0],
        }
    )
    impact = compare_versions(
        old=old,
        new=new,
        old_dimensions=["region"],
        new_dimensions=["region"],
        additive=True,
        from_version=1,
        to_version=2,
        periods=days,
    )
    assert (impact.combinations, impact.affected_combinations, impact.added, impact.removed) == (5, 3, 1, 1)
    assert impact.affected_periods == ["2026-11-01", "2026-11-02"]
    assert impact.max_abs_diff == pytest.approx(10.0) and impact.max_rel_diff == pytest.approx(0.1)
    shown = [(r["period"], r["dimensions"]["region"], r["old"], r["new"]) for r in impact.largest]
    # appeared / vanished rank first (no difference to measure), then the largest difference
    assert sorted(shown[:2], key=str) == sorted(
        [("2026-11-02", "n", None, 7.0), ("2026-11-02", "w", 50.0, None)], key=str
    )
    assert shown[2] == ("2026-11-01", "e", 100.0, 110.0)
    assert "3 of 5 values change" in impact.headline("CNY")


def test_changed_dimensions_compare_on_the_shared_ones_when_additive():
    day = [date(2026, 11, 1)]
    old = pa.table(
        {"period_start": day * 2, "region": ["e", "e"], "channel": ["app", "web"], "value": [1.0, 2.0]}
    )
    new = pa.table({"period_start": day, "region": ["e"], "value": [3.0]})
    same = compare_versions(
        old=old,
        new=new,
        old_dimensions=["region", "channel"],
        new_dimensions=["region"],
        additive=True,
        from_version=1,
        to_version=2,
        periods=day,
    )
    assert (same.compared_on, same.affected_combinations) == (["region"], 0)
    ratio = compare_versions(
        old=old,
        new=new,
        old_dimensions=["region", "channel"],
        new_dimensions=["region"],
        additive=False,
        from_version=1,
        to_version=2,
        periods=day,
    )
    assert not ratio.comparable and "cannot be matched" in ratio.headline()


@pytest.fixture
def v2_home(tmp_path, monkeypatch):
    """The demo definitions with gmv_daily at v2: its SQL restates east ×1.1 (a breaking change)."""
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    base = (home / "sql" / "metrics" / "gmv_daily.sql").read_text().split("\n", 1)[1]
    (home / "sql" / "metrics" / "gmv_daily_v2.sql").write_text(EAST_UP.format(base=base))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


def _specs(home: Path):
    from metrics_center.definitions.loader import load_catalog

    v1 = load_catalog(home / "metrics", sql_root=home / "sql").metrics["gmv_daily"].spec
    path = home / "metrics" / "gmv_daily.yaml"
    path.write_text(
        path.read_text()
        .replace(
            "version: 1\nchange_note: First definition.",
            "version: 2\nchange_note: East books marketplace fees as GMV.",
        )
        .replace("sql: metrics/gmv_daily.sql", "sql: metrics/gmv_daily_v2.sql")
    )
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert catalog.problems == {}
    return v1, catalog.metrics["gmv_daily"].spec, catalog.teams


def _register_and_start(mart, spec, run_id: str, day: date):
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.definitions.periods import period_containing
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.runs import start_run

    definition = load_definition(spec)
    register_definition(
        mart, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash
    )
    start_run(
        mart,
        metric_key=spec.key,
        run_id=run_id,
        definition_version=spec.version,
        definition_hash=definition.meaning_hash,
        timezone="UTC",
        periods=[period_containing(day, grain="day")],
        restatement=False,
        is_active=lambda _: False,
    )


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_a_breaking_version_is_previewed_and_announced_once_to_everyone_who_depends_on_it(
    mart, demo_data, v2_home, monkeypatch
):
    from metrics_center.demo.history import seed_history
    from metrics_center.mart.tables import impact_preview, notification
    from metrics_center.notify.deliver import deliver_pending
    from metrics_center.tasks.impact_preview import preview_for_approvers, run_impact_preview

    v1, v2, teams = _specs(v2_home)
    seed_history(engine=mart, specs=[v1], first=FIRST, end=END)
    _register_and_start(mart, v2, "manual__v2", END - timedelta(days=1))

    # Two runs of the new version at once (e.g. a retry racing a manual run): one announcement.
    outcomes: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(
                run_impact_preview(mart, spec=v2, teams=teams, context={"run_id": "manual__v2"})
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(o["announced"] for o in outcomes) == ["by another run", "now"]
    assert (
        run_impact_preview(mart, spec=v2, teams=teams, context={"run_id": "manual__v2"})["announced"]
        == "before"
    )

    with mart.connect() as conn:
        (stored,) = conn.execute(sa.select(impact_preview)).all()
        rows = conn.execute(sa.select(notification).where(notification.c.kind == "definition_change")).all()
    summary = stored.summary
    east = {(r["dimensions"]["region"], r["dimensions"]["channel"]) for r in summary["largest"]}
    assert {region for region, _ in east} == {"east"}  # only east changed …
    assert summary["affected_periods"] == [(FIRST + timedelta(days=i)).isoformat() for i in range(7)]
    assert summary["max_rel_diff"] == pytest.approx(0.1) and summary["mean_rel_diff"] == pytest.approx(0.1)
    assert summary["added"] == summary["removed"] == 0
    assert summary["affected_combinations"] == sum(1 for r in _values(mart) if r == "east")

    # … told once each: the owner's department (in each of its chats), the subscribers, and refund_rate_daily's
    # owner (dave, a DM).
    assert sorted((r.recipient, r.channel, r.address) for r in rows) == [
        ("dave", "slack", "U0DAVE001"),
        ("finance", "slack", "#finance-metrics"),
        ("marketing", "slack", "#marketing-metrics"),
        ("sales", "dingtalk", "sales_dingtalk"),
        ("sales", "feishu", "oc_salesmetrics0001"),
        ("sales", "slack", "#sales-metrics"),
        ("sales", "wecom", "sales_wecom"),
    ]
    payload = rows[0].payload
    assert (payload["old_version"], payload["new_version"], payload["breaking"]) == (1, 2, True)
    assert (
        "value * 1.1" in payload["diff"] and payload["change_note"] == "East books marketplace fees as GMV."
    )
    assert payload["downstream"] == ["refund_rate_daily"]
    assert payload["preview"]["headline"].startswith("7 of 7 periods")
    assert preview_for_approvers(mart, key="gmv_daily", version=2)["max_rel_diff"] == pytest.approx(0.1)

    # Delivered over HTTP, once per address; a second delivery sends nothing more.
    with SlackStub() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_METRICS_CENTER_SLACK", slack.connection())
        deliver_pending(mart, channel_interval=0)
        deliver_pending(mart, channel_interval=0)
    posted = {slack.channels.get(p.channel, p.channel): p for p in slack.posted}
    assert sorted(posted) == ["dm-U0DAVE001", "finance-metrics", "marketing-metrics", "sales-metrics"]
    dave = posted["dm-U0DAVE001"]
    assert "⚠️ Breaking change: GMV (成交额) v1 → v2" in dave.text
    text = "\n".join(b["text"]["text"] for b in dave.blocks if b.get("type") == "section")
    assert "value * 1.1" in text and "you own refund_rate_daily, which is built on gmv_daily" in text
    assert "7 of 7 periods" in text


def _values(mart) -> list[str]:
    from metrics_center.mart.values import current_values_table

    table = current_values_table(mart, metric_key="gmv_daily", dimensions=["region", "channel"])
    return table.column("region").to_pylist()


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_a_failed_preview_still_announces_and_a_non_breaking_version_needs_none(mart, demo_data, v2_home):
    from metrics_center.demo.history import seed_history
    from metrics_center.mart.tables import impact_preview, notification
    from metrics_center.tasks.impact_preview import run_impact_preview

    v1, v2, teams = _specs(v2_home)
    seed_history(engine=mart, specs=[v1], first=FIRST, end=END)
    (v2_home / "sql" / "metrics" / "gmv_daily_v2.sql").write_text("SELECT broken FROM nowhere")
    v2 = v2.model_copy()  # the spec read before the SQL broke: same meaning hash as registered below
    _register_and_start(mart, v2, "manual__v2", END - timedelta(days=1))
    outcome = run_impact_preview(mart, spec=v2, teams=teams, context={"run_id": "manual__v2"})
    assert outcome["announced"] == "now" and "failed in DuckDB" in outcome["preview"]
    with mart.connect() as conn:
        assert (
            conn.execute(sa.select(impact_preview.c.error))
            .scalar()
            .startswith("metrics/gmv_daily_v2.sql failed")
        )
        assert conn.execute(sa.select(sa.func.count()).select_from(notification)).scalar() == 7  # 4 + 3 chats

    lead = v1.model_copy(
        update={"key": "gmv_copy", "description": "GMV again, in other words.", "version": 1}
    )
    _register_and_start(mart, lead, "manual__copy", END - timedelta(days=1))
    first = run_impact_preview(mart, spec=lead, teams=teams, context={"run_id": "manual__copy"})
    # A new metric: claimed (never announced again) but broadcast to nobody, nothing to compare.
    assert (first["announced"], first["notifications"], first["preview"]) == ("now", 0, None)
    with mart.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(notification)).scalar() == 7  # 4 + 3 chats


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_a_version_is_registered_once_across_repeated_and_concurrent_registrations(mart):
    """Eight workers register refund_rate_daily v1 then v2 at once: one row per version, its inputs once."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.tables import metric_definition, metric_input

    demo = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir()).metrics["refund_rate_daily"].spec
    v1 = demo.model_copy(update={"version": 1})
    v2 = demo.model_copy(
        update={"version": 2, "formula": "refunds / gross paid", "change_note": "Formula in words."}
    )
    outcomes: dict[int, list[str]] = {1: [], 2: []}
    for spec in (v1, v2):
        definition = load_definition(spec)

        def register(spec=spec, definition=definition):
            outcomes[spec.version].append(
                register_definition(
                    mart, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash
                )
            )

        threads = [threading.Thread(target=register) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        register()  # and once more, later (a retry)
    assert {v: sorted(o) for v, o in outcomes.items()} == {
        1: ["new_version"] + ["unchanged"] * 8,
        2: ["new_version"] + ["unchanged"] * 8,
    }
    with mart.connect() as conn:
        versions = conn.execute(
            sa.select(metric_definition.c.version, metric_definition.c.valid_to.is_(None)).order_by(
                metric_definition.c.version
            )
        ).all()
        inputs = conn.execute(
            sa.select(metric_input.c.version, metric_input.c.input_key).order_by(
                metric_input.c.version, metric_input.c.input_key
            )
        ).all()
        dictionary = conn.execute(
            sa.text(
                "SELECT current_version, upstream_metrics FROM metric_dictionary WHERE metric_key = 'refund_rate_daily'"
            )
        ).one()
    assert [tuple(v) for v in versions] == [(1, False), (2, True)]
    assert [tuple(i) for i in inputs] == [
        (1, "gmv_daily"),
        (1, "refunds_daily"),
        (2, "gmv_daily"),
        (2, "refunds_daily"),
    ]
    assert tuple(dictionary) == (2, "gmv_daily, refunds_daily")
