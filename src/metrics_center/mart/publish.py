"""Publish approved values: one transaction, idempotent per (run, content), bulk COPY on Postgres.

Values go to the metric's own storage (``values__<key>``, typed dimension columns; see
:mod:`metrics_center.mart.relations`) and are never updated in place. Publishing a period that already has
current values marks those rows ``superseded_at`` and inserts the new ones, so both "current" and "as
published on day X" stay answerable.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metrics_center.definitions.periods import period_containing
from metrics_center.errors import MartError, PublishRefused
from metrics_center.mart.engine import locked_now, locked_transaction
from metrics_center.mart.relations import metric_storage, storage_name
from metrics_center.mart.tables import metric_definition, publication
from metrics_center.mart.values import period_totals

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pyarrow as pa
    from sqlalchemy import Connection, Engine

    from metrics_center.definitions.spec import Grain

COPY_BATCH_ROWS = 50_000
RATIO_PARTS = ("numerator", "denominator")


@dataclass(frozen=True)
class PublishResult:
    publication_id: int
    rows: int
    periods: list[date]
    superseded: int
    already_published: bool


@dataclass(frozen=True)
class PeriodChange:
    """One period's current values before and after a publication (rows and sum of values)."""

    period: date
    old_rows: int
    new_rows: int
    old_total: float | None
    new_total: float | None

    @property
    def changed(self) -> bool:
        if self.old_rows != self.new_rows:
            return True
        if self.old_total is None or self.new_total is None:
            return self.old_total != self.new_total
        return abs(self.new_total - self.old_total) > 1e-9 * max(1.0, abs(self.old_total))


