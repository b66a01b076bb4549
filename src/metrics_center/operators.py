"""The operators a metric DAG is made of. Thin: each delegates to a task module imported at run time."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator

from metrics_center import settings
from metrics_center.spec import ApprovalStage, MetricSpec, Teams

if TYPE_CHECKING:
    from airflow.sdk import Context


MEANING_FIELDS = (
    "key",
    "name",
    "description",
    "unit",
    "grain",
    "timezone",
    "formula",
    "dimensions",
    "sources",
    "transform",
)


def definition_document(spec: MetricSpec) -> tuple[dict[str, Any], str]:
    """The definition as stored in the mart (YAML + the SQL it uses) and the SHA-256 of its *meaning*.

    Only what changes the numbers is hashed: sources, SQL, grain, dimensions, unit, wording. Owners,
    schedule, quality rules, approvers and subscribers are operational and may change within a version.
    """
    sql = {spec.transform.sql: (settings.sql_dir() / spec.transform.sql).read_text()}
    for source in spec.sources.values():
        if (path := getattr(source, "sql", None)) is not None:
            sql[path] = (settings.sql_dir() / path).read_text()
    full = spec.model_dump(mode="json")
    meaning = {"spec": {k: full[k] for k in MEANING_FIELDS}, "sql": sql}
    digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()
    return {"spec": full, "sql": sql}, digest


class _MetricTask(BaseOperator):
    ui_color = "#e8f1fb"

    def __init__(self, *, spec: MetricSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec


class RegisterDefinitionOperator(_MetricTask):
    """Migrate the mart if needed and record this version of the definition (refuses silent edits)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.definitions import register_definition
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.migrate import upgrade

        engine = get_engine()
        upgrade(engine)
        document, digest = definition_document(self.spec)
        status = register_definition(engine, spec=self.spec, definition=document, definition_hash=digest)
        self.log.info("%s v%s: %s (%s)", self.spec.key, self.spec.version, status, digest[:12])
        return {"version": self.spec.version, "hash": digest, "status": status}


