"""The quality gate of a run: expectations, reconciliations and anomalies, stored with their alerts.

Great Expectations judges the result; reconciliation compares it with another department's number;
anomaly scoring compares each value with the metric's published history. Results, anomalies and the
notifications they cause are written in one transaction (the outbox), then blocking failures fail
the task: nothing is published and nobody is asked to approve.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metrics_center.checks.anomaly import Scored, record_anomalies, score_against_history
from metrics_center.checks.expectations import raise_on_failures, run_expectations
from metrics_center.definitions.dimensions import dimensions_key
from metrics_center.errors import MetricsCenterError
from metrics_center.mart.audit import record_quality_results
from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.runs import RunRecord, get_run
from metrics_center.notify.lifecycle_messages import status_fields
from metrics_center.notify.outbox import department_recipient, enqueue
from metrics_center.observability import stats
from metrics_center.tasks.computation import for_context
from metrics_center.tasks.reconciliation import run_reconciliations
from metrics_center.tasks.transform import read_result

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy import Connection, Engine

    from metrics_center.definitions.spec import MetricSpec, Teams


def run_quality_gate(
    engine: Engine, *, spec: MetricSpec, teams: Teams | None, context: Context
) -> dict[str, Any]:
    run_id = context["run_id"]
    run = get_run(engine, metric_key=spec.key, run_id=run_id)
    if run is None:
        raise MetricsCenterError(f"run {run_id} of {spec.key} was never registered; clear the whole run")
    table, _digest = read_result(spec=spec, context=context)
    frame = table.to_pandas()
    results = [
        {**r, "severity": "block"}
        for r in run_expectations(frame=frame, rules=list(spec.quality), suite_name=spec.key)
    ]
    results += run_reconciliations(
        spec=spec,
        result=table,
        computation=for_context(spec=spec, context=context, periods=run.period_list(spec.grain)),
    )
    scored = _score(engine, spec=spec, run=run, frame=frame)
    if scored is not None and spec.anomaly and spec.anomaly.block and len(scored.anomalies):
        results.append(
            {
                "expectation": "anomaly",
                "kwargs": spec.anomaly.model_dump(exclude_none=True),
                "success": False,
                "severity": "block",
                "observed": {"anomalies": len(scored.anomalies)},
            }
        )
    now = datetime.now(UTC)
    with locked_transaction(engine, key=spec.key) as conn:
        record_quality_results(
            conn, metric_key=spec.key, run_id=run_id, period_start=run.period_start, results=results
        )
        anomalies = (
            record_anomalies(
                conn,
                metric_key=spec.key,
                run_id=run_id,
                dimensions=list(spec.dimensions),
                definition_version=run.definition_version,
                config=spec.anomaly,
                scored=scored,
                detected_at=now,
            )
            if scored is not None and spec.anomaly
            else []
        )
        _notify(conn, spec=spec, teams=teams, run=run, results=results, anomalies=anomalies)
    stats.quality_checked(metric_key=spec.key, results=results, anomalies=len(anomalies))
    raise_on_failures(metric_key=spec.key, results=results)
    verdicts = scored.frame["verdict"].value_counts().to_dict() if scored is not None else {}
    return {
        "passed": sum(1 for r in results if r["success"]),
        "results": results,
        "anomalies": len(anomalies),
        "not_enough_history": int(verdicts.get("not_enough_history", 0)),
    }


def _score(engine: Engine, *, spec: MetricSpec, run: RunRecord, frame: Any) -> Scored | None:
    return score_against_history(engine, spec=spec, frame=frame, definition_version=run.definition_version)


def _notify(
    conn: Connection,
    *,
    spec: MetricSpec,
    teams: Teams | None,
    run: RunRecord,
    results: list[dict[str, Any]],
    anomalies: list[dict[str, Any]],
) -> None:
    """One outbox row per fact, grouped per run and kind so that a channel gets one message each."""
    recipient = department_recipient(spec, teams)
    common = {
        "metric_key": spec.key,
        "metric_name": spec.name,
        "unit": spec.unit,
        "period": run.period_start.isoformat(),
        "run_id": run.run_id,
        "dag_id": spec.key,
        **status_fields(spec),  # alerts about a deprecated metric say so, and what replaces it
    }
    for row in anomalies:
        period = row["period_start"].isoformat()
        enqueue(
            conn,
            kind="anomaly",
            dedupe_key=f"anomaly:{spec.key}:{run.run_id}:{period}:{dimensions_key(row['dimensions'])}",
            recipient=recipient,
            group_key=f"anomaly:{spec.key}:{run.run_id}",
            metric_key=spec.key,
            run_id=run.run_id,
            payload={
                **common,
                "period": period,
                **{
                    k: row[k]
                    for k in ("dimensions", "value", "expected", "band_low", "band_high", "score", "method")
                },
                "definition_version": run.definition_version,
            },
        )
    for result in results:
        if result["success"] or not result["expectation"].startswith("reconcile:"):
            continue
        name = result["expectation"].removeprefix("reconcile:")
        observed = result["observed"]
        enqueue(
            conn,
            kind="reconciliation",
            dedupe_key=f"reconcile:{spec.key}:{run.run_id}:{name}",
            recipient=recipient,
            group_key=f"reconciliation:{spec.key}:{run.run_id}",
            metric_key=spec.key,
            run_id=run.run_id,
            payload={
                **common,
                "name": name,
                "severity": result["severity"],
                "ours": observed.get("ours"),
                "theirs": observed.get("theirs"),
                "difference": observed.get("difference"),
                "error": observed.get("error"),
                "tolerance": {"pct": None, "abs": None, **result["kwargs"]["tolerance"]},
                "by": result["kwargs"]["by"],
                "rows": observed.get("rows", []),
            },
        )
    failed = [
        r
        for r in results
        if not r["success"] and r["severity"] == "block" and not r["expectation"].startswith("reconcile:")
    ]
    if failed:
        enqueue(
            conn,
            kind="quality_failure",
            dedupe_key=f"quality:{spec.key}:{run.run_id}",
            recipient=recipient,
            group_key=f"quality_failure:{spec.key}:{run.run_id}",
            metric_key=spec.key,
            run_id=run.run_id,
            payload={
                **common,
                "failed": [{k: r[k] for k in ("expectation", "kwargs", "observed")} for r in failed],
            },
        )
