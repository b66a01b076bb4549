"""Slack rendering: the notifications of one group (same ``group_key`` and address) → one Block Kit message.

Each kind has its renderer — alerts (:mod:`~metrics_center.notify.alert_messages`), approvals
(:mod:`~metrics_center.notify.approval_messages`), changes (:mod:`~metrics_center.notify.change_messages`), a
metric's deprecation (:mod:`~metrics_center.notify.lifecycle_messages`, which also marks every other message about
a deprecated or retired metric).
Every message carries a plain-text ``text`` fallback (notifications, screen readers). A kind nobody
renders, or a payload a renderer cannot read, is shown generically: rendering never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from metrics_center.i18n.translate import _, using
from metrics_center.notify.alert_messages import (
    render_anomaly,
    render_generic,
    render_quality,
    render_reconciliation,
)
from metrics_center.notify.approval_messages import render_request, render_update
from metrics_center.notify.blocks import TOP, Item, Message, as_dict, bounded
from metrics_center.notify.change_messages import render_definition_change, render_history_changed
from metrics_center.notify.lifecycle_messages import DEPRECATED_KIND, marked, render_metric_deprecated
from metrics_center.notify.signoff_messages import SIGNOFF_KIND, render_definition_signoff


def render_group(
    items: Sequence[Item], *, base_url: str | None = None, top: int = TOP, locale: str | None = None
) -> Message:
    """One message for all ``items`` of a group, one part per kind (in the order first seen), in ``locale``
    (``en`` or ``zh-CN``; None: English)."""
    with using(locale):
        return _render_group(items, base_url=base_url, top=top)


def _render_group(items: Sequence[Item], *, base_url: str | None, top: int) -> Message:
    if not items:
        return Message(text="Metrics Center: " + _("(no notifications)"))
    by_kind: dict[str, list[Item]] = {}
    for item in items:
        by_kind.setdefault(str(item.kind), []).append(item)
    parts: list[Message] = []
    for kind, group in by_kind.items():
        renderer = _RENDERERS.get(kind)
        try:
            if renderer is None:
                raise KeyError(kind)
            payloads = [as_dict(i.payload) for i in group]
            # Every message about a deprecated or retired metric says so (the deprecation notice is about it).
            part = renderer(payloads, base_url, top)
            parts.append(part if kind == DEPRECATED_KIND else marked(part, payloads[0]))
        except Exception:  # an unreadable payload still reaches people, shown as stored
            parts.append(render_generic(kind, [i.payload for i in group], base_url, top))
    if len(parts) == 1:
        return bounded(parts[0])
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if blocks:
            blocks.append({"type": "divider"})
        blocks.extend(part.blocks)
    return bounded(Message(text="\n\n".join(p.text for p in parts), blocks=blocks))


_RENDERERS: dict[str, Callable[[list[dict[str, Any]], str | None, int], Message]] = {
    "anomaly": render_anomaly,
    "quality_failure": render_quality,
    "reconciliation": render_reconciliation,
    # Approval requests and reminders (with buttons) and their in-place update after the decision.
    "approval_request": render_request,
    "approval_reminder": render_request,
    "approval_update": render_update,
    # A new definition version (once per version) and published values replaced (restatement).
    "definition_change": render_definition_change,
    "history_changed": render_history_changed,
    # A metric deprecated (once per metric, status and replacement).
    DEPRECATED_KIND: render_metric_deprecated,
    # A department's definition reviewers asked to sign off a proposed version (once per version and person).
    SIGNOFF_KIND: render_definition_signoff,
}
