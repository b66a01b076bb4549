"""Staging retention: staged Parquet is kept per run (publish can be re-run from it), pruned by age.

A run that has not finished (queued or running — e.g. one waiting three weeks for approval) keeps its
staged data whatever its age: its ``publish`` still needs it. Which runs those are is asked of an
injected lookup, answered either from Airflow's metadata database (:func:`metadata_db_lookup`, the
``metrics-center staging prune`` CLI) or, inside a task, which may not read that database, from the
mart's ``metric_run`` register plus the Task SDK's run state (:func:`mart_run_lookup`). When the
states cannot be learnt, nothing (or, for one folder, that folder) is pruned.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from metrics_center import settings
from metrics_center.errors import MetricsCenterError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: DagRun states after which a run never needs its staged data again (unless someone clears it).
FINISHED_STATES = frozenset({"success", "failed"})


class MetadataDatabaseUnavailable(MetricsCenterError):
    """Airflow's metadata database could not be read, so unfinished runs cannot be told apart."""


@dataclass(frozen=True)
class UnfinishedRun:
    dag_id: str
    run_id: str
    state: str

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.run_id} ({self.state})"


@dataclass(frozen=True)
class Pruned:
    runs: int
    files: int
    #: Runs old enough to prune but kept because they have not finished.
    kept_unfinished: tuple[UnfinishedRun, ...] = ()
    #: ``<metric>/<folder>`` old enough to prune but kept because their runs' states are unknown.
    kept_unknown: tuple[str, ...] = ()


#: ``(dag_id, staging folder name)`` → the runs using that folder that have not finished (empty: it may
#: go), or None when that cannot be told (the folder is kept).
UnfinishedLookup = Callable[[str, str], Sequence[UnfinishedRun] | None]
#: ``(dag_id, run_id)`` → Airflow's state of that run (``"running"``…), None if Airflow has no such run.
RunStateOf = Callable[[str, str], str | None]


def staging_folder_name(run_id: str) -> str:
    """The folder a run's staged data lives in: the run id made path-safe (as ``runtime.staging_dir``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


@contextmanager
def _metadata_session() -> Iterator[Session]:
    """A session on Airflow's metadata DB; any database failure becomes :class:`MetadataDatabaseUnavailable`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        # Importing airflow configures its ORM, which already fails on an unusable URL (as inside a task).
        from airflow.utils.session import create_session

        with create_session() as session:
            yield session
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise MetadataDatabaseUnavailable(
            f"cannot read run states from Airflow's metadata database ({reason}); nothing was pruned, "
            "because the staged data of a run that has not finished (e.g. one waiting for approval) is "
            "still needed to publish it. Run `metrics-center staging prune` where the scheduler runs, with "
            "its AIRFLOW_HOME / AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (Docker: `docker compose run --rm "
            'airflow-cli bash -c "metrics-center staging prune"`), not inside an Airflow task: Airflow 3 '
            "gives tasks no database access."
        ) from exc


def metadata_db_lookup() -> UnfinishedLookup:
    """Unfinished runs read once, now, from Airflow's metadata database (raises before any file is touched)."""
    unfinished = unfinished_runs()
    return lambda dag_id, folder: unfinished.get((dag_id, folder), ())


def mart_run_lookup(engine: Engine, *, dagrun_state: RunStateOf) -> UnfinishedLookup:
    """Runs from the mart's ``metric_run`` register (every run that staged data registered first), their
    states from ``dagrun_state`` — in a task, the Task SDK's ``ti.get_dagrun_state``.

    A folder no registered run maps to, or whose run's state cannot be read, is kept (None):
    ``metrics-center staging prune``, which reads Airflow's database, can decide those.
    """
    import sqlalchemy as sa

    from metrics_center.mart.tables import metric_run

    runs: dict[tuple[str, str], list[str]] = {}
    with engine.connect() as conn:
        for metric_key, run_id in conn.execute(sa.select(metric_run.c.metric_key, metric_run.c.run_id)):
            runs.setdefault((metric_key, staging_folder_name(run_id)), []).append(run_id)

    def lookup(dag_id: str, folder: str) -> Sequence[UnfinishedRun] | None:
        run_ids = runs.get((dag_id, folder))
        if not run_ids:
            log.warning("kept staged folder %s/%s: no run of the mart's metric_run uses it", dag_id, folder)
            return None
        unfinished = []
        for run_id in run_ids:
            try:
                state = dagrun_state(dag_id, run_id)
            except Exception as exc:
                log.warning(
                    "kept staged run %s/%s: cannot read its state (%s: %s)",
                    dag_id,
                    run_id,
                    type(exc).__name__,
                    exc,
                )
                return None
            if state is not None and state not in FINISHED_STATES:
                unfinished.append(UnfinishedRun(dag_id=dag_id, run_id=run_id, state=state))
        return tuple(unfinished)

    return lookup


def unfinished_runs() -> dict[tuple[str, str], tuple[UnfinishedRun, ...]]:
    """Every DagRun that has not finished, keyed by ``(dag_id, staging folder name)``.

    Several run ids can share a folder name once made path-safe; they share the folder too, so all of
    them are listed under it.
    """
    import sqlalchemy as sa

    with _metadata_session() as session:
        from airflow.models import DagRun

        rows = session.execute(
            sa.select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
                sa.or_(DagRun.state.is_(None), DagRun.state.not_in(sorted(FINISHED_STATES)))
            )
        ).all()
    found: dict[tuple[str, str], tuple[UnfinishedRun, ...]] = {}
    for dag_id, run_id, state in rows:
        key = (dag_id, staging_folder_name(run_id))
        found[key] = (*found.get(key, ()), UnfinishedRun(dag_id=dag_id, run_id=run_id, state=str(state)))
    return found


def _modified(info: dict) -> datetime:
    """fsspec stat: ``mtime`` (local, epoch seconds) or ``LastModified`` (object stores, datetime)."""
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def prune_staging(
    *,
    older_than: timedelta,
    now: datetime | None = None,
    dry_run: bool = False,
    is_unfinished: UnfinishedLookup | None = None,
) -> Pruned:
    """Delete ``<staging>/<metric>/<run>/`` folders whose newest file is older than ``older_than``.

    Folders of runs that have not finished are kept (and reported), as are folders ``is_unfinished``
    cannot tell about; folders whose run is finished or no longer exists go by age alone.
    ``is_unfinished`` defaults to :func:`metadata_db_lookup`, which raises
    :class:`MetadataDatabaseUnavailable`, before touching any file, when that database cannot be read.
    """
    if is_unfinished is None:
        is_unfinished = metadata_db_lookup()  # first: never prune without knowing which runs are still going

    root = settings.staging_path()
    cutoff = (now or datetime.now(UTC)) - older_than
    runs = files = 0
    kept: list[UnfinishedRun] = []
    unknown: list[str] = []
    if not root.exists():
        return Pruned(0, 0)
    for metric in (p for p in root.iterdir() if p.is_dir()):
        for run in (p for p in metric.iterdir() if p.is_dir()):
            staged = [f for f in run.rglob("*") if f.is_file()]
            newest = max((_modified(f.stat()) for f in staged), default=None)
            if newest is not None and newest >= cutoff:
                continue
            waiting = is_unfinished(metric.name, run.name)
            if waiting is None:
                unknown.append(f"{metric.name}/{run.name}")
                continue
            if waiting:
                kept.extend(waiting)
                continue
            runs, files = runs + 1, files + len(staged)
            if not dry_run:
                run.rmdir(recursive=True)
    return Pruned(runs, files, tuple(kept), tuple(unknown))
