"""Parquet parts in the staging area, readable by DuckDB wherever the staging root lives."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath


class PartWriter:
    """Writes record batches as ``part-NNNNN.parquet`` files under one folder (streaming, bounded memory)."""

    def __init__(self, folder: ObjectStoragePath) -> None:
        self.folder = folder
        self.rows = 0
        self._parts = 0
        if folder.exists():
            for old in folder.iterdir():  # a retried task must not leave the previous try's parts
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        with (self.folder / f"part-{self._parts:05d}.parquet").open("wb") as fh:
            pq.write_table(table, fh)
        self._parts += 1
        self.rows += table.num_rows


@contextmanager
def local_parquet_files(folder: ObjectStoragePath) -> Iterator[list[str]]:
    """Local paths of the parquet parts under ``folder``; remote parts are copied to a temp dir first."""
    parts = sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))
    if getattr(folder, "protocol", "file") in ("file", "local", ""):
        yield [str(Path(p.path)) for p in parts]
        return
    tmp = Path(tempfile.mkdtemp(prefix="mc-stage-"))
    try:
        local = []
        for part in parts:
            target = tmp / part.name
            with part.open("rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            local.append(str(target))
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
