"""The outbox side of approvals, without a DAG run: who is asked where, once per try; reminders once;
updates that wait for their message; a notifier that never fails the task — the real mart (Postgres and
SQLite) and real slack-sdk against the stub Slack."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from slack_stub import Reply
from slack_support import CONN, EVIDENCE, InteractiveSlackStub

from metrics_center.mart.tables import approval_event
from metrics_center.mart.tables import notification as n
from metrics_center.notify.approval_followups import follow_up
from metrics_center.notify.approval_messages import ActionRef
from metrics_center.notify.approval_requests import (
    ApprovalRequestNotifier,
    approver_recipient,
    enqueue_requests,
)
from metrics_center.notify.deliver import deliver_pending

RUN = "scheduled__2026-11-27T00:00:00+00:00"
T0 = datetime.now(UTC).replace(second=0, microsecond=0)  # when the stages were asked


@pytest.fixture
def stub(monkeypatch):
    with InteractiveSlackStub() as server:
        monkeypatch.setenv(CONN, server.connection())
        yield server


def _catalog(*, without_slack: tuple[str, ...] = (), without_channel: tuple[str, ...] = ()):
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.spec import Teams

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    data = catalog.teams.model_dump()
    for person in without_slack:
        data["people"][person]["slack_user_id"] = None
    for department in without_channel:  # no chat at all
        for chat in ("slack_channel", "feishu_chat_id", "dingtalk_webhook", "wecom_webhook"):
            data["departments"][department][chat] = None
    return catalog.metrics["gmv_daily"].spec, Teams.model_validate(data)


def _ask(mart, spec, teams, *, stage: int = 1, try_number: int = 1, now: datetime = T0) -> int:
    return enqueue_requests(
        mart,
        spec=spec,
        stage=spec.approval.stages[stage],
        teams=teams,
        ref=ActionRef(
            dag_id="gmv_daily", run_id=RUN, task_id="approve_finance_sign_off", try_number=try_number
        ),
        ti_id=f"ti-{try_number}",
        evidence=EVIDENCE,
        period="2026-11-26",
        timeout=timedelta(hours=24),
        page_url=None,
        actions_url=None,
        now=now,
    )


def _rows(mart, kind: str) -> list[sa.Row]:
    with mart.connect() as conn:
        return conn.execute(sa.select(n).where(n.c.kind == kind).order_by(n.c.id)).all()


def _answer(mart, *, decision: str, by: str | None, try_number: int = 1, reason: str | None = None) -> None:
    with mart.begin() as conn:
        conn.execute(
            sa.insert(approval_event).values(
                metric_key="gmv_daily",
                run_id=RUN,
                stage="finance sign-off",
                decision=decision,
                decided_by=by,
                decided_at=T0 + timedelta(hours=2),
                ti_id=f"ti-{try_number}",
                try_number=try_number,
                via="page" if by else None,
                reason=reason,
            )
        )


def test_each_approver_is_asked_once_per_try_by_dm_or_channel(mart):
    spec, teams = _catalog(without_slack=("dave",))

    assert _ask(mart, spec, teams) == 2
    assert _ask(mart, spec, teams) == 0  # a retried notifier writes nothing twice
    assert _ask(mart, spec, teams, try_number=2) == 2  # a cleared stage asks again

    rows = _rows(mart, "approval_request")
    assert [(r.recipient, r.address) for r in rows] == [
        ("carol", "U0CAROL01"),
        ("dave", "#finance-metrics"),
    ] * 2
    first = rows[0].payload
    assert (first["person_name"], first["approvers"], first["stage_number"], first["stages"]) == (
        "Carol Zhang",
        ["Carol Zhang", "Dave Chen"],
        2,
        2,
    )
    assert first["remind_at"] == (T0 + timedelta(hours=12)).isoformat()  # remind_at 0.5 × 24 h
    assert first["timeout_at"] == (T0 + timedelta(hours=24)).isoformat()


def test_without_a_slack_id_or_any_channel_the_request_waits_for_an_address(mart):
    spec, teams = _catalog(without_slack=("carol",), without_channel=("finance", "sales"))

    assert approver_recipient("carol", spec=spec, teams=teams).addresses == {}
    assert approver_recipient("dave", spec=spec, teams=teams).addresses == {"slack": "U0DAVE001"}
    _, teams = _catalog(without_slack=("carol",), without_channel=("finance",))
    # the metric's department: its chats that take approval requests (notify: in _teams.yaml)
    assert approver_recipient("carol", spec=spec, teams=teams).for_kind("approval_request") == {
        "slack": "#sales-metrics",
        "feishu": "oc_salesmetrics0001",
    }


def test_a_reminder_is_sent_once_per_try_and_only_while_the_stage_waits(mart, stub):
    spec, teams = _catalog()
    _ask(mart, spec, teams)

    def remind(at: datetime, state: str = "waiting") -> int:
        return follow_up(mart, teams=teams, stage_state=lambda ref: state, now=at).reminders

    assert remind(T0 + timedelta(hours=11)) == 0  # not yet
    assert remind(T0 + timedelta(hours=13), state="active") == 0  # not waiting (being resumed)
    assert remind(T0 + timedelta(hours=13)) == 2
    assert remind(T0 + timedelta(hours=14)) == 0  # once
    assert remind(T0 + timedelta(hours=25)) == 0  # past the timeout
    report = deliver_pending(mart, channel_interval=0.01)
    assert report.delivered == 4 and len(stub.posted) == 4
    assert [p.blocks[0]["text"]["text"] for p in stub.messages_to("U0CAROL01")] == [
        "🟡 Approve GMV (成交额) — 2026-11-26",
        "⏰ Reminder: approve GMV (成交额) — 2026-11-26",
    ]


def test_an_update_waits_for_its_request_message_then_edits_it_in_place(mart, stub):
    spec, teams = _catalog()
    _ask(mart, spec, teams)
    stub.script("chat.postMessage", Reply(error="internal_error"), Reply(error="internal_error"))
    deliver_pending(mart, channel_interval=0.01)  # both requests fail once: tried again in 30 s
    _answer(mart, decision="rejected", by="dave", reason="refunds look low")

    assert follow_up(mart, teams=teams, stage_state=lambda ref: "waiting", now=T0).updates == 2
    deliver_pending(mart, channel_interval=0.01, now=datetime.now(UTC) + timedelta(seconds=5))
    updates = _rows(mart, "approval_update")
    assert {u.state for u in updates} == {"pending"}
    assert all("waiting for the request message to be delivered first" in u.last_error for u in updates)

    report = deliver_pending(mart, channel_interval=0.01, now=datetime.now(UTC) + timedelta(minutes=5))
    assert report.errors == () and {u.state for u in _rows(mart, "approval_update")} == {"delivered"}
    assert len(stub.posted) == 2 and len(stub.updates) == 2
    for message in stub.posted:
        text = str(message.blocks)
        when = (T0 + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC")
        assert f"❌ *Rejected* by *Dave Chen* at {when} on the Metrics Center page" in text
        assert "refunds look low" in text and "metrics_center_approve" not in text
    assert follow_up(mart, teams=teams, stage_state=lambda ref: "ended", now=T0).updates == 0


def test_a_newer_try_makes_the_old_messages_out_of_date(mart, stub):
    spec, teams = _catalog()
    _ask(mart, spec, teams)
    with mart.begin() as conn:
        conn.execute(
            sa.insert(approval_event).values(
                metric_key="gmv_daily",
                run_id=RUN,
                stage="finance sign-off",
                decision="requested",
                decided_at=T0 + timedelta(hours=1),
                ti_id="ti-2",
                try_number=2,
            )
        )

    assert follow_up(mart, teams=teams, stage_state=lambda ref: "waiting", now=T0).updates == 2
    deliver_pending(mart, channel_interval=0.01)
    deliver_pending(mart, channel_interval=0.01)
    assert len(stub.updates) == 2
    assert "↪️ *Out of date*: the stage was asked again (try 2)" in str(stub.posted[0].blocks)


def test_the_notifier_never_fails_the_approval_task():
    spec, teams = _catalog()
    notifier = ApprovalRequestNotifier(spec=spec, stage=spec.approval.stages[0], teams=teams)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("metrics_center.notify.approval_requests")
    logger.addHandler(handler)
    try:
        notifier({"task": object(), "ti": object()})  # nothing it needs is there: logged, not raised
    finally:
        logger.removeHandler(handler)

    [record] = records
    assert (
        "were not asked in their chats" in record.getMessage() and "Required Actions" in record.getMessage()
    )


def test_an_interrupted_update_is_simply_done_again(mart, stub):
    spec, teams = _catalog()
    _ask(mart, spec, teams)
    deliver_pending(mart, channel_interval=0.01)
    _answer(mart, decision="approved", by="carol")
    follow_up(mart, teams=teams, stage_state=lambda ref: "active", now=T0)
    with mart.begin() as conn:  # a deliverer died after claiming the updates
        conn.execute(
            sa.update(n)
            .where(n.c.kind == "approval_update")
            .values(state="sending", delivery_token="dead-deliverer", attempts=1, next_attempt_at=T0)
        )

    report = deliver_pending(mart, channel_interval=0.01)

    assert report.errors == () and {u.state for u in _rows(mart, "approval_update")} == {"delivered"}
    assert len(stub.posted) == 2 and len(stub.updates) == 2  # nothing posted twice: edited in place
    assert all("✅ *Approved* by *Carol Zhang*" in str(p.blocks) for p in stub.posted)
