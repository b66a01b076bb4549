"""The demo company: deterministic data, and history published by the real extract/transform code."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import sqlalchemy as sa

from metrics_center.definitions.loader import load_catalog
from metrics_center.demo.history import SEEDED_BY, seed_history
from metrics_center.demo.seed import seed_demo
from metrics_center.settings import metrics_dir, sql_dir


def _digest(root) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def test_seed_is_deterministic_and_spans_sixty_days(tmp_path):
    a = seed_demo(root=tmp_path / "a", end=date(2026, 11, 27), days=61)
    seed_demo(root=tmp_path / "b", end=date(2026, 11, 27), days=61)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (a.end - a.start).days == 61
    assert a.orders > 10_000 and a.refunds > 100 and a.leads > 5_000
    assert len(list((tmp_path / "a" / "finance").glob("refunds_*.csv"))) == 61


def test_history_leaves_the_live_period_to_the_approval_run(mart, demo_data):
    catalog = load_catalog(metrics_dir(), sql_root=sql_dir())
    specs = [catalog.metrics["gmv_daily"].spec, catalog.metrics["refund_rate_weekly"].spec]
    seeded = seed_history(engine=mart, specs=specs, first=date(2026, 11, 9), end=date(2026, 11, 27))
    assert {s.key: s.periods for s in seeded} == {"gmv_daily": 17, "refund_rate_weekly": 1}
    with mart.connect() as conn:
        periods = conn.execute(
            sa.text(
                "SELECT metric_key, min(period_start), max(period_start), count(DISTINCT approved_by) "
                "FROM metric_value_history GROUP BY metric_key ORDER BY metric_key"
            )
        ).all()
        by = conn.execute(sa.text("SELECT DISTINCT approved_by FROM metric_value_history")).scalars().all()
    as_text = [(k, str(lo), str(hi), n) for k, lo, hi, n in periods]
    # 11-09 … 11-25 daily (11-26 is the live run's); the week of 11-09 only (11-16 … 11-22 is live).
    assert as_text == [
        ("gmv_daily", "2026-11-09", "2026-11-25", 1),
        ("refund_rate_weekly", "2026-11-09", "2026-11-09", 1),
    ]
    assert by == [SEEDED_BY]


def test_remote_staging_roots_work_through_object_storage(mart, demo_data, monkeypatch):
    """Staging on a non-local ObjectStoragePath (fsspec memory://, as s3:// would be) gives the same values."""
    catalog = load_catalog(metrics_dir(), sql_root=sql_dir())
    spec = catalog.metrics["lead_conversion_rate"].spec
    local = seed_history(engine=mart, specs=[spec], first=date(2026, 11, 20), end=date(2026, 11, 23))
    with mart.begin() as conn:
        before = conn.execute(
            sa.text("SELECT period_start, dimensions, value FROM metric_value_history")
        ).all()
        conn.execute(sa.text("DELETE FROM values__lead_conversion_rate"))
        conn.execute(sa.text("DELETE FROM publication"))
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())  # what the amazon provider does for s3:// in production
    monkeypatch.setenv("METRICS_CENTER_STAGING", "memory://mc-staging")
    remote = seed_history(engine=mart, specs=[spec], first=date(2026, 11, 20), end=date(2026, 11, 23))
    with mart.connect() as conn:
        after = conn.execute(
            sa.text("SELECT period_start, dimensions, value FROM metric_value_history")
        ).all()
    from airflow.sdk import ObjectStoragePath

    staged = list((ObjectStoragePath("memory://mc-staging") / "lead_conversion_rate").iterdir())
    assert [s.periods for s in local] == [s.periods for s in remote] == [2]

    def canonical(rows):
        return sorted(
            (str(d), json.dumps(dims, sort_keys=True) if isinstance(dims, dict) else dims, v)
            for d, dims, v in rows
        )

    assert len(after) == 8
    assert canonical(after) == canonical(before)
    assert len(staged) == 2  # one folder per run
