"""Airflow's view of one approval stage try, as the interactions endpoint needs it before answering.

Read from Airflow's metadata database (the endpoint runs inside the api-server): the task's state and
try, whether its HITL record was answered (by whom, when, what), and whether Airflow is resuming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metrics_center.definitions.spec import Teams
    from metrics_center.notify.approval_messages import ActionRef

#: A click may come while the task is between writing its request and parking: wait this long for it.
PARK_WAIT_S = 5.0
#: Task states of a stage that was cleared and has not asked again yet (unless it is being resumed).
CLEARED = frozenset({None, "scheduled", "queued", "restarting", "up_for_retry", "up_for_reschedule"})


@dataclass(frozen=True)
class StageNow:
    """A stage try's task state and try, and its HITL answer if any (``answered_by``: an Airflow user id)."""

    state: str | None
    try_number: int | None
    answered_by: str | None
    answered_at: datetime | None
    chosen: list[str] | None
    resuming: bool = False  # answered, and Airflow is resuming the task (its next method is set)

    def answered_text(self, teams: Teams) -> str:
        person = teams.person_for_airflow_user(self.answered_by) if self.answered_by else None
        who = teams.people[person].name if person else self.answered_by
        when = f" at {self.answered_at:%Y-%m-%d %H:%M} UTC" if self.answered_at else ""
        return f"Already answered: {', '.join(self.chosen or [])} by {who}{when}."

    def not_waiting_text(self, stage: str) -> str:
        if self.state is None:
            return f"{stage} is not waiting in this run (the run was cleared or deleted)."
        return f"{stage} is not waiting for an answer any more (it is {self.state})."


def stage_now(ref: ActionRef) -> StageNow:
    """Read now; a missing task instance (deleted run) gives a :class:`StageNow` of Nones."""
    import sqlalchemy as sa
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            sa.select(
                TaskInstance.state,
                TaskInstance.try_number,
                TaskInstance.next_method,
                HITLDetail.responded_at,
                HITLDetail.responded_by,
                HITLDetail.chosen_options,
            )
            .outerjoin(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.dag_id == ref.dag_id,
                TaskInstance.run_id == ref.run_id,
                TaskInstance.task_id == ref.task_id,
                TaskInstance.map_index == -1,
            )
        ).first()
    if row is None:
        return StageNow(None, None, None, None, None)
    answered = None
    if row.responded_at is not None:
        answered = (row.responded_by or {}).get("id") or "the timeout default"
    state = str(getattr(row.state, "value", row.state)) if row.state else None
    return StageNow(
        state, row.try_number, answered, row.responded_at, row.chosen_options, bool(row.next_method)
    )


def settle(ref: ActionRef) -> StageNow:
    """The stage's state, after waiting up to :data:`PARK_WAIT_S` while the task is about to park."""
    deadline = time.monotonic() + PARK_WAIT_S
    now = stage_now(ref)
    while now.state == "running" and now.try_number == ref.try_number and time.monotonic() < deadline:
        time.sleep(0.1)
        now = stage_now(ref)
    return now
