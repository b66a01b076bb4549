"""Approving from Feishu / Lark cards, end to end, and the card callback's defences.

``dag.test()`` runs a metric that waits for approval; delivery sends the request cards through the official
SDK to the stub Feishu open API on 127.0.0.1; people click **Approve** / **Reject** — encrypted, signed
``card.action.trigger`` callbacks to the app Airflow's api-server serves; the answers are recorded as those
people with the same rules as Slack and the page, and the cards are updated in place.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from chat_stubs import (
    FeishuStub,
    card_click_event,
    encrypt_callback,
    feishu_connection,
    feishu_signed_headers,
)
from dag_helpers import fail_waiting, run_with_people, wait_awaiting
from slack_support import BASE_URL, app_client, include_without_other_chats

from metrics_center.mart.tables import approval_event, chat_request_refusal, slack_request
from metrics_center.mart.tables import notification as n
from metrics_center.notify.feishu import forget_cached_feishu_app as forget_cached_app
from metrics_center.web.slack_actions import wait_for_work

URL = "/metrics-center/feishu/card"
ENCRYPT_KEY = "feishu-encrypt-key-test"
VERIFICATION_TOKEN = "feishu-verification-token"
LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)
#: person → (their Slack id in the demo's _teams.yaml, the Feishu open id that replaces it)
PEOPLE = {
    "bob": ("U0BOB0001", "ou_bob"),
    "carol": ("U0CAROL01", "ou_carol"),
    "dave": ("U0DAVE001", "ou_dave"),
    "erin": ("U0ERIN001", "ou_erin"),
    "frank": ("U0FRANK01", "ou_frank"),
}


@pytest.fixture
def feishu(monkeypatch):
    with FeishuStub() as stub:
        monkeypatch.setenv(
            "AIRFLOW_CONN_METRICS_CENTER_FEISHU",
            feishu_connection(stub.url, encrypt_key=ENCRYPT_KEY, verification_token=VERIFICATION_TOKEN),
        )
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
        forget_cached_app()
        yield stub
    forget_cached_app()


@pytest.fixture
def feishu_only(tmp_path, monkeypatch):
    """The demo company, where the approvers use Feishu only (no Slack ids); bob may answer both stages
    of gmv_daily (to show that he may not answer both)."""
    home = include_without_other_chats(tmp_path / "include")
    teams = home / "metrics" / "_teams.yaml"
    text = teams.read_text()
    for slack_id, open_id in PEOPLE.values():
        text = text.replace(f"slack_user_id: {slack_id}", f"feishu_open_id: {open_id}")
    teams.write_text(re.sub(r'slack_channel: "#([a-z]+)-[a-z]+"', r"feishu_chat_id: oc_\1", text))
    gmv = home / "metrics" / "gmv_daily.yaml"
    gmv.write_text(gmv.read_text().replace("approvers: [carol, dave]", "approvers: [carol, dave, bob]"))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _fresh(mart):
    with mart.begin() as conn:
        conn.execute(sa.delete(slack_request))
        conn.execute(sa.delete(chat_request_refusal))


# --- the callback as Feishu sends it ---------------------------------------------------------------


def encrypt(payload: dict, *, key: str = ENCRYPT_KEY) -> bytes:
    return encrypt_callback(payload, key=key)


def signed_headers(body: bytes, *, key: str = ENCRYPT_KEY, timestamp: int | None = None) -> dict[str, str]:
    return feishu_signed_headers(body, key=key, timestamp=timestamp)


def card_event(stub: FeishuStub, message_id: str, *, open_id: str, action: str, reason: str = "") -> dict:
    """The ``card.action.trigger`` event of a click on button ``action`` of the card ``message_id``."""
    card = stub.cards[message_id]
    buttons = [
        element
        for form in card["body"]["elements"]
        if form.get("tag") == "form"
        for columns in form["elements"]
        if columns.get("tag") == "column_set"
        for column in columns["columns"]
        for element in column["elements"]
    ]
    [button] = [b for b in buttons if b["name"] == action]
    return card_click_event(
        token=VERIFICATION_TOKEN,
        open_id=open_id,
        action=action,
        value=button["behaviors"][0]["value"],
        message_id=message_id,
        chat_id=stub.chat_of[message_id],
        reason=reason,
    )


def click(client, event: dict):
    body = encrypt(event)
    return client.post(URL, content=body, headers=signed_headers(body))


def _deliver(mart) -> None:
    from metrics_center.notify.deliver import deliver_pending

    report = deliver_pending(mart, channel_interval=0.0, time_budget=30)
    assert not report.errors, report.errors


def _card_for(mart, stub: FeishuStub, open_id: str, task_id: str, timeout: float = 120) -> str:
    """The message id of the request card for ``task_id`` sent to ``open_id``, delivering until it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _deliver(mart)
        for accepted in stub.sent_to(open_id):
            message_id = accepted.body["message_id"]
            if f'\\"t\\":\\"{task_id}\\"' in json.dumps(stub.cards[message_id]):
                return message_id
        time.sleep(0.05)
    raise TimeoutError(f"no card for {task_id} reached {open_id}")


