"""My approvals: what waits for the logged-in person, with its evidence and charts, and answering it.

Answers go through :func:`metrics_center.approvals.answers.submit_answer` — the same path as the Slack
endpoint: sign-off rules, the early-answer hold, Airflow's own ``update_hitl_detail`` as the
logged-in user, and an audit row for every attempt.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metrics_center.approvals.answers import Outcome, Waiting
from metrics_center.approvals.rules import APPROVE
from metrics_center.definitions.task_ids import stage_of
from metrics_center.i18n.translate import DEFAULT, Deferred, _, n_
from metrics_center.web import queries
from metrics_center.web.auth import allowed
from metrics_center.web.charts import approval_charts

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metrics_center.definitions.loader import Catalog
    from metrics_center.definitions.spec import MetricSpec
    from metrics_center.mart.runs import RunRecord
    from metrics_center.web.auth import Viewer

log = logging.getLogger(__name__)
HISTORY_PERIODS = 60
MAX_STAGED_ROWS = 1000
#: Approval cards per page (each with its evidence and charts); ``per_page`` may ask for up to MAX_PAGE_SIZE.
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Card:
    """One stage waiting for the viewer, with everything needed to answer it."""

    waiting: Waiting
    spec: MetricSpec
    approvers: list[str]
    period: str | None
    charts: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    #: Why the viewer may not approve this stage (they may still reject), shown before they click; None: they may.
    approve_blocked: Deferred | None = None

    @property
    def open_anomalies(self) -> int:
        return sum(1 for a in self.anomalies if a["marked_expected_at"] is None)

    def as_json(self) -> dict[str, Any]:
        w = self.waiting
        return {
            "dag_id": w.dag_id,
            "run_id": w.run_id,
            "task_id": w.task_id,
            "stage": w.stage,
            "metric": {"key": self.spec.key, "name": self.spec.name, "unit": self.spec.unit},
            "period": self.period,
            "subject": w.subject,
            "body_markdown": w.body,
            "asked_at": w.asked_at.isoformat() if w.asked_at else None,
            "approvers": self.approvers,
            "anomalies": [_anomaly_json(a) for a in self.anomalies],
            "charts": self.charts,
            "approve_blocked": self.approve_blocked.shown() if self.approve_blocked else None,
        }


def _anomaly_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if hasattr(v, "isoformat") else v
        for k, v in row.items()
        if k not in ("id", "run_id")
    }


@dataclass(frozen=True)
class CardPage:
    """One page of the stages waiting for the viewer (newest first) and how many wait in all, per metric."""

    cards: list[Card]
    total: int
    page: int
    per_page: int
    by_metric: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def waiting_cards(
    *, viewer: Viewer, catalog: Catalog, engine: Engine, page: int = 1, per_page: int = PAGE_SIZE
) -> CardPage:
    """The stages waiting for the viewer's person (none if they are nobody in ``_teams.yaml``), newest first.

    Only the requested page is built into cards — evidence texts, runs, anomalies and histories read
    in one query each (histories: two per metric on the page) — so 500 waiting stages cost what 20 do.
    """
    from airflow.utils.session import create_session

    from metrics_center.approvals.answers import waiting_for, with_bodies

    per_page = max(1, min(per_page, MAX_PAGE_SIZE))
    page = max(1, page)
    if viewer.person is None or catalog.teams is None:
        return CardPage([], 0, page, per_page)
    with create_session() as session:
        waiting = waiting_for(person=viewer.person, teams=catalog.teams, session=session, with_bodies=False)
        ours = [w for w in waiting if w.dag_id in catalog.metrics]
        visible = set(allowed(viewer.user, (w.dag_id for w in ours), hitl=True))
        mine = [w for w in ours if w.dag_id in visible]
        shown = with_bodies(mine[(page - 1) * per_page : page * per_page], session=session)
    if viewer.locale != DEFAULT:
        shown = _in_language(shown, engine=engine, locale=viewer.locale)
    by_metric: dict[str, int] = {}
    for w in mine:
        by_metric[w.dag_id] = by_metric.get(w.dag_id, 0) + 1
    cards = _cards(shown, catalog=catalog, engine=engine, person=viewer.person)
    return CardPage(cards, len(mine), page, per_page, by_metric)


def _in_language(waiting: list[Waiting], *, engine: Engine, locale: str) -> list[Waiting]:
    """The evidence each approval task wrote in ``locale``; English (Airflow's body) where it wrote none."""
    from metrics_center.mart.evidence_texts import translated_evidence

    found = translated_evidence(
        engine, locale=locale, stages=[(w.dag_id, w.run_id, w.stage) for w in waiting]
    )
    return [dataclasses.replace(w, body=found.get((w.dag_id, w.run_id, w.stage), w.body)) for w in waiting]


def _approve_blocked(
    engine: Engine, *, spec: MetricSpec, teams: Any, task_id: str, run_id: str, person: str
) -> Deferred | None:
    """The sign-off rule that would refuse the person's Approve (the owner alone, a second stage), if any."""
    from metrics_center.approvals.rules import APPROVE, approvals_so_far, sign_off_reason

    stage = stage_of(spec, task_id)
    if stage is None:
        return None
    return sign_off_reason(
        spec=spec,
        teams=teams,
        stage=stage,
        person=person,
        option=APPROVE,
        approved_elsewhere=approvals_so_far(engine, metric_key=spec.key, run_id=run_id),
    )


def _cards(
    waiting: list[Waiting], *, catalog: Catalog, engine: Engine, person: str | None = None
) -> list[Card]:
    from metrics_center.mart.runs import get_runs

    keys = [(w.dag_id, w.run_id) for w in waiting]
    runs = get_runs(engine, keys=keys)
    anomalies = queries.runs_anomalies(engine, keys)
    histories: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for key in dict.fromkeys(w.dag_id for w in waiting):
        befores = [runs[k].period_start if k in runs else None for k in keys if k[0] == key]
        histories[key] = queries.histories(engine, key, periods=HISTORY_PERIODS, befores=befores)
    cards = []
    for w in waiting:
        run = runs.get((w.dag_id, w.run_id))
        period_start = run.period_start if run else None
        cards.append(
            _card(
                w,
                catalog=catalog,
                run=run,
                anomalies=anomalies.get((w.dag_id, w.run_id), []),
                history=histories[w.dag_id].get(period_start, []),
            )
        )
        if person is not None:
            blocked = _approve_blocked(
                engine,
                spec=cards[-1].spec,
                teams=catalog.teams,
                task_id=w.task_id,
                run_id=w.run_id,
                person=person,
            )
            cards[-1] = dataclasses.replace(cards[-1], approve_blocked=blocked)
    return cards


def _card(
    waiting: Waiting,
    *,
    catalog: Catalog,
    run: RunRecord | None,
    anomalies: list[dict[str, Any]],
    history: list[dict[str, Any]],
) -> Card:
    spec = catalog.metrics[waiting.dag_id].spec
    stage = stage_of(spec, waiting.task_id)
    teams = catalog.teams
    people = teams.resolve(stage.approvers) if teams and stage else []
    names = [teams.people[p].name if teams else p for p in people]
    period_start = run.period_start if run else None
    charts = approval_charts(
        name=spec.name,
        unit=spec.unit,
        dimensions=spec.dimensions,
        additive=spec.aggregation == "sum",
        ratio=spec.is_ratio,
        period_start=period_start,
        history=history,
        new_rows=[] if anomalies or run is None else staged_rows(spec, run),
        anomalies=anomalies,
    )
    period = period_start.isoformat() if period_start else None
    if run is not None and run.periods and len(run.periods) > 1:
        period = run.label(spec.grain)  # a restatement or input-triggered run of several periods
    return Card(waiting, spec, names, period, charts, anomalies)


def staged_rows(spec: MetricSpec, run: RunRecord) -> list[dict[str, Any]]:
    """The result under review, read back from staging if it is still the one approvers were asked about.

    Best effort: a chart without the new value beats no page (staging may live elsewhere).
    """
    try:
        import pyarrow.compute as pc

        from metrics_center.tasks.transform import read_result

        table, digest = read_result(spec=spec, context={"run_id": run.run_id})  # type: ignore[arg-type]
        if digest != run.result_hash:
            return []
        table = table.filter(pc.equal(table["period_start"], run.period_start))
        if spec.aggregation == "sum":
            total = pc.sum(table["value"]).as_py()
            return [{"period_start": run.period_start, "dimensions": {}, "value": total}]
        if spec.is_ratio:
            from metrics_center.tasks.transform import result_total

            total = result_total(spec, table)
            return [{"period_start": run.period_start, "dimensions": {}, "value": total}]
        rows = table.slice(0, MAX_STAGED_ROWS).to_pylist()
    except Exception:  # the evidence text stays complete without the chart's new point
        log.warning("could not read the staged result of %s %s", spec.key, run.run_id, exc_info=True)
        return []
    return [
        {
            "period_start": r["period_start"],
            "dimensions": {d: r[d] for d in spec.dimensions},
            "value": r["value"],
        }
        for r in rows
    ]


def answer(
    *,
    engine: Engine,
    catalog: Catalog,
    viewer: Viewer,
    dag_id: str,
    run_id: str,
    task_id: str,
    option: str,
    reason: str | None,
    expected: bool = False,
) -> Outcome:
    """Answer a stage as the viewer's person; ``expected`` also marks the run's anomalies expected.

    The anomalies are marked only once Airflow recorded the approval, so a refused answer (wrong
    person, too late, already answered) leaves them as they were.
    """
    from metrics_center.approvals.answers import submit_answer

    spec = catalog.metrics[dag_id].spec
    refusal = _refusal(spec=spec, viewer=viewer, task_id=task_id, option=option, expected=expected)
    if refusal is not None:
        _audit_refusal(engine, spec=spec, viewer=viewer, run_id=run_id, task_id=task_id, outcome=refusal)
        return refusal
    assert viewer.person is not None and catalog.teams is not None
    outcome = submit_answer(
        engine=engine,
        spec=spec,
        teams=catalog.teams,
        run_id=run_id,
        task_id=task_id,
        person=viewer.person,
        option=option,
        reason=reason,
        via="page",
        user=viewer.user,
    )
    if expected and outcome.status == "recorded":
        count = queries.mark_expected(engine, key=spec.key, run_id=run_id, person=viewer.person)
        marked = n_(
            "{count} anomaly marked expected by {name}.",
            "{count} anomalies marked expected by {name}.",
            count,
            name=viewer.name,
        )
        outcome = Outcome(outcome.status, f"{outcome.message} {marked}", outcome.stage)
    return outcome


def _refusal(
    *, spec: MetricSpec, viewer: Viewer, task_id: str, option: str, expected: bool
) -> Outcome | None:
    stage = stage_of(spec, task_id)
    if stage is None:
        return Outcome("unknown", f"{spec.key} has no approval stage {task_id}")
    if viewer.person is None:
        return Outcome(
            "refused",
            f"Airflow user {viewer.user_id} is not a person in _teams.yaml: only the people listed there "
            "answer approvals.",
            stage.name,
        )
    if expected and option != APPROVE:
        return Outcome("refused", "Only an approval can mark anomalies as expected.", stage.name)
    return None


def _audit_refusal(
    engine: Engine, *, spec: MetricSpec, viewer: Viewer, run_id: str, task_id: str, outcome: Outcome
) -> None:
    """An attempt by someone who is nobody in ``_teams.yaml`` is audited under their Airflow user id."""
    from metrics_center.approvals.rules import record_attempt

    if outcome.stage is None or viewer.person is not None:
        return
    record_attempt(
        engine,
        metric_key=spec.key,
        run_id=run_id,
        stage=outcome.stage,
        person=viewer.user_id,
        via="page",
        decision="refused_attempt",
        detail=outcome.message,
    )


def waited(card: Card) -> str:
    """``12 min``, ``3 h 05 min``: how long a stage has been waiting."""
    minutes = int((datetime.now(UTC) - card.waiting.asked_at).total_seconds() // 60)
    if minutes < 60:
        return _("{minutes} min", minutes=minutes)
    return _("{hours} h {minutes} min", hours=minutes // 60, minutes=f"{minutes % 60:02d}")
