"""Announce a new definition version once — with its impact on the numbers when the change is breaking.

The ``impact_preview`` task of every run does this, cheaply, when the run's version was announced
already (every run but a new version's first). For a new version it:

1. classifies the change against the previous registered version (:mod:`metrics_center.definitions.changes`);
2. if breaking, computes the new definition over the last ``preview_periods`` periods published under
   older versions — the same extract and transform a run does, staged under the run's ``preview/`` —
   and compares it with what was published (:mod:`metrics_center.checks.impact`); a preview that fails is
   reported, never fatal: the broadcast must go out anyway;
3. in one transaction: claims the announcement (``metric_definition.announced_at``, so concurrent or
   retried runs announce once), stores the preview and writes a ``definition_change`` notification for
   the owner's department, every subscriber and the owners of every metric built on it. A metric's
   first version changes nobody's numbers: it is claimed without a broadcast.

The preview is shown to the first approver of the version's first run (see the approval evidence). A deprecated
metric's notice (:mod:`metrics_center.tasks.deprecation_notice`) is written here too, once.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metrics_center.checks.impact import Impact, compare_versions
from metrics_center.mart.tables import impact_preview, metric_definition
from metrics_center.observability import stats

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath
    from sqlalchemy import Engine

    from metrics_center.definitions.spec import MetricSpec, Teams

log = logging.getLogger(__name__)
MAX_DIFF_LINES = 80


def stored_versions(engine: Engine, *, key: str, version: int) -> tuple[Any, Any]:
    """The registered row of ``version`` and of the newest version before it (None for a first version)."""
    t = metric_definition
    with engine.connect() as conn:
        current = conn.execute(sa.select(t).where(t.c.metric_key == key, t.c.version == version)).first()
        previous = conn.execute(
            sa.select(t)
            .where(t.c.metric_key == key, t.c.version < version)
            .order_by(t.c.version.desc())
            .limit(1)
        ).first()
    return current, previous


def compute_impact(
    engine: Engine,
    *,
    spec: MetricSpec,
    root: ObjectStoragePath,
    previous: Any,
    before_version: int | None = None,
) -> Impact:
    """The new definition (``spec``) over the periods the older versions published last, against them.

    ``before_version`` (default ``spec.version``): only values published under older versions count.
    """
    before_version = before_version or spec.version
    from metrics_center.definitions.periods import period_containing
    from metrics_center.mart.values import current_values_table, recent_periods
    from metrics_center.tasks.computation import of_periods
    from metrics_center.tasks.extract import extract_source
    from metrics_center.tasks.transform import transform_table

    starts = recent_periods(
        engine, metric_key=spec.key, limit=spec.preview_periods, before_version=before_version
    )
    old_dimensions = list(previous.dimensions or [])
    if previous.grain != spec.grain or not starts:
        return _not_comparable(
            spec=spec,
            previous=previous,
            periods=starts,
            note=f"the grain changed ({previous.grain} → {spec.grain}): periods cannot be matched"
            if previous.grain != spec.grain
            else "",
        )
    computation = of_periods(
        spec=spec, root=root, periods=[period_containing(d, grain=spec.grain) for d in starts]
    )
    # What the old version published is read (Postgres COPY, Arrow's CSV parser) while the new version
    # is extracted and transformed (DuckDB): both release the GIL, so the read costs little wall time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-read") as pool:
        published = pool.submit(
            current_values_table,
            engine,
            metric_key=spec.key,
            dimensions=old_dimensions,
            period_starts=starts,
            before_version=before_version,
            ratio=spec.is_ratio,
        )
        for name in spec.sources:
            extract_source(spec=spec, source_name=name, computation=computation)
        new = transform_table(computation)
        old = published.result()
    return compare_versions(
        old=old,
        new=new,
        old_dimensions=old_dimensions,
        new_dimensions=list(spec.dimensions),
        additive=spec.aggregation == "sum",
        ratio=spec.is_ratio,
        from_version=previous.version,
        to_version=spec.version,
        periods=starts,
    )


def _not_comparable(*, spec: MetricSpec, previous: Any, periods: list[date], note: str) -> Impact:
    return Impact(
        from_version=previous.version,
        to_version=spec.version,
        periods=[p.isoformat() for p in periods],
        compared_on=[],
        comparable=False,
        rows_old=0,
        rows_new=0,
        combinations=0,
        affected_periods=[],
        affected_combinations=0,
        added=0,
        removed=0,
        max_abs_diff=None,
        mean_abs_diff=None,
        max_rel_diff=None,
        mean_rel_diff=None,
        note=note,
    )


def run_impact_preview(
    engine: Engine, *, spec: MetricSpec, teams: Teams | None, context: Context
) -> dict[str, Any]:
    from metrics_center.definitions.changes import compare_documents, truncate_diff, unified_diff
    from metrics_center.errors import MetricsCenterError
    from metrics_center.mart.runs import get_run
    from metrics_center.tasks.deprecation_notice import announce_deprecation
    from metrics_center.tasks.runtime import staging_dir

    run = get_run(engine, metric_key=spec.key, run_id=context["run_id"])
    if run is None:
        raise MetricsCenterError(
            f"run {context['run_id']} of {spec.key} was never registered; clear the whole run"
        )
    told = announce_deprecation(engine, spec=spec, teams=teams, run_id=run.run_id)
    deprecation = {} if told is None else {"deprecation_notifications": told}
    current, previous = stored_versions(engine, key=spec.key, version=run.definition_version)
    if current is None or current.announced_at is not None:
        return {"version": run.definition_version, "announced": "before", **deprecation}
    change = compare_documents(previous.definition if previous is not None else None, current.definition)
    summary: dict[str, Any] | None = None
    error = None
    if previous is not None and change.breaking and spec.preview_periods:
        if spec.version != run.definition_version:
            error = f"the YAML is at v{spec.version} now, the run computes v{run.definition_version}"
        else:
            # Its own folder per attempt: a preview's staged data is thrown away once compared.
            root = staging_dir(context, spec) / "preview" / uuid.uuid4().hex[:12]
            try:
                impact = compute_impact(engine, spec=spec, root=root, previous=previous)
                summary = {**impact.as_json(), "headline": impact.headline(spec.unit)}
            except Exception as exc:  # the announcement must not be lost to a failed preview
                log.warning("impact preview of %s v%s failed: %s", spec.key, spec.version, exc, exc_info=True)
                error = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            finally:
                with contextlib.suppress(OSError):
                    if root.exists():
                        root.rmdir(recursive=True)
    diff, truncated = truncate_diff(
        unified_diff(
            previous.definition if previous is not None else None,
            current.definition,
            old_label=f"{spec.key} v{previous.version}" if previous is not None else "(new metric)",
            new_label=f"{spec.key} v{current.version}",
        ),
        max_lines=MAX_DIFF_LINES,
    )
    announced = announce(
        engine,
        spec=spec,
        teams=teams,
        current=current,
        previous=previous,
        change=change,
        preview={"error": error} if error else summary,
        diff=diff,
        diff_truncated=truncated,
        run_id=run.run_id,
        period=run.period_start,
    )
    stats.version_announced(
        metric_key=spec.key,
        announced=announced is not None,
        breaking=change.breaking,
        preview_failed=bool(error),
    )
    return {
        "version": current.version,
        "breaking": change.breaking,
        "change": change.summary(),
        "preview": summary["headline"] if summary else error,
        "announced": "now" if announced is not None else "by another run",
        "notifications": announced or 0,
        **deprecation,
    }


def _names(dimensions: Any) -> list[str]:
    import json

    return list(json.loads(dimensions) if isinstance(dimensions, str) else dimensions or [])


def announce(
    engine: Engine,
    *,
    spec: MetricSpec,
    teams: Teams | None,
    current: Any,
    previous: Any,
    change: Any,
    preview: dict[str, Any] | None,
    diff: str,
    diff_truncated: bool,
    run_id: str,
    period: date,
) -> int | None:
    """Claim the version's announcement and write it; None when another run claimed it first."""
    from metrics_center.mart.engine import locked_now, locked_transaction
    from metrics_center.notify.broadcast import change_recipients, downstream_of, enqueue_for_all
    from metrics_center.notify.lifecycle_messages import status_fields

    downstream = downstream_of(spec)
    # A metric's first version is not a change to anyone's numbers: it is claimed, not broadcast (a new
    # deployment of a thousand metrics must not post a thousand messages to every subscriber channel).
    recipients = (
        change_recipients(spec=spec, teams=teams, downstream=downstream) if previous is not None else []
    )
    author = (current.definition or {}).get("provenance") or {}
    columns = None
    if previous is not None:
        from metrics_center.mart.relations import column_changes

        columns = column_changes(
            old_dimensions=_names(previous.dimensions),
            old_ratio=previous.aggregation == "ratio",
            new_dimensions=list(spec.dimensions),
            new_ratio=spec.is_ratio,
        )
    payload = {
        "metric_key": spec.key,
        "metric_name": current.name,
        "unit": current.unit,
        "old_version": previous.version if previous is not None else None,
        "new_version": current.version,
        "breaking": change.breaking,
        "changes": [c.describe() for c in change.changes],
        "change_note": current.change_note,
        "changed_by": author.get("description"),
        "commit": author.get("commit"),
        "takes_effect": f"with the run {run_id} (period {period.isoformat()}) and every run after it",
        "registered_at": current.registered_at.isoformat() if current.registered_at else None,
        "downstream": [s.key for s in downstream],
        "diff": diff,
        "diff_truncated": diff_truncated,
        "preview": preview,
        "relation": spec.key,
        "columns": columns,
        **status_fields(spec),
    }
    t = metric_definition
    with locked_transaction(engine, key=spec.key) as conn:
        now = locked_now(conn)
        claimed = conn.execute(
            sa.update(t)
            .where(t.c.metric_key == spec.key, t.c.version == current.version, t.c.announced_at.is_(None))
            .values(announced_at=now)
        ).rowcount
        if not claimed:
            return None
        if preview is not None:
            conn.execute(
                sa.insert(impact_preview).values(
                    metric_key=spec.key,
                    version=current.version,
                    from_version=previous.version if previous is not None else None,
                    run_id=run_id,
                    computed_at=now,
                    summary=preview if not preview.get("error") else None,
                    error=preview.get("error"),
                )
            )
        return enqueue_for_all(
            conn,
            kind="definition_change",
            recipients=recipients,
            payload=payload,
            dedupe=f"definition_change:{spec.key}:v{current.version}",
            metric_key=spec.key,
            run_id=run_id,
        )


def preview_for_approvers(engine: Engine, *, key: str, version: int) -> dict[str, Any] | None:
    """The stored preview of ``version``, while nothing has been published under it yet."""
    from metrics_center.mart.tables import publication

    with engine.connect() as conn:
        published = conn.execute(
            sa.select(sa.func.count())
            .select_from(publication)
            .where(publication.c.metric_key == key, publication.c.definition_version == version)
        ).scalar()
        if published:
            return None
        row = conn.execute(
            sa.select(impact_preview).where(
                impact_preview.c.metric_key == key, impact_preview.c.version == version
            )
        ).first()
    if row is None:
        return None
    return {"error": row.error} if row.error else dict(row.summary or {})
