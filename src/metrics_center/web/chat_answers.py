"""What a click on an approval message does, whichever chat it came from (Slack, Feishu / Lark).

The chat-specific modules (:mod:`~metrics_center.web.slack_answers`, :mod:`~metrics_center.web.feishu_answers`)
verify the request, find the person who clicked and hand over a :class:`Clicker`; from there the rules are
the same as on the page: which metric, stage and try the button was for, whether that person may answer
it (stage approvers, separation of duties, one answer per stage), recording the answer as the person's own
Airflow user through :func:`metrics_center.approvals.answers.submit_answer`, and telling the person what
happened. Every refused attempt is audited in ``approval_event`` with the chat it came through.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from metrics_center.notify.approval_messages import ActionRef, Decision
from metrics_center.notify.stage_now import CLEARED, settle, stage_now

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.approvals.answers import Outcome
    from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams

HELP = "answer in Airflow's Required Actions or on the Metrics Center page instead"


class Clicker(Protocol):
    """The person behind one click, as their chat knows them."""

    #: ``slack`` or ``feishu``: recorded as the answer's ``via``.
    via: str
    #: The chat account, for the audit when it is nobody in ``_teams.yaml`` (``slack:U0…``, ``feishu:ou_…``).
    account: str

    def say(self, text: str) -> None:
        """Tell the person (only them) something; ``*bold*`` is Slack mrkdwn, converted where needed."""

    def show_decided(self, *, decision: Decision) -> None:
        """Show the clicked message decided at once (the maintenance DAG then updates everyone's)."""


@dataclass
class ChatEnv:
    """What answering needs: the mart, the catalogue (re-read only when a YAML file changed) and the teams."""

    engine: Engine
    catalog: Any
    teams: Teams

    @classmethod
    def load(cls) -> ChatEnv:
        from metrics_center import settings
        from metrics_center.definitions.loader import load_catalog
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.engine import get_engine

        folder = settings.metrics_dir()
        files = sorted(folder.glob("*.yaml"))
        key = (str(folder), str(settings.sql_dir()), tuple((f.name, f.stat().st_mtime_ns) for f in files))
        with _CATALOG_LOCK:
            if _CATALOG.get("key") != key:
                _CATALOG.update(key=key, catalog=load_catalog(folder, sql_root=settings.sql_dir()))
            catalog = _CATALOG["catalog"]
        if catalog.teams is None:
            problems = "; ".join(str(p) for p in catalog.problems.get(folder / "_teams.yaml", []))[:500]
            raise MetricsCenterError(f"no readable _teams.yaml under {folder}: {problems or 'missing'}")
        return cls(engine=get_engine(), catalog=catalog, teams=catalog.teams)


_CATALOG: dict[str, Any] = {}
_CATALOG_LOCK = threading.Lock()


def identify(
    env: ChatEnv, *, ref: ActionRef, person: str | None, clicker: Clicker, unknown: str
) -> tuple[MetricSpec, ApprovalStage, str] | None:
    """The metric, stage and person a click is about; None after telling the person why not (audited).

    ``unknown``: what to tell someone whose chat account is nobody in ``_teams.yaml``.
    """
    from metrics_center.approvals.rules import record_attempt
    from metrics_center.definitions.task_ids import stage_of

    loaded = env.catalog.metrics.get(ref.dag_id)
    if loaded is None:
        clicker.say(
            f"⚠️ Metrics Center has no metric `{ref.dag_id}` now (removed, or its YAML is broken); {HELP}."
        )
        return None
    spec = loaded.spec
    stage = stage_of(spec, ref.task_id)
    if stage is None:
        clicker.say(f"⚠️ {spec.name} has no approval stage `{ref.task_id}` now (its YAML changed); {HELP}.")
        return None

    def refuse(detail: str, message: str) -> None:
        record_attempt(
            env.engine,
            metric_key=spec.key,
            run_id=ref.run_id,
            stage=stage.name,
            person=person or clicker.account,
            via=clicker.via,
            decision="refused_attempt",
            detail=detail,
        )
        clicker.say(message)

    if person is None:
        refuse(f"{clicker.account} is not a person in _teams.yaml", unknown)
        return None
    now = settle(ref)
    if now.try_number is not None and now.state in CLEARED and not now.resuming:
        refuse(
            f"the stage is not waiting (it is {now.state or 'cleared'}): its run was cleared",
            f"ℹ️ *{stage.name}* of {spec.name} is not waiting for an answer: its run was cleared, so it will "
            "ask again with fresh evidence — answer the new request. Nothing was recorded.",
        )
        return None
    if now.state == "awaiting_input" and now.try_number not in (None, ref.try_number):
        refuse(
            f"clicked a message of try {ref.try_number}; the stage now waits with try {now.try_number}",
            f"ℹ️ This message asked about an earlier try of *{stage.name}* of {spec.name}: the stage was "
            "asked again since (the run was cleared). Answer the newest message. Nothing was recorded.",
        )
        return None
    return spec, stage, person


def cannot_reject(
    env: ChatEnv, *, ref: ActionRef, spec: MetricSpec, stage: ApprovalStage, person: str, via: str
) -> str | None:
    """Before asking for a reason: why this person cannot reject now (audited), or None."""
    from metrics_center.approvals.rules import record_attempt, sign_off_problem

    problem = sign_off_problem(
        spec=spec, teams=env.teams, stage=stage, person=person, option="Reject", approved_elsewhere={}
    )
    now = stage_now(ref)
    if problem:
        message = not_an_approver(spec, stage, env.teams)
    elif now.answered_by is not None:
        problem = message = now.answered_text(env.teams)
    elif now.state != "awaiting_input":
        problem = message = now.not_waiting_text(stage.name)
    else:
        return None
    record_attempt(
        env.engine,
        metric_key=spec.key,
        run_id=ref.run_id,
        stage=stage.name,
        person=person,
        via=via,
        decision="refused_attempt",
        detail=problem,
    )
    return f"{'🚫' if message.startswith('You are not') else 'ℹ️'} {message} Nothing was recorded."


def answer(
    env: ChatEnv,
    *,
    ref: ActionRef,
    spec: MetricSpec,
    person: str,
    option: str,
    reason: str | None,
    clicker: Clicker,
) -> Outcome | None:
    """Record the answer as the person's own Airflow user (held while the task parks) and say what happened."""
    from datetime import UTC, datetime

    from metrics_center.approvals.answers import airflow_user_for, submit_answer
    from metrics_center.approvals.rules import record_attempt
    from metrics_center.definitions.task_ids import approve_task_id

    stage_name = next(
        (s.name for s in spec.approval.stages if approve_task_id(spec, s) == ref.task_id), ref.task_id
    )
    try:
        user = airflow_user_for(person, env.teams)
    except LookupError as exc:
        record_attempt(
            env.engine,
            metric_key=spec.key,
            run_id=ref.run_id,
            stage=stage_name,
            person=person,
            via=clicker.via,
            decision="refused_attempt",
            detail=str(exc),
        )
        clicker.say(f"🚫 Not recorded: {exc}.")
        return None
    outcome = submit_answer(
        engine=env.engine,
        spec=spec,
        teams=env.teams,
        run_id=ref.run_id,
        task_id=ref.task_id,
        person=person,
        option=option,
        reason=reason,
        via=clicker.via,
        user=user,
    )
    if outcome.status == "recorded":
        who = env.teams.people[person].name if person in env.teams.people else person
        decided = "approved" if option == "Approve" else "rejected"
        clicker.show_decided(
            decision=Decision(outcome=decided, by=who, at=datetime.now(UTC), via=clicker.via, reason=reason)
        )
    stage = next((s for s in spec.approval.stages if s.name == outcome.stage), None)
    clicker.say(explain(outcome, spec=spec, stage=stage, person=person, teams=env.teams))
    return outcome


def explain(
    outcome: Outcome, *, spec: MetricSpec, stage: ApprovalStage | None, person: str, teams: Teams
) -> str:
    if outcome.status == "recorded":
        return f"✅ {outcome.message} Every approver's message of this stage is updated shortly."
    if stage is not None and person not in teams.resolve(stage.approvers):
        return f"🚫 {not_an_approver(spec, stage, teams)} Nothing was recorded."
    mark = {"refused": "🚫 Not recorded:", "unknown": "⚠️"}.get(outcome.status, "ℹ️")
    return f"{mark} {outcome.message}"


def not_an_approver(spec: MetricSpec, stage: ApprovalStage, teams: Teams | None) -> str:
    people = teams.resolve(stage.approvers) if teams else list(stage.approvers)
    names = ", ".join(teams.people[p].name if teams and p in teams.people else p for p in people)
    return f"You are not an approver of *{stage.name}* of {spec.name}; its approvers are {names}."
