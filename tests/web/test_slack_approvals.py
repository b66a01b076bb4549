"""Approving in Slack, end to end: ``dag.test()`` runs a metric that waits for approval; its notifier puts the
requests in the outbox; delivery posts them to the stub Slack on 127.0.0.1; people click the buttons with
signed requests to the app Airflow's api-server serves; the answers are recorded as those people; the
maintenance follow-ups update every request message in place. Each refusal is audited and publishes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from dag_helpers import fail_waiting, run_with_people, wait_awaiting
from slack_support import (
    BASE_URL,
    CONN,
    InteractiveSlackStub,
    app_client,
    click,
    include_without_other_chats,
    post,
    submit_view,
)

from metrics_center.mart.tables import approval_event
from metrics_center.mart.tables import notification as n
from metrics_center.notify.approval_messages import APPROVE_ACTION, REJECT_ACTION
from metrics_center.web.slack_actions import forget_cached_secret, wait_for_work

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)
BOB, CAROL, DAVE, ERIN, FRANK = "U0BOB0001", "U0CAROL01", "U0DAVE001", "U0ERIN001", "U0FRANK01"


@pytest.fixture
def slack(monkeypatch):
    with InteractiveSlackStub() as stub:
        monkeypatch.setenv(CONN, stub.connection())
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
        forget_cached_secret()
        yield stub
    forget_cached_secret()


@pytest.fixture(autouse=True)
def slack_only(tmp_path, monkeypatch):
    """The demo company with its departments in Slack only (see ``include_without_other_chats``)."""
    home = include_without_other_chats(tmp_path / "include")
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


@pytest.fixture
def shared_approver(slack_only):
    """gmv_daily where bob may answer both stages (to show that he may not answer both)."""
    home = slack_only
    path = home / "metrics" / "gmv_daily.yaml"
    path.write_text(path.read_text().replace("approvers: [carol, dave]", "approvers: [carol, dave, bob]"))
    return home


# --- helpers ---------------------------------------------------------------------------------------


def _run(dag_id: str, script):
    return run_with_people(dag_id, script, logical_date=LOGICAL, client_factory=app_client)


def _unblock(dag_id: str) -> None:
    """Fail what waits, so that ``dag.test()`` returns (in a thread: the run may still be parking)."""
    threading.Thread(target=fail_waiting, args=(dag_id,), daemon=True).start()


def _awaiting(dag_id: str, task_id: str, timeout: float = 120) -> tuple[str, float]:
    return wait_awaiting(dag_id, task_id, timeout)


def _deliver(mart) -> None:
    from metrics_center.notify.deliver import deliver_pending

    report = deliver_pending(mart, channel_interval=0.01, time_budget=30)
    assert not report.errors, report.errors


def _request_to(mart, stub: InteractiveSlackStub, user: str, task_id: str, timeout: float = 120):
    """The request message ``task_id`` sent to ``user``'s DM, delivering the outbox until it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _deliver(mart)
        for message in stub.messages_to(user):
            for block in message.blocks:
                for element in block.get("elements") or []:
                    if (
                        element.get("action_id") == APPROVE_ACTION
                        and json.loads(element["value"])["t"] == task_id
                    ):
                        return message
        time.sleep(0.05)
    raise TimeoutError(f"no request for {task_id} reached {user}")


def _follow_up(mart, *, state: str = "ended", now: datetime | None = None):
    from metrics_center import settings
    from metrics_center.definitions.loader import load_teams
    from metrics_center.notify.approval_followups import follow_up

    teams = load_teams(settings.metrics_dir() / "_teams.yaml")
    return follow_up(mart, teams=teams, stage_state=lambda ref: state, now=now)


def _audit(mart) -> list[tuple]:
    e = approval_event
    with mart.connect() as conn:
        rows = conn.execute(
            sa.select(e.c.stage, e.c.decision, e.c.decided_by, e.c.via, e.c.reason)
            .where(e.c.decision != "requested")
            .order_by(e.c.id)
        ).all()
    return sorted((tuple(r) for r in rows), key=str)


def _published(mart) -> list[tuple]:
    with mart.connect() as conn:
        return conn.execute(sa.text("SELECT DISTINCT approved_by FROM metric_value_current")).all()


def _states(dag_run) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.task_id: str(ti.state)
            for ti in session.scalars(
                sa.select(TaskInstance).where(
                    TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
                )
            )
        }


