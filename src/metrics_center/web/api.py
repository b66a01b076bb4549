"""The JSON API under ``/metrics-center/api/`` (same Airflow auth as the pages; CSV for values)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from metrics_center.web import approvals_view, definition_view, dictionary, queries
from metrics_center.web.auth import ContextDep, allowed, readable, require_metric, require_same_origin
from metrics_center.web.pages import AUDIT_PAGE_SIZE, audit_keys

router = APIRouter()
#: How an answer's outcome maps to HTTP (the body always carries status and message).
OUTCOME_STATUS = {
    "recorded": 200,
    "invalid": 422,
    "refused": 403,
    "already_answered": 409,
    "not_waiting": 409,
    "already_decided": 409,
    "unknown": 404,
}


class AnswerBody(BaseModel):
    """``{"option": "Approve" | "Reject", "reason": "...", "expected": false}`` — strict types: ``"yes"`` is no bool."""

    model_config = ConfigDict(extra="forbid", strict=True)

    option: Literal["Approve", "Reject"]
    reason: str | None = Field(default=None, max_length=2000)
    expected: bool = Field(default=False, description="Approve and mark this run's anomalies expected.")


@router.get("/approvals")
def my_approvals(
    ctx: ContextDep,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=approvals_view.MAX_PAGE_SIZE)] = approvals_view.PAGE_SIZE,
) -> dict[str, Any]:
    """The stages waiting for the logged-in person, newest first, a page at a time."""
    found = approvals_view.waiting_cards(
        viewer=ctx.viewer, catalog=ctx.catalog, engine=ctx.engine, page=page, per_page=per_page
    )
    return jsonable_encoder(
        {
            "user": ctx.viewer.user_id,
            "person": ctx.viewer.person,
            "total": found.total,
            "page": found.page,
            "per_page": found.per_page,
            "by_metric": found.by_metric,
            "approvals": [c.as_json() for c in found.cards],
            "definitions": [
                d.as_json()
                for d in definition_view.definition_cards(
                    viewer=ctx.viewer, catalog=ctx.catalog, engine=ctx.engine
                )
            ],
        }
    )


class SignoffBody(BaseModel):
    """``{"option": "Approve" | "Reject", "reason": "..."}`` for a proposed definition version."""

    model_config = ConfigDict(extra="forbid", strict=True)

    option: Literal["Approve", "Reject"]
    reason: str | None = Field(default=None, max_length=2000)


@router.post(
    "/definitions/{dag_id}/{version}",
    dependencies=[
        Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.HITL_DETAIL)),
        Depends(require_same_origin),
    ],
)
def sign_off_definition(ctx: ContextDep, dag_id: str, version: int, body: SignoffBody) -> JSONResponse:
    """Sign off (or reject) a proposed definition version as the logged-in reviewer."""
    outcome = definition_view.answer_definition(
        engine=ctx.engine,
        catalog=ctx.catalog,
        viewer=ctx.viewer,
        metric_key=dag_id,
        version=version,
        option=body.option,
        reason=body.reason or "",
    )
    return JSONResponse(
        {"status": outcome.status, "message": str(outcome.message)},
        status_code=OUTCOME_STATUS[outcome.status],
    )


@router.post(
    "/approvals/{dag_id}/{run_id}/{task_id}",
    dependencies=[
        Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.HITL_DETAIL)),
        Depends(require_same_origin),
    ],
)
def answer(ctx: ContextDep, dag_id: str, run_id: str, task_id: str, body: AnswerBody) -> JSONResponse:
    """Answer a stage as the logged-in person (blocks ≤ 2.5 s while a just-parked stage settles)."""
    require_metric(ctx.catalog, dag_id)
    outcome = approvals_view.answer(
        engine=ctx.engine,
        catalog=ctx.catalog,
        viewer=ctx.viewer,
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        option=body.option,
        reason=body.reason,
        expected=body.expected,
    )
    return JSONResponse(
        {"status": outcome.status, "message": outcome.message, "stage": outcome.stage},
        status_code=OUTCOME_STATUS.get(outcome.status, 400),
    )


@router.get("/metrics")
def metrics(
    ctx: ContextDep,
    q: str = "",
    department: str = "",
    owner: str = "",
    tag: str = "",
    status: Literal["", "active", "deprecated", "retired"] = "",
) -> dict[str, Any]:
    """The dictionary: metrics the user may read, matching the search (``status``: only those in it)."""
    search = dictionary.Search(q=q.strip(), department=department, owner=owner, tag=tag, status=status)
    keys = readable(ctx.viewer, ctx.catalog, allowed(ctx.viewer.user, ctx.catalog.metrics))
    return {"metrics": dictionary.entries(ctx.catalog, ctx.engine, keys, search)}


@router.get("/metrics/{dag_id}", dependencies=[Depends(requires_access_dag(method="GET"))])
def metric(ctx: ContextDep, dag_id: str) -> dict[str, Any]:
    """One metric's definition, people, SQL, versions, latest values, open anomalies, publications."""
    spec = require_metric(ctx.catalog, dag_id, viewer=ctx.viewer)
    return jsonable_encoder(dictionary.detail(ctx.catalog, ctx.engine, spec))


@router.get("/metrics/{dag_id}/values", dependencies=[Depends(requires_access_dag(method="GET"))])
def values(
    ctx: ContextDep,
    dag_id: str,
    format: Literal["json", "csv"] = "json",
    since: Annotated[date | None, Query(alias="from")] = None,
    until: Annotated[date | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """The metric's current published values (``metric_value_current``), streamed as a JSON array or CSV."""
    spec = require_metric(ctx.catalog, dag_id, viewer=ctx.viewer)
    rows = queries.stream_values(ctx.engine, spec.key, since=since, until=until)
    if format == "csv":
        name = f"{spec.key}_values.csv"
        return StreamingResponse(
            _csv(rows, list(spec.dimensions)),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )
    return StreamingResponse(_json_array(rows), media_type="application/json")


def _csv(rows: Iterator[dict[str, Any]], dimensions: list[str]) -> Iterator[str]:
    """One column per dimension (and the JSON object for dimensions the definition no longer has)."""
    header = [c for c in queries.VALUE_COLUMNS if c != "dimensions"]
    header[3:3] = dimensions
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*header, "dimensions"])
    for row in rows:
        dims = row["dimensions"]
        writer.writerow(
            [
                *(_cell(row[c]) for c in header[:3]),
                *(dims.get(d, "") for d in dimensions),
                *(_cell(row[c]) for c in header[3 + len(dimensions) :]),
                json.dumps(dims, ensure_ascii=False, sort_keys=True),
            ]
        )
        if buffer.tell() > 64_000:
            yield _drain(buffer)
    yield _drain(buffer)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _json_array(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + json.dumps(jsonable_encoder(row), ensure_ascii=False)
    yield "]"


@router.get("/audit")
def audit(
    ctx: ContextDep,
    metric: str = "",
    person: str = "",
    stage: str = "",
    decision: str = "",
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = AUDIT_PAGE_SIZE,
) -> dict[str, Any]:
    """``approval_event`` rows (decisions and refused attempts), newest first, one page at a time."""
    where = queries.AuditFilter(metric, person, stage, decision, since, until)
    rows, total = queries.audit_events(ctx.engine, audit_keys(ctx), where, page=page, per_page=per_page)
    if page > 1 and not rows and total:
        raise HTTPException(status_code=404, detail=f"page {page} is past the last page")
    return jsonable_encoder({"total": total, "page": page, "per_page": per_page, "events": rows})
