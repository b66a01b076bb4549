"""Approval requests into the outbox: a HITL notifier that asks every approver of a stage in their chats.

:class:`ApprovalRequestNotifier` runs in the approval task right after Airflow wrote the HITL record
and before the task parks. It writes one ``approval_request`` notification per approver (a DM by
``slack_user_id``, else their department's channel, else the metric's), delivered later by the
maintenance DAG like every alert. It never raises: a notifier that raised would fail the approval
task, and the approvers can always answer in Airflow's Required Actions or on the Metrics Center page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.notifier import BaseNotifier

from metrics_center.i18n.translate import normalize
from metrics_center.notify.addresses import person_recipient
from metrics_center.notify.approval_messages import REQUEST, ActionRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams
    from metrics_center.notify.addresses import Recipient

log = logging.getLogger(__name__)
PAGE_PATH = "/metrics-center/"


class ApprovalRequestNotifier(BaseNotifier):
    """Ask the stage's approvers in their chats (through the outbox). Logs, never raises.

    :param spec: the metric.
    :param stage: the approval stage the task asks.
    :param teams: the teams file (names, Slack ids, channels); None: nobody has an address.
    """

    template_fields = ()

    def __init__(self, *, spec: MetricSpec, stage: ApprovalStage, teams: Teams | None) -> None:
        super().__init__()
        self.spec = spec
        self.stage = stage
        self.teams = teams

    def __call__(self, *args: Any) -> None:
        try:
            super().__call__(*args)
        except Exception:  # never fail the approval task over a notification
            log.exception("approval request for %s was not put in the outbox", self.stage.name)

    def notify(self, context: Any) -> None:
        try:
            count = enqueue_from_context(context, spec=self.spec, stage=self.stage, teams=self.teams)
        except Exception as exc:
            log.warning(
                "the approvers of %s were not asked in their chats (%s: %s); they can answer in Airflow's Required "
                "Actions or on the Metrics Center page",
                self.stage.name,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return
        log.info(
            "asked %d approver(s) of %s in their chats (outbox; delivered by the maintenance DAG)",
            count,
            self.stage.name,
        )


def enqueue_from_context(context: Any, *, spec: MetricSpec, stage: ApprovalStage, teams: Teams | None) -> int:
    """Read what the request needs from the running approval task and enqueue it; the number of new rows."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    from metrics_center.mart.engine import get_engine
    from metrics_center.notify.blocks import airflow_base_url

    task, ti = context["task"], context["ti"]
    base = airflow_base_url()
    actions_url = None
    if base:
        try:
            actions_url = HITLOperator.generate_link_to_ui_from_context(context=context, base_url=base)
        except ValueError as exc:
            log.warning("no Required Actions link in the Slack request: %s", exc)
    engine = get_engine()
    timeout = getattr(task, "response_timeout", None)
    return enqueue_requests(
        engine,
        spec=spec,
        stage=stage,
        teams=teams,
        ref=ActionRef(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, try_number=int(ti.try_number)),
        ti_id=str(ti.id),
        evidence=str(getattr(task, "body", None) or ""),
        evidence_translations=getattr(task, "evidence_translations", None) or {},
        period=_period_label(engine, spec=spec, run_id=ti.run_id),
        timeout=timeout,
        page_url=f"{base}{PAGE_PATH}" if base else None,
        actions_url=actions_url,
    )


def enqueue_requests(
    engine: Engine,
    *,
    spec: MetricSpec,
    stage: ApprovalStage,
    teams: Teams | None,
    ref: ActionRef,
    ti_id: str,
    evidence: str,
    period: str,
    timeout: timedelta | None,
    page_url: str | None,
    actions_url: str | None,
    evidence_translations: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """One ``approval_request`` per approver, in one transaction; dedupe per (run, stage, try, person)."""
    from metrics_center.notify.lifecycle_messages import status_fields
    from metrics_center.notify.outbox import enqueue

    asked_at = (now or datetime.now(UTC)).astimezone(UTC)
    people = teams.resolve(stage.approvers) if teams else list(stage.approvers)
    remind = spec.approval.remind_at
    base: dict[str, Any] = {
        "kind": REQUEST,
        "dag_id": ref.dag_id,
        "run_id": ref.run_id,
        "task_id": ref.task_id,
        "try_number": ref.try_number,
        "ti_id": ti_id,
        "metric_key": spec.key,
        "metric_name": spec.name,
        "unit": spec.unit,
        "period": period,
        "stage": stage.name,
        "stage_number": next(
            (i for i, s in enumerate(spec.approval.stages, 1) if s.name == stage.name), None
        ),
        "stages": len(spec.approval.stages),
        "version": spec.version,
        "change_note": spec.change_note,
        "owner": spec.owner,
        "owner_name": _name(teams, spec.owner),
        "approvers": [_name(teams, p) for p in people],
        "asked_at": asked_at.isoformat(),
        "timeout_at": (asked_at + timeout).isoformat() if timeout else None,
        "remind_at": (asked_at + timeout * remind).isoformat() if timeout and remind else None,
        "on_timeout": spec.approval.on_timeout,
        "evidence": evidence,
        "page_url": page_url,
        "actions_url": actions_url,
        **status_fields(spec),  # a deprecated metric's approvers read "deprecated — use X" in the request
    }
    added = 0
    with engine.begin() as conn:
        for person in people:
            recipient = approver_recipient(person, spec=spec, teams=teams)
            person_of = teams.people.get(person) if teams else None
            added += enqueue(
                conn,
                kind=REQUEST,
                dedupe_key=f"{REQUEST}:{ref.key}:{person}",
                recipient=recipient,
                group_key=f"{REQUEST}:{ref.key}",
                payload={
                    **base,
                    "person": person,
                    "person_name": _name(teams, person),
                    "slack_user_id": person_of.slack_user_id if person_of else None,
                    "direct": bool(person_of and (person_of.slack_user_id or person_of.feishu_open_id)),
                    # The evidence in the language the person reads, when the task wrote one for it.
                    "evidence": (evidence_translations or {}).get(normalize(recipient.locale), evidence),
                },
                metric_key=spec.key,
                run_id=ref.run_id,
            )
    return added


def approver_recipient(person: str, *, spec: MetricSpec, teams: Teams | None) -> Recipient:
    """Direct messages to the person; else their department's chats, else the metric's; else e-mail; else none.

    The recipient is always the person, so that a chat id added later reaches rows still without an
    address (:func:`metrics_center.notify.deliver.readdress`).
    """
    return person_recipient(teams, person, fallback_departments=(spec.department,))


def _name(teams: Teams | None, person: str) -> str:
    return teams.people[person].name if teams and person in teams.people else person


def _period_label(engine: Engine, *, spec: MetricSpec, run_id: str) -> str:
    from metrics_center.mart.runs import get_run

    run = get_run(engine, metric_key=spec.key, run_id=run_id)
    if run is None:
        return run_id
    return run.label(spec.grain)  # "2026-11-26", or "3 periods, 2026-11-20 … 2026-11-22" for a restatement
