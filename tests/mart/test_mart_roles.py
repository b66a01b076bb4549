"""`metrics-center mart grant-reader` on the real Postgres: BI reads the views and nothing else.

Roles are cluster-wide: every role a test creates is dropped at its end (``roles`` fixture).
"""

from __future__ import annotations

import os
import uuid
from datetime import date

import pytest
import sqlalchemy as sa
from mart_helpers import publish, register, values_table

from metrics_center.cli.app import main
from metrics_center.errors import MartError
from metrics_center.mart.engine import MART_SCHEMA, create_mart_engine
from metrics_center.mart.migrate import upgrade
from metrics_center.mart.roles import grant_reader, mart_views, view_readers

# the same server as conftest.PG_ADMIN_URL
PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY = date(2026, 11, 26)
VIEWS = {"metric_value_current", "metric_value_history", "metric_dictionary", "metric_anomaly"}
SECRET_TABLES = {
    "values__m",
    "publication",
    "approval_event",
    "notification",
    "quality_result",
    "slack_request",
}
postgres_only = pytest.mark.parametrize("mart", ["postgres"], indirect=True)


def _admin() -> sa.Engine:
    return sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


@pytest.fixture
def roles():
    """``roles()`` → a fresh role name; each is dropped (with its grants, in ``databases``) at teardown."""
    names: list[str] = []
    databases: list[str] = []

    def new() -> str:
        names.append(f"mc_bi_{uuid.uuid4().hex[:8]}")
        return names[-1]

    new.databases = databases  # type: ignore[attr-defined]
    yield new
    admin = _admin()
    for database in databases:
        engine = sa.create_engine(admin.url.set(database=database), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for name in names:
                if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": name}).first():
                    conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
        engine.dispose()
    with admin.connect() as conn:
        for name in reversed(names):
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
        left = conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = ANY(:n)"), {"n": names})
        assert left.scalar_one() == 0
    admin.dispose()


def _as(mart: sa.Engine, role: str) -> sa.Engine:
    """The mart as ``role`` sees it (the local server trusts every login)."""
    return create_mart_engine(mart.url.set(username=role, password=None))


def _tables(mart: sa.Engine) -> set[str]:
    with mart.connect() as conn:
        query = sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s")
        return set(conn.execute(query, {"s": MART_SCHEMA}).scalars())


def _can(mart: sa.Engine, role: str, relation: str, privilege: str) -> bool:
    with mart.connect() as conn:
        query = sa.text("SELECT has_table_privilege(:r, :t, :p)")
        return conn.execute(query, {"r": role, "t": f"{MART_SCHEMA}.{relation}", "p": privilege}).scalar_one()


def _denied(engine: sa.Engine, statement: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), engine.begin() as conn:
        conn.execute(sa.text(statement))


@postgres_only
def test_reader_selects_every_view_and_touches_no_table(mart, roles, postgres_mart_url):
    roles.databases.append(mart.url.database)
    register(mart)
    publish(mart, values_table(DAY, [("east", 10.0), ("west", 4.5)]), "run_1")
    role = roles()

    grant = grant_reader(engine=mart, role=role)

    assert grant.created and grant.login and not grant.password_set
    assert (
        set(grant.views) == VIEWS
    )  # listed from the database: every view of the schema but the internal one
    assert grant.relations == ("m", "m_history")  # the metric's own relations, in schema metrics
    tables = _tables(mart)
    assert tables >= SECRET_TABLES and not tables & VIEWS
    reader = _as(mart, role)
    try:
        with reader.connect() as conn:
            for view in grant.views:
                conn.execute(sa.text(f"SELECT * FROM {MART_SCHEMA}.{view}")).all()
            current = conn.execute(
                sa.text(
                    f"SELECT dimensions->>'region', value FROM {MART_SCHEMA}.metric_value_current ORDER BY 1"
                )
            ).all()
            assert [tuple(r) for r in current] == [("east", 10.0), ("west", 4.5)]
            dictionary = conn.execute(sa.text(f"SELECT metric_key FROM {MART_SCHEMA}.metric_dictionary"))
            assert dictionary.scalars().all() == ["m"]
            typed = conn.execute(sa.text("SELECT region, value FROM metrics.m ORDER BY 1")).all()
            assert [tuple(r) for r in typed] == [("east", 10.0), ("west", 4.5)]
        for table in sorted(tables):  # every table, the audit trail and the outbox included
            _denied(reader, f"SELECT 1 FROM {MART_SCHEMA}.{table} LIMIT 1")
        _denied(reader, f"INSERT INTO {MART_SCHEMA}.notification (kind) VALUES ('x')")
        _denied(reader, f"UPDATE {MART_SCHEMA}.values__m SET value = 0")
        _denied(reader, f"SELECT * FROM {MART_SCHEMA}.metric_value_all")  # unfiltered: internal
        _denied(reader, f"DELETE FROM {MART_SCHEMA}.metric_dictionary")  # auto-updatable: only rights stop it
        _denied(reader, f"INSERT INTO {MART_SCHEMA}.metric_dictionary (metric_key) VALUES ('x')")
        _denied(reader, f"CREATE TABLE {MART_SCHEMA}.sneaky (x int)")
    finally:
        reader.dispose()


@postgres_only
def test_twice_is_fine_and_a_password_is_stored_as_scram(mart, roles, monkeypatch, capsys):
    roles.databases.append(mart.url.database)
    role = roles()
    url = mart.url.render_as_string(hide_password=False)

    assert main(["mart", "grant-reader", role, "--url", url]) == 0
    assert f"role {role} created (LOGIN)" in capsys.readouterr().out
    monkeypatch.setenv("MC_TEST_BI_PASSWORD", "correct horse battery staple")
    assert main(["mart", "grant-reader", role, "--url", url, "--password-env", "MC_TEST_BI_PASSWORD"]) == 0
    out = capsys.readouterr().out
    assert f"role {role} already existed (LOGIN, password set)" in out
    assert "metric_value_current" in out and "nothing on its tables" in out
    again = grant_reader(engine=mart, role=role, login=False)
    assert not again.created and not again.login and set(again.views) == VIEWS

    with mart.connect() as conn:
        login, password = conn.execute(
            sa.text("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}
        ).one()
    assert not login
    assert password.startswith("SCRAM-SHA-256$") and "horse" not in password
    assert all(_can(mart, role, view, "SELECT") for view in VIEWS)
    assert not any(_can(mart, role, table, "SELECT") for table in _tables(mart))
    assert role in view_readers(engine=mart)


@postgres_only
@pytest.mark.parametrize(
    "name",
    [
        "Bad-Name",
        'x"; DROP ROLE postgres; --',
        "bi reader",
        "1reader",
        "pg_reader",
        "public",
        "current_user",
        "a" * 64,
        "",
    ],
)
def test_bad_role_names_are_refused(mart, name, capsys):
    with mart.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM pg_roles")).scalar_one()
    with pytest.raises(MartError, match="not allowed — use lower-case letters"):
        grant_reader(engine=mart, role=name)
    url = mart.url.render_as_string(hide_password=False)
    assert main(["mart", "grant-reader", name, "--url", url]) == 1
    assert "e.g. bi_reader" in capsys.readouterr().err
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_roles")).scalar_one() == before


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_sqlite_is_refused(mart, capsys):
    with pytest.raises(MartError, match="needs the Postgres mart; this mart is sqlite"):
        grant_reader(engine=mart, role="bi_reader")
    assert main(["mart", "grant-reader", "bi_reader", "--url", str(mart.url)]) == 1
    assert "has no roles" in capsys.readouterr().err
    assert view_readers(engine=mart) == ()


@postgres_only
def test_a_role_that_can_already_read_a_table_is_refused_and_nothing_changes(mart, roles):
    """Pointing grant-reader at the task role (or a member of it) must not pass for "read-only"."""
    roles.databases.append(mart.url.database)
    writer, member = roles(), roles()
    with mart.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{writer}" NOLOGIN'))
        conn.execute(sa.text(f'GRANT SELECT, INSERT ON {MART_SCHEMA}.notification TO "{writer}"'))
        conn.execute(sa.text(f'CREATE ROLE "{member}" LOGIN IN ROLE "{writer}"'))

    for role in (writer, member):
        with pytest.raises(
            MartError, match=r"already has rights beyond reading the views \(metrics_mart.notif"
        ):
            grant_reader(engine=mart, role=role)
        assert not any(_can(mart, role, view, "SELECT") for view in VIEWS)  # rolled back
    with pytest.raises(MartError, match="as a superuser or owner"):
        grant_reader(engine=mart, role=mart.url.username)
    assert {writer, member}.isdisjoint(view_readers(engine=mart))


@postgres_only
def test_an_upgrade_that_recreates_views_drops_grants_until_granted_again(mart, roles):
    """Why the guide says: run grant-reader after every `mart upgrade` (no default privileges for views only)."""
    from alembic import command
    from alembic.config import Config

    from metrics_center.mart.migrate import _MIGRATIONS

    roles.databases.append(mart.url.database)
    role = roles()
    grant_reader(engine=mart, role=role)
    readers = view_readers(engine=mart)
    assert role in readers
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with mart.begin() as conn:  # 0006 and 0007 drop and recreate the views
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
    finally:
        upgrade(mart)
    assert not _can(mart, role, "metric_dictionary", "SELECT")
    assert not _can(mart, role, "metric_value_current", "SELECT")  # recreated by 0007

    for reader in readers:
        grant_reader(engine=mart, role=reader)
    assert all(_can(mart, role, view, "SELECT") for view in VIEWS)


@pytest.mark.parametrize("createrole", [True, False], ids=["owner-creates-role", "dba-creates-role"])
def test_the_mart_owner_grants_without_being_superuser(roles, createrole):
    """The documented setups: a non-superuser mart owner migrates the mart and grants BI; it creates the role
    itself if it has CREATEROLE, else a DBA creates the role first and the owner only grants."""
    owner, reader_role = roles(), roles()
    database = f"mc_roles_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{owner}" LOGIN {"CREATEROLE" if createrole else ""}'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}" OWNER "{owner}"'))
        if not createrole:
            conn.execute(sa.text(f'CREATE ROLE "{reader_role}" LOGIN'))
    url = admin.url.set(database=database, username=owner, drivername="postgresql+psycopg")
    owner_engine = create_mart_engine(url)
    reader = _as(owner_engine, reader_role)
    try:
        upgrade(owner_engine)
        with owner_engine.connect() as conn:
            assert set(mart_views(conn)) == VIEWS
        if not createrole:
            with pytest.raises(
                MartError, match="permission denied to create role — run grant-reader as the mart"
            ):
                grant_reader(engine=owner_engine, role=roles())
        grant = grant_reader(engine=owner_engine, role=reader_role)
        assert grant.created is createrole
        with reader.connect() as conn:
            count = conn.execute(sa.text(f"SELECT count(*) FROM {MART_SCHEMA}.metric_value_current"))
            assert count.scalar() == 0
        _denied(reader, f"SELECT 1 FROM {MART_SCHEMA}.publication")
    finally:
        reader.dispose()
        owner_engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


