"""Metrics Center's own metrics, sent through Airflow's StatsD/OpenTelemetry client.

**Metrics** go through the client Airflow's tasks use (``airflow.sdk.observability.stats``), so they honour
``[metrics] statsd_on`` / ``statsd_host`` / ``statsd_port`` / ``statsd_prefix``, ``statsd_influxdb_enabled``,
``statsd_datadog_enabled``, ``otel_on``, the allow/block lists — and are a no-op when metrics are off. Every
name starts with ``metrics_center.``; facts about one metric carry its key as the tag ``metric_key``. Plain
StatsD drops tags, so there each such fact is sent twice: under its name (the total) and under its name with
the key (and e.g. the decision) appended, ``metrics_center.published_values.gmv_daily`` — the way Airflow's
own ``dagrun.duration.failed.<dag_id>`` works. See ``docs/observability.md``.

A stats call never raises: a metric lost is better than a task failed over it.

Nothing here imports Airflow at module level.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

log = logging.getLogger(__name__)

PREFIX = "metrics_center"
TIMEOUT_DECISIONS = frozenset({"timed_out", "approved_on_timeout", "rejected_on_timeout"})

Kind = Literal["incr", "gauge", "timing"]


class DeliveryCounts(Protocol):
    """What one delivery run reports (:class:`metrics_center.notify.deliver.DeliveryReport` is one)."""

    delivered: int
    retried: int
    dead: int
    pending: int
    unaddressed: int
    dead_total: int


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
def notification_delivery(*, report: DeliveryCounts) -> None:
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
