"""The operators a metric DAG is made of. Thin: each delegates to a task module imported at run time.

Every task of a retired metric refuses to run (:func:`metrics_center.definitions.retirement.retired_refusal`):
a manual trigger, or a run that was in flight when the metric was retired, computes and publishes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from metrics_center.definitions.spec import MetricSpec, Teams
from metrics_center.observability import stats
from metrics_center.orchestration import task_logs

if TYPE_CHECKING:
    from airflow.sdk import Context


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
        from metrics_center.definitions.retirement import retired_refusal
        from metrics_center.observability import task_timing

        if refusal := retired_refusal(self.spec):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(refusal)  # no retry would change the answer
        task_timing.begin()  # a no-op unless METRICS_CENTER_TASK_TIMING is set (the throughput benchmark)
        super().pre_execute(context)

    def post_execute(self, context: Context, result: Any = None) -> None:
        from metrics_center.observability import task_timing

        super().post_execute(context, result)
        if line := task_timing.end(task_id=self.task_id):
            self.log.info("%s", line)

    @property
    def log(self) -> Any:  # our lines start with [metric period run=…] while execute runs
        return task_logs.task_logger(super().log)


class RegisterDefinitionOperator(_MetricTask):
    """Record this version of the definition (refuses silent edits) and start the run under it.

    The run's version, meaning hash, time zone and period are stored in the mart's run register;
    ``publish`` uses them, not the YAML it happens to parse later. A second run of a period that is
    still in flight is refused here. The mart must already be migrated (``metrics-center mart
    upgrade``): tasks hold no DDL rights.
    """

    @task_logs.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from metrics_center.definitions.meaning import load_definition
        from metrics_center.definitions.run_periods import choose_periods
        from metrics_center.mart.definitions import register_definition
        from metrics_center.mart.engine import get_engine
        from metrics_center.mart.migrate import require_current
        from metrics_center.mart.runs import start_run
        from metrics_center.tasks.metric_input import readiness
        from metrics_center.tasks.runtime import run_instant

        engine = get_engine()
        require_current(engine)
        definition = load_definition(self.spec)
        status = register_definition(
            engine,
            spec=self.spec,
            definition={**definition.document, "provenance": _provenance(self.spec)},
            definition_hash=definition.meaning_hash,
            teams=self.teams,
        )
        self._check_signoff(engine, run_id=context["run_id"])
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
        stats.periods_deferred(metric_key=self.spec.key, periods=len(chosen.deferred))
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

    def _check_signoff(self, engine: Any, *, run_id: str) -> None:
        """A rejected version stops here; one waiting for its sign-off has its reviewers asked (once)."""
        import sqlalchemy as sa

        from metrics_center.approvals.definition_signoff import rejected_refusal, signoff_state
        from metrics_center.errors import MetricsCenterError
        from metrics_center.mart.tables import metric_definition as t
        from metrics_center.notify.signoff_messages import signoff_requested

        if refusal := rejected_refusal(engine, metric_key=self.spec.key, version=self.spec.version):
            raise MetricsCenterError(refusal)
        if signoff_state(engine, metric_key=self.spec.key, version=self.spec.version).status != "pending":
            return
        with engine.begin() as conn:
            earlier = conn.execute(
                sa.select(sa.func.count()).where(
                    t.c.metric_key == self.spec.key, t.c.version < self.spec.version
                )
            ).scalar_one()
            asked = signoff_requested(
                conn, spec=self.spec, teams=self.teams, first=not earlier, run_id=run_id
            )
        if asked:
            self.log.info("asked %d definition reviewer(s) to sign off v%s", asked, self.spec.version)


def _provenance(spec: MetricSpec) -> dict[str, Any] | None:
    """Who last changed the definition's files, when they live in a git checkout (for the broadcast)."""
    from metrics_center import settings
    from metrics_center.definitions.provenance import last_change

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

    @task_logs.with_task_log_context
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

    @task_logs.with_task_log_context
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

    @task_logs.with_task_log_context
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

    @task_logs.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.impact_preview import run_impact_preview

        outcome = run_impact_preview(get_engine(), spec=self.spec, teams=self.teams, context=context)
        self.log.info("%s", outcome)
        return outcome


class PublishOperator(_MetricTask):
    """Write the approved values to the mart in one transaction and emit the metric's Asset event.

    Refuses, writing nothing, unless every stage approved this run's result under the definition in
    force (see :mod:`metrics_center.tasks.publish_run`).
    """

    ui_color = "#e3f2e1"

    @task_logs.with_task_log_context
    def execute(self, context: Context) -> dict[str, Any]:
        from datetime import UTC, datetime, timedelta

        from airflow.sdk.exceptions import AirflowRescheduleException

        from metrics_center import settings
        from metrics_center.errors import SignoffPending
        from metrics_center.mart.engine import get_engine
        from metrics_center.tasks.publish_run import publish_run

        try:
            run, result = publish_run(get_engine(), spec=self.spec, teams=self.teams, context=context)
        except SignoffPending as exc:
            # Waits without a worker slot, like a sensor in reschedule mode, until a reviewer decides.
            self.log.info("%s; looking again in %.0f s", exc, settings.signoff_poll_seconds())
            raise AirflowRescheduleException(
                datetime.now(UTC) + timedelta(seconds=settings.signoff_poll_seconds())
            ) from exc
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
