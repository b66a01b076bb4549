"""Publish approved values: one transaction, idempotent per (run, content), bulk COPY on Postgres.

Values are never updated in place. Publishing a period that already has current values marks those
rows ``superseded_at`` and inserts the new ones, so both "current" and "as published on day X" stay
answerable.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.errors import MartError
from metrics_center.mart.tables import metric_value, publication

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy import Connection, Engine

    from metrics_center.spec import Grain

COPY_COLUMNS = (
    "metric_key",
    "definition_version",
    "period_start",
    "period_end",
    "dimensions",
    "value",
    "run_id",
    "approved_by",
    "published_at",
    "publication_id",
)
COPY_BATCH_ROWS = 50_000
_PERIOD_END = {"day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH"}


@dataclass(frozen=True)
class PublishResult:
    publication_id: int
    rows: int
    periods: list[date]
    superseded: int
    already_published: bool


def _prepare(values: pa.Table, *, dimensions: list[str], grain: Grain) -> pa.Table:
    """``period_start, dims…, value`` → ``period_start, period_end, dimensions, value`` (sorted).

    DuckDB builds the canonical dimension JSON vectorised; a Python loop would dominate at 1M rows.
    """
    import duckdb

    con = duckdb.connect()
    try:
        con.register("v", values)
        if dimensions:
            fields = ", ".join(f'"{d}" := "{d}"' for d in sorted(dimensions))
            dim_expr = f"to_json(struct_pack({fields}))::VARCHAR"
        else:
            dim_expr = "'{}'"
        query = f"""
            SELECT CAST(period_start AS DATE) AS period_start,
                   CAST(CAST(period_start AS DATE) + {_PERIOD_END[grain]} AS DATE) AS period_end,
                   {dim_expr} AS dimensions,
                   CAST(value AS DOUBLE) AS value
            FROM v ORDER BY 1, 3
        """  # identifiers are validated dimension names; no user values are spliced in
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def content_hash(prepared: pa.Table) -> str:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, prepared.schema) as writer:
        writer.write_table(prepared.combine_chunks())
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _with_constants(prepared: pa.Table, constants: dict[str, object]) -> pa.Table:
    import pyarrow as pa

    n = prepared.num_rows
    table = prepared
    for name, value in constants.items():
        table = table.append_column(name, pa.repeat(pa.scalar(value), n))
    return table.select(list(COPY_COLUMNS))


def _copy_postgres(conn: Connection, rows: pa.Table) -> None:
    """COPY in CSV batches: encoding the next batch overlaps with the server parsing the last one."""
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False)
    cursor = conn.connection.driver_connection.cursor()
    columns = ", ".join(COPY_COLUMNS)
    with cursor.copy(f"COPY metric_value ({columns}) FROM STDIN (FORMAT csv)") as copy:
        for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, write_options=options)
            copy.write(buffer.getbuffer())


def _insert_generic(conn: Connection, rows: pa.Table) -> None:
    import json

    records = rows.to_pylist()
    for record in records:
        record["dimensions"] = json.loads(record["dimensions"])
    conn.execute(sa.insert(metric_value), records)


def _driver_errors() -> type[Exception] | tuple[type[Exception], ...]:
    """DB-API errors raised by the raw COPY cursor, which SQLAlchemy does not wrap."""
    try:
        import psycopg

        return psycopg.Error
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return ()


def publish_values(
    engine: Engine,
    *,
    metric_key: str,
    definition_version: int,
    grain: Grain,
    dimensions: list[str],
    values: pa.Table,
    run_id: str,
    approved_by: str,
    now: datetime | None = None,
) -> PublishResult:
    """Write ``values`` (``period_start, dims…, value``) as the current values of their periods."""
    import pyarrow.compute as pc

    prepared = _prepare(values, dimensions=dimensions, grain=grain)
    digest = content_hash(prepared)
    periods = sorted(pc.unique(prepared.column("period_start")).to_pylist())
    now = now or datetime.now(UTC)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": metric_key})
            existing = conn.execute(
                sa.select(publication.c.id).where(
                    publication.c.metric_key == metric_key,
                    publication.c.run_id == run_id,
                    publication.c.content_hash == digest,
                )
            ).scalar()
            if existing is not None:
                return PublishResult(existing, prepared.num_rows, periods, 0, already_published=True)
            publication_id = conn.execute(
                sa.insert(publication)
                .values(
                    metric_key=metric_key,
                    definition_version=definition_version,
                    run_id=run_id,
                    content_hash=digest,
                    periods=[p.isoformat() for p in periods],
                    row_count=prepared.num_rows,
                    approved_by=approved_by,
                    published_at=now,
                )
                .returning(publication.c.id)
            ).scalar_one()
            superseded = conn.execute(
                sa.update(metric_value)
                .where(
                    metric_value.c.metric_key == metric_key,
                    metric_value.c.period_start.in_(periods),
                    metric_value.c.superseded_at.is_(None),
                )
                .values(superseded_at=now)
            ).rowcount
            rows = _with_constants(
                prepared,
                {
                    "metric_key": metric_key,
                    "definition_version": definition_version,
                    "run_id": run_id,
                    "approved_by": approved_by,
                    "published_at": now,
                    "publication_id": publication_id,
                },
            )
            if conn.dialect.name == "postgresql":
                _copy_postgres(conn, rows)
            else:
                _insert_generic(conn, rows)
    except (sa.exc.DBAPIError, _driver_errors()) as exc:
        raise MartError(
            f"publishing {metric_key} for run {run_id} failed and was rolled back; nothing was written: {exc}"
        ) from exc
    return PublishResult(publication_id, prepared.num_rows, periods, superseded, already_published=False)