class ExtractOperator(_MetricTask):
    """Stream one source (DB connection or file) to Parquet in the staging area."""

    ui_color = "#fdf3e1"

    def __init__(self, *, source_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_name = source_name

    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.tasks.extract import extract_source

        summary = extract_source(spec=self.spec, source_name=self.source_name, context=context)
        self.log.info("staged %s rows of %s", summary["rows"], summary["origin"])
        return summary


class TransformOperator(_MetricTask):
    """Compute ``period_start, dims…, value`` with DuckDB over the staged sources."""

    ui_color = "#e9f7ef"

    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.tasks.transform import transform

        return transform(spec=self.spec, context=context)


class QualityCheckOperator(_MetricTask):
    """Validate the result with Great Expectations; any failed expectation fails the run (nothing published)."""

    ui_color = "#fdecea"

    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.audit import record_quality_results
        from metrics_center.mart.engine import get_engine
        from metrics_center.runtime import run_period
        from metrics_center.tasks.quality import raise_on_failures, run_expectations
        from metrics_center.tasks.transform import read_result

        frame = read_result(spec=self.spec, context=context).to_pandas()
        results = run_expectations(frame=frame, rules=list(self.spec.quality), suite_name=self.spec.key)
        record_quality_results(
            get_engine(),
            metric_key=self.spec.key,
            run_id=context["run_id"],
            period_start=run_period(context, self.spec).start,
            results=results,
        )
        raise_on_failures(metric_key=self.spec.key, results=results)
        return {"passed": len(results), "results": results}


class MetricApprovalOperator(ApprovalOperator):
    """One approval stage of a metric, on Airflow's native human-in-the-loop.

    The body is built when the task runs, so approvers see this run's evidence: the values, the
    change against the previous published period, rows per source and the quality results. Any one
    of the stage's approvers may answer; Airflow refuses everyone else (403) and second answers (409).

    :param stage: the stage from the metric's ``approval.stages``.
    :param teams: the teams file, to show approvers by name.
    """

    ui_color = "#fff4cc"

    def __init__(self, *, spec: MetricSpec, stage: ApprovalStage, teams: Teams | None, **kwargs: Any) -> None:
        approval = spec.approval
        defaults = {"reject": "Reject", "approve": "Approve", "fail": None}[approval.on_timeout]
        people = teams.people if teams else {}
        super().__init__(
            subject=f"Approve {spec.name} ({spec.key} v{spec.version}) — {stage.name}",
            body=None,
            defaults=defaults,
            assigned_users=[
                {"id": login, "name": people[login].name if login in people else login}
                for login in stage.approvers
            ],
            response_timeout=approval.timeout_delta,
            ignore_downstream_trigger_rules=True,
            **kwargs,
        )
        self.spec = spec
        self.stage = stage

    # Jinja would try to render our evidence tables; the body is already final text.
    template_fields = ("subject",)

    def execute(self, context: Context) -> Any:
        self.body = self._evidence(context)
        return super().execute(context)

    def _evidence(self, context: Context) -> str:
        from metrics_center.dag_builder import render_doc
        from metrics_center.evidence import approval_body
        from metrics_center.mart.audit import current_values
        from metrics_center.mart.engine import get_engine
        from metrics_center.runtime import run_period

        ti = context["ti"]
        period = run_period(context, self.spec)
        previous = period.previous()
        transform = ti.xcom_pull(task_ids="transform") or {}
        quality = (ti.xcom_pull(task_ids="quality_check") or {}).get("results", [])
        sources = [ti.xcom_pull(task_ids=f"extract_{name}") or {} for name in self.spec.sources]
        earlier = []
        for stage in self.spec.approval.stages:
            if stage.slug == self.stage.slug:
                break
            answer = ti.xcom_pull(task_ids=approve_task_id(self.spec, stage)) or {}
            who = (answer.get("responded_by_user") or {}).get("id") or "the timeout default"
            earlier.append(f"{stage.name}: approved by {who}")
        engine = get_engine()
        return approval_body(
            name=self.spec.name,
            unit=self.spec.unit,
            period=f"{period.label()} ({self.spec.grain})",
            stage=self.stage.name,
            previous_period=previous.label(),
            transform=transform,
            previous=current_values(engine, metric_key=self.spec.key, period_start=previous.start),
            already_published=current_values(engine, metric_key=self.spec.key, period_start=period.start),
            sources=[s for s in sources if s],
            quality=quality,
            earlier_approvals=earlier,
            doc=render_doc(self.spec, path=None),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from metrics_center.mart.audit import record_approval_event
        from metrics_center.mart.engine import get_engine

        user = (event.get("responded_by_user") or {}).get("id") if "error" not in event else None
        if "error" in event:
            decision = "timed_out"
        else:
            chosen = (event.get("chosen_options") or [""])[0]
            decision = "approved" if chosen == self.APPROVE else "rejected"
            if user is None:
                decision += "_on_timeout"
        record_approval_event(
            get_engine(),
            metric_key=self.spec.key,
            run_id=context["run_id"],
            stage=self.stage.name,
            decision=decision,
            decided_by=user,
        )
        return super().execute_complete(context, event)


class PublishOperator(_MetricTask):
    """Write the approved values to the mart in one transaction and emit the metric's Asset event."""

    ui_color = "#e3f2e1"

    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.publish import publish_values
        from metrics_center.tasks.transform import read_result

        ti = context["ti"]
        approvals = []
        for stage in self.spec.approval.stages:
            answer = ti.xcom_pull(task_ids=approve_task_id(self.spec, stage)) or {}
            who = (answer.get("responded_by_user") or {}).get("id") or "timeout-default"
            approvals.append(f"{stage.name}: {who}")
        result = publish_values(
            get_engine(),
            metric_key=self.spec.key,
            definition_version=self.spec.version,
            grain=self.spec.grain,
            dimensions=list(self.spec.dimensions),
            values=read_result(spec=self.spec, context=context),
            run_id=context["run_id"],
            approved_by="; ".join(approvals),
        )
        periods = [p.isoformat() for p in result.periods]
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {
                "metric_key": self.spec.key,
                "version": self.spec.version,
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


def approve_task_id(spec: MetricSpec, stage: ApprovalStage) -> str:
    """``approve`` for a single stage, ``approve_<stage slug>`` when there are several."""
    return "approve" if len(spec.approval.stages) == 1 else f"approve_{stage.slug}"
