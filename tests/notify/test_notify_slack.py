"""Block Kit rendering of notification groups: one message per group, readable, valid, never crashing.

Every message is checked against slack-sdk's own Block Kit models (``Block.parse(...).validate_json()``).
"""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block

from metrics_center.notify.blocks import Item, run_url
from metrics_center.notify.slack import render_group

BASE = "https://airflow.example.com"
RUN_ID = "scheduled__2026-11-27T00:00:00+00:00"
RUN_LINK = f"{BASE}/dags/gmv_daily/runs/scheduled__2026-11-27T00%3A00%3A00%2B00%3A00"
COMMON = {
    "metric_key": "gmv_daily",
    "metric_name": "GMV (成交额)",
    "unit": "CNY",
    "period": "2026-11-26",
    "run_id": RUN_ID,
    "dag_id": "gmv_daily",
}


def anomaly(region: str, *, value: float, score: float, **extra) -> Item:
    payload = {
        **COMMON,
        "dimensions": {"region": region},
        "value": value,
        "expected": 12400.0,
        "band_low": 11300.0,
        "band_high": 13500.0,
        "score": score,
        "method": "zscore",
        "definition_version": 2,
        **extra,
    }
    return Item(kind="anomaly", payload=payload)


def _valid(message) -> str:
    """Every block valid for Slack; the whole message's text (blocks and fallback) for assertions."""
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        Block.parse(block).validate_json()
    assert message.text and len(message.text) <= 3000
    return json.dumps(message.blocks, ensure_ascii=False)


def test_forty_anomalies_are_one_message_with_the_top_ten_by_score():
    items = [anomaly(f"r{i:02d}", value=12400 + 100 * i, score=i / 10) for i in range(40)]
    items[7] = anomaly("north", value=17112.0, score=-9.5)  # the largest |score| is a drop…
    items[8] = anomaly("east", value=17112.0, score=4.2)
    message = render_group(items, base_url=BASE)
    blocks = _valid(message)

    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["text"] == "⚠️ Anomaly: GMV (成交额) — 2026-11-26"
    lines = next(b["text"]["text"] for b in message.blocks[2:] if "•" in b["text"]["text"]).splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("• *region=north*")  # |−9.5| first
    assert "… and 30 more" in blocks
    assert "*GMV (成交额)* (`gmv_daily`)" in blocks and "40 values are outside the expected band" in blocks
    east = next(line for line in lines if "region=east" in line)
    assert east == "• *region=east*: 17,112 CNY  ▲ +38% vs expected 12,400 ± 1,100 (z=4.2)"
    assert f"<{RUN_LINK}|Open the run in Airflow>" in blocks
    assert "definition v2" in blocks and "method zscore" in blocks
    # The plain-text fallback says the same in words, with the link.
    assert message.text.startswith("Anomaly in GMV (成交额) (gmv_daily) 2026-11-26: 40 values are outside")
    assert "region=north" in message.text and RUN_LINK in message.text and "*" not in message.text


def test_a_drop_an_asymmetric_band_and_other_methods():
    low = anomaly("west", value=9000.0, score=-3.4, band_low=11000.0, band_high=14000.0, method="mad")
    text = _valid(render_group([low], base_url=BASE))
    assert "9,000 CNY  ▼ −27% vs expected 12,400 (11,000–14,000) (robust z=-3.4)" in text
    assert "1 value is outside" in text
    pct = anomaly("south", value=0.0312, score=0.45, expected=0.0215, method="pct_change", unit="ratio")
    pct.payload.update(band_low=None, band_high=None)
    assert "0.0312 ratio  ▲ +45% vs expected 0.0215 (change +45%)" in _valid(render_group([pct]))


def test_quality_failure_lists_each_failed_expectation():
    failed = [
        {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "value"}, "observed": 3},
        *[
            {"expectation": f"expect_rule_{i}", "kwargs": {"min_value": i}, "observed": {"n": i}}
            for i in range(12)
        ],
    ]
    message = render_group([Item("quality_failure", {**COMMON, "failed": failed})], base_url=BASE)
    text = _valid(message)
    assert message.blocks[0]["text"]["text"] == "❌ Quality check failed: GMV (成交额) — 2026-11-26"
    assert "• `expect_column_values_to_not_be_null` (column=value): observed 3" in text
    assert "13 expectations failed: nothing is published" in text
    assert "… and 3 more" in text
    assert message.text.startswith("Quality check failed for GMV (成交额) (gmv_daily) 2026-11-26")


