"""Definitions to sign off, on My approvals: the proposed meaning, its diff, impact and lineage, and the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metrics_center.approvals.definition_signoff import (
    PendingDefinition,
    SignoffOutcome,
    pending_definitions,
    sign_off,
    stage_name,
)
from metrics_center.web.auth import allowed

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.loader import Catalog
    from metrics_center.web.auth import Viewer


@dataclass(frozen=True)
class DefinitionCard:
    pending: PendingDefinition
    stage: str
    #: "first version" or the classification against the version it replaces.
    summary: str
    breaking: bool | None
    diff: str
    author: str | None
    preview: dict[str, Any] | None
    upstream: list[str]
    downstream: list[str]
    reviewers: list[str]
    #: Why the viewer may not approve (the owner); None: they may.
    blocked: str | None

    def as_json(self) -> dict[str, Any]:
        p = self.pending
        return {
            "metric_key": p.metric_key,
            "version": p.version,
            "name": p.name,
            "department": p.department,
            "owner": p.owner,
            "change_note": p.change_note,
            "registered_at": p.registered_at.isoformat() if p.registered_at else None,
            "summary": self.summary,
            "breaking": self.breaking,
            "diff": self.diff,
            "author": self.author,
            "preview": self.preview,
            "upstream": self.upstream,
            "downstream": self.downstream,
            "reviewers": self.reviewers,
        }


def definition_cards(*, viewer: Viewer, catalog: Catalog, engine: Engine) -> list[DefinitionCard]:
    """The pending versions the viewer reviews, with what a reviewer needs to decide."""
    from metrics_center.definitions.changes import unified_diff
    from metrics_center.definitions.lineage import Lineage
    from metrics_center.web.queries import version_changes

    if viewer.person is None or catalog.teams is None:
        return []
    teams = catalog.teams
    found = pending_definitions(engine, teams=teams, person=viewer.person)
    visible = set(allowed(viewer.user, [p.metric_key for p in found], hitl=True))
    lineage = Lineage.of(m.spec for m in catalog.metrics.values())
    cards = []
    for pending in found:
        if pending.metric_key not in visible:
            continue
        change = version_changes(engine, pending.metric_key).get(pending.version, {})
        diff = change.get("diff") or unified_diff(
            None, pending.definition, old_label="(new metric)", new_label=f"v{pending.version}"
        )
        sources = (pending.definition.get("spec") or {}).get("sources") or {}
        cards.append(
            DefinitionCard(
                pending=pending,
                stage=stage_name(pending.version),
                summary=change.get("summary") or "first version",
                breaking=change.get("breaking"),
                diff=diff,
                author=change.get("author"),
                preview=change.get("preview"),
                upstream=sorted(
                    s["metric"] for s in sources.values() if isinstance(s, dict) and "metric" in s
                ),
                downstream=sorted(lineage.downstream.get(pending.metric_key, ())),
                reviewers=[teams.people[r].name for r in teams.definition_reviewers(pending.department)],
                blocked="owner" if viewer.person == pending.owner else None,
            )
        )
    return cards


def answer_definition(
    *,
    engine: Engine,
    catalog: Catalog,
    viewer: Viewer,
    metric_key: str,
    version: int,
    option: str,
    reason: str,
) -> SignoffOutcome:
    from metrics_center.i18n.translate import N_

    if viewer.person is None:
        return SignoffOutcome(
            "refused",
            N_(
                "Airflow user {user} is not a person in _teams.yaml: only the people listed there sign off "
                "definitions.",
                user=viewer.user_id,
            ),
        )
    return sign_off(
        engine,
        teams=catalog.teams,
        metric_key=metric_key,
        version=version,
        person=viewer.person,
        option=option,
        reason=reason,
        via="page",
    )
