"""What an answer is: one place decides whether every stage of a run was approved by an allowed person.

Each approval task records, in the mart's ``approval_event``, the request it made (task instance,
try and the hash of the result it showed) and, when it resumes, the answer from Airflow's own HITL
record (which Airflow hands to the resumed task; XCom is never read). ``publish`` then accepts a run only if, for every stage, the answer to
that stage's *latest* request is Approve, by one of the stage's approvers (or the timeout default
when the YAML says ``on_timeout: approve``), for the very result being published. "Mark success" on
a waiting approval task, a cleared task, an edited XCom or a re-run transform therefore publish
nothing. Tasks cannot read Airflow's database (Airflow 3 blocks it), and only the resumed approval
task is handed its HITL record, which is why the approval task itself is the one that records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from metrics_center.errors import PublishRefused
from metrics_center.i18n.translate import N_, Deferred
from metrics_center.mart.tables import approval_event
from metrics_center.observability import stats

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams
    from metrics_center.mart.runs import RunRecord

APPROVE, REJECT = "Approve", "Reject"
Decision = Literal[
    "requested",
    "submitted",
    "approved",
    "rejected",
    "approved_on_timeout",
    "rejected_on_timeout",
    "timed_out",
    "refused",
    "refused_attempt",
]
#: Where an answer came from: our Slack endpoint, our page, or Airflow's own UI/REST API.
Via = Literal["slack", "feishu", "page", "airflow"]
#: What Airflow's HITL record said, as the approval task recorded it on resume.
ANSWERS: frozenset[str] = frozenset(
    {"approved", "rejected", "approved_on_timeout", "rejected_on_timeout", "timed_out", "refused"}
)
ACCEPTED: frozenset[str] = frozenset({"approved", "approved_on_timeout"})


class NotApproved(PublishRefused):
    """At least one stage of the run was not approved (by an allowed person, for this result)."""


@dataclass(frozen=True)
class StageEvent:
    stage: str
    decision: Decision
    decided_by: str | None
    decided_at: datetime
    ti_id: str | None
    try_number: int | None
    result_hash: str | None
    via: str | None = None
    detail: str | None = None
    evidence_hash: str | None = None


def record_request(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    stage: ApprovalStage,
    approvers: Sequence[str],
    ti_id: str,
    try_number: int,
    result_hash: str | None,
    evidence_hash: str | None = None,
) -> None:
    """The stage asked ``approvers`` about the result with ``result_hash`` (evidence text: ``evidence_hash``)."""
    _insert(
        engine,
        metric_key=metric_key,
        run_id=run_id,
        stage=stage.name,
        decision="requested",
        decided_by=None,
        decided_at=datetime.now(UTC),
        ti_id=ti_id,
        try_number=try_number,
        result_hash=result_hash,
        evidence_hash=evidence_hash,
        detail=f"asked {', '.join(approvers)}",
    )
    stats.approval_requested(metric_key=metric_key, stage=stage.name)


def sign_off_problem(
    *,
    spec: MetricSpec,
    teams: Teams | None,
    stage: ApprovalStage,
    person: str,
    option: str,
    approved_elsewhere: dict[str, str],
) -> str | None:
    """Why ``person`` may not give ``option`` to ``stage`` of a run, or None.

    ``approved_elsewhere``: stage name → person, for the run's other stages already approved. The rules:
    only the stage's approvers (people, or members of a department) answer it; nobody answers two
    stages of one run (separation of duties); the owner is never the only approver of their own number
    unless the YAML says ``allow_self_approval: true``.
    """
    reason = sign_off_reason(
        spec=spec,
        teams=teams,
        stage=stage,
        person=person,
        option=option,
        approved_elsewhere=approved_elsewhere,
    )
    return str(reason) if reason is not None else None


def sign_off_reason(
    *,
    spec: MetricSpec,
    teams: Teams | None,
    stage: ApprovalStage,
    person: str,
    option: str,
    approved_elsewhere: dict[str, str],
) -> Deferred | None:
    """:func:`sign_off_problem` in words translated where they are shown (the audit keeps the English)."""
    allowed = teams.resolve(stage.approvers) if teams else list(stage.approvers)
    if person not in allowed:
        return N_(
            "{person} is not an approver of {stage} ({allowed})",
            person=person,
            stage=stage.name,
            allowed=", ".join(allowed),
        )
    if option != APPROVE:
        return None
    for other, who in approved_elsewhere.items():
        if who == person and other != stage.name:
            return N_(
                "{person} already approved {other} of this run; another person must answer {stage}",
                person=person,
                other=other,
                stage=stage.name,
            )
    if person == spec.owner and not spec.approval.allow_self_approval and len(spec.approval.stages) == 1:
        return N_(
            "{person} owns {metric} and cannot be the only approver of their own number "
            "(approval.allow_self_approval: false)",
            person=person,
            metric=spec.key,
        )
    return None


def approvals_so_far(engine: Engine, *, metric_key: str, run_id: str) -> dict[str, str]:
    """Stage → person, for the stages of a run whose latest answer is an approval by a person."""
    found: dict[str, str] = {}
    for event in _events(engine, metric_key=metric_key, run_id=run_id):
        if event.decision in ANSWERS or event.decision == "requested":
            if event.decision == "approved" and event.decided_by:
                found[event.stage] = event.decided_by
            else:
                found.pop(event.stage, None)
    return found


def record_attempt(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    stage: str,
    person: str,
    via: Via,
    decision: Literal["submitted", "refused_attempt"],
    detail: str | None,
    reason: str | None = None,
) -> None:
    """An answer our Slack endpoint or page passed on to Airflow (``submitted``) or refused, and why."""
    _insert(
        engine,
        metric_key=metric_key,
        run_id=run_id,
        stage=stage,
        decision=decision,
        decided_by=person,
        decided_at=datetime.now(UTC),
        via=via,
        reason=reason,
        detail=detail,
    )
    stats.approval_attempt(metric_key=metric_key, via=via, decision=decision)


def classify(*, chosen: Sequence[str] | None, responded: bool, timed_out: bool) -> Decision:
    """Name an answer as Airflow recorded it (rules are checked separately)."""
    if timed_out or not chosen:
        return "timed_out"
    option = chosen[0]
    if not responded:
        return "approved_on_timeout" if option == APPROVE else "rejected_on_timeout"
    return "approved" if option == APPROVE else "rejected"


def record_answer(
    engine: Engine,
    *,
    spec: MetricSpec,
    teams: Teams | None,
    run_id: str,
    stage: ApprovalStage,
    ti_id: str,
    try_number: int,
    chosen: Sequence[str] | None,
    responded_by: str | None,
    responded_at: datetime | None,
    timed_out: bool,
    reason: str | None = None,
) -> tuple[Decision, str | None]:
    """Record the answer Airflow holds for this task instance, bound to the result it was asked about.

    ``responded_by`` is the Airflow user id; it is stored as the person of ``_teams.yaml``. An answer
    that breaks a sign-off rule (it came through Airflow's own UI or API, which do not know our rules)
    is recorded as ``refused`` with the reason: it never counts.
    """
    person = responded_by
    if teams is not None and responded_by is not None:
        person = teams.person_for_airflow_user(responded_by)
    decision = classify(chosen=chosen, responded=responded_by is not None, timed_out=timed_out)
    detail = None if decision in ("approved", "rejected") else "timeout default" if not timed_out else None
    events = _events(engine, metric_key=spec.key, run_id=run_id, stage=stage.name)
    if decision in ("approved", "rejected") and person is None:
        person = responded_by
        decision, detail = "refused", f"Airflow user {responded_by} is not a person in _teams.yaml"
    elif decision in ("approved", "rejected") and person is not None:
        problem = sign_off_problem(
            spec=spec,
            teams=teams,
            stage=stage,
            person=person,
            option=chosen[0] if chosen else "",
            approved_elsewhere=approvals_so_far(engine, metric_key=spec.key, run_id=run_id),
        )
        if problem:
            decision, detail = "refused", problem
    request = _latest(
        events, lambda e: e.decision == "requested" and e.ti_id == ti_id and e.try_number == try_number
    )
    submitted = _latest(events, lambda e: e.decision == "submitted" and e.decided_by == person)
    _insert(
        engine,
        metric_key=spec.key,
        run_id=run_id,
        stage=stage.name,
        decision=decision,
        decided_by=person,
        decided_at=responded_at or datetime.now(UTC),
        ti_id=ti_id,
        try_number=try_number,
        result_hash=request.result_hash if request else None,
        evidence_hash=request.evidence_hash if request else None,
        via=(submitted.via if submitted else "airflow") if person else None,
        reason=reason,
        detail=detail,
    )
    stats.approval_decided(
        metric_key=spec.key,
        stage=stage.name,
        decision=decision,
        asked_at=request.decided_at if request else None,
        answered_at=responded_at,
    )
    return decision, detail


def verify_approved(
    engine: Engine, *, spec: MetricSpec, run: RunRecord, teams: Teams | None = None
) -> list[StageEvent]:
    """Every stage's answer, if each one counts; otherwise :class:`NotApproved` naming every stage that doesn't."""
    answers: list[StageEvent] = []
    problems: list[str] = []
    for stage in spec.approval.stages:
        events = _events(engine, metric_key=spec.key, run_id=run.run_id, stage=stage.name)
        answer, problem = _stage_answer(
            stage, events, on_timeout=spec.approval.on_timeout, run=run, teams=teams
        )
        if problem:
            problems.append(problem)
        elif answer is not None:
            answers.append(answer)
    if not problems:  # sign-off rules across stages, whatever path the answers took
        by_stage = {a.stage: a.decided_by for a in answers if a.decision == "approved" and a.decided_by}
        for stage in spec.approval.stages:
            if stage.name in by_stage:
                problem = sign_off_problem(
                    spec=spec,
                    teams=teams,
                    stage=stage,
                    person=by_stage[stage.name],
                    option=APPROVE,
                    approved_elsewhere={k: v for k, v in by_stage.items() if k != stage.name},
                )
                if problem:
                    problems.append(f"{stage.name}: {problem}")
    if problems:
        raise NotApproved("; ".join(problems) + "; nothing published")
    return answers


def _stage_answer(
    stage: ApprovalStage, events: list[StageEvent], *, on_timeout: str, run: RunRecord, teams: Teams | None
) -> tuple[StageEvent | None, str | None]:
    asked = [i for i, e in enumerate(events) if e.decision == "requested"]
    request = events[asked[-1]] if asked else None
    if request is None:
        return None, (
            f"{stage.name} never asked for approval in this run (was its task marked success by hand?)"
        )
    after = events[asked[-1] + 1 :]
    answer = _latest(
        after,
        lambda e: e.decision in ANSWERS and e.ti_id == request.ti_id and e.try_number == request.try_number,
    )
    if answer is None:
        return None, (
            f"{stage.name} was asked at {_when(request.decided_at)} and has no recorded answer (was its task "
            "marked success by hand?) — answer it in Airflow's Required Actions, or clear it to ask again"
        )
    who = answer.decided_by
    if answer.decision == "rejected":
        return None, f"{stage.name} was rejected by {who} at {_when(answer.decided_at)}"
    if answer.decision == "rejected_on_timeout":
        return None, f"{stage.name} timed out at {_when(answer.decided_at)} and defaulted to Reject"
    if answer.decision == "timed_out":
        return None, f"{stage.name} timed out at {_when(answer.decided_at)} with no answer"
    allowed = teams.resolve(stage.approvers) if teams else list(stage.approvers)
    if answer.decision == "refused":
        return None, f"{stage.name} was answered by {who}, which does not count: {answer.detail}"
    if answer.decision == "approved" and who not in allowed:
        return None, (
            f"{stage.name} was answered by {who}, who is not an approver of that stage ({', '.join(allowed)})"
        )
    if answer.decision == "approved_on_timeout" and on_timeout != "approve":
        return None, (
            f"{stage.name} defaulted to Approve on timeout, but the definition now says on_timeout: {on_timeout}"
        )
    if answer.result_hash is None or answer.result_hash != run.result_hash:
        return None, (
            f"{stage.name} approved a different result than the one staged now (the transform ran again "
            "after the approval was asked) — clear the approval stages to ask again"
        )
    return answer, None


def approved_by_text(answers: Sequence[StageEvent]) -> str:
    """``sales review: bob; finance sign-off: approved on timeout`` — stored with every published value."""
    return "; ".join(
        f"{a.stage}: {a.decided_by if a.decision == 'approved' else 'approved on timeout'}" for a in answers
    )


def earlier_stages(engine: Engine, *, spec: MetricSpec, run_id: str, before: ApprovalStage) -> list[str]:
    """Human lines for the stages answered before ``before`` (shown in the evidence)."""
    lines = []
    for stage in spec.approval.stages:
        if stage.name == before.name:
            break
        events = [
            e
            for e in _events(engine, metric_key=spec.key, run_id=run_id, stage=stage.name)
            if e.decision in ANSWERS
        ]
        if events:
            last = events[-1]
            who = f" by {last.decided_by}" if last.decided_by else ""
            lines.append(f"{stage.name}: {last.decision.replace('_', ' ')}{who} at {_when(last.decided_at)}")
        else:
            lines.append(f"{stage.name}: no recorded answer")
    return lines


def _events(engine: Engine, *, metric_key: str, run_id: str, stage: str | None = None) -> list[StageEvent]:
    t = approval_event
    query = (
        sa.select(
            t.c.stage,
            t.c.decision,
            t.c.decided_by,
            t.c.decided_at,
            t.c.ti_id,
            t.c.try_number,
            t.c.result_hash,
            t.c.via,
            t.c.detail,
            t.c.evidence_hash,
        )
        .where(t.c.metric_key == metric_key, t.c.run_id == run_id)
        .order_by(t.c.id)
    )
    if stage is not None:
        query = query.where(t.c.stage == stage)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [StageEvent(**{**row._asdict(), "decided_at": _aware(row.decided_at)}) for row in rows]


def _latest(events: list[StageEvent], match) -> StageEvent | None:
    return next((e for e in reversed(events) if match(e)), None)


def _insert(engine: Engine, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(approval_event).values(**values))


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive UTC datetimes; Postgres aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
