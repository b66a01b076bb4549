"""Turn metric definitions into Airflow DAGs — one per metric, plus a loud placeholder per broken file.

Runs at DAG-parse time in several processes, so it does no DB or network I/O and imports nothing
heavy. With Airflow's parsing context naming one DAG (a worker running one task), only that metric's
file is read.

A retired metric (``status: retired``) keeps its DAG — its runs' history stays in Airflow — with no schedule,
paused when Airflow first sees it (``is_paused_upon_creation`` applies only to a DAG new to Airflow: one that
existed before is paused with ``airflow dags pause <key>``), and tasks that refuse to compute. A deprecated or
retired DAG is tagged ``deprecated`` / ``retired`` and its description starts with the status and the replacement.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.definitions.catalog_cache import cached_catalog
from metrics_center.definitions.lineage import asset_uri, metric_inputs
from metrics_center.definitions.loader import TEAMS_FILE, load_catalog, metric_files
from metrics_center.definitions.meaning import effective_timezone, render_doc
from metrics_center.definitions.retirement import is_retired
from metrics_center.definitions.spec import IDENTIFIER, MetricSpec, Teams
from metrics_center.errors import SpecProblem
from metrics_center.orchestration.pools import pool_for, priority_weight

if TYPE_CHECKING:
    from airflow.sdk import DAG

log = logging.getLogger(__name__)
START_DATE = datetime(2024, 1, 1)
BROKEN_TAG = "metric-definition-error"


def build_metric_dag(spec: MetricSpec, *, path: Path | None = None, teams: Teams | None = None) -> DAG:
    from airflow.sdk import DAG, Asset, AssetAny, CronTriggerTimetable

    from metrics_center.definitions.task_ids import (
        IMPACT_PREVIEW_TASK_ID,
        PUBLISH_TASK_ID,
        QUALITY_TASK_ID,
        REGISTER_TASK_ID,
        TRANSFORM_TASK_ID,
        approve_task_id,
        extract_task_id,
    )
    from metrics_center.orchestration.approval_operator import MetricApprovalOperator
    from metrics_center.orchestration.operators import (
        ExtractOperator,
        ImpactPreviewOperator,
        PublishOperator,
        QualityCheckOperator,
        RegisterDefinitionOperator,
        TransformOperator,
    )

    timezone = effective_timezone(spec)
    schedule: Any = None  # manual runs only; a retired metric: no new runs (a trigger's tasks refuse)
    if is_retired(spec):
        schedule = None
    elif spec.on_inputs:
        # Airflow's data-aware scheduling: a run whenever any input publishes; its run computes the
        # periods named in the events that every input has published (see run_periods).
        schedule = AssetAny(
            *(Asset(uri=asset_uri(k), name=k) for k in dict.fromkeys(metric_inputs(spec).values()))
        )
    elif spec.schedule:
        schedule = CronTriggerTimetable(spec.schedule, timezone=timezone)
    with DAG(
        dag_id=spec.key,
        description=dag_description(spec),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        # No max_active_runs=1: a run waiting a day for approval must not queue every other period.
        # Two runs of the *same* period are refused by register_definition instead.
        tags=sorted(
            {spec.department, f"owner:{spec.owner}", "metric", *spec.tags}
            | ({spec.status} if spec.status != "active" else set())
        ),
        # None: Airflow's default for a new DAG (dags_are_paused_at_creation); a retired one starts paused.
        is_paused_upon_creation=True if is_retired(spec) else None,
        owner_links={},
        doc_md=render_doc(spec, path=path),
        default_args={"owner": spec.owner, "retries": 0, "priority_weight": priority_weight(spec)},
        # No DAG params (no trigger form): every task deep-copies and re-validates its DAG's params when
        # built and serialised — one typed field made 1,000 metric DAGs 2.3x slower to parse. A restatement
        # is asked for in the trigger's configuration JSON instead (see README, Restatement).
    ) as dag:
        register = RegisterDefinitionOperator(task_id=REGISTER_TASK_ID, spec=spec, teams=teams)
        preview = ImpactPreviewOperator(task_id=IMPACT_PREVIEW_TASK_ID, spec=spec, teams=teams)
        extracts = [
            ExtractOperator(
                task_id=extract_task_id(name),
                spec=spec,
                source_name=name,
                pool=pool_for(spec=spec, source_name=name, teams=teams) or "default_pool",
            )
            for name in spec.sources
        ]
        transform = TransformOperator(task_id=TRANSFORM_TASK_ID, spec=spec)
        quality = QualityCheckOperator(task_id=QUALITY_TASK_ID, spec=spec, teams=teams)
        approvals = [
            MetricApprovalOperator(task_id=approve_task_id(spec, stage), spec=spec, stage=stage, teams=teams)
            for stage in spec.approval.stages
        ]
        publish = PublishOperator(
            task_id=PUBLISH_TASK_ID,
            spec=spec,
            teams=teams,
            outlets=[Asset(uri=asset_uri(spec.key), name=spec.key)],
        )
        register >> extracts >> transform >> quality
        register >> preview >> approvals[0]
        for upstream, downstream in pairwise([quality, *approvals, publish]):
            upstream >> downstream
    return dag


def dag_description(spec: MetricSpec) -> str:
    """What Airflow's DAG list says of the metric: ``[deprecated → net_gmv_daily] GMV — …`` when not active."""
    status = ""
    if spec.status != "active":
        status = f"[{spec.status}{f' → {spec.replaced_by}' if spec.replaced_by else ''}] "
    return f"{status}{spec.name} — {spec.description}"[:250]


