"""Metrics Center's own metrics, sent through Airflow's StatsD/OpenTelemetry client, and the task log context.

**Metrics** go through the client Airflow's tasks use (``airflow.sdk.observability.stats``), so they honour
``[metrics] statsd_on`` / ``statsd_host`` / ``statsd_port`` / ``statsd_prefix``, ``statsd_influxdb_enabled``,
``statsd_datadog_enabled``, ``otel_on``, the allow/block lists — and are a no-op when metrics are off. Every
name starts with ``metrics_center.``; facts about one metric carry its key as the tag ``metric_key``. Plain
StatsD drops tags, so there each such fact is sent twice: under its name (the total) and under its name with
the key (and e.g. the decision) appended, ``metrics_center.published_values.gmv_daily`` — the way Airflow's
own ``dagrun.duration.failed.<dag_id>`` works. See ``docs/observability.md``.

A stats call never raises: a metric lost is better than a task failed over it.

**Logs**: :func:`with_task_log_context` wraps an operator's ``execute``; while it runs, every line written by
a ``metrics_center.*`` logger (and, through :func:`task_logger`, by the operator's ``self.log``) starts with
``[<metric key> <period> run=<run id>]``. Nothing here imports Airflow at module level: operators.py
imports it while DAG files are parsed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from metrics_center.notify.deliver import DeliveryReport
    from metrics_center.spec import MetricSpec

log = logging.getLogger(__name__)

PREFIX = "metrics_center"
#: Loggers whose lines get the task's log context (our modules log with ``logging.getLogger(__name__)``).
OUR_LOGGERS = ("metrics_center",)
REGISTER_TASK_ID = "register_definition"  # its XCom names the run's periods (dag_builder's task id)
TIMEOUT_DECISIONS = frozenset({"timed_out", "approved_on_timeout", "rejected_on_timeout"})

Kind = Literal["incr", "gauge", "timing"]
F = TypeVar("F", bound=Callable[..., Any])
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

# --- metrics: one function per fact ---------------------------------------------------------------------


def _never_raises(function: F) -> F:
    """A metric lost is better than a task failed over it (or over the arithmetic before it)."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as exc:
            log.debug("metric %s not sent: %s", function.__name__, exc)

    return guarded  # type: ignore[return-value]


@_never_raises
def published(*, metric_key: str, rows: int, already_published: bool = False) -> None:
    """A publication was written (``rows`` values); an idempotent re-run that wrote nothing counts nothing."""
    if already_published:
        return
    _emit("incr", "publications", 1, tags={"metric_key": metric_key}, in_name=("metric_key",))
    _emit("incr", "published_values", rows, tags={"metric_key": metric_key}, in_name=("metric_key",))


@_never_raises
def periods_restated(*, metric_key: str, periods: int, explicit: bool) -> None:
    """A publication replaced the current values of ``periods`` periods with different ones."""
    tags = {"metric_key": metric_key, "explicit": str(explicit).lower()}
    _emit("incr", "periods_restated", periods, tags=tags, in_name=("metric_key",))


@_never_raises
def publish_refused(*, metric_key: str, error: BaseException) -> None:
    """``publish`` refused the run (not approved, stale definition, newer data); nothing was written."""
    tags = {"metric_key": metric_key, "reason": _snake(type(error).__name__)}
    _emit("incr", "publish_refused", 1, tags=tags, in_name=("metric_key",))


@_never_raises
def approval_requested(*, metric_key: str, stage: str) -> None:
    """An approval stage asked its approvers."""
    tags = {"metric_key": metric_key, "stage": stage}
    _emit("incr", "approvals_requested", 1, tags=tags, in_name=("metric_key",))


@_never_raises
def approval_decided(
    *, metric_key: str, stage: str, decision: str, asked_at: datetime | None, answered_at: Any
) -> None:
    """An approval task recorded its answer: counted by decision; a person's answer also times the wait
    from the request (``asked_at``) to the answer; a timeout is counted as such."""
    tags = {"metric_key": metric_key, "stage": stage, "decision": decision}
    _emit("incr", "approvals_decided", 1, tags=tags, in_name=("metric_key", "decision"))
    if decision in TIMEOUT_DECISIONS:
        _emit("incr", "approvals_timed_out", 1, tags=tags, in_name=("metric_key",))
        return
    waited = _elapsed(asked_at, answered_at)
    if waited is not None:
        _emit("timing", "approval_wait", waited, tags=tags, in_name=("metric_key",))


@_never_raises
def approval_attempt(*, metric_key: str, via: str, decision: str) -> None:
    """An answer given on our page or in Slack was passed on to Airflow (``submitted``) or refused."""
    tags = {"metric_key": metric_key, "via": via, "outcome": decision}
    _emit("incr", "approval_attempts", 1, tags=tags, in_name=("metric_key", "outcome"))


