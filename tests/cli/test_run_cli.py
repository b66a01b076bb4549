"""`metrics-center run`: a metric computed on the author's machine — values, checks, anomalies and the approval
evidence as an approver reads them — through the same connections and SQL as a run, writing nothing anywhere."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from metrics_center.cli.app import main

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-26"  # the demo's last day: east/app carries the planted anomaly


def _snapshot(engine: sa.Engine) -> dict[str, int]:
    """Rows per table of the mart: a local run must leave every count as it was."""
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def history(mart, demo_data):
    """gmv_daily published from 2026-10-01 up to the day before DAY (the demo seeding's own path)."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    seed_history(
        engine=mart,
        specs=[catalog.metrics["gmv_daily"].spec],
        first=date(2026, 10, 1),
        end=date(2026, 11, 27),
    )
    return mart


@pytest.mark.parametrize("mart", ["sqlite", "postgres"], indirect=True)
def test_a_day_is_computed_scored_and_shown_as_evidence_and_nothing_is_written(history, tmp_path, capsys):
    url = history.url.render_as_string(hide_password=False)
    before, staged = _snapshot(history), _files(Path(__file__).parents[2] / "include")
    out = tmp_path / "values.parquet"
    assert main(["run", "gmv_daily", "--period", DAY, "--url", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"gmv_daily v1 (working tree) — {DAY}: 12 row(s)" in printed
    assert "Against what is published: nothing is published for these periods yet" in printed
    # The evidence exactly as the approval task writes it: vs the published day before, the planted
    # anomaly scored against the published history, the checks, the rows per source.
    assert "Total: **" in printed and "vs 2026-11-25: +" in printed
    assert "**Anomalies** (1, vs this metric's published history)" in printed
    assert "region=east, channel=app: ▲" in printed
    assert "**Quality checks**: 3 passed, 1 warning" in printed
    assert "`orders`: " in printed and "rows from sales_db: sales/orders.sql" in printed
    assert pq.read_table(out).num_rows == 12
    assert _snapshot(history) == before  # read, never written
    assert _files(Path(__file__).parents[2] / "include") == staged

    # A day that is published: the same definition computes the same values.
    assert main(["run", "gmv_daily", "--period", "2026-11-20", "--url", url, "--no-evidence"]) == 0
    assert "no value changes over the last 1 published periods" in capsys.readouterr().out


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_a_metric_that_exists_only_in_the_working_tree_runs_for_a_range(
    mart, demo_data, tmp_path, capsys, monkeypatch
):
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include)
    draft = (include / "metrics" / "gmv_daily.yaml").read_text()
    draft = draft.replace("key: gmv_daily", "key: gmv_by_region").replace(
        "dimensions: [region, channel]", "dimensions: [region]"
    )
    (include / "metrics" / "gmv_by_region.yaml").write_text(
        draft.replace("sql: metrics/gmv_daily.sql", "sql: metrics/gmv_by_region.sql")
    )
    (include / "sql" / "metrics" / "gmv_by_region.sql").write_text(
        "SELECT DATE '{{ period_start }}' AS period_start, region, SUM(amount) AS value\n"
        "FROM orders WHERE status = 'paid' GROUP BY region"
    )
    monkeypatch.delenv("METRICS_CENTER_HOME", raising=False)
    out = tmp_path / "values.csv"
    argv = ["run", "gmv_by_region", "--periods", "2026-11-24..2026-11-26", "--home", str(include)]
    assert main([*argv, "--out", str(out), "--no-evidence"]) == 0
    printed = capsys.readouterr().out
    assert "gmv_by_region v1 (working tree) — 2026-11-24 … 2026-11-26 (3 periods): 12 row(s)" in printed
    table = pacsv.read_csv(out)
    assert table.num_rows == 12 and set(table.column_names) >= {"period_start", "region", "value"}
    assert sorted(set(table["period_start"].to_pylist())) == [date(2026, 11, d) for d in (24, 25, 26)]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "refund_rate_weekly", "--period", "2026-11-26"], "does not start one; its week is"),
        (["run", "gmv_daily", "--period", "26/11/2026"], "is not a day: write YYYY-MM-DD"),
        (["run", "gmv_daily"], "give one of --period DAY or --periods FROM..TO"),
        (["run", "gmv_daily", "--periods", "2026-11-26..2026-11-20"], "TO is before FROM"),
        (["run", "no_such_metric", "--period", DAY], "no metric 'no_such_metric'"),
        (["run", "gmv_daily", "--period", DAY, "--out", "values.xlsx"], "write .csv or .parquet"),
        (["run", "gmv_daily", "--period", "2026-12-20"], "no file matches"),  # no export that day
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(argv, says, demo_data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and says in err, err
    assert list(tmp_path.iterdir()) == []  # not even --out


def test_a_connection_that_is_not_configured_is_named_with_its_variable(demo_data, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_SALES_DB")
    assert main(["run", "gmv_daily", "--period", DAY]) == 2
    err = capsys.readouterr().err
    assert "sales_db" in err and "AIRFLOW_CONN_SALES_DB" in err and "Traceback" not in err


def test_a_source_with_no_rows_is_named_and_the_blocking_check_fails_the_run(demo_data, capsys):
    """lead_conversion_rate on a day without orders or leads: every source is empty, the row-count rule
    blocks, exit 1 — and the author is told which source returned nothing."""
    assert main(["run", "lead_conversion_rate", "--period", "2026-12-20", "--no-evidence"]) == 1
    captured = capsys.readouterr()
    assert "note: source orders returned no rows for 2026-12-20 (sales_db: sales/orders.sql)" in captured.out
    assert "(no rows)" in captured.out
    assert "FAILED: blocking check(s) expect_table_row_count_to_equal" in captured.err


def test_a_metric_built_on_metrics_needs_a_mart_and_says_so(demo_data, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_CENTER_MART_URL", f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["run", "refund_rate_daily", "--period", DAY]) == 2
    err = capsys.readouterr().err
    assert "reads published metrics (gmv, refunds)" in err and "--url" in err
    assert not (tmp_path / "none.db").exists()  # looking for the mart created none


def test_a_retired_metric_is_not_computed(demo_data, tmp_path, capsys, monkeypatch):
    include = tmp_path / "include"
    shutil.copytree(REPO / "include", include)
    path = include / "metrics" / "gmv_daily.yaml"
    path.write_text(path.read_text() + "status: retired\n")
    monkeypatch.delenv("METRICS_CENTER_HOME", raising=False)
    assert main(["run", "gmv_daily", "--period", DAY, "--home", str(include)]) == 2
    err = capsys.readouterr().err
    assert "gmv_daily is retired (status: retired in gmv_daily.yaml)" in err and "Traceback" not in err
