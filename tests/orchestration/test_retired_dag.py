"""A retired metric's DAG: no schedule, paused when Airflow first sees it, tasks that refuse to compute (a manual
trigger publishes nothing); a deprecated one keeps running and says so."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from metrics_center.definitions.task_ids import (
    IMPACT_PREVIEW_TASK_ID,
    PUBLISH_TASK_ID,
    QUALITY_TASK_ID,
    REGISTER_TASK_ID,
    TRANSFORM_TASK_ID,
)
from metrics_center.orchestration.dag_builder import build_dags

REPO = Path(__file__).resolve().parents[2]
RETIRED, DEPRECATED = "lead_conversion_rate", "gmv_daily"


def _lifecycle(home: Path, key: str, lines: str) -> None:
    path = home / "metrics" / f"{key}.yaml"
    text = path.read_text()
    marker = next(line for line in text.splitlines() if line.startswith("grain:"))
    path.write_text(text.replace(marker, f"{marker}\n{lines}", 1))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The demo with lead_conversion_rate retired (→ gmv_daily) and gmv_daily deprecated (→ refunds_daily)."""
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    _lifecycle(home, RETIRED, "status: retired\nreplaced_by: gmv_daily")
    _lifecycle(home, DEPRECATED, "status: deprecated\nreplaced_by: refunds_daily")
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


def test_a_retired_metric_has_no_schedule_starts_paused_and_its_tasks_refuse(home):
    dags = build_dags(home / "metrics")
    retired, deprecated, active = dags[RETIRED], dags[DEPRECATED], dags["refunds_daily"]

    assert retired.schedule is None and type(retired.timetable).__name__ == "NullTimetable"
    assert retired.is_paused_upon_creation is True
    assert "retired" in retired.tags and retired.description.startswith("[retired → gmv_daily] Lead → order")
    assert "⛔ **Retired** — no new periods are computed; use `gmv_daily` instead." in retired.doc_md
    # A deprecated metric keeps its schedule and its place; only its words change.
    assert type(deprecated.timetable).__name__ == "CronTriggerTimetable"
    assert deprecated.is_paused_upon_creation is None and "deprecated" in deprecated.tags
    assert deprecated.description.startswith("[deprecated → refunds_daily] GMV")
    assert "**Deprecated** — use `refunds_daily` instead" in deprecated.doc_md
    assert active.is_paused_upon_creation is None and active.description.startswith("Refunds")
    assert not {"retired", "deprecated"} & set(active.tags)

    computing = [
        REGISTER_TASK_ID,
        IMPACT_PREVIEW_TASK_ID,
        TRANSFORM_TASK_ID,
        QUALITY_TASK_ID,
        PUBLISH_TASK_ID,
    ]
    computing += [t.task_id for t in retired.tasks if t.task_id.startswith("extract_")]
    for task_id in computing:
        with pytest.raises(AirflowFailException) as refused:
            retired.get_task(task_id).pre_execute(context={})
        assert str(refused.value).startswith(
            "lead_conversion_rate is retired (status: retired in lead_conversion_rate.yaml): it computes and "
            "publishes no new period — read gmv_daily (its replacement) instead."
        )
        assert "set status: active (or deprecated)" in str(refused.value)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_triggering_a_retired_metric_computes_and_publishes_nothing(home, mart):
    from metrics_center.mart.tables import metric_definition, metric_run, publication

    dag = build_dags(home / "metrics", only_dag_id=RETIRED)[RETIRED]
    run = dag.test(logical_date=datetime(2026, 11, 27, tzinfo=UTC))
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    assert str(getattr(run.state, "value", run.state)) == "failed"
    assert states[REGISTER_TASK_ID] == "failed"
    assert states[PUBLISH_TASK_ID] == "upstream_failed"
    with mart.connect() as conn:
        for table in (metric_definition, metric_run, publication):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0, table.name
