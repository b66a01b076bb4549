"""Restatement (重算) on purpose: a range recomputed under the current definition, one decision, published by
superseding — and the mart still answers "what did we publish on day X".

A real ``dag.test()`` of ``refunds_daily`` triggered with the trigger form's ``from``/``to``, answered through
Airflow's REST API, against the Postgres mart and a copy of the demo company in which finance re-exported one
day with a late refund.
"""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hitl_answers import Answer, Responder

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)
FIRST, END = date(2026, 11, 19), date(2026, 11, 27)
LATE_DAY = date(2026, 11, 21)  # its export (refunds_2026-11-22.csv) gains a late refund of 1,234.50


@pytest.fixture
def finance_reexport(tmp_path, demo_data, monkeypatch):
    root = tmp_path / "demo_data"
    shutil.copytree(demo_data.root, root)
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(root))
    return root


def _add_late_refund(root) -> None:
    export = root / "finance" / f"refunds_{(LATE_DAY + timedelta(days=1)).isoformat()}.csv"
    with export.open("a", newline="") as fh:
        csv.writer(fh).writerow([999999, 1, f"{LATE_DAY} 23:59:00", "east", "app", 1234.5])


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
def test_a_restated_range_supersedes_keeps_history_and_tells_subscribers(mart, finance_reexport):
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history
    from metrics_center.mart.tables import notification
    from metrics_center.orchestration.dag_builder import build_dags

    spec = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir()).metrics["refunds_daily"].spec
    seed_history(engine=mart, specs=[spec], first=FIRST, end=END)
    with mart.connect() as conn:
        published_then = conn.execute(sa.text("SELECT clock_timestamp()")).scalar()
        before = _totals(conn, "metric_value_current")
    _add_late_refund(finance_reexport)

    responder = Responder("refunds_daily", [Answer("approve", "dave", "Approve")]).start()
    dag = build_dags(only_dag_id="refunds_daily")["refunds_daily"]
    run = dag.test(logical_date=LOGICAL, run_conf={"from": "2026-11-20", "to": "2026-11-22"})
    responder.join()
    assert str(run.state) == "success"

    with mart.connect() as conn:
        publication = conn.execute(
            sa.text("SELECT periods, restatement, approved_by FROM publication WHERE run_id = :r"),
            {"r": run.run_id},
        ).one()
        now = _totals(conn, "metric_value_current")
        as_of = _totals(
            conn,
            "(SELECT * FROM metric_value_history WHERE valid_from <= :t AND (valid_to IS NULL OR valid_to > :t)) AS h",
            t=published_then,
        )
        history = conn.execute(
            sa.text(
                "SELECT definition_version, is_current, count(*) FROM metric_value_history "
                "WHERE metric_key = 'refunds_daily' AND period_start = :d GROUP BY 1, 2 ORDER BY 2"
            ),
            {"d": LATE_DAY},
        ).all()
        told = conn.execute(
            sa.select(notification.c.recipient, notification.c.channel, notification.c.payload).where(
                notification.c.kind == "history_changed"
            )
        ).all()
        run_row = conn.execute(
            sa.text("SELECT periods, restatement FROM metric_run WHERE run_id = :r"), {"r": run.run_id}
        ).one()

    # One run, one decision, three periods published together, by superseding.
    assert publication.periods == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert publication.restatement is True and publication.approved_by == "finance review: dave"
    assert run_row.periods == ["2026-11-20", "2026-11-21", "2026-11-22"] and run_row.restatement is True
    assert now[LATE_DAY] == pytest.approx(before[LATE_DAY] + 1234.5)
    assert {d: v for d, v in now.items() if d != LATE_DAY} == pytest.approx(
        {d: v for d, v in before.items() if d != LATE_DAY}
    )
    # "What did we publish on day X" still has the old number; every version of every value is kept.
    assert as_of == pytest.approx(before)
    assert [tuple(h)[:2] for h in history] == [(1, 0), (1, 1)]

    # Told once per recipient: owner's department, subscribers, the owner of refund_rate_daily (built on it).
    assert sorted({r.recipient for r in told}) == ["dave", "finance", "sales"]
    assert sorted(r.channel for r in told if r.recipient == "sales") == [
        "dingtalk",
        "feishu",
        "slack",
        "wecom",
    ]
    periods = told[0].payload["periods"]
    assert [p["period"] for p in periods] == [LATE_DAY.isoformat()]  # only the day whose numbers changed
    assert periods[0]["new_total"] - periods[0]["old_total"] == pytest.approx(1234.5)
    assert told[0].payload["explicit"] is True

    with create_session() as session:
        body = session.scalar(
            sa.select(HITLDetail.body)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(TaskInstance.dag_id == "refunds_daily", TaskInstance.run_id == run.run_id)
        )
    assert "**3 periods in one decision** — 1 differ from what is published" in body
    assert "| 2026-11-21 |" in body and "Explicit restatement" in body
    staged = settings.staging_root()
    assert "p=2026-11-21" in {p.name for p in _folders(staged, "refunds_daily", run.run_id)}


def _totals(conn, source: str, **params) -> dict[date, float]:
    rows = conn.execute(
        sa.text(
            f"SELECT period_start, sum(value) FROM {source} WHERE metric_key = 'refunds_daily' GROUP BY 1"
        ),
        params,
    ).all()
    return {d: v for d, v in rows}


def _folders(staging_root: str, key: str, run_id: str):
    import re
    from pathlib import Path
    from urllib.parse import urlparse

    folder = (
        Path(urlparse(staging_root).path)
        / key
        / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
        / "sources"
        / "refunds"
    )
    return list(folder.iterdir())


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_a_restatement_of_an_unfinished_period_fails_before_anything_runs(mart, demo_data):
    from metrics_center.orchestration.dag_builder import build_dags

    dag = build_dags(only_dag_id="refunds_daily")["refunds_daily"]
    run = dag.test(logical_date=LOGICAL, run_conf={"from": "2026-11-25", "to": "2099-01-01"})
    assert str(run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["register_definition"] == "failed" and states["publish"] == "upstream_failed"
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metric_run")).scalar() == 0
