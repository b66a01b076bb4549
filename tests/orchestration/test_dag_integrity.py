"""The DAG file as Airflow itself parses it: DagBag in a clean interpreter, like the DAG processor.

Each scenario runs once in a fresh ``python`` process (module fixtures) with this session's
environment (conftest: AIRFLOW_HOME, METRICS_CENTER_HOME, …), and reports what Airflow saw as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DAG_FILE = REPO / "dags" / "metrics_center_dags.py"
DEMO_METRICS = REPO / "include" / "metrics"
HEAVY = ("great_expectations", "duckdb", "pandas")

# Runs in the child process. argv: dag file, JSON list of parsing-context dag ids, dag id to test-run.
PROBE = r"""
import json, os, sys

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import get_parsing_context
from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager
from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

dag_file, context_ids, test_dag_id = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
assert get_parsing_context().dag_id is None, "parsing context leaked into the child"


def describe(dag):
    return {
        "fileloc": dag.fileloc,
        "tags": sorted(dag.tags),
        "description": dag.description,
        "doc_md": dag.doc_md,
        "timetable": type(dag.timetable).__name__,
        "paused_on_creation": dag.is_paused_upon_creation,
        "tasks": {
            t.task_id: {
                "downstream": sorted(t.downstream_task_ids),
                "outlets": [[type(o).__name__, getattr(o, "uri", None)] for o in t.outlets],
            }
            for t in dag.tasks
        },
    }


bag = DagBag(dag_folder=dag_file, safe_mode=True)  # Airflow 3.3's DagBag never loads example DAGs
out = {
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
    "heavy_modules": sorted(m for m in HEAVY if m in sys.modules),
    "context": {},
}
for dag_id in context_ids:
    # What Airflow's task runner does before parsing the file for one task of one DAG.
    with _airflow_parsing_context_manager(dag_id=dag_id):
        assert get_parsing_context().dag_id == dag_id
        scoped = DagBag(dag_folder=dag_file, safe_mode=True)
        out["context"][dag_id] = {"dags": sorted(scoped.dags), "import_errors": len(scoped.import_errors)}
    os.environ.pop(_AIRFLOW_PARSING_CONTEXT_DAG_ID, None)  # the manager only restores a previous value
if test_dag_id:
    run = bag.dags[test_dag_id].test()
    out["test_run"] = {
        "state": str(run.state),
        "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
    }
