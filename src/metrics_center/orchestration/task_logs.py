"""The task log context: while an operator runs, our log lines start with ``[<metric> <period> run=<run id>]``.

:func:`with_task_log_context` wraps an operator's ``execute``; while it runs, every line written by a
``metrics_center.*`` logger (and, through :func:`task_logger`, by the operator's ``self.log``) starts with
``[<metric key> <period> run=<run id>]``. Nothing here imports Airflow at module level: the operators
import it while DAG files are parsed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from metrics_center.definitions.task_ids import REGISTER_TASK_ID

if TYPE_CHECKING:
    from metrics_center.definitions.spec import MetricSpec

#: Loggers whose lines get the task's log context (our modules log with ``logging.getLogger(__name__)``).
OUR_LOGGERS = ("metrics_center",)
F = TypeVar("F", bound=Callable[..., Any])

_PREFIX: ContextVar[str | None] = ContextVar("metrics_center_log_prefix", default=None)
_factory_installed = False


@contextlib.contextmanager
def log_context(*, metric_key: str, period: str, run_id: str) -> Iterator[str]:
    """While inside, our log lines start with ``[<metric_key> <period> run=<run_id>]`` (this thread/task only)."""
    _install_record_factory()
    prefix = f"[{metric_key} {period} run={run_id}]"
    token = _PREFIX.set(prefix)
    try:
        yield prefix
    finally:
        _PREFIX.reset(token)


def with_task_log_context(method: F) -> F:
    """Decorate an operator's ``execute``/``execute_complete(self, context, …)``: run it in
    :func:`log_context` for ``self.spec`` and the context's run and period."""

    @functools.wraps(method)
    def wrapper(self: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        with log_context(
            metric_key=self.spec.key, period=task_period(self.spec, context), run_id=_run_id(context)
        ):
            return method(self, context, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def task_logger(logger: Any) -> Any:
    """The operator's own structlog logger (``self.log``), its events prefixed while a :func:`log_context` is
    active. A processor, not a wrapper: the line's ``loc=`` stays the caller's. Any other logger: unchanged."""
    try:
        bound = logger.bind()
        # structlog leaves _logger/_processors/_context to wrapper classes; Airflow picks the class by level.
        return type(bound)(
            bound._logger, processors=[_prefix_event, *bound._processors], context=bound._context
        )
    except Exception:
        return logger


def task_period(spec: MetricSpec, context: Mapping[str, Any]) -> str:
    """The run's periods as ``register_definition`` registered them (its XCom ``period``); before that
    (the register task itself), the periods the run asks for. ``?`` if neither can be told."""
    ti = context.get("ti")
    if ti is not None and getattr(ti, "task_id", None) != REGISTER_TASK_ID:
        with contextlib.suppress(Exception):
            registered = ti.xcom_pull(task_ids=REGISTER_TASK_ID)
            if isinstance(registered, Mapping) and registered.get("period"):
                return str(registered["period"])
    try:
        from metrics_center.definitions.meaning import effective_timezone
        from metrics_center.definitions.run_periods import choose_periods
        from metrics_center.tasks.runtime import run_instant

        dag_run = context["dag_run"]
        return choose_periods(
            grain=spec.grain,
            timezone=effective_timezone(spec),
            instant=run_instant(context),  # type: ignore[arg-type]
            conf=getattr(dag_run, "conf", None),
            events=list(getattr(dag_run, "consumed_asset_events", None) or []),
            on_inputs=spec.on_inputs,
            ready=lambda _period: True,
        ).label()
    except Exception:
        return "?"


def _run_id(context: Mapping[str, Any]) -> str:
    return str(context.get("run_id") or "?")


def _prefixed(message: object, *, formatted: bool) -> object:
    """``message`` with the active prefix (``%`` escaped when the logger will apply ``%`` arguments)."""
    prefix = _PREFIX.get()
    if prefix is None:
        return message
    return f"{prefix.replace('%', '%%') if formatted else prefix} {message}"


def _prefix_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the active prefix before the (already %-formatted) event."""
    if "event" in event_dict:
        event_dict["event"] = _prefixed(event_dict["event"], formatted=False)
    return event_dict


def _install_record_factory() -> None:
    """Once per process: stdlib records of :data:`OUR_LOGGERS` get the active prefix (none outside a task).
    Airflow's task logging hands stdlib records to structlog with ``record.msg`` as the event."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # ``logging.makeLogRecord`` (structlog's formatter copies records with it) passes name None.
        name = record.name
        if _PREFIX.get() is not None and isinstance(name, str) and name.startswith(OUR_LOGGERS):
            with contextlib.suppress(Exception):  # a log line is never worth an error
                record.msg = _prefixed(record.msg, formatted=bool(record.args))
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
