"""Extraction of each source kind into staged Parquet parts, read back as DuckDB would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
from builders import metric_spec

from metrics_center.definitions.spec import MetricSpec
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.extract import extract_source
from metrics_center.tasks.staging import local_parquet_files

CONTEXT = {"logical_date": datetime(2026, 11, 27, tzinfo=UTC), "run_id": "manual__extract-test"}


def _spec(sources: dict) -> MetricSpec:
    return metric_spec(sources=sources)


def _staged(summary: dict) -> pd.DataFrame:
    from airflow.sdk import ObjectStoragePath

    with local_parquet_files(ObjectStoragePath(summary["staged"])) as files:
        return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_csv_glob_parquet_and_excel_sources(data_root):
    frame = pd.DataFrame({"region": ["east", "west"], "amount": [1.5, 2.5]})
    frame.to_csv(data_root / "a_2026-11-26.csv", index=False)
    frame.to_csv(data_root / "a_2026-11-25.csv", index=False)
    frame.to_parquet(data_root / "b.parquet")
    frame.to_excel(data_root / "c.xlsx", index=False)
    spec = _spec(
        {
            "csvs": {"path": "a_*.csv"},
            "dated": {"path": "a_{{ period_ds }}.csv"},
            "pq": {"path": "b.parquet"},
            "xl": {"path": str(data_root / "c.xlsx")},
        }
    )
    rows = {
        name: extract_source(spec=spec, source_name=name, context=CONTEXT)["rows"] for name in spec.sources
    }
    assert rows == {"csvs": 4, "dated": 2, "pq": 2, "xl": 2}
    staged = _staged(extract_source(spec=spec, source_name="xl", context=CONTEXT))
    assert staged.to_dict("records") == frame.to_dict("records")


def test_sql_source_through_an_airflow_connection_including_empty_results(data_root, tmp_path, monkeypatch):
    import sqlite3

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (region TEXT, amount REAL, ordered_at TEXT)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [("east", 10.0, "2026-11-26 10:00"), ("west", 4.0, "2026-11-20 09:00")],
        )
    conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "sql").mkdir(parents=True)
    (tmp_path / "home" / "sql" / "day.sql").write_text(
        "SELECT region, amount FROM orders WHERE ordered_at >= '{{ period_start }}' AND ordered_at < '{{ period_end }}'"
    )
    (tmp_path / "home" / "sql" / "none.sql").write_text("SELECT region, amount FROM orders WHERE 1 = 0")
    spec = _spec(
        {"day": {"conn_id": "shop_db", "sql": "day.sql"}, "none": {"conn_id": "shop_db", "sql": "none.sql"}}
    )
    day = extract_source(spec=spec, source_name="day", context=CONTEXT)
    assert day["rows"] == 1
    assert _staged(day).to_dict("records") == [{"region": "east", "amount": 10.0}]
    empty = extract_source(spec=spec, source_name="none", context=CONTEXT)
    assert empty["rows"] == 0
    assert list(_staged(empty).columns) == ["region", "amount"]  # DuckDB still sees the table's columns


def test_missing_file_names_the_path_and_the_setting(data_root):
    spec = _spec({"gone": {"path": "exports/none_{{ ds }}.csv"}})
    with pytest.raises(MetricsCenterError, match=r"none_2026-11-27\.csv.*METRICS_CENTER_DATA_ROOT"):
        extract_source(spec=spec, source_name="gone", context=CONTEXT)


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        (
            "SELECT DATE '{{ period_start }}' AS period_start, region, amount FROM s",
            r"must return exactly \['period_start', 'region', 'value'\]",
        ),
        (
            "SELECT DATE '2026-11-26 ' + 1 AS period_start, region, amount AS value FROM s",
            r"does not start a week",
        ),
        (
            "SELECT DATE '{{ period_start }}' AS period_start, 'all' AS region, amount AS value FROM s",
            r"several rows for the same period_start, region",
        ),
        ("SELECT period_start, region, value FROM nope", r"failed in DuckDB"),
    ],
)
def test_transform_rejects_bad_output_with_the_fix(data_root, tmp_path, monkeypatch, sql, error):
    from metrics_center.tasks.transform import transform

    pd.DataFrame({"region": ["east", "west"], "amount": [1.5, 2.5]}).to_csv(data_root / "s.csv", index=False)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "sql").mkdir(parents=True)
    (tmp_path / "home" / "sql" / "t.sql").write_text(sql)
    spec = MetricSpec.model_validate(
        {
            **_spec({"s": {"path": "s.csv"}}).model_dump(),
            "grain": "week",
            "dimensions": ["region"],
            "transform": {"sql": "t.sql"},
        }
    )
    extract_source(spec=spec, source_name="s", context=CONTEXT)
    with pytest.raises(MetricsCenterError, match=error):
        transform(spec=spec, context=CONTEXT)


def test_transform_result_is_typed_and_ordered(data_root, tmp_path, monkeypatch):
    from metrics_center.tasks.transform import read_result, transform

    pd.DataFrame({"region": ["west", "east"], "amount": [2, 1]}).to_csv(data_root / "s.csv", index=False)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "sql").mkdir(parents=True)
    (tmp_path / "home" / "sql" / "t.sql").write_text(
        "SELECT amount AS value, region, TIMESTAMP '{{ period_start }} 00:00' AS period_start FROM s"
    )
    spec = MetricSpec.model_validate(
        {
            **_spec({"s": {"path": "s.csv"}}).model_dump(),
            "dimensions": ["region"],
            "aggregation": "sum",
            "transform": {"sql": "t.sql"},
        }
    )
    extract_source(spec=spec, source_name="s", context=CONTEXT)
    summary = transform(spec=spec, context=CONTEXT)
    table, digest = read_result(spec=spec, context=CONTEXT)
    assert digest == summary["result_hash"]
    assert table.column_names == ["period_start", "region", "value"]
    assert str(table.schema.field("period_start").type) == "date32[day]"
    assert str(table.schema.field("value").type) == "double"
    assert summary["periods"] == ["2026-11-26"]
    assert summary["total"] == 3.0
    assert [v["region"] for v in summary["values"]] == ["east", "west"]


@pytest.mark.usefixtures("airflow_db")
def test_staging_prune_removes_only_old_runs(data_root, tmp_path):
    import os
    import time
    from datetime import timedelta

    from metrics_center.tasks.retention import prune_staging

    pd.DataFrame({"region": ["east"], "amount": [1.0]}).to_csv(data_root / "s.csv", index=False)
    spec = _spec({"s": {"path": "s.csv"}})
    old = extract_source(spec=spec, source_name="s", context={**CONTEXT, "run_id": "old_run"})
    extract_source(spec=spec, source_name="s", context={**CONTEXT, "run_id": "new_run"})
    month_ago = time.time() - 30 * 86400
    for part in (tmp_path / "staging" / "m" / "old_run").rglob("*.parquet"):
        os.utime(part, (month_ago, month_ago))
    assert prune_staging(older_than=timedelta(days=14), dry_run=True).runs == 1
    assert (tmp_path / "staging" / "m" / "old_run").exists()
    pruned = prune_staging(older_than=timedelta(days=14))
    assert (pruned.runs, pruned.files) == (1, 1)
    assert not (tmp_path / "staging" / "m" / "old_run").exists()
    assert (tmp_path / "staging" / "m" / "new_run" / "sources" / "s").is_dir()
    assert old["rows"] == 1
