"""The approval evidence in other languages than English, kept beside Airflow's own (English) HITL body."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.mart.tables import approval_evidence

if TYPE_CHECKING:
    from sqlalchemy import Engine


def save_evidence(
    engine: Engine, *, metric_key: str, run_id: str, stage: str, try_number: int, bodies: Mapping[str, str]
) -> None:
    """Replace the stage's translated evidence with ``bodies`` (locale → Markdown) of this try."""
    now = datetime.now(UTC)
    where = sa.and_(
        approval_evidence.c.metric_key == metric_key,
        approval_evidence.c.run_id == run_id,
        approval_evidence.c.stage == stage,
    )
    with engine.begin() as conn:
        conn.execute(sa.delete(approval_evidence).where(where))
        if bodies:
            conn.execute(
                sa.insert(approval_evidence),
                [
                    {
                        "metric_key": metric_key,
                        "run_id": run_id,
                        "stage": stage,
                        "locale": locale,
                        "try_number": try_number,
                        "body": body,
                        "written_at": now,
                    }
                    for locale, body in bodies.items()
                ],
            )


def translated_evidence(
    engine: Engine, *, locale: str, stages: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """``(metric_key, run_id, stage)`` → the evidence in ``locale``, for those that have one (one query)."""
    wanted = list(stages)
    if not wanted:
        return {}
    query = sa.select(
        approval_evidence.c.metric_key,
        approval_evidence.c.run_id,
        approval_evidence.c.stage,
        approval_evidence.c.body,
    ).where(
        approval_evidence.c.locale == locale,
        sa.tuple_(approval_evidence.c.metric_key, approval_evidence.c.run_id, approval_evidence.c.stage).in_(
            wanted
        ),
    )
    with engine.connect() as conn:
        return {(r.metric_key, r.run_id, r.stage): r.body for r in conn.execute(query)}
