"""Run a metric's reconciliations (对账) over its staged sources, period by period, like the transform.

The comparison itself is :mod:`metrics_center.checks.reconcile`'s; here each check's SQL is rendered
with the period's variables and run in the locked-down DuckDB of that period's staged sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.checks import reconcile
from metrics_center.definitions.templates import render_with
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.duck import staged_duckdb

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from metrics_center.definitions.spec import MetricSpec, Reconciliation
    from metrics_center.tasks.computation import Computation


def run_reconciliations(
    *,
    spec: MetricSpec,
    context: Context | None = None,
    result: pa.Table,
    computation: Computation | None = None,
) -> list[dict[str, Any]]:
    """One quality-result dict per declared check (``expectation`` = ``reconcile:<name>``).

    Their number is computed period by period of the computation, like the transform, over that
    period's staged sources.
    """
    if not spec.reconciliations:
        return []
    import duckdb
    import pandas as pd

    from metrics_center.tasks.computation import for_context

    if computation is None:
        assert context is not None, "run_reconciliations needs a context or a computation"
        computation = for_context(spec=spec, context=context)
    outcomes = []
    ours_all = result.to_pandas()
    for check in spec.reconciliations:
        try:
            parts = []
            for part in computation.parts:
                with staged_duckdb(computation=computation, part=part) as con:
                    parts.append(
                        reconcile.theirs(con, check=check, sql=_sql(check, variables=part.variables))
                    )
            theirs = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            outcomes.append(reconcile.compare(check, ours=reconcile.ours(ours_all, check), theirs=theirs))
        except (duckdb.Error, MetricsCenterError) as exc:
            outcomes.append(
                reconcile.outcome(check, success=False, observed={"error": str(exc).splitlines()[0][:300]})
            )
    return outcomes


def _sql(check: Reconciliation, *, variables: Mapping[str, str]) -> str:
    text = (settings.sql_dir() / check.sql).read_text(encoding="utf-8")
    return render_with(text, variables=variables, what=check.sql)
