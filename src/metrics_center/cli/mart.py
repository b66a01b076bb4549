"""``metrics-center mart``: create or migrate the mart schema, and give BI tools read-only roles."""

from __future__ import annotations

import argparse
import os
import sys

from metrics_center.cli.groups import command_group


def _mart_upgrade(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.roles import grant_reader, view_readers

    engine = create_mart_engine(args.url)
    # A migration that recreates a view drops its grants: BI readers get theirs back right after.
    readers = view_readers(engine=engine) if engine.dialect.name == "postgresql" else []
    revision = upgrade(engine)
    for role in readers:
        grant_reader(engine=engine, role=role)
    print(f"mart at revision {revision} ({engine.url.render_as_string(hide_password=True)})")
    if readers:
        print(f"granted the views again to {', '.join(readers)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    mart_sub = command_group(sub, "mart", help="mart schema management")
    up = mart_sub.add_parser("upgrade", help="create or migrate the mart schema (Alembic)")
    up.add_argument(
        "--url", help="SQLAlchemy URL (default: connection metrics_mart, else SQLite in $AIRFLOW_HOME)"
    )
    up.set_defaults(func=_mart_upgrade)
    add_mart_commands(mart_sub)


def _grant_reader(args: argparse.Namespace) -> int:
    from metrics_center.errors import MartError
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.roles import grant_reader

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(
                f"metrics-center mart grant-reader: environment variable {args.password_env} is unset or empty "
                f"— export the password in it first (e.g. read -rs {args.password_env}; export {args.password_env})",
                file=sys.stderr,
            )
            return 1
    engine = create_mart_engine(args.url)
    try:
        grant = grant_reader(engine=engine, role=args.role, login=args.login, password=password)
    except MartError as exc:
        print(f"metrics-center mart grant-reader: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    state = "created" if grant.created else "already existed"
    login = "LOGIN" if grant.login else "NOLOGIN"
    password_note = ", password set" if grant.password_set else ""
    print(
        f"role {grant.role} {state} ({login}{password_note}): USAGE on schema metrics_mart, SELECT on "
        f"{', '.join(grant.views)}; nothing on its tables"
    )
    print(
        "run this again after every `metrics-center mart upgrade`: a migration that recreates a view drops its grants"
    )
    return 0


def add_mart_commands(mart_sub: argparse._SubParsersAction) -> None:
    """Register ``mart grant-reader``."""
    reader = mart_sub.add_parser(
        "grant-reader",
        help="create (if missing) a read-only Postgres role for BI: SELECT on the mart's views, nothing on tables",
        description="Create ROLE if it does not exist, grant it USAGE on schema metrics_mart and SELECT on every "
        "view there (metric_value_current, metric_value_history, metric_dictionary, and any view added later), "
        "and nothing on the tables. Idempotent; refuses a role that can already read or write a table of the "
        "mart. Run as the mart owner (the role of `mart upgrade`) with CREATEROLE, and again after every "
        "`mart upgrade`. Postgres only.",
    )
    reader.add_argument("role", help="role name: lower-case letters, digits and _, e.g. bi_reader")
    reader.add_argument(
        "--url",
        help="the mart owner's SQLAlchemy URL (default: connection metrics_mart — usually the task role, which "
        "cannot create roles)",
    )
    reader.add_argument(
        "--login",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the role may log in (default: LOGIN for a new role; an existing role keeps its setting); "
        "--no-login for a group role whose members are people",
    )
    reader.add_argument(
        "--password-env",
        metavar="VAR",
        help="set the role's password from environment variable VAR (sent as a SCRAM verifier, never on the "
        "command line)",
    )
    reader.set_defaults(func=_grant_reader)