@_never_raises
def quality_checked(*, metric_key: str, results: Sequence[Mapping[str, Any]], anomalies: int) -> None:
    """The quality gate ran: failed checks by severity, whether it blocks the run, anomalies found."""
    failed = [r for r in results if not r.get("success")]
    for severity in sorted({str(r.get("severity", "block")) for r in failed}):
        count = sum(1 for r in failed if str(r.get("severity", "block")) == severity)
        tags = {"metric_key": metric_key, "severity": severity}
        _emit("incr", "quality_checks_failed", count, tags=tags, in_name=("metric_key", "severity"))
    if any(str(r.get("severity", "block")) == "block" for r in failed):
        _emit("incr", "quality_gate_blocked", 1, tags={"metric_key": metric_key}, in_name=("metric_key",))
    _emit("incr", "anomalies_found", anomalies, tags={"metric_key": metric_key}, in_name=("metric_key",))


@_never_raises
def periods_deferred(*, metric_key: str, periods: int) -> None:
    """A run of a metric built on metrics left ``periods`` periods for a later run (an input is missing)."""
    _emit("incr", "periods_deferred", periods, tags={"metric_key": metric_key}, in_name=("metric_key",))


@_never_raises
def version_announced(*, metric_key: str, announced: bool, breaking: bool, preview_failed: bool) -> None:
    """A new definition version was announced (counted once per version: ``announced`` by this run)."""
    if not announced:
        return
    tags = {"metric_key": metric_key, "breaking": str(breaking).lower()}
    _emit("incr", "versions_announced", 1, tags=tags, in_name=("metric_key",))
    if preview_failed:
        _emit("incr", "impact_previews_failed", 1, tags={"metric_key": metric_key}, in_name=("metric_key",))


@_never_raises
def approvals_pending(*, count: int) -> None:
    """Gauge, from the maintenance run: approval stage tries still waiting for an answer."""
    _emit("gauge", "approvals_pending", count)


@_never_raises
def notification_delivery(*, report: DeliveryReport) -> None:
    """From one delivery run: what it did (counters) and what the outbox holds now (gauges)."""
    _emit("incr", "notifications_delivered", report.delivered)
    _emit("incr", "notifications_retried", report.retried)
    _emit("incr", "notifications_given_up", report.dead)
    _emit("gauge", "notifications_pending", report.pending)
    _emit("gauge", "notifications_unaddressed", report.unaddressed)
    _emit("gauge", "notifications_dead", report.dead_total)


# --- sending -----------------------------------------------------------------------------------------------


def _emit(
    kind: Kind,
    name: str,
    value: float | timedelta,
    *,
    tags: Mapping[str, str] | None = None,
    in_name: Sequence[str] = (),
) -> None:
    """Send one stat (and its per-key name when the backend drops tags). Counters of 0 are not sent."""
    if kind == "incr" and not value:
        return
    try:
        stats = _stats()
        clean = {k: _safe(v) for k, v in (tags or {}).items()}
        stat = f"{PREFIX}.{name}"
        _send(stats, kind, stat, value, clean or None)
        if in_name and not _tags_kept():
            named = ".".join([stat, *(clean[k].replace(".", "__") for k in in_name)])
            _send(stats, kind, named, value, None)
    except Exception as exc:  # never fail a task over a metric
        log.debug("metric %s.%s not sent: %s", PREFIX, name, exc)


def _send(stats: Any, kind: Kind, stat: str, value: Any, tags: dict[str, str] | None) -> None:
    if kind == "incr":
        stats.incr(stat, count=int(value), tags=tags)
    elif kind == "gauge":
        stats.gauge(stat, value, tags=tags)
    else:
        stats.timing(stat, value, tags=tags)


def _stats() -> Any:
    """Airflow's stats module for task processes (initialised by the task runner from ``[metrics]``)."""
    from airflow.sdk.observability import stats

    return stats


def _tags_kept() -> bool:
    """Whether the backend Airflow configured keeps tags: DogStatsD and OpenTelemetry do; plain StatsD only
    with ``statsd_influxdb_enabled`` (``name,tag=value``). Mirrors Airflow's own choice of backend."""
    from airflow.sdk.configuration import conf

    if conf.getboolean("metrics", "statsd_datadog_enabled", fallback=False):
        return True
    if conf.getboolean("metrics", "statsd_on", fallback=False):
        return conf.getboolean("metrics", "statsd_influxdb_enabled", fallback=False)
    return True


def _safe(value: object) -> str:
    """A tag value StatsD, InfluxDB line protocol and OTel all accept: ``sales review`` → ``sales_review``."""
    return _UNSAFE.sub("_", str(value)) or "_"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _elapsed(start: datetime | None, end: Any) -> timedelta | None:
    """``end - start`` (``end`` a datetime, an ISO string or None for now); None if unknown or negative."""
    if start is None:
        return None
    if isinstance(end, str):
        end = datetime.fromisoformat(end)
    end = end if isinstance(end, datetime) else datetime.now(UTC)
    aware = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end)]
    waited = aware[1] - aware[0]
    return waited if waited >= timedelta(0) else None


# --- the task log context ----------------------------------------------------------------------------------

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
        from metrics_center.definition import effective_timezone
        from metrics_center.run_periods import choose_periods
        from metrics_center.runtime import run_instant

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
