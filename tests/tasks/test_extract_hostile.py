"""Extraction under hostile conditions: empty days, mixed column types, paths escaping the data root,
failing source SQL. Real SQLite, the real local Postgres, real files; staged parts are read back by DuckDB.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import metric_spec

from metrics_center.definitions.loader import load_metric
from metrics_center.definitions.spec import MetricSpec
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks import extract, sql_rows
from metrics_center.tasks.extract import extract_source

REPO = Path(__file__).resolve().parents[2]
# the same server as conftest.PG_ADMIN_URL
PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CONTEXT = {"logical_date": datetime(2026, 11, 27, tzinfo=UTC), "run_id": "manual__hostile-test"}
ORDERS_SQLITE = (
    "CREATE TABLE orders (order_id INTEGER PRIMARY KEY, ordered_at TEXT NOT NULL, region TEXT NOT NULL,"
    " channel TEXT NOT NULL, lead_id INTEGER, amount REAL NOT NULL, status TEXT NOT NULL)"
)
ORDERS_PG = (
    "CREATE TABLE orders (order_id bigint PRIMARY KEY, ordered_at timestamp NOT NULL, region text NOT NULL,"
    " channel varchar(16) NOT NULL, lead_id integer, amount numeric(12, 2) NOT NULL, status text NOT NULL)"
)
REFUNDS_HEADER = "refund_id,order_id,refunded_at,region,channel,amount\n"


def _spec(sources: dict, **extra) -> MetricSpec:
    return metric_spec(sources=sources, **extra)


def _parts(summary: dict) -> list[str]:
    from airflow.sdk import ObjectStoragePath

    return sorted(str(p) for p in Path(ObjectStoragePath(summary["staged"]).path).glob("*.parquet"))


def _duck(summary: dict, sql: str, *, union_by_name: bool = True) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` over the staged source as view ``s`` (as transform does); returns (types, rows)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.read_parquet(_parts(summary), union_by_name=union_by_name).to_view("s")
        relation = con.sql(sql)
        return [str(t) for t in relation.types], relation.fetchall()
    finally:
        con.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Isolated data root, staging root and METRICS_CENTER_HOME (with the demo's SQL files copied in)."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(data))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    shutil.copytree(REPO / "include" / "sql", tmp_path / "home" / "sql")
    return tmp_path


def _sql_file(home: Path, name: str, text: str) -> None:
    (home / "home" / "sql" / name).write_text(text)


def _sqlite_conn(home: Path, monkeypatch, *ddl_and_rows: tuple[str, list[tuple]], conn_id: str = "shop_db"):
    db = home / f"{conn_id}.db"
    with sqlite3.connect(db) as conn:
        for statement, rows in ddl_and_rows:
            conn.execute(statement)
            if rows:
                table = statement.split()[2]
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.close()
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db)})
    )


@pytest.fixture(scope="module")
def pg_url():
    """A throwaway database on the local Postgres for source tables, dropped afterwards."""
    import sqlalchemy as sa

    name = f"mc_src_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_conn(pg_url: str, monkeypatch, *statements: str, conn_id: str = "pg_src") -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", pg_url)


# --- 1. an empty day keeps usable column types ------------------------------------------------------


def test_duckdb_binds_null_typed_columns_of_an_empty_sqlite_day(home, monkeypatch):
    _sqlite_conn(
        home, monkeypatch, (ORDERS_SQLITE, [(1, "2026-11-20 09:00:00", "east", "app", None, 9.5, "paid")])
    )
    spec = _spec({"orders": {"conn_id": "shop_db", "sql": "sales/orders.sql"}})
    summary = extract_source(spec=spec, source_name="orders", context=CONTEXT)
    assert summary["rows"] == 0
    # sqlite3 gives no column types, so an empty day is staged as Arrow null columns…
    assert {str(t) for t in pq.read_schema(_parts(summary)[0]).types} == {"null"}
    # …which DuckDB binds with numbers, text, dates and literals alike.
    _, rows = _duck(
        summary,
        "SELECT SUM(amount), COUNT(DISTINCT lead_id), AVG(amount) FROM s WHERE status = 'paid'"
        " AND CAST(ordered_at AS DATE) >= DATE '2026-01-01' AND CAST(ordered_at AS TIMESTAMP) < DATE '2027-01-01'"
        " AND COALESCE(lead_id, 0) >= 0 AND region LIKE 'e%'",
    )
    assert rows == [(None, 0, None)]
    _, rows = _duck(summary, "SELECT amount - COALESCE(amount, 0) AS v FROM s")
    assert rows == []


def test_empty_postgres_day_keeps_declared_types(home, monkeypatch, pg_url):
    _pg_conn(
        pg_url,
        monkeypatch,
        "CREATE TABLE typed (i2 int2, i4 int4, i8 int8, n numeric(12, 2), f4 float4, f8 float8, t text,"
        " v varchar(10), b bool, d date, ts timestamp, tz timestamptz, j json, jb jsonb)",
    )
    _sql_file(home, "typed.sql", "SELECT * FROM typed")
    spec = _spec({"typed": {"conn_id": "pg_src", "sql": "typed.sql"}})
    summary = extract_source(spec=spec, source_name="typed", context=CONTEXT)
    assert summary["rows"] == 0
    schema = pq.read_schema(_parts(summary)[0])
    assert {f.name: str(f.type) for f in schema} == {
        "i2": "int64",
        "i4": "int64",
        "i8": "int64",
        "n": "double",
        "f4": "double",
        "f8": "double",
        "t": "string",
        "v": "string",
        "b": "bool",
        "d": "date32[day]",
        "ts": "timestamp[us]",
        "tz": "timestamp[us, tz=UTC]",
        "j": "string",
        "jb": "string",
    }
    _, rows = _duck(summary, "SELECT SUM(n), date_trunc('day', MAX(ts)), COUNT(*) FROM s WHERE t = 'x'")
    assert rows == [(None, None, 0)]


def test_postgres_values_are_staged_with_the_declared_types(home, monkeypatch, pg_url):
    _pg_conn(
        pg_url,
        monkeypatch,
        "CREATE TABLE valued (n numeric(12, 2), j jsonb, tz timestamptz, d date)",
        "INSERT INTO valued VALUES (12.34, '{\"a\": [1, 2]}', '2026-11-26 08:00+08', '2026-11-26'),"
        " (NULL, NULL, NULL, NULL)",
    )
    _sql_file(home, "valued.sql", "SELECT * FROM valued ORDER BY n NULLS LAST")
    spec = _spec({"valued": {"conn_id": "pg_src", "sql": "valued.sql"}})
    summary = extract_source(spec=spec, source_name="valued", context=CONTEXT)
    table = pq.read_table(_parts(summary)[0])
    assert table.to_pylist()[0] == {
        "n": 12.34,
        "j": '{"a": [1, 2]}',
        "tz": datetime(2026, 11, 26, 0, 0, tzinfo=UTC),
        "d": date(2026, 11, 26),
    }


def test_a_large_postgres_extract_streams_through_a_server_side_cursor(home, monkeypatch, pg_url):
    """The rows come batch by batch from a named (server-side) cursor and are written as they come."""
    from metrics_center.tasks import extract

    _pg_conn(pg_url, monkeypatch)
    _sql_file(home, "series.sql", "SELECT n, 'row ' || n AS label FROM generate_series(1, 250) AS n")
    monkeypatch.setattr(extract, "BATCH_ROWS", 100)
    seen = []
    streaming = extract._streaming_cursor
    monkeypatch.setattr(extract, "_streaming_cursor", lambda conn: seen.append(streaming(conn)) or seen[-1])
    spec = _spec({"series": {"conn_id": "pg_src", "sql": "series.sql"}})
    summary = extract_source(spec=spec, source_name="series", context=CONTEXT)
    assert summary["rows"] == 250
    assert [c.name for c in seen] == ["metrics_center_extract"]  # psycopg's server-side cursor
    staged = (
        pq.read_table([str(p) for p in _parts(summary)])
        if len(_parts(summary)) > 1
        else pq.read_table(_parts(summary)[0])
    )
    assert sorted(staged.column("n").to_pylist()) == list(range(1, 251))


def _empty_demo_day(home: Path, monkeypatch, backend: str, pg_url: str | None) -> None:
    """The demo company on a day with no orders, header-only finance exports and an empty leads file."""
    data = home / "data"
    (data / "finance").mkdir()
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        (data / "finance" / f"refunds_{day}.csv").write_text(REFUNDS_HEADER)
        (data / "finance" / f"settlements_{day}.csv").write_text("order_date,region,amount\n")
    (data / "marketing").mkdir()
    leads = pa.schema(
        [
            ("lead_id", pa.int64()),
            ("created_at", pa.timestamp("us")),
            ("region", pa.string()),
            ("source", pa.string()),
        ]
    )
    pq.write_table(leads.empty_table(), data / "marketing" / "leads.parquet")
    if backend == "sqlite":
        _sqlite_conn(home, monkeypatch, (ORDERS_SQLITE, []), conn_id="sales_db")
    else:
        _pg_conn(pg_url, monkeypatch, "DROP TABLE IF EXISTS orders", ORDERS_PG, conn_id="sales_db")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("metric", ["gmv_daily", "refund_rate_weekly", "lead_conversion_rate"])
def test_demo_transforms_run_over_an_empty_day(home, monkeypatch, request, backend, metric):
    from metrics_center.tasks.transform import transform

    pg_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    _empty_demo_day(home, monkeypatch, backend, pg_url)
    spec = load_metric(
        REPO / "include" / "metrics" / f"{metric}.yaml", teams=None, sql_root=home / "home" / "sql"
    )
    for name in spec.sources:
        assert extract_source(spec=spec, source_name=name, context=CONTEXT)["rows"] == 0
    summary = transform(spec=spec, context=CONTEXT)
    assert (summary["rows"], summary["periods"], summary["total"]) == (0, [], None)


def test_header_only_csv_and_empty_parquet_stay_usable(home):
    data = home / "data"
    (data / "refunds.csv").write_text(REFUNDS_HEADER)
    pq.write_table(
        pa.schema([("amount", pa.float64()), ("day", pa.date32())]).empty_table(), data / "e.parquet"
    )
    spec = _spec({"csv": {"path": "refunds.csv"}, "pq": {"path": "e.parquet"}})
    csv = extract_source(spec=spec, source_name="csv", context=CONTEXT)
    _, rows = _duck(csv, "SELECT SUM(amount), COALESCE(MAX(order_id), 0) FROM s WHERE region = 'east'")
    assert rows == [(None, 0)]
    parquet = extract_source(spec=spec, source_name="pq", context=CONTEXT)
    types, rows = _duck(parquet, "SELECT SUM(amount), MAX(day) FROM s WHERE day >= DATE '2026-01-01'")
    assert (types, rows) == (["DOUBLE", "DATE"], [(None, None)])


def test_an_empty_file_first_in_a_glob_is_widened_by_the_next(home):
    data = home / "data"
    (data / "r_1.csv").write_text(REFUNDS_HEADER)
    (data / "r_2.csv").write_text(REFUNDS_HEADER + "1,7,2026-11-26 10:00:00,east,app,12.5\n")
    summary = extract_source(spec=_spec({"r": {"path": "r_*.csv"}}), source_name="r", context=CONTEXT)
    schemas = {str(pq.read_schema(p).field("amount").type) for p in _parts(summary)}
    assert schemas == {"double"}
    _, rows = _duck(summary, "SELECT SUM(amount) FROM s", union_by_name=False)
    assert rows == [(12.5,)]


# --- 2. mixed types never silently become text ------------------------------------------------------


def test_decimal_and_float_in_one_column_become_doubles():
    columns = [sql_rows.SqlColumn(name="amount"), sql_rows.SqlColumn(name="n")]
    table = sql_rows.rows_to_table(
        columns=columns, rows=[(Decimal("1.25"), 1), (2.5, 2), (None, 3)], source="orders"
    )
    assert [str(t) for t in table.schema.types] == ["double", "int64"]
    assert table.column("amount").to_pylist() == [1.25, 2.5, None]


def test_sqlite_ints_and_floats_in_one_column_become_doubles(home, monkeypatch):
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER, v)", [(1, 1), (2, 2.5), (3, None)]))
    _sql_file(home, "t.sql", "SELECT id, v FROM t ORDER BY id")
    summary = extract_source(
        spec=_spec({"t": {"conn_id": "shop_db", "sql": "t.sql"}}), source_name="t", context=CONTEXT
    )
    types, rows = _duck(summary, "SELECT id, v FROM s ORDER BY id")
    assert (types, rows) == (["BIGINT", "DOUBLE"], [(1, 1.0), (2, 2.5), (3, None)])


def test_text_mixed_with_numbers_is_an_error_naming_source_column_row_and_value(home, monkeypatch):
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER, amount)", [(1, 10.5), (2, "n/a"), (3, 4)]))
    _sql_file(home, "t.sql", "SELECT id, amount FROM t ORDER BY id")
    spec = _spec({"orders": {"conn_id": "shop_db", "sql": "t.sql"}})
    with pytest.raises(MetricsCenterError) as caught:
        extract_source(spec=spec, source_name="orders", context=CONTEXT)
    message = str(caught.value)
    assert "source `orders` column `amount` mixes numbers and text" in message
    assert "row 2 has 'n/a'" in message
    assert "CAST it in the source SQL" in message


def test_column_type_is_stable_across_fetchmany_batches(home, monkeypatch):
    monkeypatch.setattr(extract, "BATCH_ROWS", 2)
    rows = [(1, None), (2, None), (3, 3.5), (4, 4)]
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER, v)", rows))
    _sql_file(
        home, "t.sql", "SELECT id, v, CASE WHEN id < 3 THEN id ELSE id + 0.5 END AS w FROM t ORDER BY id"
    )
    summary = extract_source(
        spec=_spec({"t": {"conn_id": "shop_db", "sql": "t.sql"}}), source_name="t", context=CONTEXT
    )
    parts = _parts(summary)
    assert len(parts) == 2
    # batch 1 had null v and integer w; batch 2 widened both: every part now says double
    assert {
        (str(pq.read_schema(p).field("v").type), str(pq.read_schema(p).field("w").type)) for p in parts
    } == {("double", "double")}
    for union in (True, False):  # any reader sees one type, with no rounding to the first part's type
        types, got = _duck(summary, "SELECT id, v, w FROM s ORDER BY id", union_by_name=union)
        assert types == ["BIGINT", "DOUBLE", "DOUBLE"]
        assert got == [(1, None, 1.0), (2, None, 2.0), (3, 3.5, 3.5), (4, 4.0, 4.5)]


def test_text_in_a_later_batch_is_an_error_with_the_row_number(home, monkeypatch):
    monkeypatch.setattr(extract, "BATCH_ROWS", 2)
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER, v)", [(1, 1), (2, 2), (3, "three")]))
    _sql_file(home, "t.sql", "SELECT id, v FROM t ORDER BY id")
    spec = _spec({"orders": {"conn_id": "shop_db", "sql": "t.sql"}})
    with pytest.raises(
        MetricsCenterError, match=r"source `orders` column `v`.*row 3 has 'three'.*CAST it in the source SQL"
    ):
        extract_source(spec=spec, source_name="orders", context=CONTEXT)


def test_csv_files_disagreeing_on_a_column_type_are_an_error(home):
    (home / "data" / "a_1.csv").write_text("region,amount\neast,1\nwest,2\n")
    (home / "data" / "a_2.csv").write_text("region,amount\neast,3\nwest,unknown\n")
    with pytest.raises(MetricsCenterError) as caught:
        extract_source(spec=_spec({"exp": {"path": "a_*.csv"}}), source_name="exp", context=CONTEXT)
    message = str(caught.value)
    assert "source `exp` column `amount`" in message
    assert "a_2.csv" in message
    assert "'3'" in message or "'unknown'" in message


# --- 3. file sources stay inside the data root -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../" * 30 + "etc/pass*", "/etc/passwd", "sub/../../outside/secret.csv", "../outside/*.csv"],
)
def test_paths_escaping_the_data_root_are_refused(home, path):
    (home / "outside").mkdir()
    (home / "outside" / "secret.csv").write_text("a\n1\n")
    (home / "data" / "sub").mkdir()
    spec = _spec({"leak": {"path": path, "format": "csv"}})
    with pytest.raises(
        MetricsCenterError, match=r"source `leak` path .* outside METRICS_CENTER_DATA_ROOT"
    ) as caught:
        extract_source(spec=spec, source_name="leak", context=CONTEXT)
    assert path in str(caught.value)


@pytest.mark.parametrize("path", ["*.csv", "link.csv", "linked_dir/secret.csv", "linked_dir/*.csv"])
def test_symlinks_resolving_outside_the_root_are_refused(home, path):
    outside = home / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    (home / "data" / "ok.csv").write_text("a\n2\n")
    os.symlink(outside / "secret.csv", home / "data" / "link.csv")
    os.symlink(outside, home / "data" / "linked_dir")
    spec = _spec({"leak": {"path": path}})
    with pytest.raises(
        MetricsCenterError,
        match=r"source `leak` path '.*(link\.csv|secret\.csv|\*\.csv)' resolves to '.*outside(/secret\.csv)?'",
    ):
        extract_source(spec=spec, source_name="leak", context=CONTEXT)


def test_symlinks_and_absolute_paths_inside_the_root_are_fine(home):
    data = home / "data"
    (data / "exports").mkdir()
    (data / "exports" / "real.csv").write_text("a\n2\n")
    os.symlink(data / "exports" / "real.csv", data / "alias.csv")
    spec = _spec({"alias": {"path": "alias.csv"}, "abs": {"path": str(data / "exports" / "*.csv")}})
    assert extract_source(spec=spec, source_name="alias", context=CONTEXT)["rows"] == 1
    assert extract_source(spec=spec, source_name="abs", context=CONTEXT)["rows"] == 1


# --- 4. failing source SQL names the source, the connection and the SQL -----------------------------


class _Kept(logging.Handler):
    """Records of one logger, kept on that logger: Airflow replaces the root handlers (and caplog's) when
    it configures logging on first use, which happens inside the extract."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_failing_sqlite_sql_names_source_connection_and_rendered_sql(home, monkeypatch):
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER)", []))
    _sql_file(home, "bad.sql", "SELECT id FROM nope WHERE day = '{{ period_start }}'")
    spec = _spec({"orders": {"conn_id": "shop_db", "sql": "bad.sql"}})
    rendered = "SELECT id FROM nope WHERE day = '2026-11-26'"
    logger, kept = logging.getLogger("metrics_center.tasks.extract"), _Kept()
    level = logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(MetricsCenterError) as caught:
            extract_source(spec=spec, source_name="orders", context=CONTEXT)
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
    assert str(caught.value) == (
        f"source `orders` on connection `shop_db` failed: no such table: nope\nSQL:\n{rendered}"
    )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert any(rendered in r.getMessage() and r.levelno == logging.INFO for r in kept.records)


