"""The metric dictionary (指标字典): every metric's meaning, people, sources, versions and values.

A deprecated or retired metric is listed with its status and what replaces it; a retired one's published history
stays readable on its page (values, charts, publications, the CSV download) like any other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center.web import queries
from metrics_center.web.charts import small_multiples

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.loader import Catalog
    from metrics_center.definitions.spec import MetricSpec, Teams

HISTORY_PERIODS = 90
#: A metric's statuses, in the order the search form offers them.
STATUSES = ("active", "deprecated", "retired")


@dataclass(frozen=True)
class Search:
    """Free text over name, key, description, department, owner, tags and a status other than active; exact
    filters beside it (``status``: active, deprecated or retired)."""

    q: str = ""
    department: str = ""
    owner: str = ""
    tag: str = ""
    status: str = ""

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.status and entry["status"] != self.status:
            return False
        if self.department and entry["department"]["key"] != self.department:
            return False
        if self.owner and entry["owner"]["key"] != self.owner:
            return False
        if self.tag and self.tag not in entry["tags"]:
            return False
        words = self.q.casefold().split()
        haystack = " ".join(
            [
                entry["key"],
                entry["name"],
                entry["description"],
                *entry["department"].values(),
                *entry["owner"].values(),
                *entry["tags"],
                entry["status"] if entry["status"] != "active" else "",
            ]
        ).casefold()
        return all(word in haystack for word in words)


def _person(teams: Teams | None, key: str) -> dict[str, str]:
    person = teams.people.get(key) if teams else None
    return {"key": key, "name": person.name if person else key}


def _department(teams: Teams | None, key: str) -> dict[str, str]:
    dept = teams.departments.get(key) if teams else None
    return {"key": key, "name": dept.name if dept else key}


def entry(
    spec: MetricSpec,
    teams: Teams | None,
    registered: dict[str, Any] | None,
    latest: date | None = None,
    *,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A dictionary line: who owns what, which version the mart knows, the newest published period, its status
    and what replaces it (``names``: metric names by key, for the replacement's)."""
    return {
        "key": spec.key,
        "name": spec.name,
        "description": spec.description,
        "department": _department(teams, spec.department),
        "owner": _person(teams, spec.owner),
        "unit": spec.unit,
        "grain": spec.grain,
        "version": spec.version,
        "registered_version": registered["version"] if registered else None,
        "tags": list(spec.tags),
        "latest_period": latest,
        "status": spec.status,
        "replaced_by": (
            {"key": spec.replaced_by, "name": (names or {}).get(spec.replaced_by, spec.replaced_by)}
            if spec.replaced_by
            else None
        ),
    }


def entries(catalog: Catalog, engine: Engine, keys: list[str], search: Search) -> list[dict[str, Any]]:
    """The metrics ``keys`` (those the user may read) that match ``search``, by name."""
    known, latest, names = queries.registered(engine), queries.latest_periods(engine), _names(catalog)
    found = [
        entry(catalog.metrics[k].spec, catalog.teams, known.get(k), latest.get(k), names=names)
        for k in keys
        if k in catalog.metrics
    ]
    return sorted((e for e in found if search.matches(e)), key=lambda e: e["name"].casefold())


def _names(catalog: Catalog) -> dict[str, str]:
    return {key: loaded.spec.name for key, loaded in catalog.metrics.items()}


def filter_choices(catalog: Catalog) -> dict[str, list[dict[str, str]] | list[str]]:
    """Departments, owners, tags and statuses that occur in the catalog (for the search form)."""
    specs = [m.spec for m in catalog.metrics.values()]
    return {
        "departments": [_department(catalog.teams, d) for d in sorted({s.department for s in specs})],
        "owners": [_person(catalog.teams, o) for o in sorted({s.owner for s in specs})],
        "tags": sorted({t for s in specs for t in s.tags}),
        "statuses": [status for status in STATUSES if any(s.status == status for s in specs)],
    }


def detail(catalog: Catalog, engine: Engine, spec: MetricSpec) -> dict[str, Any]:
    """Everything the metric's page shows."""
    from metrics_center.definitions.meaning import effective_timezone

    teams = catalog.teams
    rows = queries.history(engine, spec.key, periods=HISTORY_PERIODS)
    return {
        **entry(
            spec,
            teams,
            queries.registered(engine).get(spec.key),
            queries.latest_periods(engine).get(spec.key),
            names=_names(catalog),
        ),
        "formula": spec.formula,
        "timezone": effective_timezone(spec),
        "schedule": spec.schedule,
        "dimensions": list(spec.dimensions),
        "aggregation": spec.aggregation,
        "change_note": spec.change_note,
        "subscribers": [_department(teams, d) for d in spec.subscribers],
        "approval": _approval(spec, teams),
        "sources": _sources(spec),
        "transform": {"path": spec.transform.sql, "sql": _sql_text(spec.transform.sql)},
        "quality": [{"expect": rule.expect, **rule.kwargs} for rule in spec.quality],
        "versions": queries.versions(engine, spec.key),
        "version_changes": queries.version_changes(engine, spec.key),
        "lineage": _lineage(catalog, spec.key),
        "latest": queries.latest_values(engine, spec.key),
        "charts": small_multiples(unit=spec.unit, rows=rows, order=spec.dimensions),
        "anomalies": queries.open_anomalies(engine, spec.key),
        "publications": queries.publications(engine, spec.key),
    }


def _lineage(catalog: Catalog, key: str) -> dict[str, list[dict[str, str]]]:
    """The metrics this one reads (directly) and the metrics that read it, with their names."""
    from metrics_center.definitions.lineage import Lineage

    lineage = Lineage.of(m.spec for m in catalog.metrics.values())

    def named(keys: Any) -> list[dict[str, str]]:
        return [{"key": k, "name": catalog.metrics[k].spec.name if k in catalog.metrics else k} for k in keys]

    return {
        "upstream": named(lineage.upstream.get(key, ())),
        "downstream": named(lineage.downstream.get(key, ())),
    }


def _approval(spec: MetricSpec, teams: Teams | None) -> dict[str, Any]:
    from metrics_center.definitions.task_ids import approve_task_id

    stages = []
    for stage in spec.approval.stages:
        people = teams.resolve(stage.approvers) if teams else list(stage.approvers)
        named = [
            {"kind": "department", **_department(teams, a)}
            if teams and a in teams.departments and a not in teams.people
            else {"kind": "person", **_person(teams, a)}
            for a in stage.approvers
        ]
        stages.append(
            {
                "name": stage.name,
                "task_id": approve_task_id(spec, stage),
                "approvers": named,
                "people": [_person(teams, p) for p in people],
            }
        )
    return {"stages": stages, "timeout": spec.approval.timeout, "on_timeout": spec.approval.on_timeout}


def _sources(spec: MetricSpec) -> list[dict[str, Any]]:
    found = []
    for name, source in spec.sources.items():
        sql_path = getattr(source, "sql", None)
        metric = getattr(source, "metric", None)
        found.append(
            {
                "name": name,
                "kind": "metric" if metric else "database" if sql_path else "file",
                "metric": metric,
                "conn_id": getattr(source, "conn_id", None),
                "path": getattr(source, "path", None),
                "sql_path": sql_path,
                "sql": _sql_text(sql_path) if sql_path else None,
            }
        )
    return found


def _sql_text(relative: str) -> str | None:
    """A SQL file under the SQL folder (never outside it), as text."""
    from metrics_center import settings

    root = settings.sql_dir()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return Path(path).read_text(encoding="utf-8", errors="replace")
