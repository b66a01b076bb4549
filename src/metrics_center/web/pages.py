"""The server-rendered pages: My approvals, the metric dictionary, a metric, the audit — and their assets."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from metrics_center.i18n.translate import using
from metrics_center.web import approvals_view, definition_view, dictionary, queries
from metrics_center.web.auth import ContextDep, allowed, readable, require_metric, require_same_origin
from metrics_center.web.render import STATIC_DIR, render_page

if TYPE_CHECKING:
    from fastapi import FastAPI

    from metrics_center.web.auth import Context

router = APIRouter()
FLASH_COOKIE = "mc_flash"
AUDIT_PAGE_SIZE = 50
STATIC_FILES = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
    "app.css": "text/css",
    "charts.js": "text/javascript",
}
ACTIONS = {"approve": ("Approve", False), "reject": ("Reject", False), "expected": ("Approve", True)}


def _html(
    ctx: Context, template: str, *, section: str, status_code: int = 200, **values: Any
) -> HTMLResponse:
    body = render_page(
        template,
        locale=ctx.viewer.locale,
        ctx=ctx,
        viewer=ctx.viewer,
        section=section,
        base=ctx.base,
        quote=_q,
        **values,
    )
    return HTMLResponse(body, status_code=status_code)


def _q(value: Any) -> str:
    """A path segment, every reserved character escaped (run ids hold ``:`` and ``+``)."""
    return quote(str(value), safe="")


@router.get("/", response_class=HTMLResponse)
def my_approvals(request: Request, ctx: ContextDep, page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    found = approvals_view.waiting_cards(viewer=ctx.viewer, catalog=ctx.catalog, engine=ctx.engine, page=page)
    response = _html(
        ctx,
        "approvals.html",
        section="approvals",
        cards=found.cards,
        found=found,
        definitions=definition_view.definition_cards(
            viewer=ctx.viewer, catalog=ctx.catalog, engine=ctx.engine
        ),
        flash=_read_flash(request),
        waited=approvals_view.waited,
    )
    response.delete_cookie(FLASH_COOKIE, path=ctx.base or "/")
    return response


@router.post(
    "/approvals/{dag_id}/{run_id}/{task_id}",
    dependencies=[
        Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.HITL_DETAIL)),
        Depends(require_same_origin),
    ],
)
def answer_form(
    ctx: ContextDep,
    dag_id: str,
    run_id: str,
    task_id: str,
    action: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """The page's buttons: answer, then show the outcome on My approvals (post/redirect/get)."""
    require_metric(ctx.catalog, dag_id)
    if action not in ACTIONS:
        raise HTTPException(status_code=422, detail=f"Unknown action {action!r}")
    option, expected = ACTIONS[action]
    with using(ctx.viewer.locale):  # the flash message in the person's language (the audit stays English)
        outcome = approvals_view.answer(
            engine=ctx.engine,
            catalog=ctx.catalog,
            viewer=ctx.viewer,
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            option=option,
            reason=reason,
            expected=expected,
        )
    return _back_with_flash(ctx, status=outcome.status, message=outcome.message)


