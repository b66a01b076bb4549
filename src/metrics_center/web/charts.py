"""Chart payloads for ``static/charts.js`` (uPlot): published history, the value under review, its band.

A payload is plain JSON: ``x`` (period starts as Unix seconds), ``series`` (label + values aligned
with ``x``, ``null`` where a combination has no value), optional ``new`` (the value awaiting approval,
plotted as a separate highlighted point) and ``band`` (the anomaly check's expected band).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from metrics_center.definitions.dimensions import dimensions_key
from metrics_center.i18n.translate import _
from metrics_center.web.render import dims_label

MAX_COMBINATIONS = 6  # lines in one chart before it turns into spaghetti
MAX_SMALL_MULTIPLES = 24  # charts on a metric's page, one per combination


def _ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _by_combination(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[date, float]]:
    found: dict[str, dict[date, float]] = {}
    for row in rows:
        found.setdefault(dimensions_key(row["dimensions"]), {})[row["period_start"]] = row["value"]
    return found


def _payload(
    *,
    title: str,
    unit: str,
    lines: dict[str, dict[date, float]],
    new: dict[str, float],
    new_day: date | None,
    order: Sequence[str] = (),
) -> dict[str, Any]:
    days = sorted({d for points in lines.values() for d in points} | ({new_day} if new_day else set()))
    payload: dict[str, Any] = {
        "title": title,
        "unit": unit,
        "x": [_ts(d) for d in days],
        "series": [
            {
                "label": _("total") if key == "total" else dims_label(key, order),
                "values": [pts.get(d) for d in days],
            }
            for key, pts in lines.items()
        ],
    }
    if new_day is not None and new:
        payload["new"] = {
            "label": _("awaiting approval ({day})", day=new_day.isoformat()),
            "values": [[new.get(key) if d == new_day else None for d in days] for key in lines],
        }
    return payload


def small_multiples(
    *, unit: str, rows: list[Mapping[str, Any]], order: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One chart per dimension combination (a metric's page), largest latest value first."""
    combos = _by_combination(rows)
    biggest = sorted(combos, key=lambda k: -(combos[k][max(combos[k])] or 0.0))
    return [
        _payload(
            title=dims_label(k, order), unit=unit, lines={k: combos[k]}, new={}, new_day=None, order=order
        )
        for k in biggest[:MAX_SMALL_MULTIPLES]
    ]


def approval_charts(
    *,
    name: str,
    unit: str,
    dimensions: Sequence[str],
    additive: bool,
    period_start: date | None,
    ratio: bool = False,
    history: list[Mapping[str, Any]],
    new_rows: list[Mapping[str, Any]],
    anomalies: list[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """What an approver looks at: each anomalous combination (top 3) with its band; else the total
    (additive metrics; a ratio's is SUM(numerator) / SUM(denominator)) or the first combinations, with the
    value awaiting approval highlighted."""
    combos = _by_combination(history)
    charts = []
    for found in anomalies[:3]:
        key = dimensions_key(found["dimensions"])
        chart = _payload(
            title=f"{name} — {dims_label(key, dimensions)}",
            unit=unit,
            lines={key: combos.get(key, {})},
            new={key: found["value"]},
            new_day=found["period_start"],
            order=dimensions,
        )
        chart["band"] = {"low": found["band_low"], "high": found["band_high"], "expected": found["expected"]}
        charts.append(chart)
    if charts:
        return charts
    new = {dimensions_key(r["dimensions"]): r["value"] for r in new_rows if r["period_start"] == period_start}
    if ratio:
        parts: dict[date, list[float]] = {}
        for row in history:
            if row.get("numerator") is not None and row.get("denominator") is not None:
                pair = parts.setdefault(row["period_start"], [0.0, 0.0])
                pair[0] += row["numerator"]
                pair[1] += row["denominator"]
        totals = {day: n / d for day, (n, d) in parts.items() if d}
        return [
            _payload(
                title=_("{name} — all combinations (SUM(numerator) / SUM(denominator))", name=name),
                unit=unit,
                lines={"total": totals},
                new={"total": new_rows[0]["value"]}
                if new_rows and "total" in new_rows[0]["dimensions"]
                else {},
                new_day=period_start,
            )
        ]
    if additive:
        totals: dict[date, float] = {}
        for points in combos.values():
            for day, value in points.items():
                totals[day] = totals.get(day, 0.0) + (value or 0.0)
        new_total = {"total": sum(v or 0.0 for v in new.values())} if new else {}
        return [
            _payload(
                title=_("{name} — total", name=name),
                unit=unit,
                lines={"total": totals},
                new=new_total,
                new_day=period_start,
            )
        ]
    keys = sorted(set(combos) | set(new))[:MAX_COMBINATIONS]
    lines = {k: combos.get(k, {}) for k in keys}
    return [_payload(title=name, unit=unit, lines=lines, new=new, new_day=period_start, order=dimensions)]
