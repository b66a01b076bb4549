"""A real Apache Superset 6.1 reads the mart through the bundle: GMV by region per week with no custom SQL.

Superset runs from its own venv (``make superset-venv``) as processes of its own, with SQLite metadata; the
mart is a fresh Postgres database filled by the demo's publish path; Superset connects as a reader role for
the sales department (``mart grant-reader --department sales``). Its chart-data API must answer what the mart
answers, for an additive metric (SUM) and a ratio (SUM(numerator) / SUM(denominator)).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from metrics_center.demo.superset import LocalSuperset, write_bundle

pytestmark = pytest.mark.slow  # starts Superset (its own venv and processes)

ADMIN_PASSWORD = "superset-admin-pw"
# the same server as conftest.PG_ADMIN_URL
PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mart_database(demo_data):
    """A Postgres mart with six weeks of the demo's metrics published, and a sales reader role."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.roles import grant_reader

    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name, role = f"mc_superset_{uuid.uuid4().hex[:8]}", f"mc_bi_sales_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name)
    engine = create_mart_engine(url)
    try:
        upgrade(engine)
        catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
        specs = [m.spec for m in catalog.metrics.values()]
        seed_history(engine=engine, specs=specs, first=date(2026, 10, 12), end=date(2026, 11, 24))
        grant_reader(engine=engine, role=role, department="sales")
        yield engine, url.set(username=role, password=None, drivername="postgresql")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.fixture(scope="module")
def superset(mart_database, tmp_path_factory):
    _, reader_url = mart_database
    home = tmp_path_factory.mktemp("superset")
    bundle = write_bundle(home / "bundle.zip", mart_uri=reader_url.render_as_string(hide_password=False))
    local = LocalSuperset(home=home, port=_free_port())
    local.provision(bundle=bundle, admin_password=ADMIN_PASSWORD)
    local.start()
    try:
        yield local, local.token(password=ADMIN_PASSWORD)
    finally:
        local.stop()


def _dataset(superset, token: str, name: str) -> dict:
    found = superset.call("GET", "/api/v1/dataset/?q=(page_size:100)", token=token)["result"]
    [dataset_id] = [d["id"] for d in found if d["table_name"] == name]
    return superset.call("GET", f"/api/v1/dataset/{dataset_id}", token=token)["result"]


def _chart_data(superset, token: str, dataset_id: int, metric: str, columns: list) -> list[dict]:
    body = {
        "datasource": {"id": dataset_id, "type": "table"},
        "force": True,
        "queries": [
            {"columns": columns, "metrics": [metric], "orderby": [], "row_limit": 10000, "filters": []}
        ],
        "result_format": "json",
        "result_type": "full",
    }
    [result] = superset.call("POST", "/api/v1/chart/data", body, token=token)["result"]
    assert not result.get("error"), result
    return result["data"]


WEEK = {
    "timeGrain": "P1W",
    "columnType": "BASE_AXIS",
    "sqlExpression": "period_start",
    "label": "period_start",
    "expressionType": "SQL",
}


def _by_week(rows: list[dict], key: str, *extra: str) -> dict[tuple, float]:
    from datetime import UTC, datetime

    return {
        (datetime.fromtimestamp(r["period_start"] / 1000, UTC).date(), *(r[e] for e in extra)): round(
            r[key], 6
        )
        for r in rows
    }


def test_gmv_by_region_per_week_comes_out_of_superset_as_the_mart_says(superset, mart_database):
    local, token = superset
    engine, _ = mart_database
    dataset = _dataset(local, token, "gmv_daily")
    assert dataset["schema"] == "metrics" and dataset["main_dttm_col"] == "period_start"
    described = {c["column_name"]: c["description"] for c in dataset["columns"]}
    assert all(described[c] for c in ("period", "region", "channel", "value"))  # from the column comments
    assert [m["expression"] for m in dataset["metrics"]] == ["SUM(value)"]

    rows = _chart_data(local, token, dataset["id"], "gmv_daily", [WEEK, "region"])
    with engine.connect() as conn:
        expected = {
            (r.week, r.region): round(r.total, 6)
            for r in conn.execute(
                sa.text(
                    "SELECT CAST(date_trunc('week', period_start) AS date) AS week, region, SUM(value) AS total "
                    "FROM metrics.gmv_daily GROUP BY 1, 2"
                )
            )
        }
    assert len(expected) >= 24  # six weeks x four regions
    assert _by_week(rows, "gmv_daily", "region") == expected


def test_a_ratio_totals_as_the_ratio_of_the_sums(superset, mart_database):
    local, token = superset
    engine, _ = mart_database
    dataset = _dataset(local, token, "lead_conversion_rate")
    assert [m["expression"] for m in dataset["metrics"]] == ["SUM(numerator) / NULLIF(SUM(denominator), 0)"]
    rows = _chart_data(local, token, dataset["id"], "lead_conversion_rate", [WEEK])
    with engine.connect() as conn:
        weekly = conn.execute(
            sa.text(
                "SELECT CAST(date_trunc('week', period_start) AS date) AS week, "
                "SUM(numerator) / SUM(denominator) AS rate, AVG(value) AS average FROM metrics.lead_conversion_rate "
                "GROUP BY 1"
            )
        ).all()
    assert _by_week(rows, "lead_conversion_rate") == {(r.week,): round(r.rate, 6) for r in weekly}
    assert any(round(r.rate, 6) != round(r.average, 6) for r in weekly)  # the average of rates would be wrong
