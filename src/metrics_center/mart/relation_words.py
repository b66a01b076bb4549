"""Keep the words on a metric's BI relations current when its meaning (and so its version) did not change.

A metric's relations and their comments are built when a version is registered (:mod:`metrics_center.mart.relations`).
Deprecating or retiring a metric needs no new version, yet what BI tools show beside its columns must say so at
once: each run's registration compares the comments Postgres holds with those the definition writes now and, when
they differ, builds the relations again — as the version in force registered them (its access and readers), only
the words new. SQLite holds no comments: nothing to do there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.relations import (
    BI_SCHEMA,
    ensure_relations,
    relation_spec,
    stored_dimensions,
)
from metrics_center.mart.tables import metric_definition

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from metrics_center.definitions.spec import MetricSpec, Teams

log = logging.getLogger(__name__)


def replacement_name(conn: Connection, *, spec: MetricSpec) -> str | None:
    """The registered name of the metric ``spec.replaced_by`` names (None: no replacement, or never run)."""
    if not spec.replaced_by:
        return None
    t = metric_definition
    return conn.execute(
        sa.select(t.c.name).where(t.c.metric_key == spec.replaced_by).order_by(t.c.version.desc()).limit(1)
    ).scalar()


def stored_comments(conn: Connection, *, metric_key: str) -> tuple[str | None, dict[str, str | None]]:
    """The comment of ``metrics.<key>`` and of each of its columns, as Postgres holds them (None: no relation)."""
    relation = sa.func.to_regclass(f"{BI_SCHEMA}.{metric_key}")
    own = conn.execute(sa.select(sa.func.obj_description(relation, "pg_class"))).scalar()
    attribute = sa.table(
        "pg_attribute",
        sa.column("attrelid"),
        sa.column("attname"),
        sa.column("attnum"),
        sa.column("attisdropped"),
        schema="pg_catalog",
    )
    columns = conn.execute(
        sa.select(
            sa.cast(attribute.c.attname, sa.Text),
            sa.func.col_description(attribute.c.attrelid, attribute.c.attnum),
        ).where(
            attribute.c.attrelid == relation,
            attribute.c.attnum > 0,
            attribute.c.attisdropped.is_(False),
        )
    ).all()
    return own, {name: comment for name, comment in columns}


def refresh_words(conn: Connection, *, spec: MetricSpec, teams: Teams | None) -> bool:
    """Rebuild the relations of ``spec``'s registered version when their comments are not what ``spec`` says
    now (e.g. it was deprecated); True if rebuilt. Inside the caller's transaction; a rebuild that fails (a view
    someone built on the relation) is logged and rolled back to a savepoint: the run goes on, the words wait."""
    if conn.dialect.name != "postgresql":
        return False
    t = metric_definition
    registered = conn.execute(
        sa.select(t.c.access, t.c.readers).where(t.c.metric_key == spec.key, t.c.version == spec.version)
    ).first()
    if registered is None:
        return False
    replacement = replacement_name(conn, spec=spec)
    # As the version in force built them: its access and readers (a change of those waits for a new version).
    as_registered = spec.model_copy(
        update={"access": registered.access or "public", "readers": list(registered.readers or [])}
    )
    wanted = relation_spec(
        as_registered,
        teams=teams,
        stored=stored_dimensions(conn, metric_key=spec.key, current=spec.dimensions),
        replacement=replacement,
    )
    own, columns = stored_comments(conn, metric_key=spec.key)
    if own == wanted.relation_comments.get("current") and all(
        columns.get(name) == text for name, text in wanted.comments.get("current", {}).items()
    ):
        return False
    try:
        with conn.begin_nested():
            ensure_relations(conn, wanted)
    except sa.exc.DBAPIError as exc:
        log.warning(
            "the comments of %s.%s were not updated (Postgres: %s); the next run tries again — a view built "
            "on it stops the rebuild: drop that view, or build it on metrics_mart.metric_value_current instead",
            BI_SCHEMA,
            spec.key,
            str(exc.orig).splitlines()[0] if exc.orig else exc,
        )
        return False
    return True
