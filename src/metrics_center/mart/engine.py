"""Find the mart and connect to it: the ``metrics_mart`` connection, else a SQLite file in $AIRFLOW_HOME."""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from metrics_center import settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from sqlalchemy import URL, Connection, Engine

MART_SCHEMA = "metrics_mart"
_PG_TYPES = {"postgres", "postgresql"}


def _url_from_connection() -> URL | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from sqlalchemy import URL

    try:
        conn = Connection.get(settings.MART_CONN_ID)
    except AirflowNotFoundException:
        return None
    if conn.conn_type in _PG_TYPES:
        return URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )
    if conn.conn_type == "sqlite":
        return URL.create("sqlite", database=conn.host or conn.schema)
    from metrics_center.errors import MartError

    raise MartError(
        f"connection {settings.MART_CONN_ID!r} has type {conn.conn_type!r} — make it a postgres (or sqlite) "
        "connection, or set METRICS_CENTER_MART_URL"
    )


def mart_url() -> URL:
    """``METRICS_CENTER_MART_URL`` (tests, tools) > Airflow connection ``metrics_mart`` > SQLite default."""
    from sqlalchemy import URL, make_url

    if explicit := os.environ.get("METRICS_CENTER_MART_URL"):
        return make_url(explicit)
    if url := _url_from_connection():
        return url
    return URL.create("sqlite", database=str(settings.airflow_home() / "metrics_mart.db"))


def create_mart_engine(url: URL | str | None = None) -> Engine:
    """An engine whose unqualified table names resolve to the mart (schema ``metrics_mart`` on Postgres)."""
    from sqlalchemy import create_engine, event, make_url

    url = make_url(url) if url is not None else mart_url()
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(
            url, connect_args={"options": f"-c search_path={MART_SCHEMA}"}, pool_pre_ping=True
        )
    from metrics_center.definitions.dimensions import canonical_json

    # The unique index on current values compares dimension JSON as text: write it canonically.
    engine = create_engine(url, json_serializer=canonical_json)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        # SQLAlchemy's recipe: the driver stops emitting BEGIN itself, so ours (below) can say IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_LOCK) else "BEGIN")

    return engine


_WRITE_LOCK = "metrics_center_write_lock"


@contextmanager
def locked_transaction(engine: Engine, *, key: str) -> Iterator[Connection]:
    """A transaction that holds the write lock for ``key`` from its first statement to its commit.

    Postgres: a transaction-scoped advisory lock on ``key`` (other keys proceed). SQLite: ``BEGIN
    IMMEDIATE``, the database's one write lock. Read "now" *inside* it so that times written under
    the lock are monotonic.
    """
    from sqlalchemy import text

    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{_WRITE_LOCK: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
            yield conn


def locked_now(conn: Connection) -> datetime:
    """The current time as seen inside a :func:`locked_transaction`: the database clock on Postgres
    (one clock for every worker machine), the local clock on SQLite (one machine by construction)."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return datetime.now(UTC)


@cache
def cached_engine(url: str) -> Engine:
    return create_mart_engine(url)


def get_engine() -> Engine:
    """One engine per process per URL."""
    return cached_engine(mart_url().render_as_string(hide_password=False))