def _prepare(values: pa.Table, *, dimensions: list[str], grain: Grain) -> pa.Table:
    """``period_start, dims…, value[, numerator, denominator]`` → the same with ``period_end`` (sorted).

    Dimensions become text, as the storage holds them. Period ends come from
    :mod:`metrics_center.definitions.periods` (one rule), joined per distinct period.
    """
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.register("v", values)
        starts = [row[0] for row in con.sql("SELECT DISTINCT CAST(period_start AS DATE) FROM v").fetchall()]
        ends = pa.table(
            {
                "period_start": pa.array(starts, pa.date32()),
                "period_end": pa.array([period_containing(s, grain=grain).end for s in starts], pa.date32()),
            }
        )
        con.register("ends", ends)
        dims = "".join(f'CAST(v."{d}" AS VARCHAR) AS "{d}", ' for d in dimensions)
        parts = "".join(f", CAST(v.{p} AS DOUBLE) AS {p}" for p in RATIO_PARTS if p in values.column_names)
        query = f"""
            SELECT e.period_start, e.period_end, {dims}CAST(v.value AS DOUBLE) AS value{parts}
            FROM v JOIN ends AS e ON e.period_start = CAST(v.period_start AS DATE)
            ORDER BY {", ".join(["1", *(f'"{d}"' for d in dimensions)])}
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
    return table


def _copy_postgres(conn: Connection, storage: str, rows: pa.Table) -> None:
    """COPY in CSV batches: encoding the next batch overlaps with the server parsing the last one."""
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False)
    cursor = conn.connection.driver_connection.cursor()
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in rows.column_names)
    with cursor.copy(f"COPY {quote(storage)} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, write_options=options)
            copy.write(buffer.getbuffer())


def _insert_generic(conn: Connection, table: sa.Table, rows: pa.Table) -> None:
    records = rows.to_pylist()
    if not records:  # an empty executemany would become `INSERT … DEFAULT VALUES`
        return
    conn.execute(sa.insert(table), records)


def _driver_errors() -> type[Exception] | tuple[type[Exception], ...]:
    """DB-API errors raised by the raw COPY cursor, which SQLAlchemy does not wrap."""
    try:
        import psycopg

        return psycopg.Error
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return ()


class NewerPublicationExists(PublishRefused):
    """A period already holds values computed from newer data than the run trying to publish."""


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
    periods: Iterable[date] = (),
    data_as_of: datetime | None = None,
    restatement: bool = False,
    now: datetime | None = None,
    on_replace: Callable[[Connection, int, list[PeriodChange]], None] | None = None,
) -> PublishResult:
    """Write ``values`` (``period_start, dims…, value``; a ratio's ``numerator, denominator`` too) as the current
    values of their periods, in the metric's storage.

    ``periods`` are periods this publication answers even if ``values`` has no row for them (the run's
    own period on an empty day): their current values are superseded too. ``data_as_of`` is when the
    run read its sources; a period whose current values come from newer data is refused unless
    ``restatement``. ``now`` (tests) replaces the publish time, which is otherwise read under the lock.
    ``on_replace(conn, publication_id, changes)`` runs inside the transaction when periods that already
    had current values get new ones (the outbox tells subscribers that history changed).
    """
    import pyarrow.compute as pc

    prepared = _prepare(values, dimensions=dimensions, grain=grain)
    digest = content_hash(prepared)
    covered = sorted(set(pc.unique(prepared.column("period_start")).to_pylist()) | set(periods))
    try:
        with locked_transaction(engine, key=metric_key) as conn:
            _require_registered(conn, metric_key=metric_key, version=definition_version)
            storage = metric_storage(conn, metric_key=metric_key)
            if storage is None:
                raise MartError(f"{metric_key} has no storage in the mart; run `metrics-center mart upgrade`")
            existing = conn.execute(
                sa.select(publication.c.id).where(
                    publication.c.metric_key == metric_key,
                    publication.c.run_id == run_id,
                    publication.c.content_hash == digest,
                )
            ).scalar()
            if existing is not None:
                return PublishResult(existing, prepared.num_rows, covered, 0, already_published=True)
            published_at = now or locked_now(conn)
            as_of = data_as_of or published_at
            if not restatement:
                _refuse_newer(
                    conn, storage, metric_key=metric_key, periods=covered, run_id=run_id, data_as_of=as_of
                )
            publication_id = conn.execute(
                sa.insert(publication)
                .values(
                    metric_key=metric_key,
                    definition_version=definition_version,
                    run_id=run_id,
                    content_hash=digest,
                    periods=[p.isoformat() for p in covered],
                    row_count=prepared.num_rows,
                    approved_by=approved_by,
                    published_at=published_at,
                    data_as_of=as_of,
                    restatement=restatement,
                )
                .returning(publication.c.id)
            ).scalar_one()
            before = _period_totals(conn, storage, periods=covered) if on_replace else {}
            superseded = conn.execute(
                sa.update(storage)
                .where(storage.c.period_start.in_(covered), storage.c.superseded_at.is_(None))
                .values(superseded_at=published_at)
            ).rowcount
            rows = _with_constants(
                prepared, {"definition_version": definition_version, "publication_id": publication_id}
            )
            if conn.dialect.name == "postgresql":
                _copy_postgres(conn, storage_name(metric_key), rows)
            else:
                _insert_generic(conn, storage, rows)
            if on_replace is not None and before:
                after = period_totals(prepared)
                changes = [
                    PeriodChange(
                        period=p,
                        old_rows=before.get(p, (0, None))[0],
                        new_rows=after.get(p, (0, None))[0],
                        old_total=before.get(p, (0, None))[1],
                        new_total=after.get(p, (0, None))[1],
                    )
                    for p in covered
                    if p in before
                ]
                if any(c.changed for c in changes):
                    on_replace(conn, publication_id, changes)
    except (sa.exc.DBAPIError, _driver_errors()) as exc:
        raise MartError(
            f"publishing {metric_key} for run {run_id} failed and was rolled back; nothing was written: {exc}"
        ) from exc
    return PublishResult(publication_id, prepared.num_rows, covered, superseded, already_published=False)


def _period_totals(
    conn: Connection, storage: sa.Table, *, periods: list[date]
) -> dict[date, tuple[int, float | None]]:
    """Current rows and total per period, before this publication supersedes them (a ratio's total is
    SUM(numerator) / SUM(denominator))."""
    v = storage
    rows = conn.execute(
        sa.select(
            v.c.period_start,
            sa.func.count(),
            sa.func.sum(v.c.value),
            sa.func.sum(v.c.numerator),
            sa.func.sum(v.c.denominator),
        )
        .where(v.c.period_start.in_(periods), v.c.superseded_at.is_(None))
        .group_by(v.c.period_start)
    ).all()
    return {
        _day(r[0]): (int(r[1]), (r[3] / r[4] if r[4] else None) if r[3] is not None else r[2]) for r in rows
    }


def _day(value: object) -> date:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value  # type: ignore[return-value]


def _require_registered(conn: Connection, *, metric_key: str, version: int) -> None:
    registered = conn.execute(
        sa.select(sa.func.count())
        .select_from(metric_definition)
        .where(metric_definition.c.metric_key == metric_key, metric_definition.c.version == version)
    ).scalar()
    if not registered:
        raise MartError(
            f"{metric_key} version {version} is not registered in the mart; values must be published under "
            "the definition their run registered — re-run the period"
        )


def _refuse_newer(
    conn: Connection,
    storage: sa.Table,
    *,
    metric_key: str,
    periods: list[date],
    run_id: str,
    data_as_of: datetime,
) -> None:
    """Raise if a period's current values come from a run that read its sources after this one did."""
    current = (
        sa.select(storage.c.publication_id, storage.c.period_start)
        .where(storage.c.period_start.in_(periods), storage.c.superseded_at.is_(None))
        .distinct()
        .subquery()
    )
    newer = conn.execute(
        sa.select(
            current.c.period_start,
            publication.c.id,
            publication.c.run_id,
            publication.c.data_as_of,
            publication.c.published_at,
            publication.c.approved_by,
        )
        .join(publication, publication.c.id == current.c.publication_id)
        .where(publication.c.data_as_of > data_as_of, publication.c.run_id != run_id)
        .order_by(current.c.period_start)
    ).first()
    if newer is not None:
        raise NewerPublicationExists(
            f"{metric_key} {newer.period_start} already has values from publication {newer.id} "
            f"(run {newer.run_id}, data as of {_when(newer.data_as_of)}, published {_when(newer.published_at)}, "
            f"approved by {newer.approved_by}), newer than this run's data (as of {_when(data_as_of)}); "
            "nothing published — re-run the period for fresh numbers, or trigger a run with "
            "restate=true to replace them on purpose"
        )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
