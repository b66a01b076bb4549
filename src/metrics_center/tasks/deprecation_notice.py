"""Tell the people who depend on a deprecated metric, once, that it is deprecated and what to read instead.

Every run's ``impact_preview`` task calls :func:`announce_deprecation`, beside a new version's announcement.
Told already — the outbox holds the notice for this metric, status and replacement — it costs one indexed
lookup. Otherwise the deployed catalog names the metrics built on it (their owners are told, with the owner's
department and the subscribers) and the replacement's name, and the notice is written to the outbox in one
transaction under the metric's lock: concurrent runs, retries and every later run write it once. A new
replacement (another ``replaced_by``) is news, and told once again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec, Teams


def announce_deprecation(engine: Engine, *, spec: MetricSpec, teams: Teams | None, run_id: str) -> int | None:
    """Write ``spec``'s deprecation notice unless it was written before: how many recipients were told now
    (0: told before); None when ``spec`` is not deprecated."""
    from metrics_center.mart.engine import locked_transaction
    from metrics_center.notify.broadcast import deprecation_told, metric_deprecated

    if spec.status != "deprecated":
        return None
    with engine.connect() as conn:
        if deprecation_told(conn, spec=spec):
            return 0
    downstream, replacement = _dependents(spec)
    with locked_transaction(engine, key=spec.key) as conn:
        if deprecation_told(conn, spec=spec):  # another run of the metric told them meanwhile
            return 0
        return metric_deprecated(
            conn,
            spec=spec,
            teams=teams,
            downstream=downstream,
            replacement_name=replacement,
            run_id=run_id,
        )


def _dependents(spec: MetricSpec) -> tuple[list[MetricSpec], str | None]:
    """Every deployed metric built on ``spec`` (directly or through others), and its replacement's name."""
    from metrics_center import settings
    from metrics_center.definitions.lineage import Lineage
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    specs = {key: loaded.spec for key, loaded in catalog.metrics.items()}
    downstream = [specs[k] for k in Lineage.of(specs.values()).descendants(spec.key) if k in specs]
    replacement = specs.get(spec.replaced_by) if spec.replaced_by else None
    return downstream, replacement.name if replacement is not None else None