def placeholder_dag_id(path: Path) -> str:
    """The DAG id a broken file keeps: its ``key:`` when readable, else its file name."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    match = re.search(r"^key:\s*['\"]?([A-Za-z0-9_]+)", text, re.MULTILINE)
    candidate = match.group(1) if match else path.stem
    if IDENTIFIER.match(candidate):
        return candidate
    return "broken_" + re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")


def build_broken_dag(*, dag_id: str, path: Path, problems: list[SpecProblem]) -> DAG:
    """A DAG that shows a file's errors in the UI and fails loudly if anyone runs it."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from metrics_center.definitions.task_ids import ERROR_TASK_ID

    message = "\n".join(str(p) for p in problems)
    with DAG(
        dag_id=dag_id,
        description=f"BROKEN DEFINITION ({len(problems)} problem(s)): {problems[0].message}"[:250],
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=[BROKEN_TAG],
        doc_md=(
            f"# ⚠️ `{path.name}` is not a valid metric definition\n\nThis metric is **not running**. "
            f"Fix the file and run `metrics-center validate`.\n\n```\n{message}\n```"
        ),
        is_paused_upon_creation=True,
    ) as dag:
        PythonOperator(task_id=ERROR_TASK_ID, python_callable=_fail, op_kwargs={"message": message})
    return dag


def _fail(message: str) -> None:
    from metrics_center.errors import MetricsCenterError

    raise MetricsCenterError(f"this metric definition is broken; fix it and redeploy:\n{message}")


def build_dags(metrics_dir: Path | None = None, *, only_dag_id: str | None = None) -> dict[str, DAG]:
    """All metric DAGs (or just ``only_dag_id``'s), plus placeholders for broken files."""
    metrics_dir = metrics_dir or settings.metrics_dir()
    only = None
    if only_dag_id:
        candidate = metrics_dir / f"{only_dag_id}.yaml"
        only = [candidate] if candidate.exists() else None
    if only is None:  # the dag-processor's full parse: validated once per change of the files
        catalog = cached_catalog(metrics_dir, sql_root=settings.sql_dir())
    else:
        catalog = load_catalog(metrics_dir, sql_root=settings.sql_dir(), only=only)
    dags: dict[str, DAG] = {}
    for key, loaded in catalog.metrics.items():
        dags[key] = build_metric_dag(loaded.spec, path=loaded.path, teams=catalog.teams)
    for problems in catalog.problems.values():
        for problem in problems:
            log.warning("metric definition error: %s", problem)
    if teams_problems := catalog.problems.get(metrics_dir / TEAMS_FILE):
        # Without people, approvals cannot be assigned: every metric shows the teams error (once, with
        # its own problems, if any, beside it).
        for metric_path in only or metric_files(metrics_dir):
            dag_id = placeholder_dag_id(metric_path)
            dags.pop(dag_id, None)
            problems = teams_problems + catalog.problems.get(metric_path, [])
            dags[dag_id] = build_broken_dag(dag_id=dag_id, path=metric_path, problems=problems)
        return dags
    for path, problems in catalog.problems.items():
        dag_id = placeholder_dag_id(path)
        if dag_id in dags:  # e.g. a duplicate key: keep the good one, show the error beside it
            dag_id = f"broken_{path.stem}"
        dags[dag_id] = build_broken_dag(dag_id=dag_id, path=path, problems=problems)
    return dags