def _told(stub: FeishuStub, open_id: str) -> list[str]:
    """What the app told ``open_id`` in notice cards (not the request cards)."""
    told = []
    for accepted in stub.sent_to(open_id):
        card = json.loads(accepted.body["content"])
        if card["header"]["title"]["content"] == "Metrics Center":
            told.append(card["body"]["elements"][0]["content"])
    return told


def _run(dag_id: str, script):
    return run_with_people(dag_id, script, logical_date=LOGICAL, client_factory=app_client)


def _unblock(dag_id: str) -> None:
    """Fail what waits, so that ``dag.test()`` returns (in a thread: the run may still be parking)."""
    threading.Thread(target=fail_waiting, args=(dag_id,), daemon=True).start()


def _awaiting(dag_id: str, task_id: str, timeout: float = 120) -> tuple[str, float]:
    return wait_awaiting(dag_id, task_id, timeout)


def _audit(mart) -> list[tuple]:
    e = approval_event
    with mart.connect() as conn:
        rows = conn.execute(
            sa.select(e.c.stage, e.c.decision, e.c.decided_by, e.c.via, e.c.reason).where(
                e.c.decision != "requested"
            )
        ).all()
    return sorted((tuple(r) for r in rows), key=str)


def _published(mart) -> list[tuple]:
    with mart.connect() as conn:
        return conn.execute(sa.text("SELECT DISTINCT approved_by FROM metric_value_current")).all()


