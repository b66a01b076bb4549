"""The metric dictionary (指标字典): every metric's meaning, people, sources, versions and values."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Search:
    """Free text over name, key, description, department, owner and tags; exact filters beside it."""

    q: str = ""
    department: str = ""
    owner: str = ""
    tag: str = ""

    def matches(self, entry: dict[str, Any]) -> bool:
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
    spec: MetricSpec, teams: Teams | None, registered: dict[str, Any] | None, latest: date | None = None
) -> dict[str, Any]:
    """A dictionary line: who owns what, which version the mart knows, the newest published period."""
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
    }


def entries(catalog: Catalog, engine: Engine, keys: list[str], search: Search) -> list[dict[str, Any]]:
    """The metrics ``keys`` (those the user may read) that match ``search``, by name."""
    known, latest = queries.registered(engine), queries.latest_periods(engine)
    found = [
        entry(catalog.metrics[k].spec, catalog.teams, known.get(k), latest.get(k))
        for k in keys
        if k in catalog.metrics
    ]
    return sorted((e for e in found if search.matches(e)), key=lambda e: e["name"].casefold())


def filter_choices(catalog: Catalog) -> dict[str, list[dict[str, str]] | list[str]]:
    """Departments, owners and tags that occur in the catalog (for the search form)."""
    specs = [m.spec for m in catalog.metrics.values()]
    return {
        "departments": [_department(catalog.teams, d) for d in sorted({s.department for s in specs})],
        "owners": [_person(catalog.teams, o) for o in sorted({s.owner for s in specs})],
        "tags": sorted({t for s in specs for t in s.tags}),
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
