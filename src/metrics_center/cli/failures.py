"""What stopped a command, in one line with its fix: ``metrics-center <command>: <what> — <fix>`` (exit 2).

``main`` hands every exception a command did not handle to :func:`explain`: Metrics Center's own errors, an
unreachable or unmigrated database (the mart, or Airflow's metadata database for the commands that declare
``database=AIRFLOW_DATABASE``), a URL SQLAlchemy cannot read, a missing Airflow connection and a file that
cannot be read or written. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

#: Exit code of a command that could not do its job (1 stays "problems found", e.g. by ``validate``).
EXIT_FAILED = 2
#: ``set_defaults(database=...)`` of a command working on Airflow's metadata database rather than the mart.
AIRFLOW_DATABASE = "airflow"
MART_DATABASE = "mart"
_MART_SETTINGS = "--url, METRICS_CENTER_MART_URL or the metrics_mart connection (AIRFLOW_CONN_METRICS_MART)"
_URL_FIX = (
    "give a PostgreSQL or SQLite URL, e.g. postgresql://user@host:5432/metrics or sqlite:////path/mart.db"
)


def command_name(args: argparse.Namespace) -> str:
    """``mart grant-reader``, ``preview``…: the command as typed, sub-command included."""
    command = getattr(args, "command", None) or ""
    sub = getattr(args, f"{command}_command", None)
    return f"{command} {sub}" if sub else command


def explain(exc: BaseException, *, args: argparse.Namespace) -> str | None:
    """``<what> — <fix>`` for an exception a user can act on, None for a bug (let it raise)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from metrics_center.errors import MetricsCenterError, SpecError

    if isinstance(exc, SpecError):
        first, more = exc.problems[0], len(exc.problems) - 1
        tail = f" ({more} more problem(s): run `metrics-center validate`)" if more else ""
        return f"{first}{tail}"
    if isinstance(exc, MetricsCenterError):
        return _with_fix(_first_line(exc), fix=f"see `metrics-center {command_name(args)} --help`")
    if isinstance(exc, DBAPIError):
        return _database_failure(exc, args=args)
    if isinstance(exc, ArgumentError):
        given = f"--url {args.url!r}: " if getattr(args, "url", None) else ""
        return f"{given}{_first_line(exc)} — {_URL_FIX}"
    if isinstance(exc, ModuleNotFoundError) and (backend := _foreign_backend(args)) is not None:
        return f"the mart cannot be a {backend} database ({_first_line(exc)}) — {_URL_FIX}"
    if _is_named(exc, "AirflowNotFoundException"):
        return (
            f"{_first_line(exc)} — define the connection in Airflow (`airflow connections add`) or as an "
            "environment variable AIRFLOW_CONN_<ID> (upper case), e.g. AIRFLOW_CONN_SALES_DB=postgresql://…"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename} — check that the path exists and that you may read (or write) it"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _with_fix(message: str, *, fix: str) -> str:
    return message if " — " in message else f"{message} — {fix}"


def _is_named(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is of a class called ``name`` (Airflow's, without importing Airflow)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _database(args: argparse.Namespace) -> str | None:
    declared = getattr(args, "database", None)
    if declared is not None:
        return declared
    return MART_DATABASE if hasattr(args, "url") else None


def _mart_url(args: argparse.Namespace) -> Any:
    """The mart's URL as the command used it (``--url``, else the settings), None if that cannot be told."""
    try:
        from sqlalchemy import make_url

        from metrics_center.mart.engine import mart_url

        return make_url(args.url) if getattr(args, "url", None) else mart_url()
    except Exception:  # the URL itself may be what failed
        return None


def _mart_where(args: argparse.Namespace) -> str:
    url = _mart_url(args)
    return f"the mart at {url.render_as_string(hide_password=True)}" if url is not None else "the mart"


def _foreign_backend(args: argparse.Namespace) -> str | None:
    """The backend of a mart URL that is neither PostgreSQL nor SQLite (whose driver is then missing)."""
    if _database(args) != MART_DATABASE or (url := _mart_url(args)) is None:
        return None
    backend = url.get_backend_name()
    return None if backend in ("postgresql", "sqlite") else backend


def _missing_table(exc: Any) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig or exc)


def _database_failure(exc: Any, *, args: argparse.Namespace) -> str:
    reason = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
    database = _database(args)
    if database == AIRFLOW_DATABASE:
        where = "Airflow's metadata database"
        home = os.environ.get("AIRFLOW_HOME", "~/airflow")
        if _missing_table(exc):
            return f"{where} is not set up ({reason}) — run `airflow db migrate` with the same AIRFLOW_HOME ({home})"
        return (
            f"cannot use {where} ({reason}) — check AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and AIRFLOW_HOME ({home}), "
            "and run this where the scheduler runs"
        )
    if database == MART_DATABASE:
        where = _mart_where(args)
        if _missing_table(exc):
            url = f" --url {args.url}" if getattr(args, "url", None) else ""
            return f"{where} has no Metrics Center tables ({reason}) — run `metrics-center mart upgrade{url}` first"
        return f"cannot use {where} ({reason}) — check {_MART_SETTINGS}, and that the database is running"
    return f"a database refused the command ({reason}) — check the connection it uses and that the database is running"
