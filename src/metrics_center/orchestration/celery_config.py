"""Celery settings for Metrics Center's workers: Airflow's own, plus the task libraries imported once per worker.

Airflow runs every task in a process forked from the Celery worker's pool process, so whatever the worker imported
before forking is already loaded in the task. Without this each task imported Great Expectations, pandas, pyarrow
and DuckDB itself: 3.7 s of a 4.6 s ``quality_check`` (``benchmarks/celery_throughput.py``).

Point Airflow at it with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=metrics_center.orchestration.celery_config.CELERY_CONFIG``
(docker-compose does). The scheduler reads the same setting; the imports run only in workers (Celery's
``worker_init`` signal), and a failed import is logged, never fatal: the task then imports it itself.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

__all__ = ["CELERY_CONFIG", "PRELOADED_MODULES", "preload"]

log = logging.getLogger(__name__)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)

# What our tasks import when they run, heaviest first; each import pulls in its own dependencies.
PRELOADED_MODULES = (
    "great_expectations",
    "great_expectations.expectations",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.parquet",
    "duckdb",
    "sqlalchemy",
    "psycopg",
    "fsspec",
    "s3fs",  # staging on S3 (installed with the project; elsewhere the warning says it is skipped)
    "airflow.providers.amazon.aws.fs.s3",
    "alembic.config",
    "alembic.migration",
    "alembic.script",
    "metrics_center.orchestration.operators",
    "metrics_center.mart.migrate",
    "metrics_center.mart.runs",
    "metrics_center.mart.publish",
    "metrics_center.tasks.extract",
    "metrics_center.tasks.transform",
    "metrics_center.tasks.quality_gate",
    "metrics_center.tasks.impact_preview",
    "metrics_center.tasks.publish_run",
    "metrics_center.tasks.staging",
)


def preload(*, modules: tuple[str, ...] = PRELOADED_MODULES) -> tuple[dict[str, float], dict[str, str]]:
    """Import ``modules`` now: seconds per imported module, and the error of each one that failed (skipped)."""
    took: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in modules:
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task imports it again and reports the error where it belongs
            failed[name] = f"{type(exc).__name__}: {exc}"
            log.warning("metrics_center: could not preload %s: %s", name, failed[name])
            continue
        took[name] = time.perf_counter() - start
    if "metrics_center.mart.migrate" in took:  # every task checks the mart's revision against this head
        from metrics_center.mart.migrate import head_revision

        head_revision()
    return took, failed


@worker_init.connect
def _preload_in_worker(**_: Any) -> None:
    took, failed = preload()
    log.info(
        "metrics_center: preloaded %d task modules in %.1f s%s",
        len(took),
        sum(took.values()),
        f"; skipped {', '.join(failed)}" if failed else "",
    )
