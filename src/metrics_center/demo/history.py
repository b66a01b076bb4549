"""Give the demo mart a published history, so approvers see a change vs the previous period.

Each past period is computed by the same extract and transform code a DAG run uses, then published
with ``approved_by`` saying plainly that it was seeded, not reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from metrics_center.periods import period_containing

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.spec import MetricSpec

SEEDED_BY = "demo history (seeded, not reviewed)"


@dataclass(frozen=True)
class SeededMetric:
    key: str
    periods: int
    rows: int


def _context(spec: MetricSpec, run_date: date) -> dict:
    logical = datetime.combine(run_date, datetime.min.time(), tzinfo=UTC)
    return {"logical_date": logical, "run_id": f"demo_history__{run_date.isoformat()}"}


def seed_history(*, engine: Engine, specs: list[MetricSpec], first: date, end: date) -> list[SeededMetric]:
    """Publish each metric's complete periods from ``first`` on, except the newest one before ``end``.

    That newest period is what a run on ``end`` computes: it is left for the live demo run to ask about.
    """
    from metrics_center.definition import load_definition
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.publish import publish_values
    from metrics_center.tasks.extract import extract_source
    from metrics_center.tasks.transform import read_result, transform

    seeded = []
    for spec in specs:
        definition = load_definition(spec)
        register_definition(
            engine, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash
        )
        period = period_containing(first, grain=spec.grain)
        if period.start < first:
            period = period_containing(period.end, grain=spec.grain)
        live = period_containing(end, grain=spec.grain).previous()
        count = rows = 0
        while period.end <= live.start:
            context = _context(spec, period.end)
            for name in spec.sources:
                extract_source(spec=spec, source_name=name, context=context)
            transform(spec=spec, context=context)
            result = publish_values(
                engine,
                metric_key=spec.key,
                definition_version=spec.version,
                grain=spec.grain,
                dimensions=list(spec.dimensions),
                values=read_result(spec=spec, context=context)[0],
                run_id=context["run_id"],
                approved_by=SEEDED_BY,
            )
            count, rows = count + 1, rows + result.rows
            period = period_containing(period.end, grain=spec.grain)
        seeded.append(SeededMetric(spec.key, count, rows))
    return seeded
