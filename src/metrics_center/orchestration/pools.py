"""Per-department limits on source queries: Airflow pools, so a department's database is never hit by more than
N queries at once, across every metric.

``_teams.yaml`` declares the limits — per connection (``connections: {sales_db: {max_concurrent_queries: 2}}``,
what protects one database) or per department (``departments: {sales: {max_concurrent_queries: 4}}``, every SQL
source of that department's metrics without a connection limit of its own). Each limit is one pool; the extract
tasks of those sources run in it. Pure functions here; ``metrics-center pools sync`` creates the pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from metrics_center.definitions.spec import SqlSource

if TYPE_CHECKING:
    from collections.abc import Iterable

    from metrics_center.definitions.spec import MetricSpec, Teams

PREFIX = "metrics_center__"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str


def connection_pool(conn_id: str) -> str:
    return f"{PREFIX}conn__{conn_id}"


def department_pool(department: str) -> str:
    return f"{PREFIX}dept__{department}"


def pool_for(*, spec: MetricSpec, source_name: str, teams: Teams | None) -> str | None:
    """The pool an extract task runs in, or None (Airflow's default pool) when nothing limits its source."""
    source = spec.sources[source_name]
    if teams is None or not isinstance(source, SqlSource):
        return None  # files and metric sources (the mart) hit no department's database
    connection = teams.connections.get(source.conn_id)
    if connection is not None and connection.max_concurrent_queries:
        return connection_pool(source.conn_id)
    department = teams.departments.get(spec.department)
    if department is not None and department.max_concurrent_queries:
        return department_pool(spec.department)
    return None


def declared_pools(teams: Teams | None) -> list[PoolSpec]:
    """Every pool ``_teams.yaml`` asks for, with its size."""
    if teams is None:
        return []
    pools = [
        PoolSpec(
            connection_pool(conn_id),
            c.max_concurrent_queries,
            f"Metrics Center: at most {c.max_concurrent_queries} queries at once on connection {conn_id}",
        )
        for conn_id, c in sorted(teams.connections.items())
        if c.max_concurrent_queries
    ]
    pools += [
        PoolSpec(
            department_pool(key),
            d.max_concurrent_queries,
            f"Metrics Center: at most {d.max_concurrent_queries} queries at once on {d.name}'s databases",
        )
        for key, d in sorted(teams.departments.items())
        if d.max_concurrent_queries
    ]
    return pools


#: ``priority:`` → Airflow ``priority_weight`` of every task of the metric (Airflow adds downstream weights).
PRIORITY_WEIGHTS = {"critical": 1000, "high": 100, "normal": 10, "low": 1}


def priority_weight(spec: MetricSpec) -> int:
    return PRIORITY_WEIGHTS[spec.priority] if isinstance(spec.priority, str) else spec.priority


def pools_in_use(specs: Iterable[MetricSpec], teams: Teams | None) -> set[str]:
    return {
        pool
        for spec in specs
        for name in spec.sources
        if (pool := pool_for(spec=spec, source_name=name, teams=teams)) is not None
    }