print("PROBE-RESULT " + json.dumps(out))
""".replace("HEAVY", repr(HEAVY), 1)


def _probe(*, home: Path, context_ids: list[str] = (), test_dag_id: str = "") -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
    env["METRICS_CENTER_HOME"] = str(home)
    assert "AIRFLOW_HOME" in env and env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAG_FILE), json.dumps(list(context_ids)), test_dag_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("PROBE-RESULT ")]
    assert len(lines) == 1, result.stdout[-3000:]
    return json.loads(lines[0].removeprefix("PROBE-RESULT "))


def _demo_yaml(key: str) -> dict[str, Any]:
    """The demo definition read as plain YAML, independently of the code under test."""
    return yaml.safe_load((DEMO_METRICS / f"{key}.yaml").read_text())


DEMO_KEYS = sorted(p.stem for p in DEMO_METRICS.glob("*.yaml") if not p.name.startswith("_"))

#: task id → its downstream task ids, written out by hand from the demo YAML files.
EXPECTED_GRAPHS = {
    "gmv_daily": {
        "register_definition": ["extract_orders", "extract_refunds", "extract_settlements", "impact_preview"],
        "impact_preview": ["approve_sales_review"],  # the first approver sees a breaking version's impact
        "extract_orders": ["transform"],
        "extract_refunds": ["transform"],
        "extract_settlements": ["transform"],
        "transform": ["quality_check"],
        "quality_check": ["approve_sales_review"],
        "approve_sales_review": ["approve_finance_sign_off"],
        "approve_finance_sign_off": ["publish"],
        "publish": [],
    },
    "lead_conversion_rate": {
        "register_definition": ["extract_leads", "extract_orders", "impact_preview"],
        "impact_preview": ["approve"],
        "extract_leads": ["transform"],
        "extract_orders": ["transform"],
        "transform": ["quality_check"],
        "quality_check": ["approve"],  # a single stage is just `approve`
        "approve": ["publish"],
        "publish": [],
    },
    "refund_rate_daily": {
        "register_definition": ["extract_gmv", "extract_refunds", "impact_preview"],
        "impact_preview": ["approve"],
        "extract_gmv": ["transform"],  # metric sources: the published gmv_daily and refunds_daily
        "extract_refunds": ["transform"],
        "transform": ["quality_check"],
        "quality_check": ["approve"],
        "approve": ["publish"],
        "publish": [],
    },
    "refund_rate_weekly": {
        "register_definition": ["extract_orders", "extract_refunds", "impact_preview"],
        "impact_preview": ["approve_finance_review"],
        "extract_orders": ["transform"],
        "extract_refunds": ["transform"],
        "transform": ["quality_check"],
        "quality_check": ["approve_finance_review"],
        "approve_finance_review": ["approve_data_team_sign_off"],
        "approve_data_team_sign_off": ["publish"],
        "publish": [],
    },
    "refunds_daily": {
        "register_definition": ["extract_refunds", "impact_preview"],
        "impact_preview": ["approve"],
        "extract_refunds": ["transform"],
        "transform": ["quality_check"],
        "quality_check": ["approve"],
        "approve": ["publish"],
        "publish": [],
    },
}


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    return _probe(home=REPO / "include")


@pytest.fixture(scope="module")
def broken_home(tmp_path_factory) -> Path:
    """The demo metrics plus one broken file (an approver who is not in _teams.yaml)."""
    home = tmp_path_factory.mktemp("mc-home")
    shutil.copytree(REPO / "include" / "sql", home / "sql")
    shutil.copytree(DEMO_METRICS, home / "metrics")
    shutil.copy(FIXTURES / "broken" / "metrics" / "unknown_approver.yaml", home / "metrics")
    return home


@pytest.fixture(scope="module")
def with_broken(broken_home: Path, airflow_db) -> dict[str, Any]:
    return _probe(
        home=broken_home, context_ids=["gmv_daily", "unknown_approver"], test_dag_id="unknown_approver"
    )


# --- the demo metrics ---------------------------------------------------------------------------


def test_no_import_errors(demo):
    assert demo["import_errors"] == {}


def test_one_dag_per_demo_metric(demo):
    assert sorted(EXPECTED_GRAPHS) == DEMO_KEYS
    assert sorted(demo["dags"]) == DEMO_KEYS
    for dag in demo["dags"].values():
        assert Path(dag["fileloc"]) == DAG_FILE
        assert "metric-definition-error" not in dag["tags"]


def test_parsing_imports_no_heavy_library(demo):
    assert demo["heavy_modules"] == [], "DAG parsing must not import great_expectations, duckdb or pandas"


@pytest.mark.parametrize("key", sorted(EXPECTED_GRAPHS))
def test_task_graph(demo, key):
    tasks = demo["dags"][key]["tasks"]
    assert {t: d["downstream"] for t, d in tasks.items()} == EXPECTED_GRAPHS[key]
    # Extracts run in parallel: each sits between register_definition and transform, nothing else.
    sources = sorted(_demo_yaml(key)["sources"])
    extracts = sorted(t for t in tasks if t.startswith("extract_"))
    assert extracts == [f"extract_{s}" for s in sources]


@pytest.mark.parametrize("key", sorted(EXPECTED_GRAPHS))
def test_only_publish_emits_the_metric_asset(demo, key):
    tasks = demo["dags"][key]["tasks"]
    assert tasks["publish"]["outlets"] == [["Asset", f"metrics_mart://{key}"]]
    assert all(not t["outlets"] for task_id, t in tasks.items() if task_id != "publish")


@pytest.mark.parametrize("key", sorted(EXPECTED_GRAPHS))
def test_tags_and_docs_tell_what_the_metric_is(demo, key):
    definition = _demo_yaml(key)
    dag = demo["dags"][key]
    assert definition["department"] in dag["tags"]
    assert f"owner:{definition['owner']}" in dag["tags"]
    doc = dag["doc_md"]
    assert definition["description"] in doc
    for name, source in definition["sources"].items():
        assert f"`{name}`" in doc
        assert (source.get("path") or source.get("sql") or source["metric"]) in doc
    for stage in definition["approval"]["stages"]:
        # Each stage is listed with its approvers on one line.
        assert any(
            stage["name"] in line and all(person in line for person in stage["approvers"])
            for line in doc.splitlines()
        ), stage
    assert dag["description"].startswith(definition["name"])
    # Built on other metrics (schedule: inputs): Airflow's data-aware scheduling on their Assets.
    on_inputs = definition["schedule"] == "inputs"
    assert dag["timetable"] == ("AssetTriggeredTimetable" if on_inputs else "CronTriggerTimetable")


# --- a broken file beside them ------------------------------------------------------------------


def test_good_dags_still_load_beside_a_broken_file(with_broken):
    assert with_broken["import_errors"] == {}
    assert sorted(with_broken["dags"]) == sorted([*DEMO_KEYS, "unknown_approver"])
    for key in DEMO_KEYS:
        tasks = with_broken["dags"][key]["tasks"]
        assert {t: d["downstream"] for t, d in tasks.items()} == EXPECTED_GRAPHS[key]


def test_broken_file_gets_a_loud_placeholder_dag(with_broken):
    dag = with_broken["dags"]["unknown_approver"]
    assert dag["tags"] == ["metric-definition-error"]
    assert dag["description"].startswith("BROKEN DEFINITION")
    assert "'mallory' is not a person" in dag["description"]
    assert (
        "approval.stages[0].approvers[0]: approver 'mallory' is not a person (or a department with people)"
        " in _teams.yaml" in dag["doc_md"]
    )
    assert "unknown_approver.yaml:34:" in dag["doc_md"]  # the line of `- mallory`
    assert list(dag["tasks"]) == ["definition_error"]
    assert dag["paused_on_creation"] is True
    assert dag["timetable"] == "NullTimetable"  # never scheduled


def test_placeholder_task_fails_when_run(with_broken):
    assert with_broken["test_run"]["state"] == "failed"
    assert with_broken["test_run"]["tasks"] == {"definition_error": "failed"}


def test_parsing_context_builds_only_the_named_dag(with_broken):
    # A worker running a task of gmv_daily reads gmv_daily.yaml only: no other DAG, no placeholder.
    assert with_broken["context"]["gmv_daily"] == {"dags": ["gmv_daily"], "import_errors": 0}
    assert with_broken["context"]["unknown_approver"] == {"dags": ["unknown_approver"], "import_errors": 0}