@postgres_only
def test_mart_upgrade_grants_the_views_again_to_every_reader(mart, roles, capsys):
    """`metrics-center mart upgrade` takes the readers before migrating and grants them again after — a reader
    of a mart from before departments (0006: SELECT on its views) keeps reading every metric."""
    from alembic import command
    from alembic.config import Config

    from metrics_center.cli.app import main
    from metrics_center.mart.migrate import _MIGRATIONS

    roles.databases.append(mart.url.database)
    register(mart)
    publish(mart, values_table(DAY, [("east", 10.0)]), "run_1")
    role = roles()
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with mart.begin() as conn:  # back to 0006, where grant-reader gave SELECT on each view of metrics_mart
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA metrics_mart TO "{role}"'))
        for view in ("metric_value_current", "metric_value_history", "metric_dictionary"):
            conn.execute(sa.text(f'GRANT SELECT ON metrics_mart.{view} TO "{role}"'))
        assert conn.execute(sa.text("SELECT count(*) FROM metrics_mart.metric_value")).scalar() == 1
    url = mart.url.render_as_string(hide_password=False)
    assert main(["mart", "upgrade", "--url", url]) == 0
    assert f"granted the views again to {role}" in capsys.readouterr().out
    assert all(_can(mart, role, view, "SELECT") for view in VIEWS)
    assert not _can(mart, role, "publication", "SELECT")
    reader = _as(mart, role)
    try:
        with reader.connect() as conn:  # the value moved to typed storage, readable by the old reader
            assert conn.execute(sa.text("SELECT region, value FROM metrics.m")).one() == ("east", 10.0)
    finally:
        reader.dispose()
