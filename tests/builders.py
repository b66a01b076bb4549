"""Shared test inputs: a minimal metric spec, and the demo's GMV recomputed without the code under test."""

from __future__ import annotations

import csv
import sqlite3
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from metrics_center.definitions.spec import MetricSpec


def metric_spec(**overrides: Any) -> MetricSpec:
    """Metric ``m`` with one file source ``s`` and one approval stage (bob); any field may be overridden."""
    base: dict[str, Any] = {
        "key": "m",
        "name": "M",
        "description": "d",
        "department": "sales",
        "owner": "alice",
        "version": 1,
        "change_note": "n",
        "unit": "CNY",
        "grain": "day",
        "schedule": None,
        "sources": {"s": {"path": "s.csv"}},
        "transform": {"sql": "metrics/gmv_daily.sql"},
        "approval": {"stages": [{"name": "review", "approvers": ["bob"]}]},
    }
    return MetricSpec.model_validate({**base, **overrides})


def expected_gmv(demo_root: Path, day: date) -> dict[tuple[str, str], float]:
    """GMV of ``day`` with sqlite3 + csv: paid orders of the day minus the refunds in the next morning's export."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    with sqlite3.connect(demo_root / "sales" / "sales.db") as conn:
        for region, channel, amount in conn.execute(
            "SELECT region, channel, amount FROM orders WHERE status='paid' AND substr(ordered_at,1,10)=?",
            (day.isoformat(),),
        ):
            totals[(region, channel)] += amount
    export = demo_root / "finance" / f"refunds_{(day + timedelta(days=1)).isoformat()}.csv"
    with export.open() as fh:
        for row in csv.DictReader(fh):
            totals[(row["region"], row["channel"])] -= float(row["amount"])
    return dict(totals)
