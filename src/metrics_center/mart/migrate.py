"""Create or upgrade the mart schema with Alembic — the one tool that changes it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from metrics_center.mart.engine import MART_SCHEMA

if TYPE_CHECKING:
    from sqlalchemy import Engine

_MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_ID = 7_345_001  # pg advisory lock: concurrent first runs must not migrate twice


def upgrade(engine: Engine, *, revision: str = "head") -> str | None:
    """Bring the mart to ``revision``; safe to call from every run (a no-op when current)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Lock first: concurrent `CREATE SCHEMA IF NOT EXISTS` can still collide in Postgres.
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {MART_SCHEMA}"))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        return current_revision(conn)


def current_revision(conn) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(
        conn, opts={"version_table": "mart_schema_version"}
    ).get_current_revision()


@functools.cache  # the migrations ship with the code: one read per process (Celery workers warm it)
def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def require_current(engine: Engine) -> None:
    """Refuse to run against a mart that is not at this code's revision.

    Tasks never migrate: their database role needs no DDL rights. ``metrics-center mart upgrade``
    (a privileged step, once per deploy) does.
    """
    from metrics_center.errors import MartError

    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    if current != head:
        raise MartError(
            f"the metrics mart is at revision {current or '(none: not created)'} but this code needs {head}"
            " — run `metrics-center mart upgrade` (with the mart owner's credentials) once per deploy"
        )
