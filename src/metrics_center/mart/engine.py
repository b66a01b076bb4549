"""Find the mart and connect to it: the ``metrics_mart`` connection, else a SQLite file in $AIRFLOW_HOME."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

from metrics_center import settings

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine

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
    raise ValueError(
        f"connection {settings.MART_CONN_ID!r} has type {conn.conn_type!r}; use postgres (or sqlite)"
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
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


@cache
def cached_engine(url: str) -> Engine:
    return create_mart_engine(url)


def get_engine() -> Engine:
    """One engine per process per URL."""
    return cached_engine(mart_url().render_as_string(hide_password=False))
