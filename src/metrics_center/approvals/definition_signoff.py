"""Signing off a definition (申请 → 审批): a department's reviewers approve a metric's new meaning.

A department that names ``definition_reviewers`` in ``_teams.yaml`` has the first version of each of its
metrics, and every breaking version (or every version, ``definition_signoff: every_version``), registered
as ``pending`` (:mod:`metrics_center.mart.definitions`). Runs under a pending version compute, are checked
and approved as usual, and their ``publish`` waits; a rejected version publishes nothing, ever.

The rules are the approvals': only a reviewer of the metric's department answers; the owner never signs
off their own definition; a reject says why; the first answer wins. Every attempt — refused ones too —
is an ``approval_event`` (stage ``definition v<N>``), so the audit shows it beside the values' approvals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from metrics_center.approvals.rules import APPROVE, REJECT, Via, record_attempt
from metrics_center.i18n.translate import N_, Deferred
from metrics_center.mart.tables import approval_event, metric_definition

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import Teams

Signoff = Literal["not_required", "pending", "approved", "rejected"]
#: The audit's run id for a definition's sign-off (one per metric: the stage names the version).
RUN_ID = "definition"


def stage_name(version: int) -> str:
    return f"definition v{version}"


@dataclass(frozen=True)
class SignoffState:
    """Whether values computed under a version may be published, and who decided."""

    status: Signoff
    by: str | None = None
    at: datetime | None = None
    reason: str | None = None

    @property
    def blocks_publishing(self) -> bool:
        return self.status in ("pending", "rejected")


@dataclass(frozen=True)
class PendingDefinition:
    """A registered version waiting for one of its department's reviewers."""

    metric_key: str
    version: int
    name: str
    department: str
    owner: str
    change_note: str | None
    registered_at: datetime
    definition: dict[str, Any]
    #: The version it replaces (None: a first version).
    previous_version: int | None
    previous_definition: dict[str, Any] | None


@dataclass(frozen=True)
class SignoffOutcome:
    status: Literal["recorded", "refused", "invalid", "already_decided", "unknown"]
    #: English, as audited; ``shown()`` in the reader's language.
    message: Deferred


def signoff_state(engine: Engine, *, metric_key: str, version: int) -> SignoffState:
    t = metric_definition
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.signoff, t.c.signed_off_by, t.c.signed_off_at, t.c.signoff_reason).where(
                t.c.metric_key == metric_key, t.c.version == version
            )
        ).first()
    if row is None:
        return SignoffState("not_required")
    return SignoffState(
        row.signoff or "not_required", row.signed_off_by, row.signed_off_at, row.signoff_reason
    )


def rejected_refusal(engine: Engine, *, metric_key: str, version: int) -> str | None:
    """Why nothing may be computed under a rejected version (its runs would only ask people in vain); else None."""
    state = signoff_state(engine, metric_key=metric_key, version=version)
    if state.status != "rejected":
        return None
    return (
        f"{metric_key} {stage_name(version)} was rejected by {state.by}: {state.reason} — nothing is computed or "
        "published under it; fix the definition, bump its version and it is proposed again"
    )


def pending_definitions(
    engine: Engine, *, teams: Teams | None, person: str | None
) -> list[PendingDefinition]:
    """Versions waiting for ``person`` (every pending version when None), newest first."""
    t = metric_definition
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t).where(t.c.signoff == "pending").order_by(t.c.registered_at.desc(), t.c.metric_key)
        ).all()
        found = []
        for row in rows:
            if person is not None and (
                teams is None or person not in teams.definition_reviewers(row.department)
            ):
                continue
            previous = conn.execute(
                sa.select(t.c.version, t.c.definition)
                .where(t.c.metric_key == row.metric_key, t.c.version < row.version)
                .order_by(t.c.version.desc())
                .limit(1)
            ).first()
            found.append(
                PendingDefinition(
                    metric_key=row.metric_key,
                    version=row.version,
                    name=row.name or row.metric_key,
                    department=row.department,
                    owner=row.owner,
                    change_note=row.change_note,
                    registered_at=row.registered_at,
                    definition=row.definition or {},
                    previous_version=previous.version if previous else None,
                    previous_definition=previous.definition if previous else None,
                )
            )
    return found


def sign_off(
    engine: Engine,
    *,
    teams: Teams | None,
    metric_key: str,
    version: int,
    person: str,
    option: str,
    reason: str | None,
    via: Via,
) -> SignoffOutcome:
    """Record ``person``'s ``option`` (Approve/Reject) for ``version`` of ``metric_key``; audited either way."""
    t = metric_definition
    reason = (reason or "").strip() or None
    stage = stage_name(version)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.department, t.c.owner, t.c.signoff).where(
                t.c.metric_key == metric_key, t.c.version == version
            )
        ).first()
    if row is None:
        return SignoffOutcome(
            "unknown", N_("{metric} has no registered version {version}", metric=metric_key, version=version)
        )

    def refuse(
        message: Deferred, status: Literal["refused", "already_decided"] = "refused"
    ) -> SignoffOutcome:
        record_attempt(
            engine,
            metric_key=metric_key,
            run_id=RUN_ID,
            stage=stage,
            person=person,
            via=via,
            decision="refused_attempt",
            detail=str(message),
            reason=reason,
        )
        return SignoffOutcome(status, message)

    reviewers = teams.definition_reviewers(row.department) if teams else []
    if option not in (APPROVE, REJECT):
        return refuse(N_("{option} is not an answer; choose Approve or Reject", option=repr(option)))
    if person not in reviewers:
        return refuse(
            N_(
                "{person} is not a definition reviewer of {department} ({reviewers})",
                person=person,
                department=row.department,
                reviewers=", ".join(reviewers) or "none",
            )
        )
    if person == row.owner and option == APPROVE:
        return refuse(
            N_(
                "{person} owns {metric} and cannot sign off their own definition; another reviewer must",
                person=person,
                metric=metric_key,
            )
        )
    if option == REJECT and not reason:
        return SignoffOutcome("invalid", N_("Say why you reject: the reason is kept with the decision."))
    decided = "approved" if option == APPROVE else "rejected"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.update(t)
            .where(t.c.metric_key == metric_key, t.c.version == version, t.c.signoff == "pending")
            .values(signoff=decided, signed_off_by=person, signed_off_at=now, signoff_reason=reason)
        ).rowcount
        if changed:
            conn.execute(
                sa.insert(approval_event).values(
                    metric_key=metric_key,
                    run_id=RUN_ID,
                    stage=stage,
                    decision=decided,
                    decided_by=person,
                    decided_at=now,
                    via=via,
                    reason=reason,
                    detail=f"signed off v{version}" if decided == "approved" else f"rejected v{version}",
                )
            )
    if not changed:
        state = signoff_state(engine, metric_key=metric_key, version=version)
        if state.status == "not_required":
            return refuse(N_("{stage} of {metric} needs no sign-off", stage=stage, metric=metric_key))
        return refuse(
            N_(
                "{stage} of {metric} is already {status} by {who}",
                stage=stage,
                metric=metric_key,
                status=state.status,
                who=state.by or "?",
            ),
            "already_decided",
        )
    if decided == "approved":
        return SignoffOutcome(
            "recorded",
            N_(
                "Signed off {stage} of {metric}: values computed under it may be published.",
                stage=stage,
                metric=metric_key,
            ),
        )
    return SignoffOutcome(
        "recorded",
        N_(
            "Rejected {stage} of {metric}: nothing computed under it will be published.",
            stage=stage,
            metric=metric_key,
        ),
    )