def test_failing_postgres_sql_names_source_connection_and_rendered_sql(home, monkeypatch, pg_url):
    import psycopg

    _pg_conn(pg_url, monkeypatch)
    _sql_file(home, "bad.sql", "SELECT 1 / (EXTRACT(DAY FROM DATE '{{ period_start }}') - 26)::int AS x")
    spec = _spec({"orders": {"conn_id": "pg_src", "sql": "bad.sql"}})
    with pytest.raises(MetricsCenterError) as caught:
        extract_source(spec=spec, source_name="orders", context=CONTEXT)
    message = str(caught.value)
    assert message.startswith("source `orders` on connection `pg_src` failed: division by zero")
    assert message.endswith("SQL:\nSELECT 1 / (EXTRACT(DAY FROM DATE '2026-11-26') - 26)::int AS x")
    assert isinstance(caught.value.__cause__, psycopg.Error)


def test_a_dict_cursor_connection_still_stages_values(home, monkeypatch, pg_url):
    _pg_conn(
        pg_url,
        monkeypatch,
        "CREATE TABLE dicty (region text, amount numeric)",
        "INSERT INTO dicty VALUES ('east', 2.5)",
    )
    monkeypatch.setenv("AIRFLOW_CONN_PG_DICT", f"{pg_url}?cursor=dictcursor")
    _sql_file(home, "dicty.sql", "SELECT region, amount FROM dicty")
    spec = _spec({"d": {"conn_id": "pg_dict", "sql": "dicty.sql"}})
    summary = extract_source(spec=spec, source_name="d", context=CONTEXT)
    assert pq.read_table(_parts(summary)[0]).to_pylist() == [{"region": "east", "amount": 2.5}]


