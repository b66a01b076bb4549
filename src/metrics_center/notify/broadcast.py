"""Tell everyone who depends on a metric that it changed: a new definition version, restated history, or that it
is deprecated (once per metric, status and replacement).

Recipients: the owner's department, every subscriber department and the owner of every metric
downstream of it (a DM when ``_teams.yaml`` knows their Slack id, else their department's channel).
Written to the outbox in the caller's transaction, one row per recipient with a dedupe key naming the
version (or publication), so a retried task or a Slack outage neither loses nor repeats a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from metrics_center.notify.addresses import Recipient, department_recipient, person_recipient
from metrics_center.notify.lifecycle_messages import DEPRECATED_KIND, status_fields
from metrics_center.notify.outbox import Kind, already_enqueued, enqueue

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from metrics_center.definitions.spec import MetricSpec, Teams


def _department(teams: Teams | None, key: str) -> Recipient:
    return department_recipient(teams, key)


def _person(teams: Teams | None, key: str) -> Recipient:
    return person_recipient(teams, key)


def change_recipients(
    *, spec: MetricSpec, teams: Teams | None, downstream: Iterable[MetricSpec]
) -> list[tuple[Recipient, list[str]]]:
    """Who is told of a change to ``spec``, each once, with why (``owner's department``, ``owner of x``…)."""
    found: dict[str, tuple[Recipient, list[str]]] = {}

    def add(recipient: Recipient, why: str) -> None:
        entry = found.setdefault(recipient.name, (recipient, []))
        if why not in entry[1]:
            entry[1].append(why)

    add(_department(teams, spec.department), f"{spec.key} belongs to your department")
    for dept in spec.subscribers:
        add(_department(teams, dept), f"your department subscribes to {spec.key}")
    for other in downstream:
        add(_person(teams, other.owner), f"you own {other.key}, which is built on {spec.key}")
    return list(found.values())


def enqueue_for_all(
    conn: Connection,
    *,
    kind: Kind,
    recipients: list[tuple[Recipient, list[str]]],
    payload: dict[str, Any],
    dedupe: str,
    metric_key: str,
    run_id: str | None,
) -> int:
    """One outbox row per recipient (``dedupe`` + recipient is the key); how many were new."""
    added = 0
    for recipient, why in recipients:
        added += enqueue(
            conn,
            kind=kind,
            dedupe_key=f"{dedupe}:{recipient.name}",
            recipient=recipient,
            group_key=dedupe,
            payload={**payload, "why": why},
            metric_key=metric_key,
            run_id=run_id,
        )
    return added


def downstream_of(spec: MetricSpec) -> list[MetricSpec]:
    """Every deployed metric built on ``spec``, directly or through others."""
    from metrics_center import settings
    from metrics_center.definitions.lineage import Lineage
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    keys = Lineage.of(m.spec for m in catalog.metrics.values()).descendants(spec.key)
    return [catalog.metrics[k].spec for k in keys if k in catalog.metrics]


def history_changed(
    conn: Connection,
    *,
    spec: MetricSpec,
    teams: Teams | None,
    downstream: list[MetricSpec],
    publication_id: int,
    run_id: str,
    version: int,
    approved_by: str,
    explicit: bool,
    changes: list[Any],
) -> int:
    """Tell everyone who depends on ``spec`` that published values changed (in the publish transaction)."""
    payload = {
        "metric_key": spec.key,
        "metric_name": spec.name,
        "unit": spec.unit,
        "version": version,
        "run_id": run_id,
        "dag_id": spec.key,
        "approved_by": approved_by,
        "explicit": explicit,
        "additive": spec.aggregation == "sum",
        **status_fields(spec),
        "periods": [
            {
                "period": c.period.isoformat(),
                "old_rows": c.old_rows,
                "new_rows": c.new_rows,
                "old_total": c.old_total,
                "new_total": c.new_total,
            }
            for c in changes
            if c.changed
        ],
    }
    return enqueue_for_all(
        conn,
        kind="history_changed",
        recipients=change_recipients(spec=spec, teams=teams, downstream=downstream),
        payload=payload,
        dedupe=f"history_changed:{spec.key}:publication:{publication_id}",
        metric_key=spec.key,
        run_id=run_id,
    )


def deprecation_key(spec: MetricSpec) -> str:
    """The notice's group (and dedupe prefix): the metric, its status and its replacement — told once each."""
    return f"{DEPRECATED_KIND}:{spec.key}:{spec.status}:{spec.replaced_by or '-'}"


def deprecation_told(conn: Connection, *, spec: MetricSpec) -> bool:
    """Whether ``spec``'s deprecation (with this replacement) was written to the outbox already.

    The owner's department is told first, always: its row stands for the whole notice (an indexed lookup).
    """
    return already_enqueued(conn, dedupe_key=f"{deprecation_key(spec)}:{spec.department}")


def metric_deprecated(
    conn: Connection,
    *,
    spec: MetricSpec,
    teams: Teams | None,
    downstream: list[MetricSpec],
    replacement_name: str | None,
    run_id: str | None,
) -> int:
    """Tell the owner's department, the subscribers and the owners of every metric built on ``spec`` that it is
    deprecated and what to read instead (in the caller's transaction); how many recipients were told now."""
    owner = teams.people.get(spec.owner) if teams else None
    payload = {
        "metric_key": spec.key,
        "metric_name": spec.name,
        "dag_id": spec.key,
        "status": spec.status,
        "replaced_by": spec.replaced_by,
        "replaced_by_name": replacement_name,
        "owner": spec.owner,
        "owner_name": owner.name if owner else spec.owner,
        "downstream": [s.key for s in downstream],
    }
    return enqueue_for_all(
        conn,
        kind=DEPRECATED_KIND,
        recipients=change_recipients(spec=spec, teams=teams, downstream=downstream),
        payload=payload,
        dedupe=deprecation_key(spec),
        metric_key=spec.key,
        run_id=run_id,
    )
