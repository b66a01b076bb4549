"""Impact of a new definition version: its values over recent periods against what the old version published.

One DuckDB query joins the two tables on (period, dimensions) and yields the numbers people need
before approving a breaking change: periods and dimension combinations affected, combinations that
appear or disappear, max / mean absolute and relative difference, and the largest changes.

When the versions have different dimensions, they are compared on the dimensions both have — summing
the others away if the metric is additive (a ratio: SUM(numerator) / SUM(denominator) of the others); another
metric with changed dimensions is compared
by period totals of rows only (its values cannot be matched one to one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

#: A difference smaller than this share of the old value (or of 1) is rounding, not a change.
RELATIVE_EPSILON = 1e-9
TOP = 10


@dataclass(frozen=True)
class Impact:
    """What a new version does to the numbers, as stored in ``impact_preview.summary`` and shown to people."""

    from_version: int | None
    to_version: int
    periods: list[str]
    compared_on: list[str]
    comparable: bool
    rows_old: int
    rows_new: int
    combinations: int
    affected_periods: list[str]
    affected_combinations: int
    added: int
    removed: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    max_rel_diff: float | None
    mean_rel_diff: float | None
    largest: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self, unit: str = "") -> str:
        """``14 of 28 periods and 40 of 112 combinations change; largest −12.5% (−1,234.00 CNY)``."""
        if not self.periods:
            return "nothing was published under the old version to compare with"
        if self.note:
            return self.note
        if not self.comparable:
            return (
                f"dimensions changed and the metric is not additive: {self.rows_old} old vs {self.rows_new} new rows "
                f"over {len(self.periods)} periods (values cannot be matched one to one)"
            )
        if not self.affected_combinations:
            return f"no value changes over the last {len(self.periods)} published periods"
        parts = [
            f"{len(self.affected_periods)} of {len(self.periods)} periods and {self.affected_combinations} of "
            f"{self.combinations} values change"
        ]
        if self.max_rel_diff is not None:
            parts.append(f"max {self.max_rel_diff:.1%}, mean {self.mean_rel_diff or 0:.1%} relative")
        if self.max_abs_diff is not None:
            parts.append(f"max {self.max_abs_diff:,.2f} {unit}".rstrip())
        if self.added or self.removed:
            parts.append(f"{self.added} new and {self.removed} vanished combinations")
        return "; ".join(parts)


def compare_versions(
    *,
    old: pa.Table,
    new: pa.Table,
    old_dimensions: list[str],
    new_dimensions: list[str],
    additive: bool,
    from_version: int | None,
    ratio: bool = False,
    to_version: int,
    periods: list[date],
    top: int = TOP,
) -> Impact:
    """Compare ``new`` (``period_start, dims…, value``) with ``old`` over ``periods`` (both tables may hold others)."""
    import duckdb

    common = [d for d in new_dimensions if d in old_dimensions]
    same_dims = set(old_dimensions) == set(new_dimensions)
    # A ratio compares on shared dimensions as SUM(numerator) / SUM(denominator) when both sides have its parts.
    ratio = ratio and all(
        "numerator" in t.column_names and t["numerator"].null_count < t.num_rows for t in (old, new)
    )
    comparable = same_dims or additive or ratio
    total = (
        "SUM(CAST(numerator AS DOUBLE)) / NULLIF(SUM(CAST(denominator AS DOUBLE)), 0)"
        if ratio
        else ("SUM(CAST(value AS DOUBLE))")
    )
    wanted = [p.isoformat() for p in periods]
    con = duckdb.connect()
    try:
        con.register("old_raw", old)
        con.register("new_raw", new)
        con.execute(
            "CREATE TEMP TABLE wanted AS SELECT CAST(unnest($p) AS DATE) AS period_start", {"p": wanted}
        )
        dims_sql = "".join(f', CAST("{d}" AS VARCHAR) AS "{d}"' for d in common)
        group = "".join(f', "{d}"' for d in common)
        for side in ("old", "new"):
            # Each side has one row per (period, dimensions) already (the transform checks it, the mart's
            # unique index too): only versions with different dimensions need summing to the shared ones.
            sql = (
                f"""SELECT CAST(period_start AS DATE) AS period_start{dims_sql}, CAST(value AS DOUBLE) AS value
                FROM {side}_raw WHERE CAST(period_start AS DATE) IN (SELECT period_start FROM wanted)"""
                if same_dims
                else f"""SELECT CAST(period_start AS DATE) AS period_start{dims_sql}, {total} AS value
                FROM {side}_raw WHERE CAST(period_start AS DATE) IN (SELECT period_start FROM wanted)
                GROUP BY CAST(period_start AS DATE){group}"""
            )
            con.execute(f"CREATE TEMP VIEW {side} AS {sql}")  # identifiers are validated dimension names
        counted = "SELECT count(*) FROM {} WHERE CAST(period_start AS DATE) IN (SELECT * FROM wanted)"
        rows_old = con.execute(counted.format("old_raw")).fetchone()[0]
        rows_new = con.execute(counted.format("new_raw")).fetchone()[0]
        if not comparable:
            return Impact(
                from_version=from_version,
                to_version=to_version,
                periods=wanted,
                compared_on=[],
                comparable=False,
                rows_old=rows_old,
                rows_new=rows_new,
                combinations=0,
                affected_periods=[],
                affected_combinations=0,
                added=0,
                removed=0,
                max_abs_diff=None,
                mean_abs_diff=None,
                max_rel_diff=None,
                mean_rel_diff=None,
            )
        on = " AND ".join(
            ["o.period_start = n.period_start", *(f'o."{d}" IS NOT DISTINCT FROM n."{d}"' for d in common)]
        )
        keys = "".join(f', COALESCE(n."{d}", o."{d}") AS "{d}"' for d in common)
        con.execute(
            f"""CREATE TEMP TABLE joined AS
            SELECT COALESCE(n.period_start, o.period_start) AS period_start{keys},
                   o.value AS old_value, n.value AS new_value,
                   n.value - o.value AS diff,
                   CASE WHEN o.value <> 0 THEN (n.value - o.value) / abs(o.value) END AS rel,
                   (o.value IS NULL OR n.value IS NULL
                    OR abs(n.value - o.value) > {RELATIVE_EPSILON} * greatest(1, abs(o.value))) AS changed
            FROM new AS n FULL OUTER JOIN old AS o ON {on}"""
        )
        stats = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE changed),
                      count(*) FILTER (WHERE old_value IS NULL), count(*) FILTER (WHERE new_value IS NULL),
                      max(abs(diff)), avg(abs(diff)) FILTER (WHERE changed),
                      max(abs(rel)), avg(abs(rel)) FILTER (WHERE changed)
               FROM joined"""
        ).fetchone()
        affected_periods = [
            r[0].isoformat()
            for r in con.execute(
                "SELECT DISTINCT period_start FROM joined WHERE changed ORDER BY 1"
            ).fetchall()
        ]
        largest = (
            con.sql(
                f"""SELECT * FROM joined WHERE changed
                ORDER BY abs(diff) DESC NULLS FIRST, period_start LIMIT {int(top)}"""
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    total, changed, added, removed, max_abs, mean_abs, max_rel, mean_rel = stats
    return Impact(
        from_version=from_version,
        to_version=to_version,
        periods=wanted,
        compared_on=common,
        comparable=True,
        rows_old=rows_old,
        rows_new=rows_new,
        combinations=total,
        affected_periods=affected_periods,
        affected_combinations=changed,
        added=added,
        removed=removed,
        max_abs_diff=_num(max_abs),
        mean_abs_diff=_num(mean_abs),
        max_rel_diff=_num(max_rel),
        mean_rel_diff=_num(mean_rel),
        largest=[
            {
                "period": row["period_start"].isoformat(),
                "dimensions": {d: row[d] for d in common},
                "old": _num(row["old_value"]),
                "new": _num(row["new_value"]),
                "diff": _num(row["diff"]),
                "rel": _num(row["rel"]),
            }
            for row in largest
        ],
    )


def _num(value: Any) -> float | None:
    return None if value is None else float(value)
