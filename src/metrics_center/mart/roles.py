"""Read-only Postgres roles for BI tools: views only, never a table — for every metric or one department's.

Views, not tables: a view runs with its owner's rights, so a reader sees exactly the published numbers and the
dictionary, never the audit trail, the outbox or run bookkeeping behind them. A reader gets ``SELECT`` on the
views of schema ``metrics_mart`` (the tall values, history, dictionary and anomalies) and on the relations of
schema ``metrics`` (one per metric) that it may read. A reader for a department (权限分级,
``--department sales``) is recorded in ``mart_reader``: it gets only the relations of the metrics that
department may read (``access:`` and ``readers:`` in the YAML), and the tall views show it only their rows
(``readable_metrics()``). Registering a new version grants its relations to the readers allowed then.

Why no ``ALTER DEFAULT PRIVILEGES``: Postgres's default privileges know object *types* (``TABLES``, ``SEQUENCES``,
``FUNCTIONS``, ``TYPES``, ``SCHEMAS``), and ``TABLES`` covers views and base tables alike — a default ``SELECT``
would hand every future table (a new audit table, say) to BI as well. So grants are given view by view, listed
from the database, and must be given again when a migration recreates a view (``DROP VIEW`` drops its grants):
run ``metrics-center mart grant-reader`` after every ``metrics-center mart upgrade`` (:func:`view_readers` lists
the roles to re-grant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metrics_center.errors import MartError
from metrics_center.mart.engine import MART_SCHEMA

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: Postgres would silently truncate a longer name
_RESERVED = frozenset({"public", "none", "current_user", "session_user", "current_role", "user", "all"})
_LOCK = "metrics_center.mart.roles"  # one grant-reader at a time (CREATE ROLE races end in duplicate_object)
#: Relation kinds that readers get ``SELECT`` on: views and materialized views.
_VIEW_KINDS = ("v", "m")
_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
_VIEW_WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"


@dataclass(frozen=True, kw_only=True)
class ReaderGrant:
    """What :func:`grant_reader` did."""

    role: str
    created: bool
    login: bool
    password_set: bool
    views: tuple[str, ...]
    department: str | None = None
    relations: tuple[str, ...] = ()


#: Views of ``metrics_mart`` no reader gets: unfiltered building blocks of the readers' views.
INTERNAL_VIEWS = frozenset({"metric_value_all"})
BI_SCHEMA = "metrics"


def validate_role_name(role: str) -> str:
    """``role`` if it is a plain lower-case Postgres identifier; else :class:`MartError` saying what to use."""
    if (
        not _ROLE_NAME.fullmatch(role)
        or len(role.encode()) > _MAX_NAME_BYTES
        or role.startswith("pg_")
        or role in _RESERVED
    ):
        raise MartError(
            f"role name {role!r} is not allowed — use lower-case letters, digits and _ (starting with a letter "
            f"or _), at most {_MAX_NAME_BYTES} characters, not starting with pg_ and not a reserved name "
            "(public, none, current_user…), e.g. bi_reader"
        )
    return role


def mart_views(conn: Connection) -> tuple[str, ...]:
    """Every view (and materialized view) in schema ``metrics_mart``, by name, from the catalog."""
    import sqlalchemy as sa

    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind::text = ANY(:kinds) ORDER BY c.relname"
        ),
        {"schema": MART_SCHEMA, "kinds": list(_VIEW_KINDS)},
    )
    return tuple(v for v in rows.scalars() if v not in INTERNAL_VIEWS)


def readable_relations(conn: Connection, *, department: str | None) -> tuple[str, ...]:
    """The per-metric relations (``metrics.<key>``, ``…_history``) a reader for ``department`` may read
    (None: every metric), as the current definitions' ``access`` and ``readers`` say."""
    import sqlalchemy as sa

    from metrics_center.mart.tables import metric_definition as d

    rows = conn.execute(
        sa.select(d.c.metric_key, d.c.department, d.c.access, d.c.readers).where(d.c.valid_to.is_(None))
    ).all()
    keys = [
        r.metric_key
        for r in rows
        if department is None
        or (r.access or "public") == "public"
        or (r.access == "department" and r.department == department)
        or department in (r.readers or [])
    ]
    existing = set(
        conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :schema AND c.relkind = 'v'"
            ),
            {"schema": BI_SCHEMA},
        ).scalars()
    )
    return tuple(name for key in sorted(keys) for name in (key, f"{key}_history") if name in existing)


