"""What a click on an approval message does, once the interactions endpoint has acknowledged it.

Runs in a worker thread of the api-server (see :mod:`metrics_center.web.slack_actions`): maps the Slack
user to a person of ``_teams.yaml``, opens the reason form for Reject (``views.open``), records the
answer through :func:`metrics_center.approvals.answers.submit_answer` as that person's own Airflow user, and tells
the person what happened in an ephemeral message. Every refused attempt is audited in ``approval_event``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metrics_center.notify.approval_messages import (
    APPROVE_ACTION,
    REASON_BLOCK,
    REASON_CALLBACK,
    REJECT_ACTION,
    ActionRef,
    Decision,
    render_decided,
)
from metrics_center.notify.approval_slack import (
    Reply,
    message_location,
    reason_of,
    reason_view,
    request_payload,
    slack_error,
)
from metrics_center.notify.stage_now import CLEARED, settle, stage_now

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.approvals.answers import Outcome
    from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams

log = logging.getLogger(__name__)
_HELP = "answer in Airflow's Required Actions or on the Metrics Center page instead"


def handle_interaction(payload: dict[str, Any]) -> None:
    """Act on one verified Slack interaction (``block_actions`` or the reason form's ``view_submission``)."""
    kind = payload.get("type")
    try:
        if kind == "block_actions":
            _on_click(payload)
        elif kind == "view_submission" and (payload.get("view") or {}).get("callback_id") == REASON_CALLBACK:
            _on_reason(payload)
    except Exception as exc:
        log.exception("Slack interaction %s failed", kind)
        Reply.from_payload(payload, client=_client_or_none()).say(
            f"⚠️ Metrics Center could not handle this click ({type(exc).__name__}: {str(exc)[:200]}); your "
            f"answer may not be recorded — check the Metrics Center page, or {_HELP}."
        )


def reason_errors(payload: dict[str, Any]) -> dict[str, str] | None:
    """Inline errors for the reason form (answered synchronously, inside Slack's 3 s): None when fine."""
    view = payload.get("view") or {}
    if view.get("callback_id") != REASON_CALLBACK:
        return None
    if not reason_of(view):
        return {
            REASON_BLOCK: "Say why you reject: the reason is kept with the decision and shown to the owner."
        }
    return None


# --- the two interactions ------------------------------------------------------------------------


def _on_click(payload: dict[str, Any]) -> None:
    action = (payload.get("actions") or [{}])[0]
    if action.get("action_id") not in (APPROVE_ACTION, REJECT_ACTION):
        return  # the link buttons also report their clicks: nothing to do
    env = _Env.load()
    reply = Reply.from_payload(payload, client=env.client)
    try:
        ref = ActionRef.decode(str(action.get("value") or ""))
    except ValueError as exc:
        reply.say(f"⚠️ This button is not one Metrics Center understands ({exc}); {_HELP}.")
        return
    channel, ts = message_location(payload)
    found = _identify(env, ref=ref, slack_user=reply.user, reply=reply)
    if found is None:
        return
    spec, stage, person = found
    if action["action_id"] == APPROVE_ACTION:
        _answer(
            env,
            ref=ref,
            spec=spec,
            person=person,
            option="Approve",
            reason=None,
            reply=reply,
            at=(channel, ts),
        )
        return
    problem = _cannot_reject(env, ref=ref, spec=spec, stage=stage, person=person)
    if problem:
        reply.say(problem)
        return
    request = request_payload(env.engine, channel=channel, ts=ts) or {}
    private = json.dumps(
        {"ref": ref.encode(), "response_url": reply.response_url, "channel": channel, "ts": ts},
        separators=(",", ":"),
    )
    if env.client is None:
        reply.say(
            f"⚠️ The Slack connection `metrics_center_slack` is missing, so no reason form can open; {_HELP}."
        )
        return
    try:
        env.client.views_open(
            trigger_id=payload.get("trigger_id"), view=reason_view(spec, stage, request, private)
        )
    except Exception as exc:
        reply.say(
            f"⚠️ Slack did not open the reason form ({slack_error(exc)}): click Reject again within a few "
            f"seconds, or {_HELP}."
        )


def _on_reason(payload: dict[str, Any]) -> None:
    view = payload.get("view") or {}
    private = json.loads(view.get("private_metadata") or "{}")
    env = _Env.load()
    reply = Reply(
        client=env.client,
        user=str((payload.get("user") or {}).get("id") or ""),
        response_url=private.get("response_url"),
        channel=private.get("channel"),
    )
    ref = ActionRef.decode(str(private.get("ref") or ""))
    found = _identify(env, ref=ref, slack_user=reply.user, reply=reply)
    if found is None:
        return
    spec, _, person = found
    at = (private.get("channel"), private.get("ts"))
    _answer(
        env, ref=ref, spec=spec, person=person, option="Reject", reason=reason_of(view), reply=reply, at=at
    )


# --- steps ---------------------------------------------------------------------------------------


def _identify(
    env: _Env, *, ref: ActionRef, slack_user: str, reply: Reply
) -> tuple[MetricSpec, ApprovalStage, str] | None:
    """The metric, stage and person a click is about; None after telling the person why not (audited)."""
    from metrics_center.approvals.rules import record_attempt
    from metrics_center.definitions.task_ids import stage_of

    loaded = env.catalog.metrics.get(ref.dag_id)
    if loaded is None:
        reply.say(
            f"⚠️ Metrics Center has no metric `{ref.dag_id}` now (removed, or its YAML is broken); {_HELP}."
        )
        return None
    spec = loaded.spec
    stage = stage_of(spec, ref.task_id)
    if stage is None:
        reply.say(f"⚠️ {spec.name} has no approval stage `{ref.task_id}` now (its YAML changed); {_HELP}.")
        return None
    person = env.teams.person_for_slack_user(slack_user) if env.teams and slack_user else None

    def refuse(detail: str, message: str) -> None:
        record_attempt(
            env.engine,
            metric_key=spec.key,
            run_id=ref.run_id,
            stage=stage.name,
            person=person or f"slack:{slack_user}",
            via="slack",
            decision="refused_attempt",
            detail=detail,
        )
        reply.say(message)

    if person is None:
        refuse(
            f"Slack user {slack_user} is not a person in _teams.yaml",
            f"🚫 Metrics Center does not know your Slack account: nobody in `_teams.yaml` has "
            f"`slack_user_id: {slack_user}`. Ask the data team to add it to your entry, or {_HELP}. "
            "Nothing was recorded.",
        )
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


def _cannot_reject(
    env: _Env, *, ref: ActionRef, spec: MetricSpec, stage: ApprovalStage, person: str
) -> str | None:
    """Before opening the reason form: why this person cannot reject now (audited), or None."""
    from metrics_center.approvals.rules import record_attempt, sign_off_problem

    problem = sign_off_problem(
        spec=spec, teams=env.teams, stage=stage, person=person, option="Reject", approved_elsewhere={}
    )
    now = stage_now(ref)
    if problem:
        message = _not_an_approver(spec, stage, env.teams)
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
        via="slack",
        decision="refused_attempt",
        detail=problem,
    )
    return f"{'🚫' if message.startswith('You are not') else 'ℹ️'} {message} Nothing was recorded."


