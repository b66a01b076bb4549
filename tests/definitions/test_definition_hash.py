"""What counts as a change of meaning (needs a new version) and what is operational."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metrics_center.definitions.loader import load_catalog
from metrics_center.definitions.meaning import load_definition

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def _digest(home: Path) -> str:
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    return load_definition(catalog.metrics["gmv_daily"].spec).meaning_hash


@pytest.fixture
def home(tmp_path, monkeypatch):
    copy = tmp_path / "include"
    shutil.copytree(INCLUDE, copy)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(copy))
    return copy


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('schedule: "@daily"', 'schedule: "0 6 * * *"'),
        ("timeout: 24h", "timeout: 48h"),
        ("approvers: [bob]", "approvers: [bob, alice]"),
        ("subscribers: [finance, marketing]", "subscribers: [finance]"),
        ("    min_value: 1\n", "    min_value: 2\n"),
    ],
)
def test_operational_edits_keep_the_version(home, old, new):
    before = _digest(home)
    path = home / "metrics" / "gmv_daily.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    assert _digest(home) == before


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("metrics/gmv_daily.yaml", "unit: CNY", "unit: USD"),
        ("metrics/gmv_daily.yaml", "dimensions: [region, channel]", "dimensions: [region]"),
        ("sql/metrics/gmv_daily.sql", "WHERE status = 'paid'", "WHERE status IN ('paid', 'cancelled')"),
        ("sql/sales/orders.sql", "FROM orders", "FROM orders -- replica"),
    ],
)
def test_meaning_edits_change_the_hash(home, file, old, new):
    before = _digest(home)
    path = home / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    assert _digest(home) != before


def test_the_effective_time_zone_is_part_of_the_meaning(home, monkeypatch):
    """METRICS_CENTER_TIMEZONE moves every period boundary of a metric without `timezone:`."""
    monkeypatch.delenv("METRICS_CENTER_TIMEZONE", raising=False)
    utc = _digest(home)
    monkeypatch.setenv("METRICS_CENTER_TIMEZONE", "Asia/Shanghai")
    shanghai = _digest(home)
    assert shanghai != utc
    path = home / "metrics" / "gmv_daily.yaml"
    path.write_text(path.read_text().replace("grain: day\n", "grain: day\ntimezone: Asia/Shanghai\n", 1))
    assert _digest(home) == shanghai  # the same zone, written in the YAML: the same meaning
