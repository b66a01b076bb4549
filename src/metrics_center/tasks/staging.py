"""Parquet parts in the staging area, readable by DuckDB wherever the staging root lives."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center.errors import MetricsCenterError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath


class StagedTypeConflict(MetricsCenterError):
    """A batch has a column whose type cannot be merged with the parts already staged (e.g. text vs numbers).

    ``row`` is the 1-based row number, counted over everything written to the folder, of ``value``:
    the first non-null value of ``column`` in the refused batch.
    """

    def __init__(self, *, column: str, staged_type: str, new_type: str, row: int, value: Any) -> None:
        self.column = column
        self.staged_type = staged_type
        self.new_type = new_type
        self.row = row
        self.value = value
        super().__init__(
            f"column `{column}`: row {row} has {value!r} ({new_type}) but the rows before it are {staged_type}"
        )


def _first_value(column: pa.ChunkedArray) -> tuple[int, Any]:
    """Index and value of the first non-null entry of ``column`` (``(0, None)`` if all are null)."""
    import pyarrow.compute as pc

    index = pc.index(pc.is_valid(column), True).as_py()
    if index < 0:
        return 0, None
    return index, column[index].as_py()


def _unified_schema(staged: pa.Schema, table: pa.Table, *, rows_before: int) -> pa.Schema:
    """``staged`` widened to also hold ``table``: null → any, int → double, decimal → double…

    Text never merges with numbers, dates or booleans: that raises :class:`StagedTypeConflict`.
    """
    import pyarrow as pa

    try:
        return pa.unify_schemas([staged, table.schema], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    for field in table.schema:
        if field.name not in staged.names:
            continue
        old = staged.field(field.name)
        try:
            pa.unify_schemas([pa.schema([old]), pa.schema([field])], promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            index, value = _first_value(table.column(field.name))
            raise StagedTypeConflict(
                column=field.name,
                staged_type=str(old.type),
                new_type=str(field.type),
                row=rows_before + index + 1,
                value=value,
            ) from None
    raise MetricsCenterError(f"cannot merge the columns {table.schema.names} with {staged.names}")


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with each of its columns cast to that column's type in ``schema`` (columns kept as they are)."""
    if all(table.schema.field(n).type == schema.field(n).type for n in table.column_names):
        return table
    target = [schema.field(n) for n in table.column_names]
    import pyarrow as pa

    # safe=False: widening int64 → double may round integers above 2**53, as DuckDB's own union would.
    return table.cast(pa.schema(target), safe=False)


class PartWriter:
    """Writes tables as ``part-NNNNN.parquet`` files under one folder (streaming, bounded memory).

    Every part of a folder has the same type for a given column, so any reader (DuckDB with or without
    ``union_by_name``, pyarrow) sees one type. When a later table widens a column (all-null → typed,
    int → double, decimal → double), the parts already written are rewritten with the wider type, one
    part at a time. A column that would mix text with numbers (or any types without a lossless common
    type) raises :class:`StagedTypeConflict` instead of silently becoming text.
    """

    def __init__(self, folder: ObjectStoragePath) -> None:
        self.folder = folder
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._parts = 0
        if folder.exists():
            for old in folder.iterdir():  # a retried task must not leave the previous try's parts
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)

    def _part(self, number: int) -> ObjectStoragePath:
        return self.folder / f"part-{number:05d}.parquet"

    def _write_part(self, number: int, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        from metrics_center.observability.task_timing import staging

        with staging(), self._part(number).open("wb") as fh:
            pq.write_table(table, fh)

    def _rewrite_parts(self, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        for number in range(self._parts):
            with self._part(number).open("rb") as fh:
                table = pq.read_table(fh)
            conformed = _conform(table, schema)
            if conformed is not table:
                self._write_part(number, conformed)

    def mark(self) -> tuple[int, int]:
        """A point to :meth:`rollback` to (parts and rows written so far)."""
        return self._parts, self.rows

    def rollback(self, mark: tuple[int, int]) -> None:
        """Remove the parts written since ``mark`` (the column types stay as wide as they got)."""
        parts, rows = mark
        for number in range(parts, self._parts):
            self._part(number).unlink()
        self._parts, self.rows = parts, rows
        if parts == 0:
            self.schema = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
        else:
            unified = _unified_schema(self.schema, table, rows_before=self.rows)
            if any(unified.field(f.name).type != f.type for f in self.schema):
                self._rewrite_parts(unified)
            self.schema = unified
            table = _conform(table, unified)
        self._write_part(self._parts, table)
        self._parts += 1
        self.rows += table.num_rows


def is_local(folder: ObjectStoragePath) -> bool:
    return getattr(folder, "protocol", "file") in ("file", "local", "")


def remote_parquet_files(folder: ObjectStoragePath) -> tuple[list[str], Any]:
    """URLs of the parquet parts under a remote ``folder`` and the fsspec filesystem that reads them.

    DuckDB reads them in place through that filesystem (``register_filesystem``): no httpfs extension,
    no temporary copy, and the credentials of the staging connection.
    """
    parts = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
    protocol = folder.protocol
    return [f"{protocol}://{p.path}" for p in parts], folder.fs


def read_mode() -> str:
    """How DuckDB reads remote staging (``METRICS_CENTER_STAGING_READ``): ``copy`` (default) or ``direct``.

    Measured (benchmarks/staging_s3.py, 1M rows on a local S3 server): downloading the parts first was 1.29x
    faster than DuckDB reading them in place through fsspec (every range request goes through Python).
    ``direct`` saves the local disk space and may win when queries read few columns of large remote files.
    """
    import os

    mode = os.environ.get("METRICS_CENTER_STAGING_READ", "copy")
    if mode not in ("direct", "copy"):
        raise MetricsCenterError(f"METRICS_CENTER_STAGING_READ={mode!r}; use direct or copy")
    return mode


@contextmanager
def local_parquet_files(folder: ObjectStoragePath) -> Iterator[list[str]]:
    """Local paths of the parquet parts under ``folder``; remote parts are copied to a temp dir first.

    ``folder`` may also be a plain :class:`pathlib.Path` (a metric unit test stages in a temp dir).
    """
    parts = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
    if is_local(folder):
        yield [str(Path(getattr(p, "path", p))) for p in parts]
        return
    from metrics_center.observability.task_timing import staging

    tmp = Path(tempfile.mkdtemp(prefix="mc-stage-"))
    try:
        local = []
        with staging():
            for part in parts:
                target = tmp / part.name
                with part.open("rb") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                local.append(str(target))
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
