"""Answer an approval stage as a person: the one path our Slack endpoint and our page share.

Runs inside Airflow's api-server (the plugin's FastAPI app), where Airflow's metadata database is
reachable. It finds the waiting stage, checks the sign-off rules against the run's earlier answers,
holds an answer that arrives before the task is safely parked (Airflow 3.3.2 fails a task answered
less than ~1 s after it starts waiting), records the answer in Airflow's own HITL record **as that
person** through Airflow's ``update_hitl_detail`` — never as a service account — and audits every
submitted and refused attempt in the mart's ``approval_event``. The approval task then records the
decision itself when Airflow resumes it; ``publish`` checks it all again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metrics_center.approvals.rules import (
    APPROVE,
    REJECT,
    Via,
    approvals_so_far,
    record_attempt,
    sign_off_problem,
)
from metrics_center.definitions.task_ids import stage_of
from metrics_center.i18n.translate import _

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams

#: Seconds a stage must have been parked before an answer is passed to Airflow (its race is < ~1 s).
HOLD_S = 2.5
Status = Literal["recorded", "refused", "already_answered", "not_waiting", "unknown", "invalid"]


@dataclass(frozen=True)
class Outcome:
    """What happened to an answer, in words for the person who gave it (Slack ephemeral, page flash)."""

    status: Status
    message: str
    stage: str | None = None


@dataclass(frozen=True)
class Waiting:
    """One approval stage waiting for a person."""

    dag_id: str
    run_id: str
    task_id: str
    stage: str
    subject: str
    body: str
    asked_at: datetime
    assignees: list[str]


def submit_answer(
    *,
    engine: Engine,
    spec: MetricSpec,
    teams: Teams,
    run_id: str,
    task_id: str,
    person: str,
    option: str,
    reason: str | None,
    via: Via,
    user: Any,
    hold_s: float = HOLD_S,
) -> Outcome:
    """Record ``person``'s ``option`` (Approve/Reject) for the stage ``task_id`` of ``run_id``.

    ``user`` is the Airflow user the answer is recorded as: the logged-in user on our page, the
    person's own Airflow user for Slack (:func:`airflow_user_for`). Blocks at most ``hold_s``.
    """
    stage = stage_of(spec, task_id)
    if stage is None:
        return Outcome("unknown", f"{spec.key} has no approval stage {task_id}")
    reason = (reason or "").strip() or None

    def refuse(message: str, status: Status = "refused") -> Outcome:
        """Every refused attempt is audited: who, which stage, from where, why."""
        record_attempt(
            engine,
            metric_key=spec.key,
            run_id=run_id,
            stage=stage.name,
            person=person,
            via=via,
            decision="refused_attempt",
            detail=message,
            reason=reason,
        )
        return Outcome(status, message, stage.name)

    if option not in (APPROVE, REJECT):
        return refuse(f"{option!r} is not an answer; choose {APPROVE} or {REJECT}")
    if option == REJECT and not reason:
        return Outcome("invalid", _("Say why you reject: the reason is kept with the decision."), stage.name)
    state = _stage_state(dag_id=spec.key, run_id=run_id, task_id=task_id)
    if state.answered_by is not None:
        return refuse(state.answered_text(teams), "already_answered")
    if state.ti_state != "awaiting_input":
        return refuse(state.not_waiting_text(stage.name), "not_waiting")
    problem = sign_off_problem(
        spec=spec,
        teams=teams,
        stage=stage,
        person=person,
        option=option,
        approved_elsewhere=approvals_so_far(engine, metric_key=spec.key, run_id=run_id),
    )
    if problem:
        return refuse(problem)
    if state.parked_since is not None:
        wait = hold_s - (datetime.now(UTC) - state.parked_since).total_seconds()
        if wait > 0:
            time.sleep(wait)
    record_attempt(
        engine,
        metric_key=spec.key,
        run_id=run_id,
        stage=stage.name,
        person=person,
        via=via,
        decision="submitted",
        detail=option,
        reason=reason,
    )
    outcome = _record_in_airflow(
        spec=spec,
        stage=stage,
        run_id=run_id,
        task_id=task_id,
        option=option,
        reason=reason,
        user=user,
        period=_period_of(engine, spec, run_id),
    )
    return outcome if outcome.status == "recorded" else refuse(outcome.message, outcome.status)


def airflow_user_for(person: str, teams: Teams) -> Any:
    """The Airflow user a person answers as (for Slack, where nobody is logged in to Airflow)."""
    from airflow.api_fastapi.app import get_auth_manager

    user_id = teams.airflow_user(person)
    manager = get_auth_manager()
    get_users = getattr(manager, "get_users", None)
    if get_users is not None:  # SimpleAuthManager: the role comes from its users list
        for user in get_users():
            if user.get_id() == user_id:
                return user
        raise LookupError(f"Airflow has no user {user_id!r} for {person}; add them to the auth manager")
    return manager.deserialize_user({"sub": user_id})


def waiting_for(
    *, person: str | None, teams: Teams, session: Session, with_bodies: bool = True
) -> list[Waiting]:
    """Stages waiting for ``person`` (every waiting stage when None), newest first.

    Reads the stored ``assignees`` column: ``HITLDetail.assigned_users`` is a Python property that
    must not appear in SQL (it makes the api-server spin). ``with_bodies=False`` leaves each ``body``
    empty (hundreds of evidence texts are megabytes): :func:`with_bodies` fills in a page of them.
    """
    import sqlalchemy as sa
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance

    user_id = teams.airflow_user(person) if person and person in teams.people else person
    body = HITLDetail.body if with_bodies else sa.null().label("body")
    rows = session.execute(
        sa.select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            HITLDetail.subject,
            body,
            HITLDetail.created_at,
            HITLDetail.assignees,
        )
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(TaskInstance.state == "awaiting_input", HITLDetail.responded_at.is_(None))
        .order_by(HITLDetail.created_at.desc())
    ).all()
    found = []
    for row in rows:
        assignees = [a.get("id") for a in (row.assignees or [])]
        if user_id is None or user_id in assignees:
            found.append(
                Waiting(
                    dag_id=row.dag_id,
                    run_id=row.run_id,
                    task_id=row.task_id,
                    stage=row.subject.rsplit(" — ", 1)[-1],
                    subject=row.subject,
                    body=row.body or "",
                    asked_at=row.created_at,
                    assignees=[a for a in assignees if a],
                )
            )
    return found


def with_bodies(waiting: list[Waiting], *, session: Session) -> list[Waiting]:
    """The same stages with their evidence texts, read in one query."""
    import dataclasses

    import sqlalchemy as sa
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance

    if not waiting:
        return []
    keys = [(w.dag_id, w.run_id, w.task_id) for w in waiting]
    rows = session.execute(
        sa.select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, HITLDetail.body)
        .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
        .where(
            sa.tuple_(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id).in_(keys),
            TaskInstance.map_index == -1,
        )
    ).all()
    bodies = {(r.dag_id, r.run_id, r.task_id): r.body or "" for r in rows}
    return [dataclasses.replace(w, body=bodies.get((w.dag_id, w.run_id, w.task_id), "")) for w in waiting]


@dataclass(frozen=True)
class _StageState:
    ti_state: str | None
    parked_since: datetime | None
    answered_by: str | None
    answered_at: datetime | None
    chosen: list[str] | None

    def answered_text(self, teams: Teams) -> str:
        person = teams.person_for_airflow_user(self.answered_by) if self.answered_by else None
        who = teams.people[person].name if person else self.answered_by or "the timeout default"
        when = f" at {self.answered_at:%Y-%m-%d %H:%M} UTC" if self.answered_at else ""
        return f"Already answered: {', '.join(self.chosen or [])} by {who}{when}."

    def not_waiting_text(self, stage: str) -> str:
        if self.ti_state is None:
            return f"{stage} is not waiting in this run (the run was cleared or deleted)."
        return f"{stage} is not waiting for an answer any more (it is {self.ti_state})."


def _stage_state(*, dag_id: str, run_id: str, task_id: str) -> _StageState:
    import sqlalchemy as sa
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            sa.select(
                TaskInstance.state,
                TaskInstance.updated_at,
                HITLDetail.created_at,
                HITLDetail.responded_at,
                HITLDetail.responded_by,
                HITLDetail.chosen_options,
            )
            .outerjoin(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == -1,
            )
        ).first()
    if row is None:
        return _StageState(None, None, None, None, None)
    parked = [t for t in (row.updated_at, row.created_at) if t is not None]
    responder = (row.responded_by or {}).get("id")
    answered = responder if row.responded_at is not None else None
    if row.responded_at is not None and answered is None:
        answered = "the timeout default"
    return _StageState(
        ti_state=str(getattr(row.state, "value", row.state)) if row.state else None,
        parked_since=max(parked) if parked else None,
        answered_by=answered,
        answered_at=row.responded_at,
        chosen=row.chosen_options,
    )


def _record_in_airflow(
    *,
    spec: MetricSpec,
    stage: ApprovalStage,
    run_id: str,
    task_id: str,
    option: str,
    reason: str | None,
    user: Any,
    period: str,
) -> Outcome:
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session
    from fastapi import HTTPException

    payload = UpdateHITLDetailPayload(chosen_options=[option], params_input={"reason": reason or ""})
    try:
        with create_session() as session:
            update_hitl_detail(
                dag_id=spec.key,
                dag_run_id=run_id,
                task_id=task_id,
                update_hitl_detail_payload=payload,
                user=user,
                session=session,
                map_index=-1,
            )
    except HTTPException as exc:
        if exc.status_code == 409:
            return Outcome("already_answered", "Already answered by someone else a moment ago.", stage.name)
        if exc.status_code == 403:
            return Outcome("refused", f"Airflow refused the answer: {exc.detail}", stage.name)
        return Outcome("not_waiting", f"Airflow could not record the answer: {exc.detail}", stage.name)
    said = (
        _("Approved {stage} of {metric} for {period}.", stage=stage.name, metric=spec.name, period=period)
        if option == APPROVE
        else _(
            "Rejected {stage} of {metric} for {period}.", stage=stage.name, metric=spec.name, period=period
        )
    )
    return Outcome("recorded", said, stage.name)


def _period_of(engine: Engine, spec: MetricSpec, run_id: str) -> str:
    """The period(s) a run computes, as people say them (``2026-11-26``, ``2026-W48``); the run id if unknown."""
    from metrics_center.mart.runs import get_run

    run = get_run(engine, metric_key=spec.key, run_id=run_id)
    return run.label(spec.grain) if run is not None else run_id
