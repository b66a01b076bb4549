"""The validated catalog is cached between DAG parses, and any change of what validation reads misses it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from metrics_center.definitions.catalog_cache import cached_catalog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    shutil.copytree(REPO / "include", tmp_path / "include")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("METRICS_CENTER_PARSE_CACHE", raising=False)
    return tmp_path / "include"


def _load(home: Path):
    return cached_catalog(home / "metrics", sql_root=home / "sql")


def _cache_files(home: Path) -> list[Path]:
    return sorted((Path(os.environ["AIRFLOW_HOME"]) / "metrics_center_cache").rglob("catalog-*.pickle"))


def test_a_second_parse_reads_the_cache_and_an_edit_misses_it(home):
    first = _load(home)
    (cache,) = _cache_files(home)
    second = _load(home)
    assert second.metrics.keys() == first.metrics.keys() and second.problems == first.problems
    assert _cache_files(home) == [cache]  # same key: nothing new written

    gmv = home / "metrics" / "gmv_daily.yaml"
    gmv.write_text(gmv.read_text().replace("grain: day", "grain: hour"))  # now broken
    edited = _load(home)
    assert "gmv_daily" not in edited.metrics and [p.stem for p in edited.problems] == ["gmv_daily"]
    sql = home / "sql" / "metrics" / "refunds_daily.sql"
    sql.unlink()  # a SQL file gone: refunds_daily is broken too
    assert "refunds_daily" not in _load(home).metrics
    assert len(_cache_files(home)) == 3


def test_a_corrupt_cache_is_ignored_and_replaced_and_the_switch_turns_it_off(home, monkeypatch):
    _load(home)
    (cache,) = _cache_files(home)
    cache.write_bytes(b"not a pickle")
    assert "gmv_daily" in _load(home).metrics
    assert cache.read_bytes() != b"not a pickle"
    monkeypatch.setenv("METRICS_CENTER_PARSE_CACHE", "false")
    cache.unlink()
    assert "gmv_daily" in _load(home).metrics and _cache_files(home) == []


def test_a_setting_that_changes_validation_misses_the_cache(home, monkeypatch):
    _load(home)
    monkeypatch.setenv("METRICS_CENTER_TIMEZONE", "Asia/Shanghai")
    _load(home)
    assert len(_cache_files(home)) == 2
