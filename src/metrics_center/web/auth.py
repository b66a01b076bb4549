"""Who is asking and what they may see or answer — always through Airflow's own auth manager.

Every route takes the user from Airflow's ``get_user`` (the UI's ``_token`` cookie or a Bearer token;
none → 401, a forged one → 403). Reading a metric needs read access to its DAG; seeing or answering
its approvals needs Airflow's HITL permission on that DAG (``DagAccessEntity.HITL_DETAIL``), exactly
as Airflow's own Required Actions page does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, HTTPException, Request

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.loader import Catalog
    from metrics_center.definitions.spec import MetricSpec, Teams

Method = Literal["GET", "PUT"]


@dataclass(frozen=True)
class Viewer:
    """The logged-in Airflow user and the person of ``_teams.yaml`` they are (None: nobody there)."""

    user: Any
    user_id: str
    person: str | None
    name: str
    #: The language the pages speak to them: their ``locale:`` in _teams.yaml (or their department's), else
    #: their browser's Accept-Language, else English.
    locale: str = "en"


@dataclass(frozen=True)
class Context:
    """What every route works with: the viewer, the catalog, the mart and where the app is mounted."""

    viewer: Viewer
    catalog: Catalog
    engine: Engine
    base: str  # this app's path prefix, e.g. /metrics-center
    airflow_base: str  # Airflow's own (usually "")


def context(request: Request, user: GetUserDep) -> Context:
    """Airflow's ``get_user`` first (401/403 before anything is read), then the catalog and the mart."""
    from metrics_center.mart.engine import get_engine

    catalog = load_catalog()
    return Context(
        viewer=viewer_for(user, catalog.teams, accept_language=request.headers.get("accept-language")),
        catalog=catalog,
        engine=get_engine(),
        base=request.scope.get("root_path", "").rstrip("/"),
        airflow_base=request.scope.get("app_root_path", "").rstrip("/"),
    )


ContextDep = Annotated[Context, Depends(context)]


def load_catalog() -> Catalog:
    """The metric definitions and teams as they are now (a few ms: read on every request)."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog as load

    return load(settings.metrics_dir(), sql_root=settings.sql_dir())


def viewer_for(user: Any, teams: Teams | None, *, accept_language: str | None = None) -> Viewer:
    from metrics_center.i18n.translate import negotiate, normalize

    user_id = str(user.get_id())
    person = teams.person_for_airflow_user(user_id) if teams else None
    name = teams.people[person].name if teams and person else user.get_name()
    chosen = person_locale(teams, person)
    locale = normalize(chosen) if chosen else negotiate(accept_language)
    return Viewer(user=user, user_id=user_id, person=person, name=name, locale=locale)


def person_locale(teams: Teams | None, person: str | None) -> str | None:
    """``locale:`` of the person in _teams.yaml, else of their department; None when neither says."""
    if teams is None or person is None or person not in teams.people:
        return None
    found = teams.people[person]
    department = teams.departments.get(found.department)
    return found.locale or (department.locale if department is not None else None)


def may(user: Any, *, dag_id: str, method: Method = "GET", hitl: bool = False) -> bool:
    """Airflow's verdict for ``user`` on the DAG ``dag_id`` (its HITL details when ``hitl``)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    return get_auth_manager().is_authorized_dag(
        method=method,
        access_entity=DagAccessEntity.HITL_DETAIL if hitl else None,
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
        user=user,
    )


def allowed(user: Any, dag_ids: Iterable[str], *, hitl: bool = False) -> list[str]:
    """The ``dag_ids`` the user may read (their approval details, when ``hitl``), in the given order.

    Reading uses the auth manager's batch answer first (one query); a DAG it does not list — forbidden,
    or not parsed by Airflow yet — is asked about on its own.
    """
    from airflow.api_fastapi.app import get_auth_manager

    ids = list(dict.fromkeys(dag_ids))
    if hitl:
        return [d for d in ids if may(user, dag_id=d, hitl=True)]
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    return [d for d in ids if d in readable or may(user, dag_id=d)]


def readable(viewer: Viewer, catalog: Catalog, keys: Iterable[str]) -> list[str]:
    """Of ``keys``, the metrics whose values the viewer's person may read (``access:``, ``readers:``)."""
    from metrics_center.definitions.access import may_read

    metrics = catalog.metrics
    return [
        k
        for k in keys
        if k in metrics and may_read(metrics[k].spec, teams=catalog.teams, person=viewer.person)
    ]


def require_metric(catalog: Catalog, key: str, *, viewer: Viewer | None = None) -> MetricSpec:
    """The metric ``key`` (its DAG access was checked by the route's ``requires_access_dag``), else 404; with
    ``viewer``, 403 unless the viewer's person may read it (权限分级)."""
    loaded = catalog.metrics.get(key)
    if loaded is None:
        raise HTTPException(status_code=404, detail=f"No metric {key!r} is defined")
    if viewer is not None and not readable(viewer, catalog, [key]):
        raise HTTPException(
            status_code=403,
            detail=f"{loaded.spec.name} is readable by {_readers_text(loaded.spec)} only "
            f"(access: {loaded.spec.access}); ask its owner {loaded.spec.owner}",
        )
    return loaded.spec


def _readers_text(spec: MetricSpec) -> str:
    readers = list(spec.readers)
    if spec.access == "department":
        readers = [spec.department, *readers]
    return ", ".join(dict.fromkeys(readers)) or "nobody listed"


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing request sent by another site's page (the cookie is SameSite=Lax too).

    Browsers send ``Origin`` (else ``Referer``) with every POST; it must name this server (as the
    request reached it, or as ``[api] base_url`` says). API clients with a Bearer token and no browser
    send neither, and are not at risk.
    """
    from airflow.configuration import conf

    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return
    ours = {request.headers.get("host", ""), urlsplit(conf.get("api", "base_url", fallback="") or "").netloc}
    if urlsplit(source).netloc not in ours - {""}:
        raise HTTPException(status_code=403, detail="Cross-site request refused")
