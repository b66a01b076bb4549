"""Register metric definitions: one row per (metric, version); a changed meaning needs a new version.

A new version's storage and BI relations (:mod:`metrics_center.mart.relations`) are built in the same
transaction: the relation a reader sees always matches the version in force. A version registered before gets
its relations' words brought up to date (:mod:`metrics_center.mart.relation_words`: e.g. it was deprecated).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from metrics_center.definitions.spec import MetricSource
from metrics_center.errors import MartError
from metrics_center.mart.engine import locked_transaction
from metrics_center.mart.relation_words import refresh_words, replacement_name
from metrics_center.mart.relations import ensure_relations, relation_spec, stored_dimensions
from metrics_center.mart.tables import metric_definition, metric_input

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from metrics_center.definitions.spec import MetricSpec, Teams

Registration = Literal["new_version", "unchanged"]


def register_definition(
    engine: Engine,
    *,
    spec: MetricSpec,
    definition: dict,
    definition_hash: str,
    now: datetime | None = None,
    announced: bool = False,
    teams: Teams | None = None,
) -> Registration:
    """Make ``spec.version`` the current definition of ``spec.key``, with the metrics it reads.

    ``announced``: the version needs no broadcast (demo history, seeded definitions); otherwise the
    ``impact_preview`` task of its first run announces it. ``teams`` tells departments from people among
    the metric's ``readers`` (without it every reader is taken for a department).

    Raises :class:`MartError` when the same version was registered with different content (someone
    edited the meaning without bumping ``version``) or when an older version tries to come back.
    """
    now = now or datetime.now(UTC)
    t = metric_definition
    # One writer per metric at a time (Postgres advisory lock; SQLite BEGIN IMMEDIATE): concurrent first
    # runs of a new version register it once.
    with locked_transaction(engine, key="def:" + spec.key) as conn:
        newest = conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.metric_key == spec.key)).scalar()
        if newest is not None and newest > spec.version:
            raise MartError(
                f"{spec.key} version {spec.version} is older than the registered version {newest} "
                f"— use version {newest + 1} or higher"
            )
        same = conn.execute(
            sa.select(t.c.definition_hash).where(t.c.metric_key == spec.key, t.c.version == spec.version)
        ).scalar()
        if same is not None:
            if same != definition_hash:
                raise MartError(
                    f"{spec.key} version {spec.version} is already registered with a different definition "
                    f"— bump `version:` and explain the change in `change_note:`"
                )
            refresh_words(conn, spec=spec, teams=teams)
            return "unchanged"
        signoff = _signoff_needed(conn, spec=spec, definition=definition, newest=newest, teams=teams)
        if announced:  # demo history, seeded definitions: nobody is asked about a version already in use
            signoff = "not_required"
        conn.execute(
            sa.update(t).where(t.c.metric_key == spec.key, t.c.valid_to.is_(None)).values(valid_to=now)
        )
        conn.execute(
            sa.insert(t).values(
                metric_key=spec.key,
                version=spec.version,
                name=spec.name,
                description=spec.description,
                department=spec.department,
                owner=spec.owner,
                unit=spec.unit,
                grain=spec.grain,
                dimensions=list(spec.dimensions),
                formula=spec.formula,
                definition_hash=definition_hash,
                definition=definition,
                change_note=spec.change_note,
                registered_at=now,
                valid_from=now,
                valid_to=None,
                announced_at=now if announced else None,
                aggregation=spec.aggregation,
                access=spec.access,
                readers=list(spec.readers),
                signoff=signoff,
            )
        )
        inputs = [
            {"metric_key": spec.key, "version": spec.version, "source_name": name, "input_key": source.metric}
            for name, source in spec.sources.items()
            if isinstance(source, MetricSource)
        ]
        if inputs:
            conn.execute(sa.insert(metric_input), inputs)
        stored = stored_dimensions(conn, metric_key=spec.key, current=spec.dimensions)
        replacement = replacement_name(conn, spec=spec)
        ensure_relations(conn, relation_spec(spec, teams=teams, stored=stored, replacement=replacement))
    return "new_version"


def _signoff_needed(
    conn: Connection, *, spec: MetricSpec, definition: dict, newest: int | None, teams: Teams | None
) -> str:
    """``pending`` when the department names definition reviewers and this version is the first, breaking
    (classified against the newest registered one) or the YAML asks for every version; else ``not_required``."""
    from metrics_center.definitions.changes import compare_documents

    if teams is None or not teams.definition_reviewers(spec.department):
        return "not_required"
    if newest is None or spec.definition_signoff == "every_version":
        return "pending"
    t = metric_definition
    previous = conn.execute(
        sa.select(t.c.definition).where(t.c.metric_key == spec.key, t.c.version == newest)
    ).scalar()
    return "pending" if compare_documents(previous, definition).breaking else "not_required"


def newest_version(engine: Engine, *, metric_key: str) -> int | None:
    t = metric_definition
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(t.c.version)).where(t.c.metric_key == metric_key)).scalar()
