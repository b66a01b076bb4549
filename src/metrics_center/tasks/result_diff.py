"""Expected rows against a result's rows: order-insensitive, only the columns the expectation names.

Rows are matched by their key — the dimensions (and ``period_start`` when the expectation names it),
compared as the result holds them: text. Numbers match when they are close: ``math.isclose`` with a
relative tolerance of 1e-6 and an absolute one of 1e-9, so an expected ``0.333333`` matches ``1/3``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metrics_center.definitions.metric_tests import cell_text

REL_TOL = 1e-6
ABS_TOL = 1e-9


@dataclass(frozen=True)
class Difference:
    key: tuple[tuple[str, str | None], ...]
    column: str
    expected: Any
    actual: Any


@dataclass(frozen=True)
class RowDiff:
    """What differs: rows expected but not returned, rows returned but not expected, values that differ."""

    missing: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    differing: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.differing)

    def lines(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"missing rows (expected, not returned): {len(self.missing)}")
            out += [f"  - {_row(r)}" for r in self.missing]
        if self.unexpected:
            out.append(f"unexpected rows (returned, not expected): {len(self.unexpected)}")
            out += [f"  + {_row(r)}" for r in self.unexpected]
        if self.differing:
            out.append(f"differing values: {len(self.differing)}")
            for d in self.differing:
                label = ", ".join(f"{k}={v}" for k, v in d.key) or "(the row)"
                out.append(f"  ~ {label}: {d.column} expected {_number(d.expected)}, got {_number(d.actual)}")
        return out


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _row(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_number(v) if isinstance(v, float) else cell_text(v)}" for k, v in row.items())


def close(expected: Any, actual: Any) -> bool:
    """Numbers within the tolerance (NULL only equals NULL)."""
    if expected is None or actual is None:
        return expected is None and actual is None
    return math.isclose(float(actual), float(expected), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare_rows(
    *, expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]], key_columns: Sequence[str]
) -> RowDiff:
    """``expected`` against ``actual`` on the columns the expected rows name; ``key_columns`` match rows.

    Every expected row names the same columns (checked when the test file is loaded). Actual rows are cut
    to those columns; several actual rows with one key (e.g. periods, when ``period_start`` is not named)
    are matched in turn, the rest reported as unexpected.
    """
    if not expected:
        return RowDiff(unexpected=[dict(r) for r in actual])
    named = list(expected[0])
    keys = [c for c in key_columns if c in named]
    values = [c for c in named if c not in keys]

    def key_of(row: dict[str, Any]) -> tuple[str | None, ...]:
        return tuple(cell_text(row.get(c)) for c in keys)

    pending: dict[tuple[str | None, ...], list[dict[str, Any]]] = {}
    for row in actual:
        pending.setdefault(key_of(row), []).append(row)
    diff = RowDiff()
    for want in expected:
        key = key_of(want)
        candidates = pending.get(key)
        if not candidates:
            diff.missing.append(dict(want))
            continue
        got = candidates.pop(0)
        for column in values:
            if not close(want[column], got.get(column)):
                diff.differing.append(
                    Difference(
                        key=tuple(zip(keys, key, strict=True)),
                        column=column,
                        expected=want[column],
                        actual=got.get(column),
                    )
                )
    for rows in pending.values():
        diff.unexpected.extend({c: r.get(c) for c in named} for r in rows)
    return diff
