"""The maintenance DAG: parsed as Airflow parses it, and run for real with ``dag.test()``.

The run delivers the outbox through real slack-sdk to the stub Slack, and prunes staged data learning
which runs are unfinished the only way a task can in Airflow 3: the mart's ``metric_run`` for the run
ids, the Task SDK (``ti.get_dagrun_state``) for their states — against real DagRun rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from slack_stub import SlackStub

from metrics_center.mart.tables import metric_run
from metrics_center.mart.tables import notification as n
from metrics_center.notify.addresses import Recipient
from metrics_center.notify.outbox import enqueue
from metrics_center.tasks.runtime import staging_dir

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "metrics_center_maintenance.py"
DAG_ID = "metrics_center_maintenance"
METRIC = "mc_maintenance_test"  # DagRun rows of this DAG id only, removed after each test
RUNNING = "manual__2026-10-01T08:00:00+00:00"  # waiting for approval for weeks: kept
SUCCEEDED = "scheduled__2026-10-03T00:00:00+00:00"  # old and finished: pruned
DELETED = "scheduled__2026-10-04T00:00:00+00:00"  # in metric_run, no DagRun any more: pruned
UNREGISTERED = "manual__2026-09-01T00:00:00+00:00"  # staged, but not in the mart's metric_run: kept
YOUNG = "scheduled__2026-11-26T00:00:00+00:00"  # finished yesterday: kept by age

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], safe_mode=True)
dag = bag.dags.get("metrics_center_maintenance")
print("PROBE-RESULT " + json.dumps({
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "timetable": type(dag.timetable).__name__ if dag else None,
    "summary": getattr(dag.timetable, "expression", None) if dag else None,
    "catchup": dag.catchup if dag else None,
    "max_active_runs": dag.max_active_runs if dag else None,
    "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else {},
    "loaded": sorted(m for m in ("metrics_center", "slack_sdk", "pandas", "duckdb",
                                  "great_expectations") if m in sys.modules),
}))
"""


def _probe(path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("PROBE-RESULT "))
    return json.loads(line.removeprefix("PROBE-RESULT "))


@pytest.mark.slow  # a separate process
def test_the_dag_file_parses_light_and_as_specified():
    parsed = _probe(DAG_FILE)
    assert parsed["import_errors"] == {}
    assert parsed["dags"] == [DAG_ID]
    assert (parsed["timetable"], parsed["summary"]) == ("CronTriggerTimetable", "*/5 * * * *")
    assert parsed["catchup"] is False and parsed["max_active_runs"] == 1
    assert parsed["tasks"] == {
        "follow_up_approvals": ["deliver_notifications"],
        "deliver_notifications": [],
        "prune_staging": [],
    }
    assert parsed["loaded"] == [], "parsing the maintenance DAG must import nothing but airflow"


def test_the_dags_folder_holds_the_metrics_and_maintenance(airflow_db):
    parsed = _probe(REPO / "dags")
    metrics = sorted(p.stem for p in (REPO / "include" / "metrics").glob("[!_]*.yaml"))
    assert parsed["import_errors"] == {}
    assert parsed["dags"] == sorted([*metrics, DAG_ID])


# --- a real run --------------------------------------------------------------------------------


