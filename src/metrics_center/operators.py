"""The operators a metric DAG is made of. Thin: each delegates to a task module imported at run time."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator

from metrics_center import observability
from metrics_center.spec import ApprovalStage, MetricSpec, Teams

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy import Engine

    from metrics_center.mart.runs import RunRecord

log = logging.getLogger(__name__)
ACTIVE_RUN_STATES = frozenset({"queued", "running"})


class _MetricTask(BaseOperator):
    """A metric's task. One ``__init__`` for all of them: Airflow wraps every class level's ``__init__`` in
    ``apply_defaults``, and 9,000 operators of 1,000 metric DAGs pay for each level at every parse."""

    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        spec: MetricSpec,
        teams: Teams | None = None,
        source_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.teams = teams
        self.source_name = source_name

    def pre_execute(self, context: Context) -> None:
        from metrics_center import task_timing

        task_timing.begin()  # a no-op unless METRICS_CENTER_TASK_TIMING is set (the throughput benchmark)
        super().pre_execute(context)

    def post_execute(self, context: Context, result: Any = None) -> None:
        from metrics_center import task_timing

        super().post_execute(context, result)
        if line := task_timing.end(task_id=self.task_id):
            self.log.info("%s", line)

    @property
    def log(self) -> Any:  # our lines start with [metric period run=…] while execute runs
        return observability.task_logger(super().log)


class RegisterDefinitionOperator(_MetricTask):
    """Record this version of the definition (refuses silent edits) and start the run under it.

    The run's version, meaning hash, time zone and period are stored in the mart's run register;
    ``publish`` uses them, not the YAML it happens to parse later. A second run of a period that is
    still in flight is refused here. The mart must already be migrated (``metrics-center mart
    upgrade``): tasks hold no DDL rights.
    """

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from metrics_center.definition import load_definition
        from metrics_center.mart.definitions import register_definition
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.migrate import require_current
        from metrics_center.mart.runs import start_run
        from metrics_center.run_periods import choose_periods
        from metrics_center.runtime import run_instant
        from metrics_center.tasks.metric_input import readiness

        engine = get_engine()
        require_current(engine)
        definition = load_definition(self.spec)
        status = register_definition(
            engine,
            spec=self.spec,
            definition={**definition.document, "provenance": _provenance(self.spec)},
            definition_hash=definition.meaning_hash,
        )
        dag_run = context["dag_run"]
        chosen = choose_periods(
            grain=self.spec.grain,
            timezone=definition.timezone,
            instant=run_instant(context),
            conf=dag_run.conf,
            events=list(getattr(dag_run, "consumed_asset_events", None) or []),
            on_inputs=self.spec.on_inputs,
            ready=readiness(engine, spec=self.spec),
        )
        deferred = ", ".join(p.label() for p in chosen.deferred)
        observability.periods_deferred(metric_key=self.spec.key, periods=len(chosen.deferred))
        if deferred:
            self.log.info("left for a later run (an input has not published them yet): %s", deferred)
        if not chosen.periods:
            raise AirflowSkipException(
                f"nothing to compute: the inputs' events name {deferred or 'no period'}, and an input has not "
                "published those periods yet; the run its publish triggers computes them"
            )
        ti = context["ti"]
        run, dropped = start_run(
            engine,
            metric_key=self.spec.key,
            run_id=context["run_id"],
            definition_version=self.spec.version,
            definition_hash=definition.meaning_hash,
            timezone=definition.timezone,
            periods=list(chosen.periods),
            restatement=chosen.restatement,
            is_active=lambda run_id: _run_is_active(ti, dag_id=self.dag_id, run_id=run_id),
            drop_in_flight=chosen.reason == "inputs",
        )
        if dropped:
            self.log.info("already being computed by another run: %s", ", ".join(p.label() for p in dropped))
        if run is None:
            raise AirflowSkipException("every period named by the inputs' events is already being computed")
        label = run.label(self.spec.grain)
        self.log.info(
            "%s v%s: %s (%s); computing %s (%s) — %s%s",
            self.spec.key,
            self.spec.version,
            status,
            definition.meaning_hash[:12],
            label,
            definition.timezone,
            chosen.reason,
            " as an explicit restatement" if chosen.restatement else "",
        )
        return {
            "version": self.spec.version,
            "hash": definition.meaning_hash,
            "status": status,
            "period": label,
            "periods": [p.start.isoformat() for p in run.period_list(self.spec.grain)],
            "timezone": definition.timezone,
            "restatement": chosen.restatement,
            "reason": chosen.reason,
        }


def _provenance(spec: MetricSpec) -> dict[str, Any] | None:
    """Who last changed the definition's files, when they live in a git checkout (for the broadcast)."""
    from metrics_center import settings
    from metrics_center.provenance import last_change

    sql_dir = settings.sql_dir()
    files = [settings.metrics_dir() / f"{spec.key}.yaml", sql_dir / spec.transform.sql]
    files += [sql_dir / s.sql for s in spec.sources.values() if getattr(s, "sql", None)]
    change = last_change(files)
    return {**change.as_json(), "description": change.describe()} if change else None


