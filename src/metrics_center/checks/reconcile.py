"""Cross-department reconciliation (对账): compare our number with the same quantity from another source.

Each check's SQL runs in the run's locked-down DuckDB over the metric's staged sources
(:mod:`metrics_center.tasks.reconciliation`) and returns ``period_start, <by…>, value`` — *their* number. *Ours* is the metric's result summed to the same
``by`` dimensions. Every (period, by…) pair is compared within the tolerance; a pair missing on one
side is a mismatch. The outcome is stored like an expectation result, with its severity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metrics_center.errors import MetricsCenterError

if TYPE_CHECKING:
    import pandas as pd

    from metrics_center.definitions.spec import Reconciliation

MAX_ROWS_KEPT = 20


def theirs(con: Any, *, check: Reconciliation, sql: str) -> pd.DataFrame:
    """*Their* number: the check's rendered ``sql`` run on ``con`` (DuckDB), summed to ``period_start, by…``."""
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


def ours(result: pd.DataFrame, check: Reconciliation) -> pd.DataFrame:
    """*Our* number: the metric's result summed to ``period_start, by…``."""
    frame = result.assign(**{d: result[d].astype("string").astype(object) for d in check.by})
    return frame.groupby(["period_start", *check.by], dropna=False, as_index=False)["value"].sum()


def compare(check: Reconciliation, *, ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    """The stored outcome: every (period, by…) pair within the tolerance, or the worst rows."""
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
    return outcome(
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


def outcome(check: Reconciliation, *, success: bool, observed: dict[str, Any]) -> dict[str, Any]:
    """A quality-result dict, ``expectation`` = ``reconcile:<name>``."""
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
