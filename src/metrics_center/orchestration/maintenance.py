"""The maintenance DAG's task bodies: approval follow-ups, delivery of the outbox to Slack, staging pruning.

Called from ``dags/metrics_center_maintenance.py`` with the task's context. Everything is imported
inside the functions: the DAG file that names them is parsed often.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from metrics_center.observability import stats

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import Engine

    from metrics_center.definitions.spec import Teams

log = logging.getLogger(__name__)

DAG_ID = "metrics_center_maintenance"
STAGING_RETENTION_ENV = "METRICS_CENTER_STAGING_RETENTION"
DEFAULT_STAGING_RETENTION = "14d"


def follow_up_approvals(context: Mapping[str, Any]) -> dict[str, Any]:
    """Enqueue approval reminders and the in-place updates of answered requests; forget old Slack signatures.

    Which stage tries still wait comes from this task's own Task SDK channel (Airflow 3 tasks cannot read
    Airflow's database): ``ti.get_ti_count`` for the task, ``ti.get_dagrun_state`` for its run.
    """
    from dataclasses import asdict

    from metrics_center.notify.approval_followups import follow_up
    from metrics_center.notify.slack_replay import forget_requests

    engine = _mart()
    ti = context["ti"]
    done = follow_up(engine, teams=_teams(), stage_state=lambda ref: approval_stage_state(ti, ref))
    stats.approvals_pending(count=done.waiting)
    log.info(
        "approvals: %d reminder(s) and %d message update(s) enqueued; %d stage tr(ies) still waiting",
        done.reminders,
        done.updates,
        done.waiting,
    )
    try:
        forgotten = forget_requests(engine)
    except Exception as exc:  # e.g. a task role without DELETE on slack_request
        forgotten = 0
        log.warning(
            "cannot forget old Slack request signatures (%s): grant DELETE on slack_request to the mart role",
            exc,
        )
    return {**asdict(done), "slack_signatures_forgotten": forgotten}


def approval_stage_state(ti: Any, ref: Any) -> str:
    """``waiting`` (for an answer), ``active`` (its run goes on) or ``ended`` (run finished or gone)."""
    try:
        waiting = ti.get_ti_count(
            dag_id=ref.dag_id, task_ids=[ref.task_id], run_ids=[ref.run_id], states=["awaiting_input"]
        )
    except Exception as exc:
        log.warning("cannot ask Airflow whether %s waits (%s): no reminder this time", ref.task_id, exc)
        return "active"
    if waiting:
        return "waiting"
    try:
        state = dagrun_state(ti, ref.dag_id, ref.run_id)
    except Exception as exc:
        log.warning("cannot read the state of run %s (%s)", ref.run_id, exc)
        return "active"
    return "active" if state in ("queued", "running") else "ended"


def deliver_notifications(context: Mapping[str, Any]) -> dict[str, Any]:
    """Post what the outbox holds and is due; log the counts (dead ones as a warning)."""
    from dataclasses import asdict

    from metrics_center.notify.deliver import deliver_pending, readdress

    engine = _mart()
    if readdressed := readdress(engine, addresses=team_addresses()):
        log.info("%d notification(s) without an address now have one from _teams.yaml", readdressed)
    report = deliver_pending(engine)
    stats.notification_delivery(report=report)
    log.info(
        "notifications: %d delivered in %d message(s), %d recovered after an interrupted delivery, "
        "%d to retry, %d dead, %d pending",
        report.delivered,
        report.messages,
        report.recovered,
        report.retried,
        report.dead,
        report.pending,
    )
    if report.skipped:
        log.warning("%s", report.skipped)
    if report.unaddressed:
        log.warning(
            "%d notification(s) have no Slack address and stay pending: give their department a "
            "slack_channel (or the person a slack_user_id) in _teams.yaml; they go out on the next run",
            report.unaddressed,
        )
    for error in report.errors:
        log.warning("delivery error: %s", error)
    if report.dead_total:
        log.warning(
            "%d notification(s) are dead (%d gave up in this run): nobody has seen them. Fix the cause "
            "above, then `metrics-center notifications requeue --dead`; "
            "`metrics-center notifications list --state dead` shows them",
            report.dead_total,
            report.dead,
        )
    return asdict(report)


def prune_staging(context: Mapping[str, Any]) -> dict[str, Any]:
    """Delete staged runs older than ``METRICS_CENTER_STAGING_RETENTION``, keeping unfinished runs.

    Tasks cannot read Airflow's database: the runs come from the mart's ``metric_run``, their states
    from this task's own Task SDK channel (``ti.get_dagrun_state``).
    """
    from metrics_center import settings
    from metrics_center.tasks.retention import mart_run_lookup
    from metrics_center.tasks.retention import prune_staging as prune

    older_than = staging_retention()
    ti = context["ti"]
    lookup = mart_run_lookup(_mart(), dagrun_state=lambda dag_id, run_id: dagrun_state(ti, dag_id, run_id))
    pruned = prune(older_than=older_than, is_unfinished=lookup)
    log.info(
        "removed %d staged run(s), %d file(s) older than %s under %s",
        pruned.runs,
        pruned.files,
        older_than,
        settings.staging_root(),
    )
    if pruned.kept_unfinished:
        log.info(
            "kept %d unfinished run(s): %s",
            len(pruned.kept_unfinished),
            ", ".join(str(r) for r in pruned.kept_unfinished),
        )
    if pruned.kept_unknown:
        log.warning(
            "kept %d old staged folder(s) whose run state is unknown: %s — `metrics-center staging prune` "
            "(run where the scheduler runs: it reads Airflow's database) can decide them",
            len(pruned.kept_unknown),
            ", ".join(pruned.kept_unknown),
        )
    return {
        "runs": pruned.runs,
        "files": pruned.files,
        "kept_unfinished": [str(r) for r in pruned.kept_unfinished],
        "kept_unknown": list(pruned.kept_unknown),
    }


def staging_retention() -> timedelta:
    """``METRICS_CENTER_STAGING_RETENTION`` (e.g. ``36h``, ``14d``, ``2w``), default 14 days."""
    from metrics_center.definitions.spec import parse_duration
    from metrics_center.errors import MetricsCenterError

    raw = os.environ.get(STAGING_RETENTION_ENV, "").strip() or DEFAULT_STAGING_RETENTION
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise MetricsCenterError(f"{STAGING_RETENTION_ENV}: {exc}") from None


def dagrun_state(ti: Any, dag_id: str, run_id: str) -> str | None:
    """Airflow's state of a run, asked through the task's own API; None if Airflow has no such run.

    The Task SDK answers with its enum, whose ``str()`` is ``"DagRunState.RUNNING"``: compare ``.value``.
    """
    try:
        state = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except Exception as exc:
        if _status_code(exc) == 404:
            return None
        raise
    return str(getattr(state, "value", state))


def _status_code(exc: Exception) -> int | None:
    """The API server's HTTP status behind a Task SDK error: a worker's supervisor hands the task an
    ``AirflowRuntimeError`` carrying it; ``dag.test()`` raises the client's ``httpx`` error itself."""
    detail = getattr(getattr(exc, "error", None), "detail", None)
    if isinstance(detail, dict) and isinstance(detail.get("status_code"), int):
        return detail["status_code"]
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def team_addresses() -> dict[str, tuple[str, str]]:
    """Recipient → ``(channel, address)`` from ``_teams.yaml``: each person's and department's first chat
    channel (Slack, Feishu, DingTalk, WeCom), else their e-mail."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_teams
    from metrics_center.errors import MetricsCenterError
    from metrics_center.notify.addresses import CHAT_CHANNELS, EMAIL, current_addresses

    path = settings.metrics_dir() / "_teams.yaml"
    if not path.is_file():
        return {}
    try:
        teams = load_teams(path)
    except MetricsCenterError as exc:
        log.warning("cannot read %s (%s): addresses are not refreshed", path, exc)
        return {}
    known = current_addresses(teams)
    found: dict[str, tuple[str, str]] = {}
    for channel in (*CHAT_CHANNELS, EMAIL):
        for (recipient, where), address in known.items():
            if where == channel and recipient not in found:
                found[recipient] = (channel, address)
    return found


def _teams() -> Teams | None:
    from metrics_center import settings
    from metrics_center.definitions.loader import load_teams
    from metrics_center.errors import MetricsCenterError

    path = settings.metrics_dir() / "_teams.yaml"
    try:
        return load_teams(path) if path.is_file() else None
    except MetricsCenterError as exc:
        log.warning("cannot read %s (%s): approvers are named by their keys", path, exc)
        return None


def _mart() -> Engine:
    from metrics_center.mart.engine import get_engine
    from metrics_center.mart.migrate import require_current

    engine = get_engine()
    require_current(engine)
    return engine