def _run_is_active(ti: Any, *, dag_id: str, run_id: str) -> bool:
    """Whether Airflow still has ``run_id`` queued or running (a missing run is not active)."""
    try:
        state = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except Exception as exc:  # a deleted run: its claim on the period is void
        log.warning(
            "cannot read the state of run %s of %s (%s); treating it as finished", run_id, dag_id, exc
        )
        return False
    return (
        getattr(state, "value", state) in ACTIVE_RUN_STATES
    )  # the Task SDK's enum str()s as "DagRunState.X"


class ExtractOperator(_MetricTask):
    """Stream one source (DB connection or file) to Parquet in the staging area."""

    ui_color = "#fdf3e1"

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.computation import for_run
        from metrics_center.tasks.extract import extract_source

        computation = for_run(spec=self.spec, context=context, engine=get_engine())
        summary = extract_source(spec=self.spec, source_name=self.source_name, computation=computation)
        self.log.info("staged %s rows of %s", summary["rows"], summary["origin"])
        return summary


class TransformOperator(_MetricTask):
    """Compute ``period_start, dims…, value`` with DuckDB over the staged sources."""

    ui_color = "#e9f7ef"

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.runs import record_result
        from metrics_center.tasks.computation import for_run
        from metrics_center.tasks.transform import transform

        engine = get_engine()
        summary = transform(
            spec=self.spec, computation=for_run(spec=self.spec, context=context, engine=engine)
        )
        record_result(
            engine,
            metric_key=self.spec.key,
            run_id=context["run_id"],
            result_hash=summary["result_hash"],
            rows=summary["rows"],
        )
        return summary


class QualityCheckOperator(_MetricTask):
    """Expectations, reconciliations and anomaly scoring; stored with their alerts; blocking failures fail the run."""

    ui_color = "#fdecea"

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.quality_gate import run_quality_gate

        return run_quality_gate(get_engine(), spec=self.spec, teams=self.teams, context=context)