def test_an_undefined_connection_names_the_source_and_how_to_add_it(home):
    spec = _spec({"orders": {"conn_id": "nowhere_db", "sql": "sales/orders.sql"}})
    with pytest.raises(
        MetricsCenterError,
        match=r"source `orders`: connection `nowhere_db` is not available.*AIRFLOW_CONN_NOWHERE_DB",
    ):
        extract_source(spec=spec, source_name="orders", context=CONTEXT)


def test_a_csv_whose_later_block_breaks_the_inferred_type_is_reread_wider(home, monkeypatch):
    monkeypatch.setattr(extract, "CSV_BLOCK_BYTES", 64)  # types are inferred from the first 64 bytes
    lines = [f"{i},{i},," for i in range(1, 30)] + ["30,30.5,7,west", "31,31,8.5,"]
    (home / "data" / "big.csv").write_text("id,amount,late,note\n" + "\n".join(lines) + "\n")
    summary = extract_source(spec=_spec({"big": {"path": "big.csv"}}), source_name="big", context=CONTEXT)
    assert summary["rows"] == 31
    sql = "SELECT SUM(amount), COUNT(*), SUM(late), MAX(note) FROM s"
    types, rows = _duck(summary, sql, union_by_name=False)
    # ints then 30.5: doubles; empty then 7 then 8.5: doubles; empty then text: text
    assert types == ["DOUBLE", "BIGINT", "DOUBLE", "VARCHAR"]
    assert rows == [(sum(range(1, 30)) + 30.5 + 31, 31, 15.5, "west")]