def _answer(
    env: _Env,
    *,
    ref: ActionRef,
    spec: MetricSpec,
    person: str,
    option: str,
    reason: str | None,
    reply: Reply,
    at: tuple[str | None, str | None],
) -> None:
    """Record the answer as the person's own Airflow user (held while the task parks) and say what happened."""
    from metrics_center.approvals.answers import airflow_user_for, submit_answer
    from metrics_center.approvals.rules import record_attempt

    stage_name = next((s.name for s in spec.approval.stages if _task(spec, s) == ref.task_id), ref.task_id)
    try:
        user = airflow_user_for(person, env.teams)
    except LookupError as exc:
        record_attempt(
            env.engine,
            metric_key=spec.key,
            run_id=ref.run_id,
            stage=stage_name,
            person=person,
            via="slack",
            decision="refused_attempt",
            detail=str(exc),
        )
        reply.say(f"🚫 Not recorded: {exc}.")
        return
    outcome = submit_answer(
        engine=env.engine,
        spec=spec,
        teams=env.teams,
        run_id=ref.run_id,
        task_id=ref.task_id,
        person=person,
        option=option,
        reason=reason,
        via="slack",
        user=user,
    )
    if outcome.status == "recorded":
        _show_decided(env, at=at, person=person, option=option, reason=reason)
    stage = next((s for s in spec.approval.stages if s.name == outcome.stage), None)
    reply.say(_explain(outcome, spec=spec, stage=stage, person=person, teams=env.teams))


