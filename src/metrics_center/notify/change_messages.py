"""Block Kit for changes: a new definition version (``definition_change``) and restated history (``history_changed``).

Written for people who did not make the change: what changed in words first (metric, old → new
version, breaking or not, the change note, who), then the impact on the numbers, then the diff (SQL
included, cut with a link to the full version history when long).
"""

from __future__ import annotations

from typing import Any

from metrics_center.notify.blocks import (
    Message,
    alert_message,
    cut,
    esc,
    fmt,
    mrkdwn_metric,
    section,
    text_of,
)

MAX_DIFF_CHARS = 2600


def dictionary_url(base_url: str | None, key: str) -> str | None:
    """The metric's page in the Metrics Center dictionary (its version history and diffs)."""
    return f"{base_url.rstrip('/')}/metrics-center/metrics/{key}#versions" if base_url and key else None


def render_definition_change(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    p = payloads[0]
    key = text_of(p.get("metric_key"))
    old, new = p.get("old_version"), p["new_version"]  # a payload without it is shown generically
    kind = "⚠️ Breaking change" if p.get("breaking") else "Definition change"
    if old is None:
        header = f"New metric: {text_of(p.get('metric_name')) or key} v{new}"
        what = f"{mrkdwn_metric(p)} is a new governed metric (v{new})."
    else:
        header = f"{kind}: {text_of(p.get('metric_name')) or key} v{old} → v{new}"
        what = (
            f"{mrkdwn_metric(p)} v{old} → *v{new}*, {'*breaking*' if p.get('breaking') else 'non-breaking'}."
        )
    lines = [f"*Change note:* {esc(text_of(p.get('change_note')))}"]
    if p.get("changes"):
        lines.append("*What changed:* " + esc("; ".join(str(c) for c in p["changes"][:top])))
    lines.append(
        f"*Changed by:* {esc(text_of(p.get('changed_by')) or 'unknown (the definitions are not in a git checkout)')}"
    )
    lines.append(f"*Takes effect:* {esc(text_of(p.get('takes_effect')))}")
    columns = p.get("columns") or {}
    if columns.get("added") or columns.get("removed"):
        shown = [f"+ `{esc(str(c))}`" for c in columns.get("added") or []]
        shown += [f"− `{esc(str(c))}`" for c in columns.get("removed") or []]
        lines.append(
            f"*Columns of its relation* (`metrics.{esc(text_of(p.get('relation')) or key)}`, for BI datasets): "
            + ", ".join(shown)
        )
    if p.get("downstream"):
        lines.append("*Built on it:* " + esc(", ".join(p["downstream"])))
    if p.get("why"):
        lines.append("_You are told because " + esc("; ".join(p["why"])) + "._")
    link = dictionary_url(base_url, key)
    message = alert_message(
        header=header,
        summary=what,
        lines=lines,
        more="",
        context=[],
        link=None,
        fallback=f"{header}. {text_of(p.get('change_note'))}",
    )
    blocks = list(message.blocks)
    impact = _impact_text(p.get("preview"), unit=text_of(p.get("unit")))
    if impact:
        blocks.append(section(impact))
    diff = text_of(p.get("diff"))
    if diff:
        shortened = len(diff) > MAX_DIFF_CHARS or p.get("diff_truncated")
        shown = diff[:MAX_DIFF_CHARS].rsplit("\n", 1)[0] if len(diff) > MAX_DIFF_CHARS else diff
        blocks.append(section(f"```{shown}```"))
        if shortened:
            blocks.append(
                section(
                    f"_Diff cut short; the full diff is on <{link}|the metric's page>._"
                    if link
                    else "_Diff cut short._"
                )
            )
    if link:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{link}|Version history and diffs>"}],
            }
        )
    return Message(text=cut(message.text + (f" {link}" if link else ""), 3000), blocks=blocks)


def _impact_text(preview: Any, *, unit: str) -> str:
    if not preview:
        return ""
    if preview.get("error"):
        return f"*Impact preview:* could not be computed — {esc(text_of(preview['error']))[:400]}"
    headline = text_of(preview.get("headline"))
    lines = [f"*Impact on the last {len(preview.get('periods') or [])} published periods:* {esc(headline)}"]
    for row in (preview.get("largest") or [])[:5]:
        dims = ", ".join(f"{k}={v}" for k, v in (row.get("dimensions") or {}).items()) or "total"
        rel = f" ({row['rel']:+.1%})" if row.get("rel") is not None else ""
        lines.append(
            f"• {row.get('period')} {esc(dims)}: {esc(fmt(row.get('old')))} → {esc(fmt(row.get('new')))} {esc(unit)}{rel}"
        )
    return "\n".join(lines)


def render_history_changed(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    p = payloads[0]
    key, unit = text_of(p.get("metric_key")), text_of(p.get("unit"))
    periods = p.get("periods") or []
    explicit = "Restated" if p.get("explicit") else "Re-published"
    span = (
        periods[0]["period"]
        if len(periods) == 1
        else f"{len(periods)} periods, {periods[0]['period']} … {periods[-1]['period']}"
        if periods
        else "?"
    )
    header = f"{explicit}: {text_of(p.get('metric_name')) or key} — {span}"
    summary = (
        f"{mrkdwn_metric(p)}: published values changed for {span} (definition v{p.get('version')}), "
        f"approved by {esc(text_of(p.get('approved_by')))}."
    )
    lines = []
    for row in periods[:top]:
        old, new = row.get("old_total"), row.get("new_total")
        change = f" ({(new - old) / abs(old):+.1%})" if old and new is not None else ""
        lines.append(
            f"• {row['period']}: {esc(fmt(old))} → *{esc(fmt(new))}* {esc(unit)}{change}"
            f" · rows {row.get('old_rows')} → {row.get('new_rows')}"
        )
    if p.get("why"):
        lines.append("_You are told because " + esc("; ".join(p["why"])) + "._")
    more = f"… and {len(periods) - top} more period(s)" if len(periods) > top else ""
    link = dictionary_url(base_url, key)
    return alert_message(
        header=header,
        summary=summary,
        lines=lines,
        more=more,
        context=[f"<{link}|The metric's page>" if link else ""],
        link=None,
        fallback=f"{header}: history changed ({len(periods)} period(s)).",
    )
