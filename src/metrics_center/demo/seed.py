"""A deterministic demo company whose departments keep their data in different systems.

- sales: orders in a SQLite database reached through the Airflow connection ``sales_db``
- finance: one refunds CSV export per day, delivered the next morning and named by that
  export date (``finance/refunds_<export date>.csv`` holds the refunds of the day before), and the
  day's settled cash per region the same way (``finance/settlements_<export date>.csv``)
- marketing: leads as a Parquet file (``marketing/leads.parquet``)

The same ``seed`` and ``end`` always give the same files, byte for byte.
"""

from __future__ import annotations

import csv
import random
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

REGIONS = ("east", "north", "south", "west")
CHANNELS = ("app", "web", "store")
LEAD_SOURCES = ("search", "social", "email")
REGION_WEIGHT = {"east": 1.4, "north": 1.0, "south": 1.1, "west": 0.8}
CHANNEL_WEIGHT = {"app": 1.3, "web": 1.0, "store": 0.6}
WEEKDAY_WEIGHT = (0.9, 0.95, 1.0, 1.0, 1.1, 1.35, 1.25)  # Mon..Sun
#: Planted in the last day, for the demo's approvers to find: an anomaly (east app orders ×3.5, a
#: flash sale) and a reconciliation mismatch (a settlement batch of the west region missing: ×0.95).
PLANTED_SPIKE = ("east", "app", 3.5)
PLANTED_SETTLEMENT_GAP = ("west", 0.95)


@dataclass(frozen=True)
class DemoSummary:
    root: Path
    start: date
    end: date
    orders: int
    refunds: int
    leads: int


def sales_db_path(root: Path) -> Path:
    return root / "sales" / "sales.db"


def seed_demo(*, root: Path, end: date, days: int = 90, seed: int = 20261127) -> DemoSummary:
    """Write ``days`` days of data ending the day before ``end`` under ``root``."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    for folder in ("sales", "finance", "marketing"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for old in (root / "finance").glob("refunds_*.csv"):
        old.unlink()

    orders: list[tuple] = []
    leads: list[dict] = []
    refunds_by_day: dict[date, list[tuple]] = {start + timedelta(days=i): [] for i in range(days)}
    order_id = lead_id = refund_id = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        trend = 1 + offset / days * 0.15
        for region in REGIONS:
            n_leads = int(rng.gauss(40, 5) * REGION_WEIGHT[region] * WEEKDAY_WEIGHT[day.weekday()])
            day_leads = []
            for _ in range(max(n_leads, 0)):
                lead_id += 1
                created = datetime.combine(day, time(rng.randrange(24), rng.randrange(60)))
                leads.append(
                    {
                        "lead_id": lead_id,
                        "created_at": created,
                        "region": region,
                        "source": rng.choice(LEAD_SOURCES),
                    }
                )
                day_leads.append(lead_id)
            for channel in CHANNELS:
                mean = (
                    30
                    * REGION_WEIGHT[region]
                    * CHANNEL_WEIGHT[channel]
                    * WEEKDAY_WEIGHT[day.weekday()]
                    * trend
                    * (
                        PLANTED_SPIKE[2]
                        if (day, region, channel) == (end - timedelta(days=1), *PLANTED_SPIKE[:2])
                        else 1
                    )
                )
                for _ in range(max(int(rng.gauss(mean, mean * 0.1)), 0)):
                    order_id += 1
                    ordered = datetime.combine(
                        day, time(rng.randrange(24), rng.randrange(60), rng.randrange(60))
                    )
                    amount = round(rng.lognormvariate(5.0, 0.6), 2)
                    status = "cancelled" if rng.random() < 0.04 else "paid"
                    lead = rng.choice(day_leads) if day_leads and rng.random() < 0.25 else None
                    orders.append(
                        (order_id, ordered.isoformat(sep=" "), region, channel, lead, amount, status)
                    )
                    if status == "paid" and rng.random() < 0.05:
                        refund_day = min(day + timedelta(days=rng.randrange(0, 3)), end - timedelta(days=1))
                        refund_id += 1
                        refunded = datetime.combine(refund_day, time(rng.randrange(24), rng.randrange(60)))
                        refunds_by_day[refund_day].append(
                            (refund_id, order_id, refunded.isoformat(sep=" "), region, channel, amount)
                        )

    db = sales_db_path(root)
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE orders (order_id INTEGER PRIMARY KEY, ordered_at TEXT NOT NULL, region TEXT NOT NULL,"
            " channel TEXT NOT NULL, lead_id INTEGER, amount REAL NOT NULL, status TEXT NOT NULL)"
        )
        conn.execute("CREATE INDEX ix_orders_ordered_at ON orders (ordered_at)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", orders)
    conn.close()

    for day, rows in refunds_by_day.items():
        export_day = day + timedelta(days=1)
        with (root / "finance" / f"refunds_{export_day.isoformat()}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["refund_id", "order_id", "refunded_at", "region", "channel", "amount"])
            writer.writerows(rows)

    _write_settlements(
        root=root, orders=orders, refunds_by_day=refunds_by_day, last_day=end - timedelta(days=1)
    )

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(leads), root / "marketing" / "leads.parquet")
    return DemoSummary(
        root=root,
        start=start,
        end=end,
        orders=len(orders),
        refunds=sum(len(r) for r in refunds_by_day.values()),
        leads=len(leads),
    )


def _write_settlements(
    *, root: Path, orders: list[tuple], refunds_by_day: dict[date, list[tuple]], last_day: date
) -> None:
    """Finance's settled cash per order day and region (paid orders net of the day's refunds), exported the
    next morning as ``finance/settlements_<export date>.csv`` — what GMV is reconciled against."""
    from collections import defaultdict

    for old in (root / "finance").glob("settlements_*.csv"):
        old.unlink()
    settled: dict[date, dict[str, float]] = {day: defaultdict(float) for day in refunds_by_day}
    for _id, ordered_at, region, _channel, _lead, amount, status in orders:
        if status == "paid":
            settled[date.fromisoformat(ordered_at[:10])][region] += amount
    for day, refunds in refunds_by_day.items():
        for _refund_id, _order_id, _refunded_at, region, _channel, amount in refunds:
            settled[day][region] -= amount
    for day, by_region in settled.items():
        with (root / "finance" / f"settlements_{(day + timedelta(days=1)).isoformat()}.csv").open(
            "w", newline=""
        ) as fh:
            writer = csv.writer(fh)
            writer.writerow(["order_date", "region", "amount"])
            for region in REGIONS:
                amount = by_region[region]
                if day == last_day and region == PLANTED_SETTLEMENT_GAP[0]:
                    amount *= PLANTED_SETTLEMENT_GAP[1]
                writer.writerow([day.isoformat(), region, f"{amount:.2f}"])


def sales_db_connection_uri(root: Path) -> str:
    """``AIRFLOW_CONN_SALES_DB`` value (JSON form) for the demo's SQLite sales database."""
    import json

    return json.dumps({"conn_type": "sqlite", "host": str(sales_db_path(root).resolve())})
