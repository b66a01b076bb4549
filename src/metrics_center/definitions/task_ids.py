"""The task ids of a metric's DAG: one place names them, so the DAG, the page, Slack and the logs agree."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metrics_center.definitions.spec import ApprovalStage, MetricSpec

REGISTER_TASK_ID = "register_definition"  # its XCom names the run's periods
IMPACT_PREVIEW_TASK_ID = "impact_preview"
TRANSFORM_TASK_ID = "transform"
QUALITY_TASK_ID = "quality_check"
PUBLISH_TASK_ID = "publish"
ERROR_TASK_ID = "definition_error"  # the only task of a broken file's placeholder DAG


def extract_task_id(source: str) -> str:
    return f"extract_{source}"


def approve_task_id(spec: MetricSpec, stage: ApprovalStage) -> str:
    """``approve`` for a single stage, ``approve_<stage slug>`` when there are several."""
    return "approve" if len(spec.approval.stages) == 1 else f"approve_{stage.slug}"


def stage_of(spec: MetricSpec, task_id: str) -> ApprovalStage | None:
    """The approval stage whose task is ``task_id``; None for any other task."""
    return next((s for s in spec.approval.stages if approve_task_id(spec, s) == task_id), None)
