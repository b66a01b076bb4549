"""What a newcomer sees in `make demo`: the planted anomaly and settlement gap, in the approval evidence,
as alerts in the mart's outbox for each of the sales department's chats, and — with no chat account at all —
in the local inbox: the Feishu card and the DingTalk message those chats would have received."""

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
def test_the_demo_shows_the_planted_anomaly_and_settlement_gap(mart, demo_data, tmp_path, monkeypatch):
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
            sa.text("SELECT kind, channel, address, state, payload FROM notification ORDER BY id")
        ).all()
    assert [json.loads(a.dimensions) for a in anomalies] == [{"channel": channel, "region": region}]
    assert anomalies[0].score > 3
    chats = [("slack", "#sales-metrics"), ("feishu", "oc_salesmetrics0001")]
    chats += [("dingtalk", "sales_dingtalk"), ("wecom", "sales_wecom")]
    assert [(a.kind, a.channel, a.address, a.state) for a in alerts] == [
        *[("anomaly", c, address, "pending") for c, address in chats],
        *[("reconciliation", c, address, "pending") for c, address in chats],
        ("approval_request", "slack", "U0BOB0001", "pending"),  # bob is asked by DM (his Slack id)
    ]
    mismatch = json.loads(alerts[4].payload)
    outside = [r["dimensions"]["region"] for r in mismatch["rows"] if not r["within"]]
    assert outside == [PLANTED_SETTLEMENT_GAP[0]]

    # No chat account anywhere: `make demo` delivers into the local inbox instead.
    from metrics_center.notify.deliver import deliver_pending
    from metrics_center.notify.inbox import read_inbox

    monkeypatch.setenv("METRICS_CENTER_INBOX", str(tmp_path / "inbox"))
    report = deliver_pending(mart, channel_interval=0.0, time_budget=30, airflow_url="")
    assert report.delivered == len(alerts) and not report.errors
    inbox = read_inbox(tmp_path / "inbox")
    card = next(e["wire"] for e in inbox if e["channel"] == "feishu")
    assert card["schema"] == "2.0" and f"region={region}" in json.dumps(card, ensure_ascii=False)
    robot = next(e["wire"] for e in inbox if e["channel"] == "dingtalk")
    assert robot["msgtype"] == "markdown" and f"region={region}" in robot["markdown"]["text"]
    assert {e["channel"] for e in inbox} == {"slack", "feishu", "dingtalk", "wecom"}