class ImpactPreviewOperator(_MetricTask):
    """Announce a new definition version once, with its impact on recent numbers when it is breaking.

    Cheap on every run but a version's first (see :mod:`metrics_center.tasks.impact_preview`); the first
    approval stage waits for it, so its approvers see the preview.
    """

    ui_color = "#f3e8fd"

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.impact_preview import run_impact_preview

        outcome = run_impact_preview(get_engine(), spec=self.spec, teams=self.teams, context=context)
        self.log.info("%s", outcome)
        return outcome


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
            # Asks the approvers in Slack through the outbox once the HITL record exists; never raises.
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
        return observability.task_logger(super().log)

    @observability.with_task_log_context
    def execute(self, context: Context) -> Any:
        from metrics_center.approvals import record_request
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
        self.body = self._evidence(context, engine=engine, run=run)
        ti = context["ti"]
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

    def _evidence(self, context: Context, *, engine: Engine, run: RunRecord) -> str:
        import pyarrow.compute as pc

        from metrics_center.approvals import earlier_stages
        from metrics_center.definition import render_doc
        from metrics_center.errors import MetricsCenterError
        from metrics_center.evidence import MAX_ROWS_SHOWN, approval_body
        from metrics_center.mart.audit import current_values, run_anomalies, run_quality_results
        from metrics_center.tasks.transform import read_result

        table, digest = read_result(spec=self.spec, context=context)
        if digest != run.result_hash:
            raise MetricsCenterError(
                "the staged result differs from the one the transform recorded; clear the whole run"
            )
        periods = run.period_list(self.spec.grain)
        period = periods[0]
        previous = period.previous()
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
        return approval_body(
            name=self.spec.name,
            unit=self.spec.unit,
            period=f"{run.label(self.spec.grain)} ({self.spec.grain}, {run.timezone})",
            stage=self.stage.name,
            previous_period=previous.label(),
            rows=table.num_rows,
            total=pc.sum(table["value"]).as_py() if self.spec.aggregation == "sum" else None,
            values=values,
            previous=current_values(engine, metric_key=self.spec.key, period_start=previous.start),
            already_published=current_values(engine, metric_key=self.spec.key, period_start=period.start),
            sources=[s for s in sources if s],
            quality=run_quality_results(engine, metric_key=self.spec.key, run_id=context["run_id"]),
            anomalies=[
                {**a, "dimensions": {d: a["dimensions"].get(d) for d in self.spec.dimensions}}
                for a in run_anomalies(engine, metric_key=self.spec.key, run_id=context["run_id"])
            ],
            earlier_approvals=earlier_stages(
                engine, spec=self.spec, run_id=context["run_id"], before=self.stage
            ),
            doc=render_doc(self.spec, path=None),
            restatement=run.restatement,
            by_period=_by_period(engine, spec=self.spec, table=table, periods=periods)
            if len(periods) > 1
            else None,
            impact=impact,
        )

    @observability.with_task_log_context
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Record the answer. ``event`` is Airflow's HITL record as the API server (on an answer) or the
        scheduler (on a timeout) packed it into the task's resume arguments — not XCom, not editable
        from the UI. (Airflow 3.3.2's supervisor does not serve a task's own HITL record back to it.)"""
        from metrics_center.approvals import record_answer
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


class PublishOperator(_MetricTask):
    """Write the approved values to the mart in one transaction and emit the metric's Asset event.

    Refuses, writing nothing, unless every stage approved this run's result under the definition in
    force (see :mod:`metrics_center.tasks.publish_run`).
    """

    ui_color = "#e3f2e1"

    @observability.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.publish_run import publish_run

        run, result = publish_run(get_engine(), spec=self.spec, teams=self.teams, context=context)
        periods = [p.isoformat() for p in result.periods]
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {
                "metric_key": self.spec.key,
                "version": run.definition_version,
                "periods": periods,
                "rows": result.rows,
                "publication_id": result.publication_id,
            }
        self.log.info(
            "%s %s rows for %s (publication %s, %s superseded)",
            "already published:" if result.already_published else "published",
            result.rows,
            periods,
            result.publication_id,
            result.superseded,
        )
        return {
            "publication_id": result.publication_id,
            "rows": result.rows,
            "periods": periods,
            "already_published": result.already_published,
            "superseded": result.superseded,
        }


def _by_period(engine: Engine, *, spec: MetricSpec, table: Any, periods: list[Any]) -> list[dict[str, Any]]:
    """Per period of a run of several: rows and total now vs what is published (a restatement's before/after)."""
    from metrics_center.mart.values import current_values_table, period_totals

    published = period_totals(
        current_values_table(
            engine,
            metric_key=spec.key,
            dimensions=list(spec.dimensions),
            start=periods[0].start,
            end=periods[-1].end,
        )
    )
    new = period_totals(table)
    return [
        {
            "period": period.label(),
            "old_rows": published.get(period.start, (0, None))[0],
            "new_rows": new.get(period.start, (0, None))[0],
            "old_total": published.get(period.start, (0, None))[1],
            "new_total": new.get(period.start, (0, None))[1],
        }
        for period in periods
    ]


def approve_task_id(spec: MetricSpec, stage: ApprovalStage) -> str:
    """``approve`` for a single stage, ``approve_<stage slug>`` when there are several."""
    return "approve" if len(spec.approval.stages) == 1 else f"approve_{stage.slug}"
