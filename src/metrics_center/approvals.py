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
from metrics_center.mart.tables import approval_event

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.mart.runs import RunRecord
    from metrics_center.spec import ApprovalStage, MetricSpec

APPROVE, REJECT = "Approve", "Reject"
Decision = Literal[
    "requested", "approved", "rejected", "approved_on_timeout", "rejected_on_timeout", "timed_out", "refused"
]
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


def record_request(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    stage: ApprovalStage,
    ti_id: str,
    try_number: int,
    result_hash: str | None,
) -> None:
    """The stage asked its approvers about the result with ``result_hash``."""
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
        detail=f"asked {', '.join(stage.approvers)}",
    )


def classify(
    *, stage: ApprovalStage, chosen: Sequence[str] | None, responded_by: str | None, timed_out: bool
) -> tuple[Decision, str | None]:
    """Name an answer as Airflow recorded it; ``detail`` says why when it cannot count."""
    if timed_out or not chosen:
        return "timed_out", "no answer before the timeout"
    option = chosen[0]
    if responded_by is None:
        return ("approved_on_timeout" if option == APPROVE else "rejected_on_timeout"), "timeout default"
    if responded_by not in stage.approvers:
        return "refused", f"{responded_by} is not an approver of {stage.name} ({', '.join(stage.approvers)})"
    return ("approved" if option == APPROVE else "rejected"), None


def record_answer(
    engine: Engine,
    *,
    metric_key: str,
    run_id: str,
    stage: ApprovalStage,
    ti_id: str,
    try_number: int,
    chosen: Sequence[str] | None,
    responded_by: str | None,
    responded_at: datetime | None,
    timed_out: bool,
) -> Decision:
    """Record the answer Airflow holds for this task instance; bound to the result it was asked about."""
    decision, detail = classify(stage=stage, chosen=chosen, responded_by=responded_by, timed_out=timed_out)
    request = _latest(
        _events(engine, metric_key=metric_key, run_id=run_id, stage=stage.name),
        lambda e: e.decision == "requested" and e.ti_id == ti_id and e.try_number == try_number,
    )
    _insert(
        engine,
        metric_key=metric_key,
        run_id=run_id,
        stage=stage.name,
        decision=decision,
        decided_by=responded_by,
        decided_at=responded_at or datetime.now(UTC),
        ti_id=ti_id,
        try_number=try_number,
        result_hash=request.result_hash if request else None,
        detail=detail,
    )
    return decision


def verify_approved(engine: Engine, *, spec: MetricSpec, run: RunRecord) -> list[StageEvent]:
    """Every stage's answer, if each one counts; otherwise :class:`NotApproved` naming every stage that doesn't."""
    answers: list[StageEvent] = []
    problems: list[str] = []
    for stage in spec.approval.stages:
        events = _events(engine, metric_key=spec.key, run_id=run.run_id, stage=stage.name)
        answer, problem = _stage_answer(stage, events, on_timeout=spec.approval.on_timeout, run=run)
        if problem:
            problems.append(problem)
        elif answer is not None:
            answers.append(answer)
    if problems:
        raise NotApproved("; ".join(problems) + "; nothing published")
    return answers


def _stage_answer(
    stage: ApprovalStage, events: list[StageEvent], *, on_timeout: str, run: RunRecord
) -> tuple[StageEvent | None, str | None]:
    asked = [i for i, e in enumerate(events) if e.decision == "requested"]
    request = events[asked[-1]] if asked else None
    if request is None:
        return None, (
            f"{stage.name} never asked for approval in this run (was its task marked success by hand?)"
        )
    after = events[asked[-1] + 1 :]
    answer = _latest(after, lambda e: e.ti_id == request.ti_id and e.try_number == request.try_number)
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
    if answer.decision == "refused" or (answer.decision == "approved" and who not in stage.approvers):
        return None, (
            f"{stage.name} was answered by {who}, who is not an approver of that stage "
            f"({', '.join(stage.approvers)})"
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
            if e.decision != "requested"
        ]
        if events:
            last = events[-1]
            who = f" by {last.decided_by}" if last.decided_by else ""
            lines.append(f"{stage.name}: {last.decision.replace('_', ' ')}{who} at {_when(last.decided_at)}")
        else:
            lines.append(f"{stage.name}: no recorded answer")
    return lines


def _events(engine: Engine, *, metric_key: str, run_id: str, stage: str) -> list[StageEvent]:
    t = approval_event
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.stage,
                t.c.decision,
                t.c.decided_by,
                t.c.decided_at,
                t.c.ti_id,
                t.c.try_number,
                t.c.result_hash,
            )
            .where(t.c.metric_key == metric_key, t.c.run_id == run_id, t.c.stage == stage)
            .order_by(t.c.id)
        ).all()
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