def grant_reader(
    *,
    engine: Engine,
    role: str,
    login: bool | None = None,
    password: str | None = None,
    department: str | None = None,
) -> ReaderGrant:
    """Create ``role`` if missing and let it read the mart's views — and nothing else in the schema.

    Idempotent. ``login``: None = ``LOGIN`` for a new role and unchanged for an existing one. ``password`` is
    sent as a SCRAM verifier computed here (as psql's ``\\password`` does), never in clear text. Everything
    happens in one transaction, checked before commit: if the role can read or write any table of the schema
    (directly, through a role it belongs to, ``PUBLIC``, or as a superuser) nothing is changed.
    Run as the mart owner (the role of ``metrics-center mart upgrade``) with ``CREATEROLE``. ``department``:
    the role reads for that department only (None: every metric, restricted ones included); giving a role
    another department takes back the relations the new one may not read.
    """
    import psycopg
    import sqlalchemy as sa

    validate_role_name(role)
    if engine.dialect.name != "postgresql":
        raise MartError(
            f"grant-reader needs the Postgres mart; this mart is {engine.dialect.name} "
            f"({engine.url.render_as_string(hide_password=True)}), which has no roles — give BI tools a copy of "
            "the file, or move the mart to Postgres (connection metrics_mart) and pass its URL with --url"
        )
    if password is not None and login is False:
        raise MartError(
            f"a password for {role!r} with --no-login: a role that cannot log in needs no password"
        )
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})
            views = mart_views(conn)
            if not views:
                raise MartError(
                    f"schema {MART_SCHEMA} has no views in database {conn.engine.url.database!r} — run "
                    "`metrics-center mart upgrade` first (or pass the mart's URL with --url)"
                )
            created = not _role_exists(conn, role)
            login_now = _apply_role(conn, role=role, created=created, login=login, password=password)
            _record_reader(conn, role=role, department=department)
            relations = readable_relations(conn, department=department)
            _execute(conn, _grants(conn, role=role, views=views, relations=relations))
            _check_read_only(conn, role=role, views=views)
    except MartError:
        raise
    except (sa.exc.DBAPIError, psycopg.Error) as exc:  # psycopg's own: statements run on its cursor
        raise MartError(_explain(exc, role=role)) from exc
    return ReaderGrant(
        role=role,
        created=created,
        login=login_now,
        password_set=password is not None,
        views=views,
        department=department,
        relations=relations,
    )


def reader_departments(*, engine: Engine) -> dict[str, str | None]:
    """Role → department (None: every metric) of the readers grant-reader recorded."""
    import sqlalchemy as sa

    from metrics_center.mart.tables import mart_reader

    with engine.connect() as conn:
        return {r.role_name: r.department for r in conn.execute(sa.select(mart_reader))}


def _record_reader(conn: Connection, *, role: str, department: str | None) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from metrics_center.mart.tables import mart_reader

    conn.execute(sa.delete(mart_reader).where(mart_reader.c.role_name == role))
    conn.execute(
        sa.insert(mart_reader).values(role_name=role, department=department, granted_at=datetime.now(UTC))
    )


def view_readers(*, engine: Engine) -> tuple[str, ...]:
    """Roles that may ``SELECT`` from a mart view but touch no table: the roles to give
    :func:`grant_reader` again after a migration that recreates views (take the list *before* upgrading)."""
    import sqlalchemy as sa

    if engine.dialect.name != "postgresql":
        return ()
    with engine.connect() as conn:
        views = mart_views(conn)
        # Direct grantees only (not members of a reader role), without PUBLIC (grantee 0) and the owner.
        candidates = conn.execute(
            sa.text(
                "SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee) FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a"
                " WHERE n.nspname = :schema AND c.relname = ANY(:views) AND a.privilege_type = 'SELECT'"
                " AND a.grantee <> 0 AND a.grantee <> c.relowner ORDER BY 1"
            ),
            {"schema": MART_SCHEMA, "views": list(views)},
        ).scalars()
        return tuple(role for role in candidates if not _table_rights(conn, role=role))


def _role_exists(conn: Connection, role: str) -> bool:
    import sqlalchemy as sa

    query = sa.text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :r")
    return conn.execute(query, {"r": role}).first() is not None


def _apply_role(
    conn: Connection, *, role: str, created: bool, login: bool | None, password: str | None
) -> bool:
    """CREATE or ALTER the role's LOGIN and PASSWORD; the role's LOGIN afterwards."""
    import sqlalchemy as sa
    from psycopg import sql

    options: list[sql.Composable] = []
    if created or login is not None:
        options.append(sql.SQL("LOGIN" if login is not False else "NOLOGIN"))
    if password is not None:
        verifier = _driver(conn).pgconn.encrypt_password(password.encode(), role.encode(), None)
        options.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier.decode())))
    if created:
        _execute(
            conn, [sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), sql.SQL(" ").join(options))]
        )
    elif options:
        _execute(conn, [sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), sql.SQL(" ").join(options))])
    query = sa.text("SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = :r")
    return bool(conn.execute(query, {"r": role}).scalar_one())