def _refusals(mart) -> list[tuple]:
    with mart.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(sa.select(chat_request_refusal.c.channel, chat_request_refusal.c.status))
        ]


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data", "feishu_only")
def test_both_stages_of_gmv_daily_approved_from_feishu_cards_and_the_value_is_published(mart, feishu):
    seen: dict[str, object] = {}

    def people(client):
        bob_card = _card_for(mart, feishu, "ou_bob", "approve_sales_review")
        _awaiting("gmv_daily", "approve_sales_review")
        # Carol is no approver of the sales review (a copy of Bob's card, validly signed by Feishu).
        started = time.monotonic()
        refused = click(client, card_event(feishu, bob_card, open_id="ou_carol", action="approve"))
        seen["ack"] = time.monotonic() - started
        seen["statuses"] = [refused.status_code]
        assert wait_for_work(30)
        approved = click(client, card_event(feishu, bob_card, open_id="ou_bob", action="approve"))
        seen["statuses"].append(approved.status_code)
        seen["toast"] = approved.json()["toast"]["content"]
        assert wait_for_work(30)

        bob_second = _card_for(mart, feishu, "ou_bob", "approve_finance_sign_off")
        carol_card = _card_for(mart, feishu, "ou_carol", "approve_finance_sign_off")
        _awaiting("gmv_daily", "approve_finance_sign_off")
        # Bob approved stage 1: he may not answer stage 2 as well (separation of duties).
        seen["statuses"].append(
            click(client, card_event(feishu, bob_second, open_id="ou_bob", action="approve")).status_code
        )
        assert wait_for_work(30)
        # A reject without a reason is refused inside Feishu's 3 s, before anything is recorded.
        blank = click(client, card_event(feishu, carol_card, open_id="ou_carol", action="reject"))
        seen["blank"] = (blank.status_code, blank.json()["toast"]["type"])
        seen["statuses"].append(
            click(client, card_event(feishu, carol_card, open_id="ou_carol", action="approve")).status_code
        )
        assert wait_for_work(30)

    dag_run = _run("gmv_daily", people)

    assert str(dag_run.state) == "success"
    assert seen["statuses"] == [200] * 4 and seen["ack"] < 3.0
    assert seen["toast"].startswith("Received")
    assert seen["blank"] == (200, "error")
    assert _published(mart) == [("sales review: bob; finance sign-off: carol",)]
    assert _audit(mart) == sorted(
        [
            ("sales review", "refused_attempt", "carol", "feishu", None),
            ("sales review", "submitted", "bob", "feishu", None),
            ("sales review", "approved", "bob", "feishu", None),
            ("finance sign-off", "refused_attempt", "bob", "feishu", None),
            ("finance sign-off", "submitted", "carol", "feishu", None),
            ("finance sign-off", "approved", "carol", "feishu", None),
        ],
        key=str,
    )
    # The same words as Slack (Slack's *bold* is Markdown's **bold** here).
    assert _told(feishu, "ou_carol")[0] == (
        "🚫 You are not an approver of **sales review** of GMV (成交额); its approvers are Bob Li. Nothing was recorded."
    )
    assert _told(feishu, "ou_bob")[0].startswith("✅ Approved sales review of GMV")
    assert _told(feishu, "ou_bob")[1] == (
        "🚫 Not recorded: bob already approved sales review of this run; another person must answer finance sign-off"
    )
    # The clicked cards were updated at once, without buttons, saying who answered and how.
    assert feishu.patches, "no card was updated"
    decided = json.dumps(feishu.cards[feishu.patches[0][0]], ensure_ascii=False)
    assert "Approved" in decided and "via Feishu" in decided and '"form"' not in decided
    with mart.connect() as conn:
        channels = set(conn.execute(sa.select(n.c.channel).where(n.c.kind == "approval_request")).scalars())
    assert channels == {"feishu"}


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "demo_data", "feishu_only")
def test_the_owner_alone_is_refused_from_a_feishu_card_with_slacks_words(mart, feishu):
    def people(client):
        erin = _card_for(mart, feishu, "ou_erin", "approve")
        frank = _card_for(mart, feishu, "ou_frank", "approve")
        _awaiting("lead_conversion_rate", "approve")
        click(client, card_event(feishu, erin, open_id="ou_erin", action="approve"))
        assert wait_for_work(30)
        click(client, card_event(feishu, frank, open_id="ou_frank", action="approve"))
        assert wait_for_work(30)

    dag_run = _run("lead_conversion_rate", people)

    assert str(dag_run.state) == "success"
    assert _published(mart) == [("marketing review: frank",)]
    assert _told(feishu, "ou_erin") == [
        "🚫 Not recorded: erin owns lead_conversion_rate and cannot be the only approver of their own number "
        "(approval.allow_self_approval: false)"
    ]


# --- the callback's defences (no DAG run needed: nothing may get past them) ------------------------


def _event(open_id: str = "ou_bob") -> dict:
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "token": VERIFICATION_TOKEN,
            "create_time": str(int(time.time() * 1000)),
            "event_type": "card.action.trigger",
        },
        "event": {
            "operator": {"open_id": open_id},
            "action": {
                "value": {
                    "action": "approve",
                    "ref": '{"d":"gmv_daily","r":"manual__x","t":"approve_sales_review","n":1}',
                }
            },
            "context": {"open_message_id": "om_x", "open_chat_id": "oc_x"},
        },
    }


