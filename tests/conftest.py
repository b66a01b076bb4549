"""Test session: an isolated Airflow home, the seeded demo company, and a throwaway Postgres database.

Environment is set at import time, before anything imports airflow (Airflow reads its config once).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures")
USERS = ("bob", "carol", "dave", "erin", "frank", "mallory")
DEMO_END = date(2026, 11, 27)  # demo data covers 2026-08-29 .. 2026-11-26

_home = Path(tempfile.mkdtemp(prefix="mc-test-airflow-"))
_passwords = _home / "passwords.json"
_passwords.write_text(json.dumps({u: f"{u}-pw" for u in USERS}))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:user" for u in USERS),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "metrics-center-tests-" + "0" * 64,
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "METRICS_CENTER_HOME": str(REPO / "include"),
        "METRICS_CENTER_DATA_ROOT": str(_home / "demo_data"),
        "METRICS_CENTER_STAGING": (_home / "staging").as_uri(),
        # The CLI speaks the terminal's language (LANG…): pinned so no result depends on the machine's locale.
        "METRICS_CENTER_LOCALE": "en",
        "AIRFLOW_CONN_SALES_DB": json.dumps(
            {"conn_type": "sqlite", "host": str(_home / "demo_data" / "sales" / "sales.db")}
        ),
    }
)
os.environ.pop("AIRFLOW_CONN_METRICS_MART", None)
os.environ.pop("METRICS_CENTER_MART_URL", None)

PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.resetdb()
    return _home


@pytest.fixture(scope="session")
def demo_data():
    from metrics_center.demo.seed import seed_demo

    return seed_demo(root=_home / "demo_data", end=DEMO_END)


@pytest.fixture(scope="session")
def postgres_mart_url():
    """A throwaway database on the local Postgres, dropped at the end of the session."""
    import sqlalchemy as sa

    name = f"mc_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    from metrics_center.mart.engine import cached_engine

    cached_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def reset_postgres_mart(conn) -> None:
    """Empty every table of the mart, drop each metric's storage and relations, as a fresh upgrade leaves it."""
    import sqlalchemy as sa

    conn.execute(
        sa.text(
            "TRUNCATE publication, metric_definition, quality_result, approval_event, metric_run, anomaly,"
            " notification, slack_request, metric_input, impact_preview, mart_reader"
        )
    )
    conn.execute(sa.text("SELECT metrics_mart.rebuild_value_views()"))  # no metric: it unites nothing now
    conn.execute(sa.text("DROP SCHEMA metrics CASCADE"))
    conn.execute(sa.text("CREATE SCHEMA metrics"))
    for (name,) in conn.execute(
        sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'metrics_mart' AND tablename LIKE 'values\\_\\_%'"
        )
    ):
        conn.execute(sa.text(f'DROP TABLE metrics_mart."{name}"'))


@pytest.fixture(params=["postgres", "sqlite"])
def mart(request, monkeypatch, tmp_path):
    """The mart as tasks see it: connection ``metrics_mart`` on Postgres, or the SQLite default."""
    from metrics_center.mart.engine import create_mart_engine, mart_url

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_mart_url")
        monkeypatch.setenv("AIRFLOW_CONN_METRICS_MART", url)
    else:
        # The zero-setup default: no connection, a SQLite file in $AIRFLOW_HOME (fresh per test).
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
        monkeypatch.delenv("AIRFLOW_CONN_METRICS_MART", raising=False)
    engine = create_mart_engine(mart_url())
    from metrics_center.mart.migrate import upgrade

    upgrade(engine)
    if request.param == "postgres":
        with engine.begin() as conn:  # each test starts from an empty mart
            reset_postgres_mart(conn)
    yield engine
    engine.dispose()


#: Fixtures that need Airflow's metadata database (``dag.test()``, the REST API in-process) or start processes.
SLOW_FIXTURES = frozenset({"airflow_db", "live", "plugin", "client"})


def pytest_collection_modifyitems(config, items):
    """``slow``: tests that run Airflow (its metadata DB, ``dag.test()``, a live api-server/scheduler, a
    browser) or a separate process; ``make test-fast`` (``-m "not slow"``) runs the rest in well under a minute."""
    slow = pytest.mark.slow
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(slow)
