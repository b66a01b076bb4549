"""``metrics-center mart``: create or migrate the mart schema, and give BI tools read-only roles."""

from __future__ import annotations

import argparse
import os
import sys

from metrics_center.cli.groups import command_group


def _mart_upgrade(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade
    from metrics_center.mart.roles import grant_reader, reader_departments, view_readers

    engine = create_mart_engine(args.url)
    # A migration that recreates a view drops its grants: BI readers get theirs back right after, each for
    # the department grant-reader recorded (readers from before departments existed read every metric).
    postgres = engine.dialect.name == "postgresql"
    readers = list(view_readers(engine=engine)) if postgres else []
    revision = upgrade(engine)
    departments = reader_departments(engine=engine) if postgres else {}
    for role in dict.fromkeys([*readers, *departments]):
        grant_reader(engine=engine, role=role, department=departments.get(role))
    print(f"mart at revision {revision} ({engine.url.render_as_string(hide_password=True)})")
    if readers or departments:
        print(f"granted the views again to {', '.join(dict.fromkeys([*readers, *departments]))}")
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
    if args.department is not None and (problem := _unknown_department(args.department)):
        print(f"metrics-center mart grant-reader: {problem}", file=sys.stderr)
        return 1
    engine = create_mart_engine(args.url)
    try:
        grant = grant_reader(
            engine=engine, role=args.role, login=args.login, password=password, department=args.department
        )
    except MartError as exc:
        print(f"metrics-center mart grant-reader: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    state = "created" if grant.created else "already existed"
    login = "LOGIN" if grant.login else "NOLOGIN"
    password_note = ", password set" if grant.password_set else ""
    scope = f"reads for department {grant.department}" if grant.department else "reads every metric"
    print(
        f"role {grant.role} {state} ({login}{password_note}), {scope}: SELECT on metrics_mart's views "
        f"{', '.join(grant.views)} (rows of the metrics it may read) and on {len(grant.relations)} relation(s) "
        f"of schema metrics; nothing on its tables"
    )
    print("`metrics-center mart upgrade` and every new metric version grant again what this role may read")
    return 0


def _unknown_department(department: str) -> str | None:
    """A problem if ``_teams.yaml`` (when there is one) has no such department."""
    from metrics_center import settings
    from metrics_center.definitions.loader import TEAMS_FILE, load_teams

    path = settings.metrics_dir() / TEAMS_FILE
    if not path.is_file():
        return None
    try:
        teams = load_teams(path)
    except Exception:
        return None  # validate reports a broken teams file; the mart does not need it
    if department in teams.departments:
        return None
    return f"{department!r} is not a department in {path} — use one of {', '.join(sorted(teams.departments))}"


def add_mart_commands(mart_sub: argparse._SubParsersAction) -> None:
    """Register ``mart grant-reader``."""
    reader = mart_sub.add_parser(
        "grant-reader",
        help="create (if missing) a read-only Postgres role for BI: views only, of every metric or one department's",
        description="Create ROLE if it does not exist and let it read: SELECT on the views of schema metrics_mart "
        "(metric_value_current, metric_value_history, metric_dictionary, metric_anomaly) and on the relation of "
        "each metric it may read in schema metrics (metrics.<key>, metrics.<key>_history); nothing on the "
        "tables. With --department, only what that department may read (the metrics' access: and readers:), "
        "enforced by the database; without, every metric. Idempotent; refuses a role that can already read or "
        "write a table of the mart. Run as the mart owner (the role of `mart upgrade`) with CREATEROLE; "
        "`mart upgrade` and every new metric version grant again. Postgres only.",
    )
    reader.add_argument("role", help="role name: lower-case letters, digits and _, e.g. bi_reader")
    reader.add_argument(
        "--url",
        help="the mart owner's SQLAlchemy URL (default: connection metrics_mart — usually the task role, which "
        "cannot create roles)",
    )
    reader.add_argument(
        "--department",
        help="read only the metrics this department of _teams.yaml may read (权限分级); default: every metric",
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
