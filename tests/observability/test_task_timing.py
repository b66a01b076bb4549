"""The throughput benchmark's timing of a task: our imports, the mart and staging, off unless asked for."""

from __future__ import annotations

import builtins
import json
import sys
import time

import sqlalchemy as sa

from metrics_center.observability import task_timing


def test_off_by_default_patches_nothing(monkeypatch):
    monkeypatch.delenv("METRICS_CENTER_TASK_TIMING", raising=False)
    original = builtins.__import__
    task_timing.begin()
    assert builtins.__import__ is original
    assert task_timing.end(task_id="t") is None


def test_imports_mart_and_staging_are_counted_and_everything_is_restored(monkeypatch, tmp_path):
    monkeypatch.setenv("METRICS_CENTER_TASK_TIMING", "1")
    sys.modules.pop("colorsys", None)
    original = builtins.__import__
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    task_timing.begin()
    try:
        import colorsys  # noqa: F401 — a module nothing imported yet

        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT sum(i) FROM n"
                )
            ).scalar()
        with task_timing.staging():
            time.sleep(0.05)
    finally:
        line = task_timing.end(task_id="extract_orders")
    assert builtins.__import__ is original
    record = json.loads(line.removeprefix("metrics_center.timing "))
    assert record["task"] == "extract_orders"
    assert record["imports"] > 0 and record["mart"] > 0 and record["staging"] >= 0.05
    assert record["ours"] == round(record["imports"] + record["mart"] + record["staging"], 4)
    assert record["wall"] >= record["ours"]
    assert task_timing.end(task_id="again") is None  # one line per task
