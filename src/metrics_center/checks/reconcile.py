"""Cross-department reconciliation (对账): recompute the same quantity from another source and compare.

Each check's SQL runs in the run's locked-down DuckDB over the metric's staged sources and returns
``period_start, <by…>, value`` — *their* number. *Ours* is the metric's result summed to the same
``by`` dimensions. Every (period, by…) pair is compared within the tolerance; a pair missing on one
side is a mismatch. The outcome is stored like an expectation result, with its severity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metrics_center import settings
from metrics_center.errors import MetricsCenterError
from metrics_center.runtime import render_with
from metrics_center.tasks.duck import staged_duckdb

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from airflow.sdk import Context

    from metrics_center.spec import MetricSpec, Reconciliation
    from metrics_center.tasks.computation import Computation

MAX_ROWS_KEPT = 20


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
                    parts.append(_theirs(con, spec=spec, check=check, variables=part.variables))
            theirs = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            outcomes.append(_compare(check, ours=_ours(ours_all, check), theirs=theirs))
        except (duckdb.Error, MetricsCenterError) as exc:
            outcomes.append(
                _outcome(check, success=False, observed={"error": str(exc).splitlines()[0][:300]})
            )
    return outcomes


def _theirs(
    con: Any, *, spec: MetricSpec, check: Reconciliation, variables: Mapping[str, str]
) -> pd.DataFrame:
    sql = render_with(
        (settings.sql_dir() / check.sql).read_text(encoding="utf-8"), variables=variables, what=check.sql
    )
    relation = con.sql(sql)
    expected = ["period_start", *check.by, "value"]
    if relation is None or sorted(relation.columns) != sorted(expected):
        got = relation.columns if relation is not None else "no result"
        raise MetricsCenterError(f"{check.sql} returned {got}; it must return exactly {expected}")
    by = "".join(f'CAST("{d}" AS VARCHAR) AS "{d}", ' for d in check.by)
    frame = relation.project(
        f"CAST(period_start AS DATE) AS period_start, {by}CAST(value AS DOUBLE) AS value"
    ).df()
    return frame.groupby(["period_start", *check.by], dropna=False, as_index=False)["value"].sum()


def _ours(result: pd.DataFrame, check: Reconciliation) -> pd.DataFrame:
    frame = result.assign(**{d: result[d].astype("string").astype(object) for d in check.by})
    return frame.groupby(["period_start", *check.by], dropna=False, as_index=False)["value"].sum()


def _compare(check: Reconciliation, *, ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    keys = ["period_start", *check.by]
    ours = ours.assign(period_start=pd.to_datetime(ours["period_start"]))
    theirs = theirs.assign(period_start=pd.to_datetime(theirs["period_start"]))
    for d in check.by:
        ours[d], theirs[d] = ours[d].astype(object), theirs[d].astype(object)
    both = ours.merge(theirs, on=keys, how="outer", suffixes=("_ours", "_theirs"))
    both["difference"] = both["value_ours"] - both["value_theirs"]
    both["within"] = [
        bool(pd.notna(o) and pd.notna(t) and check.tolerance.allows(difference=o - t, theirs=t))
        for o, t in zip(both["value_ours"], both["value_theirs"], strict=True)
    ]
    both["order"] = both["difference"].abs().fillna(float("inf"))
    worst = both.sort_values("order", ascending=False).head(MAX_ROWS_KEPT)
    rows = [
        {
            "period": row["period_start"].date().isoformat(),
            "dimensions": {d: row[d] for d in check.by},
            "ours": _number(row["value_ours"]),
            "theirs": _number(row["value_theirs"]),
            "difference": _number(row["difference"]),
            "within": row["within"],
        }
        for row in worst.to_dict("records")
    ]
    ours_total, theirs_total = both["value_ours"].sum(), both["value_theirs"].sum()
    return _outcome(
        check,
        success=bool(both["within"].all()) and len(both) > 0,
        observed={
            "ours": _number(ours_total),
            "theirs": _number(theirs_total),
            "difference": _number(ours_total - theirs_total),
            "compared": len(both),
            "mismatched": int((~both["within"]).sum()),
            "rows": rows,
        },
    )


def _outcome(check: Reconciliation, *, success: bool, observed: dict[str, Any]) -> dict[str, Any]:
    return {
        "expectation": f"reconcile:{check.name}",
        "kwargs": {
            "sql": check.sql,
            "by": list(check.by),
            "tolerance": check.tolerance.model_dump(exclude_none=True),
        },
        "success": success,
        "severity": check.severity,
        "observed": observed,
    }


def _number(value: Any) -> float | None:
    import pandas as pd

    return None if pd.isna(value) else round(float(value), 6)
