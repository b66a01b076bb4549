"""The evidence an approver reads before answering: values, change vs last period, rows, quality."""

from __future__ import annotations

from typing import Any

MAX_ROWS_SHOWN = 20


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.4g} {unit}" if abs(value) < 1 else f"{value:,.2f} {unit}"


def _change(current: float | None, previous: float | None) -> str:
    if current is None or previous is None:
        return "n/a (no previous value)"
    delta = current - previous
    if previous == 0:
        return f"{delta:+,.2f}"
    return f"{delta:+,.2f} ({delta / abs(previous):+.1%})"


def approval_body(
    *,
    name: str,
    unit: str,
    period: str,
    stage: str,
    previous_period: str,
    transform: dict[str, Any],
    previous: dict[str, float | None],
    already_published: dict[str, float | None],
    sources: list[dict[str, Any]],
    quality: list[dict[str, Any]],
    earlier_approvals: list[str],
    doc: str,
) -> str:
    """Markdown for the HITL body (shown in the Airflow UI, Slack and the plugin page)."""
    lines = [f"**{name}** — period **{period}** — stage **{stage}**", ""]
    total_prev = sum(v for v in previous.values() if v is not None) if previous else None
    lines.append(
        f"Total: **{_fmt(transform.get('total'), unit)}** over {transform.get('rows', 0)} row(s); "
        f"vs {previous_period}: {_change(transform.get('total'), total_prev)}"
    )
    if already_published:
        published_total = sum(v for v in already_published.values() if v is not None)
        lines.append(
            f"\n⚠️ **This period is already published** (total {_fmt(published_total, unit)}): approving "
            f"publishes a restatement ({_change(transform.get('total'), published_total)}); the old values stay "
            "in the history."
        )
    values = transform.get("values")
    if values:
        lines += ["", "| period | dimensions | value | previous | change |", "|---|---|---|---|---|"]
        import json

        for row in values[:MAX_ROWS_SHOWN]:
            dims = {k: v for k, v in row.items() if k not in ("period_start", "value")}
            key = json.dumps(dims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            prev = previous.get(key)
            label = ", ".join(f"{k}={v}" for k, v in dims.items()) or "(total)"
            lines.append(
                f"| {row['period_start']} | {label} | {_fmt(row['value'], unit)} | {_fmt(prev, unit)} "
                f"| {_change(row['value'], prev)} |"
            )
        if len(values) > MAX_ROWS_SHOWN:
            lines.append(f"| … | {len(values) - MAX_ROWS_SHOWN} more rows | | | |")
    lines += ["", "**Rows extracted per source**", ""]
    lines += [f"- `{s['source']}`: {s['rows']:,} rows from {s['origin']}" for s in sources]
    passed = sum(1 for q in quality if q["success"])
    lines += ["", f"**Quality checks**: {passed}/{len(quality)} passed", ""]
    lines += [f"- {'✅' if q['success'] else '❌'} `{q['expectation']}` {q['kwargs']}" for q in quality]
    if earlier_approvals:
        lines += ["", "**Earlier stages**: " + "; ".join(earlier_approvals)]
    lines += ["", "---", doc]
    return "\n".join(lines)