def _text(message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def _has_buttons(message) -> bool:
    return APPROVE_ACTION in _text(message)


# --- the tests -------------------------------------------------------------------------------------


# A whole DAG run per backend costs CI ~10 s; what differs between the backends here is covered per backend
# by the mart-level tests, so this one runs on Postgres, the production mart.
@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_two_stages_approved_in_slack_end_to_end(mart, slack):
    seen: dict[str, object] = {}

    def people(client):
        bob = _request_to(mart, slack, BOB, "approve_sales_review")
        _, parked = _awaiting("gmv_daily", "approve_sales_review")
        payload = click(slack, bob, user=BOB, action_id=APPROVE_ACTION)
        seen["clicked_after_parked"] = time.monotonic() - parked
        response = post(client, payload)  # at once: the answer is held until the task is safely parked
        seen["acknowledged_in"] = time.monotonic() - parked - seen["clicked_after_parked"]
        seen["statuses"] = [response.status_code]
        # Carol is no approver of the sales review (she can't see Bob's DM; a forged copy is still signed).
        seen["statuses"].append(
            post(client, click(slack, bob, user=CAROL, action_id=APPROVE_ACTION)).status_code
        )
        assert wait_for_work(30)
        seen["statuses"].append(
            post(client, click(slack, bob, user=BOB, action_id=APPROVE_ACTION)).status_code
        )

        carol = _request_to(mart, slack, CAROL, "approve_finance_sign_off")
        dave = _request_to(mart, slack, DAVE, "approve_finance_sign_off")
        _awaiting("gmv_daily", "approve_finance_sign_off")
        seen["statuses"].append(
            post(client, click(slack, carol, user=CAROL, action_id=APPROVE_ACTION)).status_code
        )
        assert wait_for_work(30)
        # Dave comes second: his Approve and his Reject both learn who answered first.
        seen["statuses"].append(
            post(client, click(slack, dave, user=DAVE, action_id=APPROVE_ACTION)).status_code
        )
        seen["statuses"].append(
            post(client, click(slack, dave, user=DAVE, action_id=REJECT_ACTION)).status_code
        )
        assert wait_for_work(30)

    dag_run = _run("gmv_daily", people)

    assert str(dag_run.state) == "success", _states(dag_run)
    assert seen["statuses"] == [200] * 6
    assert seen["clicked_after_parked"] < 0.2  # a click within 0.2 s of the request: held, then recorded
    assert seen["acknowledged_in"] < 3.0
    assert _published(mart) == [("sales review: bob; finance sign-off: carol",)]
    assert _audit(mart) == sorted(
        [
            ("sales review", "refused_attempt", "carol", "slack", None),
            ("sales review", "submitted", "bob", "slack", None),
            ("sales review", "approved", "bob", "slack", None),
            ("sales review", "refused_attempt", "bob", "slack", None),
            ("finance sign-off", "submitted", "carol", "slack", None),
            ("finance sign-off", "approved", "carol", "slack", None),
            ("finance sign-off", "refused_attempt", "dave", "slack", None),
            ("finance sign-off", "refused_attempt", "dave", "slack", None),
        ],
        key=str,
    )
    said = {user: slack.said_to(user) for user in (BOB, CAROL, DAVE)}
    assert said[BOB][0].startswith("✅ Approved sales review of GMV")
    assert said[BOB][1].startswith("ℹ️ Already answered: Approve by Bob Li at ")
    assert said[CAROL][0].startswith(
        "🚫 You are not an approver of *sales review* of GMV (成交额); its approvers are Bob Li. Nothing was recorded."
    )
    assert said[CAROL][1].startswith("✅ Approved finance sign-off of GMV")
    assert [s.split(" at ")[0] for s in said[DAVE]] == ["ℹ️ Already answered: Approve by Carol Zhang"] * 2
    assert slack.views == []  # no reason form for a stage that is already answered

    # The requests: one DM per approver, with the evidence, the buttons and both links.
    with mart.connect() as conn:
        requests = conn.execute(
            sa.select(n.c.recipient, n.c.address).where(n.c.kind == "approval_request")
        ).all()
    assert sorted(requests) == [("bob", BOB), ("carol", CAROL), ("dave", DAVE)]
    first = slack.messages_to(BOB)[0]
    assert first.text.startswith("✅ Approved by Bob Li at ")  # updated in place at once after the click
    for link in (f"{BASE_URL}/metrics-center/", f"{BASE_URL}/dags/gmv_daily/runs/"):
        assert link in _text(first)

    # Every recipient's message is updated in place by the maintenance DAG, whoever answered.
    states, results = _maintenance()
    assert states == {
        "follow_up_approvals": "success",
        "deliver_notifications": "success",
        "prune_staging": "success",
    }
    assert (results["follow_up_approvals"]["updates"], results["follow_up_approvals"]["reminders"]) == (3, 0)
    assert results["deliver_notifications"]["delivered"] == 3
    assert _maintenance()[1]["follow_up_approvals"]["updates"] == 0
    final = {user: slack.messages_to(user) for user in (BOB, CAROL, DAVE)}
    assert {user: len(messages) for user, messages in final.items()} == {BOB: 1, CAROL: 1, DAVE: 1}
    assert not any(_has_buttons(m) for messages in final.values() for m in messages)
    assert "✅ *Approved* by *Bob Li* at " in _text(final[BOB][0]) and "via Slack" in _text(final[BOB][0])
    for user in (CAROL, DAVE):
        assert "✅ *Approved* by *Carol Zhang* at " in _text(final[user][0])
    assert len(slack.updates) == 2 + 3  # two at once (the clicked messages), three from the outbox


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data", "shared_approver")
def test_same_person_on_two_stages_then_a_reject_with_its_reason(mart, slack):
    seen: dict[str, object] = {}

    def people(client):
        bob = _request_to(mart, slack, BOB, "approve_sales_review")
        _awaiting("gmv_daily", "approve_sales_review")
        post(client, click(slack, bob, user=BOB, action_id=APPROVE_ACTION))
        assert wait_for_work(30)
        bob_again = _request_to(mart, slack, BOB, "approve_finance_sign_off")
        dave = _request_to(mart, slack, DAVE, "approve_finance_sign_off")
        _awaiting("gmv_daily", "approve_finance_sign_off")
        post(client, click(slack, bob_again, user=BOB, action_id=APPROVE_ACTION))
        post(client, click(slack, dave, user=DAVE, action_id=REJECT_ACTION))
        assert wait_for_work(30)
        [opened] = slack.views
        blank = post(client, submit_view(opened["view"], user=DAVE, reason="   "))
        seen["blank"] = (blank.status_code, blank.json())
        seen["submitted"] = post(
            client, submit_view(opened["view"], user=DAVE, reason="refunds look low")
        ).status_code
        assert wait_for_work(30)

    dag_run = _run("gmv_daily", people)

    states = _states(dag_run)
    assert str(dag_run.state) == "success" and states["publish"] == "skipped", states
    assert _published(mart) == []
    assert seen["blank"][0] == 200 and seen["blank"][1]["response_action"] == "errors"
    assert seen["submitted"] == 200
    assert slack.views[0]["trigger_id"].startswith(f"trigger-{DAVE}")
    assert ("finance sign-off", "refused_attempt", "bob", "slack", None) in _audit(mart)
    assert ("finance sign-off", "rejected", "dave", "slack", "refunds look low") in _audit(mart)
    assert slack.said_to(BOB)[-1] == (
        "🚫 Not recorded: bob already approved sales review of this run; another person must answer finance sign-off"
    )
    assert slack.said_to(DAVE)[-1].startswith("✅ Rejected finance sign-off of GMV")

    assert _follow_up(mart).updates == 4  # Bob's sales review; Bob's, Carol's and Dave's finance sign-off
    _deliver(mart)
    finance = [
        m for user in (BOB, CAROL, DAVE) for m in slack.messages_to(user) if "finance sign-off" in _text(m)
    ]
    assert len(finance) == 3
    for message in finance:
        assert "❌ *Rejected* by *Dave Chen* at " in _text(message) and "\\n>refunds look low" in _text(
            message
        )
        assert not _has_buttons(message)


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_the_owner_cannot_approve_alone_and_a_cleared_run_says_so(mart, slack):
    said: dict[str, list[str]] = {}

    def people(client):
        erin = _request_to(mart, slack, ERIN, "approve")
        frank = _request_to(mart, slack, FRANK, "approve")
        _awaiting("lead_conversion_rate", "approve")
        post(client, click(slack, erin, user=ERIN, action_id=APPROVE_ACTION))
        assert wait_for_work(30)
        post(client, click(slack, frank, user=FRANK, action_id=APPROVE_ACTION))
        assert wait_for_work(30)
        said["frank"] = [frank.channel, frank.ts]

    dag_run = _run("lead_conversion_rate", people)

    assert str(dag_run.state) == "success", _states(dag_run)
    assert _published(mart) == [("marketing review: frank",)]
    assert slack.said_to(ERIN) == [
        "🚫 Not recorded: erin owns lead_conversion_rate and cannot be the only approver of their own number "
        "(approval.allow_self_approval: false)"
    ]

    # The run is cleared: Frank's old message now says so instead of failing.
    from airflow.models import TaskInstance
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.scalars(
            sa.select(TaskInstance).where(
                TaskInstance.dag_id == "lead_conversion_rate", TaskInstance.run_id == dag_run.run_id
            )
        ).all()
        clear_task_instances(tis, session)
    [frank] = [m for m in slack.messages_to(FRANK) if m.ts == said["frank"][1]]
    frank = type(frank)(**{**frank.__dict__, "blocks": _original_blocks(mart, frank)})
    assert post(app_client(), click(slack, frank, user=FRANK, action_id=APPROVE_ACTION)).status_code == 200
    assert wait_for_work(30)
    assert slack.said_to(FRANK)[-1] == (
        "ℹ️ *marketing review* of Lead → order conversion rate (线索转化率) is not waiting for an answer: its run "
        "was cleared, so it will ask again with fresh evidence — answer the new request. Nothing was recorded."
    )
    assert _audit(mart).count(("marketing review", "refused_attempt", "frank", "slack", None)) == 1
    assert _published(mart) == [("marketing review: frank",)]  # nothing else published


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_a_reminder_once_then_the_timeout_and_a_late_click(mart, slack):
    seen: dict[str, object] = {}

    def people(client):
        bob = _request_to(mart, slack, BOB, "approve_sales_review")
        run_id, _ = _awaiting("gmv_daily", "approve_sales_review")
        later = datetime.now(UTC) + timedelta(hours=13)  # remind_at 0.5 × 24 h
        seen["early"] = _follow_up(
            mart, state="waiting", now=datetime.now(UTC) + timedelta(hours=11)
        ).reminders
        seen["reminded"] = _follow_up(mart, state="waiting", now=later).reminders
        seen["again"] = _follow_up(mart, state="waiting", now=later + timedelta(minutes=5)).reminders
        _deliver(mart)
        seen["messages"] = [m.blocks[0]["text"]["text"] for m in slack.messages_to(BOB)]
        _time_out(run_id)  # the scheduler's own sweep, 24 h later
        reminder = slack.messages_to(BOB)[-1]
        post(client, click(slack, reminder, user=BOB, action_id=APPROVE_ACTION))
        assert wait_for_work(30)
        seen["bob"] = bob.ts

    dag_run = _run("gmv_daily", people)

    states = _states(dag_run)
    assert states["approve_sales_review"] == "success" and states["publish"] == "skipped", states
    assert (seen["early"], seen["reminded"], seen["again"]) == (0, 1, 0)
    assert seen["messages"] == [
        "🟡 Approve GMV (成交额) — 2026-11-26",
        "⏰ Reminder: approve GMV (成交额) — 2026-11-26",
    ]
    assert slack.said_to(BOB)[-1].startswith("ℹ️ Already answered: Reject by the timeout default at ")
    assert ("sales review", "rejected_on_timeout", None, None, None) in _audit(mart)
    assert ("sales review", "refused_attempt", "bob", "slack", None) in _audit(mart)
    assert _published(mart) == []

    assert _follow_up(mart).updates == 2  # the request and the reminder
    _deliver(mart)
    for message in slack.messages_to(BOB):
        assert "⌛ *Timed out* at " in _text(message) and "rejected by default" in _text(message)
        assert not _has_buttons(message)


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data")
def test_a_stage_marked_failed_by_hand_is_closed_by_the_maintenance_dag(mart, slack):
    def people(client):
        _request_to(mart, slack, BOB, "approve_sales_review")
        _awaiting("gmv_daily", "approve_sales_review")
        _unblock("gmv_daily")  # someone marks the waiting approval failed in Airflow's UI

    dag_run = _run("gmv_daily", people)

    assert str(dag_run.state) == "failed"
    states, results = _maintenance()  # asks Airflow through its Task SDK: not waiting, run ended
    assert states["follow_up_approvals"] == "success"
    assert results["follow_up_approvals"]["updates"] == 1
    [message] = slack.messages_to(BOB)
    assert "⏹️ *No longer waiting*: its run ended without an answer to this stage." in _text(message)
    assert not _has_buttons(message)
    assert _published(mart) == []


def _maintenance() -> tuple[dict[str, str], dict[str, dict]]:
    """One run of the real maintenance DAG (``dag.test()``): its task states and return values."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "metrics_center_maintenance.py"
    dag = DagBag(dag_folder=str(dag_file), safe_mode=True).dags["metrics_center_maintenance"]
    dag_run = dag.test()
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.scalars(sa.select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id))
        }
        results = {
            x.task_id: XComModel.deserialize_value(x)
            for x in session.scalars(
                sa.select(XComModel).where(
                    XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
                )
            )
        }
    return states, {k: v if isinstance(v, dict) else json.loads(v) for k, v in results.items()}


def _time_out(run_id: str) -> None:
    """Move the stage's deadline to the past and run the scheduler's timeout sweep, as 24 h later."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(
                TaskInstance.dag_id == "gmv_daily",
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == "approve_sales_review",
            )
            .values(trigger_timeout=datetime.now(UTC) - timedelta(seconds=1))
        )
    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()


def _original_blocks(mart, message) -> list[dict]:
    """The request as first delivered (the buttons), from the outbox: the stub keeps only the update."""
    from metrics_center.notify.blocks import Item
    from metrics_center.notify.slack import render_group

    with mart.connect() as conn:
        payload = conn.execute(
            sa.select(n.c.payload).where(n.c.kind == "approval_request", n.c.slack_ts == message.ts)
        ).scalar_one()
    return render_group([Item(kind="approval_request", payload=payload)]).blocks