def test_text_after_numbers_in_a_later_csv_block_is_an_error(home, monkeypatch):
    monkeypatch.setattr(extract, "CSV_BLOCK_BYTES", 64)
    lines = [f"{i},{i}" for i in range(1, 30)] + ["30,unknown"]
    (home / "data" / "big.csv").write_text("id,amount\n" + "\n".join(lines) + "\n")
    with pytest.raises(MetricsCenterError, match=r"source `big` column `amount` in .*big\.csv has 'unknown'"):
        extract_source(spec=_spec({"big": {"path": "big.csv"}}), source_name="big", context=CONTEXT)


def test_a_column_returned_twice_is_an_error_naming_it(home, monkeypatch):
    _sqlite_conn(home, monkeypatch, ("CREATE TABLE t (id INTEGER, ID2 INTEGER)", [(1, 2)]))
    _sql_file(home, "t.sql", "SELECT id, ID2 AS Id FROM t")
    _sql_file(home, "same.sql", "SELECT id, id FROM t")
    spec = _spec(
        {"t": {"conn_id": "shop_db", "sql": "t.sql"}, "same": {"conn_id": "shop_db", "sql": "same.sql"}}
    )
    with pytest.raises(MetricsCenterError, match=r"source `t` returns the column `Id` twice.*alias"):
        extract_source(spec=spec, source_name="t", context=CONTEXT)
    with pytest.raises(MetricsCenterError, match=r"source `same` returns the column `id` twice"):
        extract_source(spec=spec, source_name="same", context=CONTEXT)
