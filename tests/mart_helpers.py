"""Publishing to the mart without a DAG: a tiny metric ``m`` by region, registered and published directly."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.mart.definitions import register_definition
from metrics_center.mart.publish import publish_values
from metrics_center.mart.tables import metric_value_current


def values_table(day: date, rows: list[tuple[str, float]]) -> pa.Table:
    return pa.table(
        {
            "period_start": pa.array([day] * len(rows), pa.date32()),
            "region": [r for r, _ in rows],
            "value": [v for _, v in rows],
        }
    )


def publish(engine, values: pa.Table, run_id: str, at: datetime | None = None):
    return publish_values(
        engine,
        metric_key="m",
        definition_version=1,
        grain="day",
        dimensions=["region"],
        values=values,
        run_id=run_id,
        approved_by="review: bob",
        now=at,
    )


def register(engine, version: int = 1, digest: str = "h1"):
    spec = metric_spec(
        version=version, dimensions=["region"], sources={"s": {"path": "x.csv"}}, transform={"sql": "m.sql"}
    )
    return register_definition(engine, spec=spec, definition={"v": version}, definition_hash=digest)


def current_values(engine) -> dict[tuple[date, str], float]:
    v = metric_value_current
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(v.c.period_start, v.c.dimensions, v.c.value).where(v.c.metric_key == "m")
        )
        return {(r.period_start, r.dimensions["region"]): r.value for r in rows}
