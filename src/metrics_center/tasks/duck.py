"""A DuckDB connection over one run's staged sources, locked down before any metric SQL runs.

Each source is a view by its name. DuckDB may read exactly those Parquet parts — no other file, no
network, no ``ATTACH``/``COPY … TO``, no extensions, no Python variables as tables — in the business
time zone, and its configuration is locked. Used by the transform and the reconciliation checks.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from metrics_center.definitions.meaning import effective_timezone
from metrics_center.tasks.staging import is_local, local_parquet_files, read_mode, remote_parquet_files

if TYPE_CHECKING:
    from collections.abc import Iterator

    import duckdb

    from metrics_center.tasks.computation import Computation, PeriodPart


def _lock_down(con: duckdb.DuckDBPyConnection, *, files: list[str], timezone: str) -> None:
    con.execute("SET TimeZone = $tz", {"tz": timezone})
    con.execute("SET allowed_paths = $paths", {"paths": files})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET python_enable_replacements = false")  # a Python variable is never a table
    con.execute("SET lock_configuration = true")


@contextmanager
def staged_duckdb(*, computation: Computation, part: PeriodPart) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with a view per staged source of one period of a computation, locked down.

    Remote staging (``s3://``…) is downloaded to a temporary folder, or with
    ``METRICS_CENTER_STAGING_READ=direct`` read in place through the staging connection's fsspec
    filesystem (DuckDB's httpfs extension cannot be installed offline); either way ``allowed_paths`` is
    exactly this period's parts.
    """
    import duckdb

    spec = computation.spec
    con = duckdb.connect()
    try:
        with ExitStack() as stack:
            staged: dict[str, list[str]] = {}
            for name in spec.sources:
                folder = computation.source_folder(name, part)
                if is_local(folder) or read_mode() == "copy":
                    staged[name] = stack.enter_context(local_parquet_files(folder))
                else:
                    staged[name], fs = remote_parquet_files(folder)
                    if not con.filesystem_is_registered(
                        fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
                    ):
                        con.register_filesystem(fs)
            for name, files in staged.items():
                con.read_parquet(files, union_by_name=True).to_view(name)
            _lock_down(
                con, files=[f for files in staged.values() for f in files], timezone=effective_timezone(spec)
            )
            yield con
    finally:
        con.close()
