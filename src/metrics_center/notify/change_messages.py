"""Block Kit for changes: a new definition version (``definition_change``) and restated history (``history_changed``).

Written for people who did not make the change: what changed in words first (metric, old → new
version, breaking or not, the change note, who), then the impact on the numbers, then the diff (SQL
included, cut with a link to the full version history when long).
"""

from __future__ import annotations

from typing import Any

from metrics_center.i18n.translate import _
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
    name = text_of(p.get("metric_name")) or key
    if old is None:
        header = _("New metric: {metric} v{version}", metric=name, version=new)
        what = _("{metric} is a new governed metric (v{version}).", metric=mrkdwn_metric(p), version=new)
    else:
        kind = "⚠️ " + _("Breaking change") if p.get("breaking") else _("Definition change")
        header = f"{kind}: {name} v{old} → v{new}"
        breaking = _("*breaking*") if p.get("breaking") else _("non-breaking")
        what = f"{mrkdwn_metric(p)} v{old} → *v{new}*, {breaking}."
    lines = [_("*Change note:*") + f" {esc(text_of(p.get('change_note')))}"]
    if p.get("changes"):
        lines.append(_("*What changed:*") + " " + esc("; ".join(str(c) for c in p["changes"][:top])))
    changed_by = text_of(p.get("changed_by")) or _("unknown (the definitions are not in a git checkout)")
    lines.append(_("*Changed by:*") + f" {esc(changed_by)}")
    lines.append(_("*Takes effect:*") + f" {esc(text_of(p.get('takes_effect')))}")
    columns = p.get("columns") or {}
    if columns.get("added") or columns.get("removed"):
        shown = [f"+ `{esc(str(c))}`" for c in columns.get("added") or []]
        shown += [f"− `{esc(str(c))}`" for c in columns.get("removed") or []]
        relation = f"`metrics.{esc(text_of(p.get('relation')) or key)}`"
        lines.append(
            _("*Columns of its relation* ({relation}, for BI datasets):", relation=relation)
            + " "
            + ", ".join(shown)
        )
    if p.get("downstream"):
        lines.append(_("*Built on it:*") + " " + esc(", ".join(p["downstream"])))
    if p.get("why"):
        lines.append("_" + _("You are told because {why}.", why=esc("; ".join(p["why"]))) + "_")
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
                    "_"
                    + _(
                        "Diff cut short; the full diff is on {page}.",
                        page="<" + link + "|" + _("the metric’s page") + ">",
                    )
                    + "_"
                    if link
                    else "_" + _("Diff cut short.") + "_"
                )
            )
    if link:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "<" + link + "|" + _("Version history and diffs") + ">"}
                ],
            }
        )
    return Message(text=cut(message.text + (f" {link}" if link else ""), 3000), blocks=blocks)


def _impact_text(preview: Any, *, unit: str) -> str:
    if not preview:
        return ""
    if preview.get("error"):
        return _(
            "*Impact preview:* could not be computed — {error}", error=esc(text_of(preview["error"]))[:400]
        )
    headline = text_of(preview.get("headline"))
    count = len(preview.get("periods") or [])
    lines = [_("*Impact on the last {count} published periods:*", count=count) + f" {esc(headline)}"]
    for row in (preview.get("largest") or [])[:5]:
        dims = ", ".join(f"{k}={v}" for k, v in (row.get("dimensions") or {}).items()) or _("total")
        rel = f" ({row['rel']:+.1%})" if row.get("rel") is not None else ""
        lines.append(
            f"• {row.get('period')} {esc(dims)}: {esc(fmt(row.get('old')))} → {esc(fmt(row.get('new')))} {esc(unit)}{rel}"
        )
    return "\n".join(lines)


def render_history_changed(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    p = payloads[0]
    key, unit = text_of(p.get("metric_key")), text_of(p.get("unit"))
    periods = p.get("periods") or []
    explicit = _("Restated") if p.get("explicit") else _("Re-published")
    span = (
        periods[0]["period"]
        if len(periods) == 1
        else _(
            "{count} periods, {first} … {last}",
            count=len(periods),
            first=periods[0]["period"],
            last=periods[-1]["period"],
        )
        if periods
        else "?"
    )
    header = f"{explicit}: {text_of(p.get('metric_name')) or key} — {span}"
    summary = _(
        "{metric}: published values changed for {span} (definition v{version}), approved by {who}.",
        metric=mrkdwn_metric(p),
        span=span,
        version=p.get("version"),
        who=esc(text_of(p.get("approved_by"))),
    )
    lines = []
    for row in periods[:top]:
        old, new = row.get("old_total"), row.get("new_total")
        change = f" ({(new - old) / abs(old):+.1%})" if old and new is not None else ""
        lines.append(
            f"• {row['period']}: {esc(fmt(old))} → *{esc(fmt(new))}* {esc(unit)}{change}"
            + " · "
            + _("rows {old} → {new}", old=row.get("old_rows"), new=row.get("new_rows"))
        )
    if p.get("why"):
        lines.append("_" + _("You are told because {why}.", why=esc("; ".join(p["why"]))) + "_")
    more = _("… and {count} more period(s)", count=len(periods) - top) if len(periods) > top else ""
    link = dictionary_url(base_url, key)
    return alert_message(
        header=header,
        summary=summary,
        lines=lines,
        more=more,
        context=["<" + link + "|" + _("The metric’s page") + ">" if link else ""],
        link=None,
        fallback=_("{header}: history changed ({count} period(s)).", header=header, count=len(periods)),
    )