def test_reconciliation_shows_totals_tolerance_and_worst_rows():
    rows = [
        {
            "dimensions": {"region": f"r{i}"},
            "ours": 100.0 + i,
            "theirs": 100.0,
            "difference": float(i),
            "within": i < 3,
        }
        for i in range(15)
    ]
    rows.append(
        {"dimensions": {"region": "lost"}, "ours": 50.0, "theirs": None, "difference": None, "within": False}
    )
    payload = {
        **COMMON,
        "name": "gmv_vs_settled_cash",
        "severity": "block",
        "ours": 1_250_000.0,
        "theirs": 1_240_000.0,
        "difference": 10_000.0,
        "tolerance": {"pct": 0.5, "abs": None},
        "by": ["region"],
        "rows": rows,
    }
    message = render_group([Item("reconciliation", payload)], base_url=BASE)
    text = _valid(message)
    header = message.blocks[0]["text"]["text"]
    assert header == "🚫 Reconciliation gmv_vs_settled_cash: GMV (成交额) — 2026-11-26"
    assert "blocks publishing" in text
    assert (
        "ours *1,250,000 CNY* vs theirs *1,240,000 CNY*: difference +10,000 (+0.81%), tolerance 0.5%" in text
    )
    assert "13 of 16 rows by region outside the tolerance" in text
    lines = next(
        b["text"]["text"] for b in message.blocks if b["type"] == "section" and "•" in b["text"]["text"]
    )
    assert lines.splitlines()[0] == "• *region=lost*: ours 50 vs theirs — (difference —)"  # one side missing
    assert "… and 3 more" in text
    warn = render_group([Item("reconciliation", {**payload, "severity": "warn", "rows": []})])
    assert "warning only, publishing continues" in _valid(warn)


def test_a_group_of_several_kinds_is_still_one_message():
    items = [anomaly("east", value=17112.0, score=4.2), Item("quality_failure", {**COMMON, "failed": []})]
    message = render_group(items, base_url=BASE)
    _valid(message)
    assert [b["type"] for b in message.blocks].count("header") == 2
    assert {"type": "divider"} in message.blocks


@pytest.mark.parametrize(
    "item",
    [
        Item(
            "definition_change",
            {"metric_key": "gmv_daily", "version": 3, "change_note": "net of <refunds> & fees"},
        ),
        Item("anomaly", {"metric_key": "gmv_daily", "value": "not a number", "dimensions": ["odd"]}),
        Item("anomaly", "not json at all"),
        Item("quality_failure", {"failed": "a string"}),
        Item("reconciliation", {"rows": [1, 2, None], "tolerance": "loose"}),
        Item("mystery", None),
        Item("anomaly", json.dumps({**COMMON, "dimensions": {}, "value": 1, "score": 1})),
    ],
)
def test_unknown_kinds_and_odd_payloads_render_without_crashing(item):
    message = render_group([item], base_url=BASE)
    text = _valid(message)
    assert "<refunds>" not in text  # Slack control characters escaped
    if item.kind == "definition_change":
        assert "definition_change" in message.blocks[0]["text"]["text"]
        assert "&lt;refunds&gt; &amp; fees" in text


def test_links_need_the_api_base_url():
    assert run_url(base_url=None, dag_id="gmv_daily", run_id=RUN_ID) is None
    assert run_url(base_url=BASE + "/", dag_id="gmv_daily", run_id=RUN_ID) == RUN_LINK
    message = render_group([anomaly("east", value=17112.0, score=4.2)], base_url=None)
    assert "Open the run" not in _valid(message) and "http" not in message.text


def test_many_kinds_stay_within_slacks_block_limit():
    items = [Item(f"kind_{i}", {"metric_key": f"m{i}"}) for i in range(30)]
    message = render_group(items)
    _valid(message)
    assert "more block(s) not shown" in json.dumps(message.blocks)


def test_a_version_that_changes_dimensions_names_the_columns_that_appear_and_go():
    message = render_group(
        [
            Item(
                kind="definition_change",
                payload={
                    "metric_key": "gmv_daily",
                    "metric_name": "GMV",
                    "old_version": 1,
                    "new_version": 2,
                    "breaking": True,
                    "change_note": "By store instead of channel.",
                    "relation": "gmv_daily",
                    "columns": {"added": ["store"], "removed": ["channel"]},
                },
            )
        ]
    )
    text = "\n".join(b["text"]["text"] for b in message.blocks if b.get("type") == "section")
    assert "*Columns of its relation* (`metrics.gmv_daily`, for BI datasets): + `store`, − `channel`" in text


def test_ratio_evidence_totals_are_the_ratio_of_the_sums():
    from metrics_center.approvals.evidence import approval_body

    body = approval_body(
        name="Refund rate",
        unit="ratio",
        period="2026-11-26 (day, UTC)",
        stage="finance review",
        previous_period="2026-11-25",
        rows=2,
        total=0.2,
        ratio=True,
        previous_total=0.25,
        values=[
            {
                "period_start": "2026-11-26",
                "region": "east",
                "numerator": 1.0,
                "denominator": 10.0,
                "value": 0.1,
            },
            {
                "period_start": "2026-11-26",
                "region": "west",
                "numerator": 3.0,
                "denominator": 10.0,
                "value": 0.3,
            },
        ],
        previous={},
        already_published={},
        sources=[],
        quality=[],
        anomalies=[],
        earlier_approvals=[],
        doc="",
    )
    assert "Total (SUM(numerator) / SUM(denominator)): **0.2" in body
    assert "vs 2026-11-25: -0.05 (-20.0%)" in body
    assert "| region=east |" in body and "numerator=" not in body