def _grants(conn: Connection, *, role: str, views: tuple[str, ...], relations: tuple[str, ...]) -> list[Any]:
    import sqlalchemy as sa
    from psycopg import sql

    database, can_connect = conn.execute(
        sa.text("SELECT current_database(), has_database_privilege(:role, current_database(), 'CONNECT')"),
        {"role": role},
    ).one()
    grantee = sql.Identifier(role)
    statements = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(MART_SCHEMA), grantee)]
    if not can_connect:  # PUBLIC has CONNECT by default; a hardened database revoked it
        statements.append(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), grantee)
        )
    statements += [
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(MART_SCHEMA, view), grantee)
        for view in views
    ]
    statements += [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(BI_SCHEMA), grantee),
        # What the role read before (another department's, a restricted one) first: then what it may read now.
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sql.Identifier(BI_SCHEMA), grantee),
    ]
    statements += [
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(BI_SCHEMA, name), grantee)
        for name in relations
    ]
    return statements


def _table_rights(conn: Connection, *, role: str) -> list[str]:
    """``schema.table: privileges`` for every table, sequence or view-write the role holds in the schema."""
    import sqlalchemy as sa

    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind::text = ANY(:kinds)"
            " AND CASE c.relkind"
            "   WHEN 'S' THEN has_sequence_privilege(:role, c.oid, 'USAGE, SELECT, UPDATE')"
            "   WHEN 'v' THEN has_table_privilege(:role, c.oid, :view_writes)"
            "   WHEN 'm' THEN has_table_privilege(:role, c.oid, :view_writes)"
            "   ELSE has_table_privilege(:role, c.oid, :table_privs)"
            "     OR has_any_column_privilege(:role, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES') END"
            " ORDER BY c.relname"
        ),
        {
            "schema": MART_SCHEMA,
            "kinds": ["r", "p", "f", "S", *_VIEW_KINDS],
            "role": role,
            "view_writes": _VIEW_WRITE_PRIVILEGES,
            "table_privs": _TABLE_PRIVILEGES,
        },
    )
    rights = [f"{MART_SCHEMA}.{name}" for name, _kind in rows]
    schema_create = conn.execute(
        sa.text("SELECT has_schema_privilege(:role, :schema, 'CREATE')"),
        {"role": role, "schema": MART_SCHEMA},
    ).scalar_one()
    return rights + ([f"CREATE on schema {MART_SCHEMA}"] if schema_create else [])


def _check_read_only(conn: Connection, *, role: str, views: tuple[str, ...]) -> None:
    import sqlalchemy as sa

    if rights := _table_rights(conn, role=role):
        shown = ", ".join(rights[:5]) + (f" and {len(rights) - 5} more" if len(rights) > 5 else "")
        raise MartError(
            f"role {role!r} already has rights beyond reading the views ({shown}) — directly, through a role it "
            "is a member of, through PUBLIC, or as a superuser or owner; nothing was changed. A BI reader must "
            "not: pick a new role name, or REVOKE those rights first"
        )
    query = sa.text(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :schema AND c.relname = ANY(:views) AND NOT has_table_privilege(:role, c.oid, 'SELECT')"
    )
    if (
        missing := conn.execute(query, {"schema": MART_SCHEMA, "views": list(views), "role": role})
        .scalars()
        .all()
    ):
        raise MartError(f"role {role!r} still cannot read {', '.join(missing)}: report this as a bug")


def _driver(conn: Connection) -> Any:
    """The psycopg connection under ``conn`` (same transaction)."""
    return conn.connection.driver_connection


def _execute(conn: Connection, statements: list[Any]) -> None:
    """Run psycopg-composed statements on ``conn``'s transaction: identifiers quoted by psycopg, never by us."""
    with _driver(conn).cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _explain(exc: Exception, *, role: str) -> str:
    """A database error as what happened and how to fix it."""
    from psycopg import errors

    cause = getattr(exc, "orig", exc)
    first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if isinstance(cause, errors.InsufficientPrivilege):
        return (
            f"cannot grant {role!r} read access: {first} — run grant-reader as the mart owner (the role that runs "
            "`metrics-center mart upgrade`, which owns the views) with CREATEROLE, e.g. --url "
            "postgresql://<owner>@<host>/<database>; the metrics_mart connection of the tasks has no such rights"
        )
    return f"cannot grant {role!r} read access: {first}"
