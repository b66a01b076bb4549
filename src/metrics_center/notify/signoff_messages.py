"""Asking a department's definition reviewers to sign off a proposed version (``definition_signoff``).

Once per (metric, version, reviewer): the version's first run writes it after registering the version
as pending; every later run finds it written (the outbox's dedupe key). The message says what is proposed
and links to My approvals, where the diff, impact and lineage are and the answer is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from metrics_center.i18n.translate import _
from metrics_center.notify.addresses import person_recipient
from metrics_center.notify.blocks import Message, alert_message, esc, mrkdwn_metric, text_of

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from metrics_center.definitions.spec import MetricSpec, Teams

SIGNOFF_KIND: Final = "definition_signoff"
#: Where reviewers answer (the plugin page's My approvals).
PAGE_PATH = "/metrics-center/"


def signoff_requested(
    conn: Connection, *, spec: MetricSpec, teams: Teams | None, first: bool, run_id: str | None
) -> int:
    """One request per reviewer of ``spec``'s department other than its owner (in the caller's transaction);
    how many were new."""
    from metrics_center.notify.outbox import enqueue

    if teams is None:
        return 0
    owner = teams.people.get(spec.owner)
    reviewers = [r for r in teams.definition_reviewers(spec.department) if r != spec.owner]
    payload: dict[str, Any] = {
        "metric_key": spec.key,
        "metric_name": spec.name,
        "dag_id": spec.key,
        "version": spec.version,
        "first": first,
        "change_note": spec.change_note,
        "owner": spec.owner,
        "owner_name": owner.name if owner else spec.owner,
        "reviewers": [teams.people[r].name for r in reviewers],
    }
    added = 0
    for person in reviewers:
        added += enqueue(
            conn,
            kind=SIGNOFF_KIND,
            dedupe_key=f"{SIGNOFF_KIND}:{spec.key}:v{spec.version}:{person}",
            recipient=person_recipient(teams, person, fallback_departments=(spec.department,)),
            group_key=f"{SIGNOFF_KIND}:{spec.key}:v{spec.version}",
            payload={**payload, "person": person},
            metric_key=spec.key,
            run_id=run_id,
        )
    return added


def render_definition_signoff(payloads: list[dict[str, Any]], base_url: str | None, top: int) -> Message:
    p = payloads[0]
    key, name = text_of(p.get("metric_key")), text_of(p.get("metric_name")) or text_of(p.get("metric_key"))
    version = text_of(p.get("version"))
    owner = esc(text_of(p.get("owner_name")) or text_of(p.get("owner")) or "?")
    what = _("its first version") if p.get("first") else _("a new version, v{version}", version=version)
    lines = []
    if p.get("change_note"):
        lines.append(_("*Change note:* {note}", note=esc(text_of(p.get("change_note")))))
    reviewers = [str(r) for r in p.get("reviewers") or []]
    if reviewers:
        lines.append(
            _("*Reviewers:* {names} — one of you answers; the owner cannot.", names=esc(", ".join(reviewers)))
        )
    page = f"{base_url.rstrip('/')}{PAGE_PATH}" if base_url else None
    return alert_message(
        header="✍️ " + _("Sign off the definition: {metric} v{version}", metric=name, version=version),
        summary=_(
            "{owner} proposes {what} of {metric}. Its values are computed and approved as usual, and published only "
            "once one of you signs the definition off (nothing is, if it is rejected).",
            owner=owner,
            what=what,
            metric=mrkdwn_metric(p),
        ),
        lines=lines,
        more="",
        context=[
            "<" + page + "|" + _("Read the diff and answer on My approvals") + ">"
            if page
            else _("Answer on the Metrics Center page, My approvals")
        ],
        link=None,
        fallback=_(
            "Sign off the definition: {metric} ({key}) v{version}", metric=name, key=key, version=version
        ),
    )
