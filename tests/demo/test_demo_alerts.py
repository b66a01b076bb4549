"""What a newcomer sees in `make demo`: the planted anomaly and settlement gap, in the approval evidence
and as pending alerts in the mart's outbox (no Slack configured: nothing fails, nothing is lost)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from dag_helpers import approval_body, metric_dag
from hitl_answers import Answer, Responder

from metrics_center.definitions.loader import load_catalog
from metrics_center.demo.history import seed_history
from metrics_center.demo.seed import PLANTED_SETTLEMENT_GAP, PLANTED_SPIKE
from metrics_center.settings import metrics_dir, sql_dir


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db")
def test_the_demo_shows_the_planted_anomaly_and_settlement_gap(mart, demo_data):
    spec = load_catalog(metrics_dir(), sql_root=sql_dir()).metrics["gmv_daily"].spec
    seed_history(engine=mart, specs=[spec], first=date(2026, 9, 1), end=date(2026, 11, 27))
    responder = Responder(
        dag_id="gmv_daily", answers=[Answer("approve_sales_review", "bob", "Reject")]
    ).start()
    dag_run = metric_dag("gmv_daily").test(logical_date=datetime(2026, 11, 27, tzinfo=UTC))
    responder.join()

    region, channel, _factor = PLANTED_SPIKE
    body = approval_body(dag_run, "approve_sales_review")
    assert "**Anomalies** (1, vs this metric's published history)" in body
    assert (
        f"- region={region}, channel={channel}: ▲ " in body and "vs expected" in body and "(zscore +" in body
    )
    assert "⚠️ `reconcile:settled_cash` (warn, within 1%): total: ours " in body
    assert "; outside the tolerance, 1 of 4 by region — region=" in body

    with mart.connect() as conn:
        anomalies = conn.execute(sa.text("SELECT dimensions, score FROM anomaly")).all()
        alerts = conn.execute(
            sa.text("SELECT kind, address, state, payload FROM notification ORDER BY id")
        ).all()
    assert [json.loads(a.dimensions) for a in anomalies] == [{"channel": channel, "region": region}]
    assert anomalies[0].score > 3
    assert [(a.kind, a.address, a.state) for a in alerts] == [
        ("anomaly", "#sales-metrics", "pending"),
        ("reconciliation", "#sales-metrics", "pending"),
        ("approval_request", "U0BOB0001", "pending"),  # bob is asked by DM (his Slack id in _teams.yaml)
    ]
    mismatch = json.loads(alerts[1].payload)
    outside = [r["dimensions"]["region"] for r in mismatch["rows"] if not r["within"]]
    assert outside == [PLANTED_SETTLEMENT_GAP[0]]
