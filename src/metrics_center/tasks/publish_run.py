"""Publish one run: only what was approved, under the definition it was computed with, never over newer data.

``publish`` refuses — with a message that names the stage, the version or the publication, and writing
nothing — unless every stage's recorded answer approves this run's staged result, the definition the
run registered is still the one in force, and no newer run already answered these periods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metrics_center.approvals.rules import approved_by_text, verify_approved
from metrics_center.definitions.meaning import load_definition
from metrics_center.errors import MetricsCenterError, PublishRefused, SignoffPending
from metrics_center.mart.definitions import newest_version
from metrics_center.mart.publish import PublishResult, publish_values
from metrics_center.mart.runs import RunRecord, finish_run, get_run
from metrics_center.notify.broadcast import downstream_of, history_changed
from metrics_center.observability import stats
from metrics_center.tasks.transform import read_result

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec, Teams


def publish_run(
    engine: Engine, *, spec: MetricSpec, teams: Teams | None, context: Context
) -> tuple[RunRecord, PublishResult]:
    """Publish the run in ``context`` (``spec`` = the definition as parsed now); mark it published or refused."""
    run_id = context["run_id"]
    run = get_run(engine, metric_key=spec.key, run_id=run_id)
    if run is None or run.result_hash is None:
        raise MetricsCenterError(
            f"run {run_id} of {spec.key} has no registered, computed result; nothing published — clear the whole run"
        )
    wait_for_signoff(engine, spec=spec, run=run, teams=teams)
    try:
        refuse_stale(engine, spec=spec, run=run)
        answers = verify_approved(engine, spec=spec, run=run, teams=teams)
        values, digest = read_result(spec=spec, context=context)
        downstream = downstream_of(spec)
        approved_by = approved_by_text(answers)

        def on_replace(conn, publication_id, changes):
            history_changed(
                conn,
                spec=spec,
                teams=teams,
                downstream=downstream,
                publication_id=publication_id,
                run_id=run_id,
                version=run.definition_version,
                approved_by=approved_by,
                explicit=run.restatement,
                changes=changes,
            )
            stats.periods_restated(
                metric_key=spec.key, periods=sum(c.changed for c in changes), explicit=run.restatement
            )

        if digest != run.result_hash:
            raise PublishRefused(
                "the staged result is not the one that was approved (it changed after the transform recorded "
                "it); nothing published — clear the whole run"
            )
        result = publish_values(
            engine,
            metric_key=spec.key,
            definition_version=run.definition_version,
            grain=spec.grain,
            dimensions=list(spec.dimensions),
            values=values,
            run_id=run_id,
            approved_by=approved_by,
            periods=[p.start for p in run.period_list(spec.grain)],
            data_as_of=run.started_at,
            restatement=run.restatement,
            on_replace=on_replace,
        )
    except PublishRefused as exc:
        finish_run(engine, metric_key=spec.key, run_id=run_id, state="refused", detail=str(exc))
        stats.publish_refused(metric_key=spec.key, error=exc)
        raise
    finish_run(
        engine, metric_key=spec.key, run_id=run_id, state="published", publication_id=result.publication_id
    )
    stats.published(metric_key=spec.key, rows=result.rows, already_published=result.already_published)
    return run, result


def wait_for_signoff(engine: Engine, *, spec: MetricSpec, run: RunRecord, teams: Teams | None) -> None:
    """Values computed under a version that waits for its definition's sign-off are not published yet
    (:class:`SignoffPending`: the task waits); under a rejected version, never (refused)."""
    from metrics_center.approvals.definition_signoff import signoff_state, stage_name

    state = signoff_state(engine, metric_key=spec.key, version=run.definition_version)
    if state.status == "pending":
        reviewers = ", ".join(teams.definition_reviewers(spec.department)) if teams else "its reviewers"
        raise SignoffPending(
            f"{spec.key} {stage_name(run.definition_version)} waits for its sign-off by {reviewers} "
            "(Metrics Center → My approvals); nothing is published until one of them approves it"
        )
    if state.status == "rejected":
        exc = PublishRefused(
            f"{spec.key} {stage_name(run.definition_version)} was rejected by {state.by}: {state.reason} — nothing "
            "computed under it is published; fix the definition and bump its version"
        )
        finish_run(engine, metric_key=spec.key, run_id=run.run_id, state="refused", detail=str(exc))
        stats.publish_refused(metric_key=spec.key, error=exc)
        raise exc


def refuse_stale(engine: Engine, *, spec: MetricSpec, run: RunRecord) -> None:
    """The values were computed under ``run``'s definition: refuse if that is no longer the one in force.

    ``spec`` is the definition a worker parses now; its grain and dimensions are only used once its
    meaning hash equals the run's, so they are the run's too.
    """
    deployed = load_definition(spec)
    newest = newest_version(engine, metric_key=spec.key)
    if (
        deployed.meaning_hash == run.definition_hash
        and spec.version == run.definition_version
        and (newest is None or newest <= run.definition_version)
    ):
        return
    now = f"v{spec.version} ({deployed.meaning_hash[:12]})"
    if newest is not None and newest > spec.version:
        now += f"; v{newest} is registered in the mart"
    raise PublishRefused(
        f"{spec.key}'s definition changed while this run waited: the run computed v{run.definition_version} "
        f"({run.definition_hash[:12]}, {run.timezone}), the definition in force is {now}. Its approved values "
        "are stale; nothing published — re-run the period (clear the whole run) to compute it under the new "
        "definition"
    )
