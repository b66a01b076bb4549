"""The Slack interactions endpoint as Airflow's api-server serves it (plugin app, ``create_app()``): who may
call it, how fast it answers, and what it tells people it cannot place — with signed HTTP requests, the
stub Slack on 127.0.0.1 receiving the replies, and the real mart (Postgres and SQLite)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from slack_stub import Posted
from slack_support import (
    CONN,
    SIGNING_SECRET,
    URL,
    InteractiveSlackStub,
    app_client,
    click,
    form,
    post,
    signed,
)

from metrics_center.mart.tables import approval_event, slack_request
from metrics_center.notify.approval_messages import APPROVE_ACTION
from metrics_center.notify.blocks import Item
from metrics_center.notify.slack import render_group
from metrics_center.web.slack_actions import forget_cached_secret, wait_for_work

RUN_ID = "manual__2026-01-01T00:00:00+00:00"  # no such run in Airflow


@pytest.fixture
def stub(monkeypatch):
    with InteractiveSlackStub() as server:
        monkeypatch.setenv(CONN, server.connection())
        forget_cached_secret()
        yield server
    forget_cached_secret()


@pytest.fixture(autouse=True)
def _no_signatures_yet(mart):
    """The Postgres mart lives for the session: start each test without remembered signatures."""
    with mart.begin() as conn:
        conn.execute(sa.delete(slack_request))


@pytest.fixture(scope="module")
def client(airflow_db):
    return app_client()


def _message(*, task_id: str = "approve_sales_review") -> Posted:
    """A request message as delivery renders it, for the DM of Bob (the approver of sales review)."""
    payload = {
        "kind": "approval_request",
        "dag_id": "gmv_daily",
        "run_id": RUN_ID,
        "task_id": task_id,
        "try_number": 1,
        "metric_key": "gmv_daily",
        "metric_name": "GMV",
        "stage": "sales review",
        "person": "bob",
        "person_name": "Bob Li",
        "slack_user_id": "U0BOB0001",
        "evidence": "**GMV** — period **2026-11-26**",
        "page_url": "https://airflow.example.com/metrics-center/",
    }
    message = render_group([Item(kind="approval_request", payload=payload)])
    return Posted(
        channel="D0BOB0001",
        ts="1700000000.000100",
        text=message.text,
        blocks=message.blocks,
        metadata=None,
        at=0,
    )


def _attempts(mart) -> list[tuple]:
    with mart.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    approval_event.c.stage,
                    approval_event.c.decision,
                    approval_event.c.decided_by,
                    approval_event.c.via,
                )
                .where(approval_event.c.run_id == RUN_ID)
                .order_by(approval_event.c.id)
            )
        ]


def _signatures(mart) -> int:
    with mart.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(slack_request)).scalar_one()


def test_a_forged_signature_is_refused_and_nothing_happens(mart, stub, client):
    response = post(
        client, click(stub, _message(), user="U0BOB0001", action_id=APPROVE_ACTION), secret="not-the-secret"
    )

    assert response.status_code == 401
    assert "invalid signature" in response.json()["error"] and "signing_secret" in response.json()["error"]
    assert wait_for_work(10)
    assert stub.ephemeral == [] and _attempts(mart) == [] and _signatures(mart) == 0


def test_unsigned_and_stale_requests_are_refused(mart, stub, client):
    payload = click(stub, _message(), user="U0BOB0001", action_id=APPROVE_ACTION)
    unsigned = client.post(
        URL, content=form(payload), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    stale = post(client, payload, timestamp=int(time.time()) - 301)

    assert unsigned.status_code == 401 and "headers are missing" in unsigned.json()["error"]
    assert stale.status_code == 401 and stale.json()["error"].startswith("stale request")
    assert wait_for_work(10)
    assert stub.ephemeral == [] and _attempts(mart) == [] and _signatures(mart) == 0


def test_a_replayed_request_is_refused_by_every_api_server_worker(mart, stub, client):
    body = form(click(stub, _message(), user="U0BOB0001", action_id=APPROVE_ACTION))
    headers = signed(body)
    first = client.post(URL, content=body, headers=headers)
    other_worker = app_client()  # another app instance: only the mart is shared
    replayed = other_worker.post(URL, content=body, headers=headers)
    again = client.post(URL, content=body, headers=headers)

    assert (first.status_code, replayed.status_code, again.status_code) == (200, 401, 401)
    assert replayed.json()["error"].startswith("replayed request")
    assert wait_for_work(30)
    # The one accepted click was handled once: a run that does not exist is not waiting.
    assert _attempts(mart) == [("sales review", "refused_attempt", "bob", "slack")]
    assert stub.said_to("U0BOB0001") == [
        "ℹ️ sales review is not waiting in this run (the run was cleared or deleted)."
    ]
    assert _signatures(mart) == 1


def test_an_unknown_slack_user_is_told_how_to_get_linked_and_audited(mart, stub, client):
    response = post(client, click(stub, _message(), user="U0STRANGER", action_id=APPROVE_ACTION))

    assert response.status_code == 200
    assert wait_for_work(30)
    [said] = stub.said_to("U0STRANGER")
    assert said.startswith("🚫 Metrics Center does not know your Slack account: nobody in `_teams.yaml` has")
    assert "`slack_user_id: U0STRANGER`" in said
    assert _attempts(mart) == [("sales review", "refused_attempt", "slack:U0STRANGER", "slack")]


def test_the_click_is_acknowledged_at_once_and_handled_after(mart, stub, client, monkeypatch):
    from metrics_center.web import slack_answers

    handled: list[float] = []
    monkeypatch.setattr(
        slack_answers,
        "handle_interaction",
        lambda payload: (time.sleep(4), handled.append(time.monotonic())),
    )
    started = time.monotonic()
    response = post(client, click(stub, _message(), user="U0BOB0001", action_id=APPROVE_ACTION))
    acknowledged = time.monotonic()

    assert response.status_code == 200 and response.content == b""
    assert acknowledged - started < 1.0, "Slack wants the acknowledgement within 3 s"
    assert wait_for_work(30) and handled and handled[0] >= started + 4


def test_link_buttons_and_other_interactions_are_acknowledged_and_ignored(mart, stub, client):
    link = click(stub, _message(), user="U0BOB0001", action_id="metrics_center_page")
    closed = {"type": "view_closed", "user": {"id": "U0BOB0001"}, "view": {"callback_id": "other"}}

    assert post(client, link).status_code == 200 and post(client, closed).status_code == 200
    assert wait_for_work(30)
    assert stub.ephemeral == [] and _attempts(mart) == []


def test_without_a_signing_secret_the_endpoint_says_how_to_configure_it(mart, stub, client, monkeypatch):
    monkeypatch.setenv(CONN, stub.connection(secret=None))
    forget_cached_secret()

    response = post(
        client, click(stub, _message(), user="U0BOB0001", action_id=APPROVE_ACTION), secret=SIGNING_SECRET
    )

    assert response.status_code == 503
    assert "signing_secret" in response.json()["error"] and "metrics_center_slack" in response.json()["error"]


def test_an_oversized_body_is_refused_unread(mart, stub, client):
    body = b"payload=" + b"x" * 1_100_000

    response = client.post(URL, content=body, headers=signed(body))

    assert response.status_code == 413 and _signatures(mart) == 0