@pytest.fixture(scope="module")
def client(airflow_db):
    return app_client()


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("feishu_only")
def test_forged_stale_and_replayed_callbacks_are_refused_and_recorded(mart, feishu, client):
    body = encrypt(_event())
    forged = client.post(URL, content=body, headers=signed_headers(body, key="not-the-key"))
    stale = client.post(URL, content=body, headers=signed_headers(body, timestamp=int(time.time()) - 301))
    unsigned = client.post(URL, content=body, headers={"Content-Type": "application/json"})
    wrong_key = encrypt(_event(), key="another-apps-key")
    undecryptable = client.post(URL, content=wrong_key, headers=signed_headers(wrong_key))
    other_token = _event()
    other_token["header"]["token"] = "another-apps-token"
    foreign = click(client, other_token)
    headers = signed_headers(body)
    first = client.post(URL, content=body, headers=headers)
    other_worker = app_client()  # another api-server worker: only the mart is shared
    replayed = other_worker.post(URL, content=body, headers=headers)
    resigned = client.post(URL, content=body, headers=signed_headers(body))  # same event, new signature

    assert forged.status_code == 401 and "invalid signature" in forged.json()["error"]
    assert stale.status_code == 401 and forged.json()["error"] != stale.json()["error"]
    assert stale.json()["error"].startswith("stale request")
    assert unsigned.status_code == 401 and "headers are missing" in unsigned.json()["error"]
    assert undecryptable.status_code == 400 and "encrypt_key" in undecryptable.json()["error"]
    assert foreign.status_code == 401 and "verification token" in foreign.json()["error"]
    assert first.status_code == 200
    assert replayed.status_code == 401 and replayed.json()["error"].startswith("replayed request")
    assert resigned.status_code == 401 and resigned.json()["error"].startswith("replayed request")
    assert sorted(_refusals(mart)) == sorted([("feishu", 401)] * 6 + [("feishu", 400)])
    assert wait_for_work(30)
    # the one accepted click: Bob is told the run is not waiting; one refused attempt, audited as Feishu
    with mart.connect() as conn:
        audit = conn.execute(sa.select(approval_event.c.decided_by, approval_event.c.via)).all()
    assert [tuple(a) for a in audit] == [("bob", "feishu")]


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_the_url_verification_challenge_and_an_unconfigured_app(mart, feishu, client, monkeypatch):
    challenge = {"challenge": "ajls384kdjx98XX", "token": VERIFICATION_TOKEN, "type": "url_verification"}
    body = encrypt(challenge)
    assert client.post(URL, content=body, headers={"Content-Type": "application/json"}).json() == {
        "challenge": "ajls384kdjx98XX"
    }
    body = encrypt({**challenge, "token": "wrong"})
    assert client.post(URL, content=body, headers={"Content-Type": "application/json"}).status_code == 401

    monkeypatch.setenv("AIRFLOW_CONN_METRICS_CENTER_FEISHU", feishu_connection(feishu.url))  # no keys
    forget_cached_app()
    unconfigured = client.post(URL, content=body, headers=signed_headers(body))
    assert unconfigured.status_code == 503 and "encrypt_key" in unconfigured.json()["error"]


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_an_unknown_feishu_account_is_told_how_to_get_linked_and_audited(mart, feishu, client):
    assert click(client, _event(open_id="ou_stranger")).status_code == 200
    assert wait_for_work(30)

    assert _told(feishu, "ou_stranger") == [
        "🚫 Metrics Center does not know your Feishu account: nobody in `_teams.yaml` has `feishu_open_id: "
        "ou_stranger`. Ask the data team to add it to your entry, or answer in Airflow's Required Actions or on "
        "the Metrics Center page instead. Nothing was recorded."
    ]
    with mart.connect() as conn:
        audit = conn.execute(sa.select(approval_event.c.decided_by, approval_event.c.via)).all()
    assert [tuple(a) for a in audit] == [("feishu:ou_stranger", "feishu")]
