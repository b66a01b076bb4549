"""Delivery to DingTalk and WeCom robots, Feishu / Lark cards, e-mail and the local inbox: the outbox's
promises (one message per group, retries, rate limits, an unknown outcome settled) hold for each channel,
over real HTTP (and SMTP) to stubs on 127.0.0.1 that check each platform's wire format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
import sqlalchemy as sa
from chat_stubs import (
    DINGTALK_SECRET,
    DINGTALK_TOKEN,
    WECOM_KEY,
    DingTalkStub,
    FeishuStub,
    WeComStub,
    feishu_connection,
    robot_connection,
)

from metrics_center.mart.tables import notification as n
from metrics_center.notify.addresses import Recipient, department_recipient, person_recipient
from metrics_center.notify.deliver import deliver_pending
from metrics_center.notify.outbox import enqueue

RUN = "scheduled__2026-11-27T00:00:00+00:00"


def _anomaly(i: int) -> dict:
    return {
        "metric_key": "gmv_daily",
        "metric_name": "GMV",
        "unit": "CNY",
        "period": "2026-11-26",
        "run_id": RUN,
        "dag_id": "gmv_daily",
        "dimensions": {"region": f"r{i}"},
        "value": 17000.0 + i,
        "expected": 12400.0,
        "band_low": 11300.0,
        "band_high": 13500.0,
        "score": 4.0 + i / 10,
        "method": "zscore",
        "definition_version": 1,
    }


def _enqueue(mart, recipient: Recipient, *, count: int = 2, group: str = "anomaly:gmv_daily:run") -> None:
    with mart.begin() as conn:
        for i in range(count):
            enqueue(
                conn,
                kind="anomaly",
                dedupe_key=f"{group}:{i}",
                recipient=recipient,
                group_key=group,
                payload=_anomaly(i),
                metric_key="gmv_daily",
                run_id=RUN,
            )


def _rows(mart) -> list[sa.Row]:
    with mart.connect() as conn:
        return conn.execute(sa.select(n).order_by(n.c.id)).all()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _deliver(mart, **kwargs):
    return deliver_pending(mart, channel_interval=0.0, time_budget=20, airflow_url="", **kwargs)


@pytest.fixture
def robots(monkeypatch):
    with DingTalkStub() as dingtalk, WeComStub() as wecom:
        dingtalk.keyword = "指标"
        monkeypatch.setenv(
            "AIRFLOW_CONN_SALES_DINGTALK",
            robot_connection(
                dingtalk.url, password=DINGTALK_TOKEN, extra={"secret": DINGTALK_SECRET, "keyword": "指标"}
            ),
        )
        monkeypatch.setenv("AIRFLOW_CONN_SALES_WECOM", robot_connection(wecom.url, password=WECOM_KEY))
        yield dingtalk, wecom


def _teams(**sales):
    from metrics_center.definitions.spec import Teams

    return Teams.model_validate(
        {
            "departments": {"sales": {"name": "Sales", **sales}},
            "people": {"bob": {"name": "Bob", "department": "sales", "feishu_open_id": "ou_bob"}},
        }
    )


def test_a_dingtalk_and_a_wecom_group_each_receive_the_anomaly_alert_once(mart, robots):
    dingtalk, wecom = robots
    teams = _teams(dingtalk_webhook="sales_dingtalk", wecom_webhook="sales_wecom")
    _enqueue(mart, department_recipient(teams, "sales"))

    report = _deliver(mart)

    assert (report.delivered, report.messages, report.errors) == (4, 2, ())
    assert report.skipped is None  # no Slack row: nothing is said about Slack
    assert len(dingtalk.accepted) == len(wecom.accepted) == 1 and not dingtalk.refused
    ding = dingtalk.accepted[0].body
    assert ding["msgtype"] == "markdown" and "GMV" in ding["markdown"]["title"]
    assert "r0" in ding["markdown"]["text"] and "r1" in ding["markdown"]["text"]
    assert "指标" in ding["markdown"]["text"]  # the robot's keyword rule, added since the text lacked it
    assert "**GMV**" in ding["markdown"]["text"]  # Markdown, not Slack's mrkdwn
    assert "r1" in wecom.accepted[0].body["markdown"]["content"]
    assert {(r.channel, r.state, r.address) for r in _rows(mart)} == {
        ("dingtalk", "delivered", "sales_dingtalk"),
        ("wecom", "delivered", "sales_wecom"),
    }
    assert _deliver(mart).delivered == 0 and len(dingtalk.accepted) == 1  # nothing twice


def test_a_robot_signature_made_with_the_wrong_secret_is_refused_and_says_what_to_fix(
    mart, robots, monkeypatch
):
    dingtalk, _ = robots
    monkeypatch.setenv(
        "AIRFLOW_CONN_SALES_DINGTALK",
        robot_connection(
            dingtalk.url, password=DINGTALK_TOKEN, extra={"secret": "SECwrong", "keyword": "指标"}
        ),
    )
    _enqueue(mart, department_recipient(_teams(dingtalk_webhook="sales_dingtalk"), "sales"), count=1)

    report = _deliver(mart)

    assert report.delivered == 0 and dingtalk.refused[0][0] == "sign"
    assert "310000" in report.errors[0] and "加签" in report.errors[0]
    assert {r.state for r in _rows(mart)} == {"pending"}


def test_rate_limits_in_each_platforms_own_codes_wait_and_are_not_counted_as_tries(mart, robots):
    dingtalk, wecom = robots
    dingtalk.script.append((200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}))
    wecom.script.append((200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
    _enqueue(
        mart,
        department_recipient(_teams(dingtalk_webhook="sales_dingtalk", wecom_webhook="sales_wecom"), "sales"),
    )
    now = datetime.now(UTC)

    first = _deliver(mart, now=now)

    assert first.delivered == 0 and first.pending == 4
    rows = _rows(mart)
    assert {r.attempts for r in rows} == {0}
    assert {r.last_error.split(",")[0] for r in rows} == {
        "rate limited by dingtalk (errcode 130101)",
        "rate limited by wecom (errcode 45009)",
    }
    assert _deliver(mart, now=now + timedelta(seconds=30)).delivered == 0  # asked to wait a minute
    assert _deliver(mart, now=now + timedelta(seconds=61)).delivered == 4
    assert len(dingtalk.accepted) == len(wecom.accepted) == 1


def test_a_robot_that_is_down_is_retried_then_delivered_once(mart, robots):
    dingtalk, _ = robots
    port = dingtalk.server.server_address[1]
    _enqueue(mart, department_recipient(_teams(dingtalk_webhook="sales_dingtalk"), "sales"), count=1)
    dingtalk.stop()
    now = datetime.now(UTC)

    down = _deliver(mart, now=now)

    assert down.retried == 1 and "cannot reach DingTalk" in down.errors[0]
    assert _rows(mart)[0].state == "pending"  # the connection was refused: surely not posted
    with DingTalkStub().start(port=port) as revived:
        assert _deliver(mart, now=now + timedelta(minutes=5)).delivered == 1
        assert len(revived.accepted) == 1


def test_an_answer_lost_after_the_robot_posted_is_sent_again_with_the_same_reference(mart, robots):
    """Robots cannot be asked what they received: at least once, never lost; the duplicate is recognisable."""
    _, wecom = robots
    _enqueue(mart, department_recipient(_teams(wecom_webhook="sales_wecom"), "sales"), count=1)
    posted_then_failed = {"done": False}

    def accept_then_fail(method, path, query, body, headers, original=wecom.handle):
        status, answer = original(method, path, query, body, headers)
        if not posted_then_failed["done"]:
            posted_then_failed["done"] = True
            return 502, {"errmsg": "bad gateway"}  # the robot posted it; the answer was lost
        return status, answer

    wecom.handle = accept_then_fail
    now = datetime.now(UTC)

    first = _deliver(mart, now=now)

    assert first.delivered == 0 and _rows(mart)[0].state == "sending"  # unknown outcome
    assert _deliver(mart, now=now + timedelta(minutes=6)).recovered == 1  # after the lease: sent again
    contents = [a.body["markdown"]["content"] for a in wecom.accepted]
    assert len(contents) == 2
    refs = {line for c in contents for line in c.splitlines() if "ref " in line}
    assert len(refs) == 1  # both carry the same reference


def test_a_robot_whose_connection_is_missing_waits_and_says_which_connection(mart, robots, monkeypatch):
    """Like Slack without its connection: nothing fails, no try is counted, the report names the fix."""
    _, wecom = robots
    _enqueue(mart, department_recipient(_teams(wecom_webhook="sales_wecom"), "sales"), count=1)
    monkeypatch.delenv("AIRFLOW_CONN_SALES_WECOM")

    report = _deliver(mart)

    assert (report.delivered, report.retried, report.pending, report.errors) == (0, 0, 1, ())
    assert "'sales_wecom'" in report.skipped and "does not exist" in report.skipped
    assert {(r.state, r.attempts) for r in _rows(mart)} == {("pending", 0)}
    monkeypatch.setenv("AIRFLOW_CONN_SALES_WECOM", robot_connection(wecom.url, password=WECOM_KEY))
    assert _deliver(mart).delivered == 1 and len(wecom.accepted) == 1  # added: it goes out


# --- Feishu / Lark ---------------------------------------------------------------------------------


@pytest.fixture
def feishu(monkeypatch):
    with FeishuStub() as stub:
        monkeypatch.setenv("AIRFLOW_CONN_METRICS_CENTER_FEISHU", feishu_connection(stub.url))
        yield stub


def test_feishu_gets_a_card_per_group_in_the_chat_and_to_the_person(mart, feishu):
    teams = _teams(feishu_chat_id="oc_sales")
    _enqueue(mart, department_recipient(teams, "sales"))
    _enqueue(mart, person_recipient(teams, "bob"), group="g-bob")

    report = _deliver(mart)

    assert (report.delivered, report.messages, report.errors) == (4, 2, ())
    to_chat, to_bob = feishu.sent_to("oc_sales"), feishu.sent_to("ou_bob")
    assert len(to_chat) == len(to_bob) == 1
    assert (
        to_chat[0].query["receive_id_type"] == "chat_id" and to_bob[0].query["receive_id_type"] == "open_id"
    )
    card = json.loads(to_chat[0].body["content"])
    assert card["schema"] == "2.0" and "GMV" in card["header"]["title"]["content"]
    assert "r1" in card["body"]["elements"][0]["content"]
    rows = _rows(mart)
    assert {r.slack_ts for r in rows} == {to_chat[0].body["message_id"], to_bob[0].body["message_id"]}
    assert {r.slack_channel for r in rows if r.address == "oc_sales"} == {"oc_sales"}


def test_a_feishu_send_whose_answer_was_lost_is_sent_again_and_dropped_by_its_uuid(mart, feishu):
    _enqueue(mart, department_recipient(_teams(feishu_chat_id="oc_sales"), "sales"), count=1)
    lost = {"once": True}
    original = feishu.handle

    def accept_then_time_out(method, path, query, body, headers):
        status, answer = original(method, path, query, body, headers)
        if path == "/open-apis/im/v1/messages" and lost.pop("once", False):
            return 503, {"code": 1, "msg": "upstream timeout"}  # Feishu has it; we never learn
        return status, answer

    feishu.handle = accept_then_time_out
    now = datetime.now(UTC)

    assert _deliver(mart, now=now).delivered == 0 and _rows(mart)[0].state == "sending"
    report = _deliver(mart, now=now + timedelta(minutes=6))

    assert report.recovered == 1
    assert len(feishu.accepted) == 1  # the second send carried the same uuid: Feishu dropped it
    assert _rows(mart)[0].slack_ts == feishu.accepted[0].body["message_id"]


def test_a_feishu_rate_limit_is_waited_for_and_not_counted_as_a_try(mart, feishu):
    _enqueue(mart, department_recipient(_teams(feishu_chat_id="oc_sales"), "sales"), count=1)
    feishu.script.append((400, {"code": 230020, "msg": "This operation triggers the frequency limit"}))

    report = _deliver(mart)  # a short wait: waited for within the call

    assert (report.delivered, report.retried) == (1, 0) and len(feishu.accepted) == 1
    assert _rows(mart)[0].attempts == 1  # one try, the rate-limited one not counted


def test_wrong_feishu_credentials_stop_the_channel_and_say_which_connection(mart, feishu, monkeypatch):
    _enqueue(mart, department_recipient(_teams(feishu_chat_id="oc_sales"), "sales"), count=1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_METRICS_CENTER_FEISHU",
        json.dumps({"conn_type": "http", "host": feishu.url, "login": "cli_wrong", "password": "wrong"}),
    )

    report = _deliver(mart)

    assert report.delivered == 0 and not feishu.accepted
    assert "metrics_center_feishu" in report.errors[0] or "10014" in report.errors[0]


# --- e-mail and the local inbox ----------------------------------------------------------------------


def test_a_person_without_any_chat_gets_an_html_email_through_airflows_smtp_provider(mart, monkeypatch):
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    port = _free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_METRICS_CENTER_SMTP",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "metrics@example.com"},
                }
            ),
        )
        from metrics_center.definitions.spec import Teams

        teams = Teams.model_validate(
            {
                "departments": {"ops": {"name": "Ops"}},
                "people": {"olga": {"name": "Olga", "department": "ops", "email": "olga@example.com"}},
            }
        )
        recipient = person_recipient(teams, "olga")
        assert dict(recipient.addresses) == {"email": "olga@example.com"}
        _enqueue(mart, recipient, count=1)

        report = _deliver(mart)
    finally:
        controller.stop()

    assert report.delivered == 1 and len(received) == 1
    mail = message_from_bytes(received[0])
    assert mail["To"] == "olga@example.com" and "GMV" in str(make_header(decode_header(mail["Subject"])))
    html = (
        next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    )
    assert "<b>" in html and "r0" in html and "<script" not in html
    assert mail["X-Metrics-Center-Ref"] == _rows(mart)[0].delivery_token


def test_without_connections_the_inbox_shows_what_each_channel_would_have_received(
    mart, tmp_path, monkeypatch
):
    from metrics_center.notify.inbox import read_inbox

    monkeypatch.setenv("METRICS_CENTER_INBOX", str(tmp_path / "inbox"))
    teams = _teams(slack_channel="#sales", feishu_chat_id="oc_sales", dingtalk_webhook="sales_dingtalk")
    _enqueue(mart, department_recipient(teams, "sales"))

    report = _deliver(mart)

    assert report.delivered == 6 and report.skipped is None
    by_channel = {e["channel"]: e for e in read_inbox(tmp_path / "inbox")}
    assert set(by_channel) == {"slack", "feishu", "dingtalk"}
    assert by_channel["feishu"]["wire"]["schema"] == "2.0"  # the card Feishu would have been sent
    assert by_channel["dingtalk"]["wire"]["msgtype"] == "markdown"
    assert "r1" in (tmp_path / "inbox" / "dingtalk.md").read_text()
    assert _deliver(mart).delivered == 0 and len(read_inbox(tmp_path / "inbox")) == 3