@pytest.fixture
def staging(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "staging"
    monkeypatch.setenv("METRICS_CENTER_STAGING", root.as_uri())
    monkeypatch.setenv("METRICS_CENTER_STAGING_RETENTION", "14d")
    return root


@pytest.fixture
def dag_runs(airflow_db):
    """DagRun rows ``{run_id: state}`` of ``METRIC`` made with Airflow's ORM; deleted afterwards."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    def create(states: dict[str, str]) -> None:
        with create_session() as session:
            for i, (run_id, state) in enumerate(states.items()):
                when = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(days=i)
                session.add(
                    DagRun(
                        dag_id=METRIC,
                        run_id=run_id,
                        run_type="manual" if run_id.startswith("manual") else "scheduled",
                        state=state,
                        logical_date=when,
                        run_after=when,
                    )
                )

    yield create
    with create_session() as session:
        session.execute(sa.delete(DagRun).where(DagRun.dag_id == METRIC))


def _stage(run_id: str, *, age_days: float) -> Path:
    folder = Path(staging_dir({"run_id": run_id}, SimpleNamespace(key=METRIC)).path)
    part = folder / "sources" / "orders" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"PAR1")
    when = time.time() - age_days * 86400
    os.utime(part, (when, when))
    return folder


def _register(mart, *run_ids: str) -> None:
    now = datetime.now(UTC)
    with mart.begin() as conn:
        for run_id in run_ids:
            conn.execute(
                sa.insert(metric_run).values(
                    metric_key=METRIC,
                    run_id=run_id,
                    definition_version=1,
                    definition_hash="0" * 64,
                    timezone="UTC",
                    period_start=date(2026, 10, 1),
                    period_end=date(2026, 10, 2),
                    restatement=False,
                    state="computed",
                    started_at=now,
                    updated_at=now,
                )
            )


def _enqueue(mart, *, count: int) -> None:
    with mart.begin() as conn:
        for i in range(count):
            enqueue(
                conn,
                kind="anomaly",
                dedupe_key=f"maintenance:{i}",
                recipient=Recipient.at("sales", "#sales-metrics"),
                group_key="anomaly:gmv_daily:run",
                payload={"metric_key": "gmv_daily", "metric_name": "GMV", "value": i, "score": i},
            )


def _run_maintenance():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(DAG_FILE), safe_mode=True).dags[DAG_ID]
    dag_run = dag.test()
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.scalars(sa.select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id))
        }
        results = {
            x.task_id: XComModel.deserialize_value(x)
            for x in session.scalars(
                sa.select(XComModel).where(
                    XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
                )
            )
        }
    return (
        str(dag_run.state),
        states,
        {k: v if isinstance(v, dict) else json.loads(v) for k, v in results.items()},
    )


def test_maintenance_run_delivers_and_prunes_only_finished_runs(mart, staging, dag_runs, monkeypatch):
    dag_runs({RUNNING: "running", SUCCEEDED: "success"})
    _register(mart, RUNNING, SUCCEEDED, DELETED, YOUNG)
    folders = {run_id: _stage(run_id, age_days=30) for run_id in (RUNNING, SUCCEEDED, DELETED, UNREGISTERED)}
    folders[YOUNG] = _stage(YOUNG, age_days=1)
    _enqueue(mart, count=3)

    with SlackStub() as stub:
        monkeypatch.setenv("AIRFLOW_CONN_METRICS_CENTER_SLACK", stub.connection())
        state, tasks, results = _run_maintenance()

    assert state == "success", tasks
    assert tasks == {
        "follow_up_approvals": "success",
        "deliver_notifications": "success",
        "prune_staging": "success",
    }
    assert len(stub.posted) == 1 and stub.posted[0].channel == stub.channel_id("#sales-metrics")
    with mart.connect() as conn:
        assert (
            conn.execute(sa.select(n.c.state, n.c.slack_ts)).all() == [("delivered", stub.posted[0].ts)] * 3
        )
    assert results["deliver_notifications"]["delivered"] == 3

    remaining = {run_id for run_id, folder in folders.items() if folder.is_dir()}
    assert remaining == {RUNNING, UNREGISTERED, YOUNG}
    assert results["prune_staging"]["runs"] == 2
    assert results["prune_staging"]["kept_unfinished"] == [f"{METRIC}/{RUNNING} (running)"]
    assert results["prune_staging"]["kept_unknown"] == [f"{METRIC}/{folders[UNREGISTERED].name}"]


def test_maintenance_run_without_slack_keeps_everything_pending_and_succeeds(
    mart, staging, monkeypatch, airflow_db
):
    monkeypatch.delenv("AIRFLOW_CONN_METRICS_CENTER_SLACK", raising=False)
    _enqueue(mart, count=2)

    state, tasks, results = _run_maintenance()

    assert state == "success", tasks
    assert results["deliver_notifications"]["pending"] == 2
    assert "metrics_center_slack" in results["deliver_notifications"]["skipped"]
    with mart.connect() as conn:
        assert conn.execute(sa.select(n.c.state, n.c.attempts)).all() == [("pending", 0)] * 2


def test_a_bad_retention_setting_says_how_to_fix_it(monkeypatch):
    from metrics_center.errors import MetricsCenterError
    from metrics_center.orchestration.maintenance import staging_retention

    monkeypatch.setenv("METRICS_CENTER_STAGING_RETENTION", "two weeks")
    with pytest.raises(
        MetricsCenterError, match=r"METRICS_CENTER_STAGING_RETENTION: 'two weeks' is not a duration"
    ):
        staging_retention()
    monkeypatch.setenv("METRICS_CENTER_STAGING_RETENTION", "36h")
    assert staging_retention() == timedelta(hours=36)
    monkeypatch.delenv("METRICS_CENTER_STAGING_RETENTION")
    assert staging_retention() == timedelta(days=14)


class _TaskInstance:
    """Stands in for ``context["ti"]``: answers ``get_dagrun_state`` as the Task SDK does on a worker."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def get_dagrun_state(self, *, dag_id: str, run_id: str):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_dagrun_state_reads_the_sdk_enum_and_a_workers_404():
    from airflow.sdk.api.datamodels._generated import DagRunState
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    from metrics_center.orchestration.maintenance import dagrun_state

    assert str(DagRunState.RUNNING) == "DagRunState.RUNNING"  # why .value is compared
    assert dagrun_state(_TaskInstance(DagRunState.RUNNING), "m", "r") == "running"
    assert dagrun_state(_TaskInstance("queued"), "m", "r") == "queued"
    missing = ErrorResponse(
        error=ErrorType.API_SERVER_ERROR, detail={"status_code": 404, "message": "not found"}
    )
    assert dagrun_state(_TaskInstance(AirflowRuntimeError(missing)), "m", "r") is None
    broken = ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 500})
    with pytest.raises(AirflowRuntimeError):
        dagrun_state(_TaskInstance(AirflowRuntimeError(broken)), "m", "r")
