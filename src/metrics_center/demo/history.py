"""Give the demo mart a published history, so approvers see a change vs the previous period.

Each past period is computed by the same extract and transform code a DAG run uses, then published
with ``approved_by`` saying plainly that it was seeded, not reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from metrics_center.definitions.periods import period_containing

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec

SEEDED_BY = "demo history (seeded, not reviewed)"


@dataclass(frozen=True)
class SeededMetric:
    key: str
    periods: int
    rows: int


def in_lineage_order(specs: list[MetricSpec]) -> list[MetricSpec]:
    """Inputs before the metrics built on them (a derived metric's history reads its inputs' history)."""
    from metrics_center.definitions.lineage import metric_inputs

    by_key = {s.key: s for s in specs}
    ordered: dict[str, MetricSpec] = {}

    def visit(spec: MetricSpec, trail: frozenset[str]) -> None:
        for key in metric_inputs(spec).values():
            if key in by_key and key not in ordered and key not in trail:
                visit(by_key[key], trail | {spec.key})
        ordered.setdefault(spec.key, spec)

    for spec in specs:
        visit(spec, frozenset())
    return list(ordered.values())


def seed_history(*, engine: Engine, specs: list[MetricSpec], first: date, end: date) -> list[SeededMetric]:
    """Publish each metric's complete periods from ``first`` on, except the newest one before ``end``.

    That newest period is what a run on ``end`` computes: it is left for the live demo run to ask about.
    Each period is computed as the run that normally computes it would (its own template variables);
    metrics built on others come after their inputs and read their just-seeded values.
    """

    from metrics_center import settings
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.mart.definitions import register_definition
    from metrics_center.mart.publish import publish_values
    from metrics_center.tasks.computation import of_periods
    from metrics_center.tasks.extract import extract_source
    from metrics_center.tasks.transform import transform_table

    seeded = []
    for spec in in_lineage_order(specs):
        definition = load_definition(spec)
        register_definition(
            engine,
            spec=spec,
            definition=definition.document,
            definition_hash=definition.meaning_hash,
            announced=True,  # seeded history is not news
        )
        period = period_containing(first, grain=spec.grain)
        if period.start < first:
            period = period_containing(period.end, grain=spec.grain)
        live = period_containing(end, grain=spec.grain).previous()
        count = rows = 0
        while period.end <= live.start:
            run_id = f"demo_history__{period.end.isoformat()}"
            root = settings.staging_path() / spec.key / run_id
            computation = of_periods(spec=spec, root=root, periods=[period], engine=engine)
            for name in spec.sources:
                extract_source(spec=spec, source_name=name, computation=computation)
            result = publish_values(
                engine,
                metric_key=spec.key,
                definition_version=spec.version,
                grain=spec.grain,
                dimensions=list(spec.dimensions),
                values=transform_table(computation),
                run_id=run_id,
                approved_by=SEEDED_BY,
                periods=[period.start],
            )
            count, rows = count + 1, rows + result.rows
            period = period_containing(period.end, grain=spec.grain)
        seeded.append(SeededMetric(spec.key, count, rows))
    return seeded
