"""Staging retention: staged Parquet is kept per run (publish can be re-run from it), pruned by age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from metrics_center import settings


@dataclass(frozen=True)
class Pruned:
    runs: int
    files: int


def _modified(info: dict) -> datetime:
    """fsspec stat: ``mtime`` (local, epoch seconds) or ``LastModified`` (object stores, datetime)."""
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def prune_staging(*, older_than: timedelta, now: datetime | None = None, dry_run: bool = False) -> Pruned:
    """Delete ``<staging>/<metric>/<run>/`` folders whose newest file is older than ``older_than``."""
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(settings.staging_root())
    cutoff = (now or datetime.now(UTC)) - older_than
    runs = files = 0
    if not root.exists():
        return Pruned(0, 0)
    for metric in (p for p in root.iterdir() if p.is_dir()):
        for run in (p for p in metric.iterdir() if p.is_dir()):
            staged = [f for f in run.rglob("*") if f.is_file()]
            newest = max((_modified(f.stat()) for f in staged), default=None)
            if newest is None or newest < cutoff:
                runs, files = runs + 1, files + len(staged)
                if not dry_run:
                    run.rmdir(recursive=True)
    return Pruned(runs, files)
