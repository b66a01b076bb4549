"""One approval stage of a metric: Airflow's ``ApprovalOperator`` with our evidence, requests and sign-off rules.

The request (evidence, recorded request, outbox messages to the approvers) is made when the task
runs; the answer is judged by :mod:`metrics_center.approvals.rules` when Airflow resumes the task.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from metrics_center.definitions.spec import ApprovalStage, MetricSpec, Teams
from metrics_center.orchestration import task_logs

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy import Engine

    from metrics_center.mart.runs import RunRecord

log = logging.getLogger(__name__)


class MetricApprovalOperator(ApprovalOperator):
    """One approval stage of a metric, on Airflow's native human-in-the-loop.

    The body is built when the task runs, from this run's staged result (the very bytes ``publish``
    will write), the quality results stored in the mart and the change against the previous published
    period. Any one of the stage's approvers may answer; Airflow refuses everyone else (403) and
    second answers (409). The request and — read back from Airflow's HITL record — the answer are
    recorded in the mart bound to the result's hash; ``publish`` trusts nothing else.

    :param stage: the stage from the metric's ``approval.stages``.
    :param teams: the teams file, to show approvers by name.
    """

    ui_color = "#fff4cc"

    def __init__(self, *, spec: MetricSpec, stage: ApprovalStage, teams: Teams | None, **kwargs: Any) -> None:

        from metrics_center.notify.approval_requests import ApprovalRequestNotifier

        approval = spec.approval
        defaults = {"reject": "Reject", "approve": "Approve", "fail": None}[approval.on_timeout]
        # The DAG's own params (the restatement form) arrive merged here; the HITL form is ours alone.
        kwargs.pop("params", None)
        people = teams.resolve(stage.approvers) if teams else list(stage.approvers)
        super().__init__(
            subject=f"Approve {spec.name} ({spec.key} v{spec.version}) — {stage.name}",
            body=None,
            defaults=defaults,
            assigned_users=[
                {
                    "id": teams.airflow_user(login) if teams and login in teams.people else login,
                    "name": teams.people[login].name if teams and login in teams.people else login,
                }
                for login in people
            ],
            # No form fields: a Param is re-validated with jsonschema, compared and repr'd whenever the task
            # is serialised (~40% of serialising 1,000 metric DAGs at every parse). Our page and Slack send the
            # reason as params_input anyway; Airflow's own Required Actions page records the choice only.
            params={},
            response_timeout=approval.timeout_delta,
            ignore_downstream_trigger_rules=True,
            # Asks the approvers in their chats through the outbox once the HITL record exists; never raises.
            notifiers=[ApprovalRequestNotifier(spec=spec, stage=stage, teams=teams)],
            **kwargs,
        )
        self.spec = spec
        self.stage = stage
        self.teams = teams
        self.approvers = people

    # Jinja would try to render our evidence tables; the body is already final text.
    template_fields = ("subject",)

    @property
    def log(self) -> Any:  # our lines start with [metric period run=…] while execute runs
        return task_logs.task_logger(super().log)

    @task_logs.with_task_log_context
    def execute(self, context: Context) -> Any:
        from metrics_center.approvals.rules import record_request
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.runs import get_run

        engine = get_engine()
        run = get_run(engine, metric_key=self.spec.key, run_id=context["run_id"])
        if run is None or run.result_hash is None:
            raise MetricsCenterError(
                f"no computed result is recorded for run {context['run_id']} of {self.spec.key}; "
                "clear the whole run so that it is registered and computed before anyone is asked"
            )
        self.subject = (
            f"Approve {self.spec.name} ({self.spec.key} v{run.definition_version}) — {self.stage.name}"
        )
        from metrics_center.approvals.evidence import approval_body
        from metrics_center.definitions.meaning import render_doc
        from metrics_center.i18n.translate import DEFAULT, LOCALES, using
        from metrics_center.mart.evidence_texts import save_evidence

        evidence = self._evidence_inputs(context, engine=engine, run=run)
        self.body = approval_body(**evidence)
        # Readers of other languages (chat recipients, the page) get the same evidence in theirs.
        translations: dict[str, str] = {}
        for locale in LOCALES:
            if locale != DEFAULT:
                with using(locale):
                    translations[locale] = approval_body(
                        **{**evidence, "doc": render_doc(self.spec, path=None)}
                    )
        self.evidence_translations = translations
        ti = context["ti"]
        save_evidence(
            engine,
            metric_key=self.spec.key,
            run_id=context["run_id"],
            stage=self.stage.name,
            try_number=ti.try_number,
            bodies=translations,
        )
        record_request(
            engine,
            metric_key=self.spec.key,
            run_id=context["run_id"],
            stage=self.stage,
            approvers=self.approvers,
            ti_id=str(ti.id),
            try_number=ti.try_number,
            result_hash=run.result_hash,
            evidence_hash=hashlib.sha256(self.body.encode()).hexdigest(),
        )
        return super().execute(context)

    def _evidence_inputs(self, context: Context, *, engine: Engine, run: RunRecord) -> dict[str, Any]:
        """What :func:`~metrics_center.approvals.evidence.approval_body` writes the evidence from."""
        from metrics_center.approvals.evidence import MAX_ROWS_SHOWN, periods_against_published
        from metrics_center.approvals.rules import earlier_stages
        from metrics_center.definitions.meaning import render_doc
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.audit import current_values, run_anomalies, run_quality_results
        from metrics_center.mart.values import current_values_table, period_totals
        from metrics_center.tasks.transform import read_result, result_total

        table, digest = read_result(spec=self.spec, context=context)
        if digest != run.result_hash:
            raise MetricsCenterError(
                "the staged result differs from the one the transform recorded; clear the whole run"
            )
        periods = run.period_list(self.spec.grain)
        period = periods[0]
        previous = period.previous()
        published_totals = period_totals(
            current_values_table(
                engine,
                metric_key=self.spec.key,
                dimensions=list(self.spec.dimensions),
                period_starts=[previous.start, period.start],
                ratio=self.spec.is_ratio,
            )
        )
        ti = context["ti"]
        sources = [ti.xcom_pull(task_ids=f"extract_{name}") or {} for name in self.spec.sources]
        values = [
            {**row, "period_start": row["period_start"].isoformat()}
            for row in table.slice(0, MAX_ROWS_SHOWN).to_pylist()
        ]
        impact = None
        if self.stage == self.spec.approval.stages[0]:
            from metrics_center.tasks.impact_preview import preview_for_approvers

            impact = preview_for_approvers(engine, key=self.spec.key, version=run.definition_version)
        return dict(
            name=self.spec.name,
            unit=self.spec.unit,
            period=f"{run.label(self.spec.grain)} ({self.spec.grain}, {run.timezone})",
            stage=self.stage.name,
            previous_period=previous.label(),
            rows=table.num_rows,
            total=result_total(self.spec, table),
            ratio=self.spec.is_ratio,
            previous_total=published_totals.get(previous.start, (0, None))[1],
            published_total=published_totals.get(period.start, (0, None))[1],
            values=values,
            previous=current_values(engine, metric_key=self.spec.key, period_start=previous.start),
            already_published=current_values(engine, metric_key=self.spec.key, period_start=period.start),
            sources=[s for s in sources if s],
            quality=run_quality_results(engine, metric_key=self.spec.key, run_id=context["run_id"]),
            anomalies=[
                {**a, "dimensions": {d: a["dimensions"].get(d) for d in self.spec.dimensions}}
                for a in run_anomalies(engine, metric_key=self.spec.key, run_id=context["run_id"])
            ],
            reject_only=self._reject_only(),
            signoff_waiting=self._signoff_waiting(engine, version=run.definition_version),
            earlier_approvals=earlier_stages(
                engine, spec=self.spec, run_id=context["run_id"], before=self.stage
            ),
            doc=render_doc(self.spec, path=None),
            restatement=run.restatement,
            by_period=periods_against_published(engine, spec=self.spec, table=table, periods=periods)
            if len(periods) > 1
            else None,
            impact=impact,
        )

    def _signoff_waiting(self, engine: Engine, *, version: int) -> list[str]:
        """The definition reviewers whose sign-off this run's version still waits for (none: it does not wait)."""
        from metrics_center.approvals.definition_signoff import signoff_state

        if (
            signoff_state(engine, metric_key=self.spec.key, version=version).status != "pending"
            or not self.teams
        ):
            return []
        people = self.teams.people
        return [
            people[p].name if p in people else p
            for p in self.teams.definition_reviewers(self.spec.department)
        ]

    def _reject_only(self) -> list[str]:
        """Assignees whose Approve the sign-off rules refuse whatever the other stages did: the owner alone."""
        from metrics_center.approvals.rules import APPROVE, sign_off_problem

        people = self.teams.people if self.teams else {}
        return [
            people[p].name if p in people else p
            for p in self.approvers
            if sign_off_problem(
                spec=self.spec,
                teams=self.teams,
                stage=self.stage,
                person=p,
                option=APPROVE,
                approved_elsewhere={},
            )
        ]

    @task_logs.with_task_log_context
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Record the answer. ``event`` is Airflow's HITL record as the API server (on an answer) or the
        scheduler (on a timeout) packed it into the task's resume arguments — not XCom, not editable
        from the UI. (Airflow 3.3.2's supervisor does not serve a task's own HITL record back to it.)"""
        from metrics_center.approvals.rules import record_answer
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.engine import get_engine

        ti = context["ti"]
        timed_out = "error" in event
        responder = None if timed_out else event.get("responded_by_user")
        decision, detail = record_answer(
            get_engine(),
            spec=self.spec,
            teams=self.teams,
            run_id=context["run_id"],
            stage=self.stage,
            ti_id=str(ti.id),
            try_number=ti.try_number,
            chosen=None if timed_out else event.get("chosen_options"),
            responded_by=responder.get("id") if responder else None,
            responded_at=None if timed_out else event.get("responded_at"),
            timed_out=timed_out,
            reason=((event.get("params_input") or {}).get("reason") or None) if not timed_out else None,
        )
        self.log.info("%s: %s%s", self.stage.name, decision, f" ({detail})" if detail else "")
        if decision == "refused":
            # Airflow's own UI/API accepted an answer our sign-off rules do not: it never counts.
            raise MetricsCenterError(
                f"{self.stage.name}: the answer does not count — {detail}; nothing will be published. "
                "Clear this task to ask again."
            )
        return super().execute_complete(context, event)