def _explain(
    outcome: Outcome, *, spec: MetricSpec, stage: ApprovalStage | None, person: str, teams: Teams
) -> str:
    if outcome.status == "recorded":
        return f"✅ {outcome.message} Every approver's message of this stage is updated shortly."
    if stage is not None and person not in teams.resolve(stage.approvers):
        return f"🚫 {_not_an_approver(spec, stage, teams)} Nothing was recorded."
    mark = {"refused": "🚫 Not recorded:", "unknown": "⚠️"}.get(outcome.status, "ℹ️")
    return f"{mark} {outcome.message}"


def _not_an_approver(spec: MetricSpec, stage: ApprovalStage, teams: Teams | None) -> str:
    people = teams.resolve(stage.approvers) if teams else list(stage.approvers)
    names = ", ".join(teams.people[p].name if teams and p in teams.people else p for p in people)
    return f"You are not an approver of *{stage.name}* of {spec.name}; its approvers are {names}."


def _show_decided(
    env: _Env, *, at: tuple[str | None, str | None], person: str, option: str, reason: str | None
) -> None:
    """Update the clicked message right away (the maintenance DAG then updates every recipient's)."""
    channel, ts = at
    request = request_payload(env.engine, channel=channel, ts=ts)
    if request is None or env.client is None or not channel or not ts:
        return
    who = env.teams.people[person].name if env.teams and person in env.teams.people else person
    outcome = "approved" if option == "Approve" else "rejected"
    message = render_decided(
        request, Decision(outcome=outcome, by=who, at=datetime.now(UTC), via="slack", reason=reason)
    )
    try:
        env.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
    except Exception as exc:
        log.warning(
            "could not update the clicked message %s %s at once (%s); the maintenance DAG will",
            channel,
            ts,
            exc,
        )


# --- the environment of one interaction ----------------------------------------------------------


@dataclass
class _Env:
    engine: Engine
    catalog: Any
    teams: Teams
    client: Any

    @classmethod
    def load(cls) -> _Env:
        from metrics_center import settings
        from metrics_center.definitions.loader import load_catalog
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.engine import get_engine
        from metrics_center.notify.slack_api import slack_client

        folder = settings.metrics_dir()
        files = sorted(folder.glob("*.yaml"))
        key = (str(folder), str(settings.sql_dir()), tuple((f.name, f.stat().st_mtime_ns) for f in files))
        with _CATALOG_LOCK:
            if _CATALOG.get("key") != key:  # parsed again only when a YAML file changed
                _CATALOG.update(key=key, catalog=load_catalog(folder, sql_root=settings.sql_dir()))
            catalog = _CATALOG["catalog"]
        if catalog.teams is None:
            raise MetricsCenterError(f"no readable _teams.yaml under {folder}")
        return cls(engine=get_engine(), catalog=catalog, teams=catalog.teams, client=slack_client())


_CATALOG: dict[str, Any] = {}
_CATALOG_LOCK = threading.Lock()


def _client_or_none() -> Any:
    from metrics_center.notify.slack_api import slack_client

    try:
        return slack_client()
    except Exception:
        return None


def _task(spec: MetricSpec, stage: ApprovalStage) -> str:
    from metrics_center.definitions.task_ids import approve_task_id

    return approve_task_id(spec, stage)