@router.post(
    "/definitions/{dag_id}/{version}",
    dependencies=[
        Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.HITL_DETAIL)),
        Depends(require_same_origin),
    ],
)
def sign_off_form(
    ctx: ContextDep,
    dag_id: str,
    version: int,
    action: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """A definition reviewer's Approve / Reject of a proposed version (post/redirect/get, like stages)."""
    if action not in ("approve", "reject"):
        raise HTTPException(status_code=422, detail=f"Unknown action {action!r}")
    outcome = definition_view.answer_definition(
        engine=ctx.engine,
        catalog=ctx.catalog,
        viewer=ctx.viewer,
        metric_key=dag_id,
        version=version,
        option="Approve" if action == "approve" else "Reject",
        reason=reason,
    )
    with using(ctx.viewer.locale):
        message = outcome.message.shown()
    return _back_with_flash(ctx, status=outcome.status, message=message)


def _back_with_flash(ctx: Context, *, status: str, message: str) -> RedirectResponse:
    """To My approvals, which shows the outcome once (post/redirect/get)."""
    response = RedirectResponse(f"{ctx.base}/", status_code=303)
    flash = json.dumps({"status": status, "message": message})
    response.set_cookie(
        FLASH_COOKIE, quote(flash), max_age=120, path=ctx.base or "/", httponly=True, samesite="lax"
    )
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    from urllib.parse import unquote

    raw = request.cookies.get(FLASH_COOKIE)
    try:
        flash = json.loads(unquote(raw)) if raw else None
    except ValueError:
        return None
    return flash if isinstance(flash, dict) else None


@router.get("/metrics", response_class=HTMLResponse)
def metric_dictionary(
    ctx: ContextDep,
    q: str = "",
    department: str = "",
    owner: str = "",
    tag: str = "",
    status: Literal["", "active", "deprecated", "retired"] = "",
) -> HTMLResponse:
    search = dictionary.Search(q=q.strip(), department=department, owner=owner, tag=tag, status=status)
    keys = readable(ctx.viewer, ctx.catalog, allowed(ctx.viewer.user, ctx.catalog.metrics))
    found = dictionary.entries(ctx.catalog, ctx.engine, keys, search)
    choices = dictionary.filter_choices(ctx.catalog)
    return _html(ctx, "dictionary.html", section="dictionary", entries=found, search=search, choices=choices)


@router.get(
    "/metrics/{dag_id}",
    response_class=HTMLResponse,
    dependencies=[Depends(requires_access_dag(method="GET"))],
)
def metric_page(ctx: ContextDep, dag_id: str) -> HTMLResponse:
    spec = require_metric(ctx.catalog, dag_id, viewer=ctx.viewer)
    metric = dictionary.detail(ctx.catalog, ctx.engine, spec)
    return _html(ctx, "metric.html", section="dictionary", metric=metric)


@router.get("/audit", response_class=HTMLResponse)
def audit(
    ctx: ContextDep,
    metric: str = "",
    person: str = "",
    stage: str = "",
    decision: str = "",
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    where = queries.AuditFilter(metric, person, stage, decision, since, until)
    keys = audit_keys(ctx)
    rows, total = queries.audit_events(ctx.engine, keys, where, page=page, per_page=AUDIT_PAGE_SIZE)
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    return _html(
        ctx,
        "audit.html",
        section="audit",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        where=where,
        choices=queries.audit_choices(ctx.engine, keys),
        people=ctx.catalog.teams.people if ctx.catalog.teams else {},
        query_for=lambda p: _audit_query(where, p),
    )


def audit_keys(ctx: Context) -> list[str]:
    """Metrics whose approvals the viewer may read: defined ones and any the mart still remembers."""
    import sqlalchemy as sa

    from metrics_center.mart.tables import approval_event

    with ctx.engine.connect() as conn:
        seen = conn.execute(sa.select(approval_event.c.metric_key).distinct()).scalars().all()
    return allowed(ctx.viewer.user, [*ctx.catalog.metrics, *seen], hitl=True)


def _audit_query(where: queries.AuditFilter, page: int) -> str:
    from urllib.parse import urlencode

    params = {k: v for k, v in vars(where).items() if v}
    return "?" + urlencode({**params, "page": page})


@router.get("/static/{name}")
def static(name: str, user: GetUserDep) -> FileResponse:
    """The page's assets (vendored uPlot, our CSS and chart code); behind Airflow's login like the rest."""
    if name not in STATIC_FILES:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(
        STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"cache-control": "private, max-age=3600"}
    )


def install_error_pages(app: FastAPI) -> None:
    """Errors as JSON under ``/api`` (and for non-browser clients), as a page with a login link elsewhere."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from metrics_center.i18n.translate import negotiate

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        root = request.scope.get("root_path", "")
        if request.url.path.startswith(f"{root}/api/") or "text/html" not in request.headers.get(
            "accept", ""
        ):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        body = render_page(
            "error.html",
            locale=negotiate(request.headers.get("accept-language")),
            status=exc.status_code,
            detail=exc.detail,
            base=root.rstrip("/"),
            login=_login_url(request) if exc.status_code in (401, 403) else None,
        )
        return HTMLResponse(body, status_code=exc.status_code, headers=headers)


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))
