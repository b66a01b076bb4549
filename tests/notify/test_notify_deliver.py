"""Delivery of the outbox: real slack-sdk (through the provider's SlackHook and the connection's
``base_url``) over HTTP to a stub Slack on 127.0.0.1, the real mart on Postgres and SQLite.

What must hold whatever Slack does: one message per group, every notification delivered exactly once
(500s, 429s, a deliverer killed between Slack's answer and the mark, two deliverers at once), dead
after N tries, and nothing lost or failing when there is no connection or no address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa
from slack_stub import TOKEN, Reply, SlackStub

from metrics_center.mart.engine import create_mart_engine
from metrics_center.mart.tables import notification as n
from metrics_center.notify.addresses import Recipient
from metrics_center.notify.deliver import EVENT_TYPE, deliver_pending, readdress, requeue
from metrics_center.notify.outbox import enqueue

SALES = Recipient.at("sales", "C0SALES01")
FINANCE = Recipient.at("finance", "#finance-metrics")
CONN = "AIRFLOW_CONN_METRICS_CENTER_SLACK"


@pytest.fixture
def stub(monkeypatch):
    with SlackStub() as server:
        monkeypatch.setenv(CONN, server.connection())
        yield server


def _anomaly(i: int, *, run_id: str = "scheduled__2026-11-27T00:00:00+00:00") -> dict:
    return {
        "metric_key": "gmv_daily",
        "metric_name": "GMV",
        "unit": "CNY",
        "period": "2026-11-26",
        "run_id": run_id,
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


def _enqueue(mart, *, group: str, count: int, recipient: Recipient = SALES) -> None:
    with mart.begin() as conn:  # one transaction, as the quality gate writes them
        for i in range(count):
            enqueue(  # its True/False return is not checked: on Postgres it is always False (rowcount -1)
                conn,
                kind="anomaly",
                dedupe_key=f"{group}:{i}",
                recipient=recipient,
                group_key=group,
                payload=_anomaly(i),
                metric_key="gmv_daily",
                run_id="scheduled__2026-11-27T00:00:00+00:00",
            )


def _rows(mart) -> list[sa.Row]:
    with mart.connect() as conn:
        return conn.execute(sa.select(n).order_by(n.c.id)).all()


def _states(mart) -> Counter[str]:
    return Counter(r.state for r in _rows(mart))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _exactly_once(mart, stub: SlackStub) -> None:
    """Every row delivered, by one message per group, each message posted once and recorded on its rows."""
    rows = _rows(mart)
    assert {r.state for r in rows} == {"delivered"}, [(r.id, r.state, r.last_error) for r in rows]
    assert all(count == 1 for count in stub.tokens().values()), stub.tokens()
    posted = {p.ts: p for p in stub.posted}
    assert len(posted) == len({(r.group_key, r.address) for r in rows})
    by_group: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        by_group.setdefault((row.group_key, row.address), set()).add(row.slack_ts)
        message = posted[row.slack_ts]
        assert message.channel == row.slack_channel == stub.channel_id(row.address)
        assert message.metadata == {"event_type": EVENT_TYPE, "event_payload": {"token": row.delivery_token}}
        assert row.delivered_at is not None
    assert all(len(ts) == 1 for ts in by_group.values()), by_group


def test_one_message_per_group(mart, stub):
    _enqueue(mart, group="anomaly:gmv_daily:run1", count=40)
    _enqueue(mart, group="anomaly:gmv_daily:run2", count=2)
    with mart.begin() as conn:  # the same group for another department: a message of its own
        enqueue(
            conn,
            kind="anomaly",
            dedupe_key="fin",
            recipient=FINANCE,
            group_key="anomaly:gmv_daily:run1",
            payload=_anomaly(0),
        )

    report = deliver_pending(mart, airflow_url="https://airflow.example.com")

    assert (report.delivered, report.messages, report.pending, report.dead) == (43, 3, 0, 0)
    _exactly_once(mart, stub)
    big = next(p for p in stub.posted if "40 values" in p.text)
    assert "… and 30 more" in str(big.blocks)
    assert (
        "https://airflow.example.com/dags/gmv_daily/runs/scheduled__2026-11-27T00%3A00%3A00%2B00%3A00"
        in big.text
    )
    assert {p.channel for p in stub.posted} == {"C0SALES01", stub.channel_id("#finance-metrics")}
    assert deliver_pending(mart).messages == 0  # nothing left: no call to Slack at all
    assert len(stub.calls_of("chat.postMessage")) == 3


def test_slack_failing_for_a_while_then_recovering_delivers_each_once(mart, stub):
    for g in range(4):
        _enqueue(mart, group=f"g{g}", count=2, recipient=SALES if g % 2 else FINANCE)
    stub.script(
        "chat.postMessage",
        Reply(status=500),
        Reply(status=503),
        Reply(status=500, keep=True),  # Slack posted it, then answered 500
        Reply(status=502, keep=True),
        Reply(status=500),
        Reply(status=500),
    )
    now = datetime.now(UTC)
    reports = []
    for _ in range(8):
        reports.append(deliver_pending(mart, now=now, base_delay=timedelta(seconds=10)))
        if _states(mart) == {"delivered": 8}:
            break
        now += timedelta(hours=1)  # past every backoff and lease
    _exactly_once(mart, stub)
    assert (
        sum(r.recovered for r in reports) == 4
    )  # the two kept-then-500 groups: found in Slack, not re-posted
    assert sum(r.retried for r in reports) >= 12
    assert len(stub.calls_of("conversations.history")) >= 2
    attempts = {r.group_key: r.attempts for r in _rows(mart)}
    assert max(attempts.values()) >= 2


def test_429_retry_after_is_respected(mart, stub):
    _enqueue(mart, group="g", count=3)
    stub.script("chat.postMessage", Reply(status=429, headers={"Retry-After": "30"}))
    now = datetime.now(UTC)

    report = deliver_pending(mart, now=now, time_budget=5)

    assert (report.delivered, report.retried, report.dead, report.pending) == (0, 0, 0, 3)
    rows = _rows(mart)
    assert {r.state for r in rows} == {"pending"}
    assert all(_utc(r.next_attempt_at) >= now + timedelta(seconds=30) for r in rows)
    assert {r.attempts for r in rows} == {0}  # a 429 is not a failed try
    assert "HTTP 429" in rows[0].last_error
    assert deliver_pending(mart, now=now + timedelta(seconds=20)).delivered == 0  # not yet due
    assert len(stub.calls_of("chat.postMessage")) == 1

    assert deliver_pending(mart, now=now + timedelta(seconds=31)).delivered == 3
    _exactly_once(mart, stub)


@pytest.mark.slow  # a separate process
def test_short_retry_after_is_waited_for_within_one_call(mart, stub):
    stub.rate_limit(per_channel=1, window=1.0)  # Slack's chat.postMessage limit: 1/s per channel
    for g in range(3):
        _enqueue(mart, group=f"g{g}", count=1)

    report = deliver_pending(mart, channel_interval=0.0, time_budget=30)  # pace by 429s only

    assert (report.delivered, report.messages) == (3, 3)
    _exactly_once(mart, stub)
    calls = stub.calls_of("chat.postMessage")
    limited = [c for c in calls if c.status == 429]
    assert limited, "the stub's limit was never hit"
    for call in limited:
        following = [c for c in calls if c.at > call.at]
        assert following and following[0].at - call.at >= 0.95  # waited Retry-After: 1 before trying again
    accepted = sorted(p.at for p in stub.posted)
    assert all(b - a >= 0.95 for a, b in pairwise(accepted))


CHILD = r"""
import sys
from metrics_center.mart.engine import create_mart_engine
from metrics_center.notify.deliver import deliver_pending

print(deliver_pending(create_mart_engine(sys.argv[1]), workers=1))
"""


@pytest.mark.parametrize(
    ("moment", "address"),
    [
        pytest.param("before_reply", "#sales-metrics", id="killed-before-reply-channel-name"),
        pytest.param("before_reply", "U0BOB0001", id="killed-before-reply-dm"),
        pytest.param("after_reply", "C0SALES01", id="killed-after-reply-channel-id"),
    ],
)
@pytest.mark.slow  # a separate process
def test_killed_after_slack_accepted_is_not_posted_twice(mart, stub, moment, address):
    """A real deliverer process, SIGKILLed by the stub once Slack has the message (before its answer
    arrives, or right after), leaves rows in ``sending``; the next run finds the token in Slack."""
    _enqueue(mart, group="g", count=3, recipient=Recipient.at("sales", address))
    child: list[subprocess.Popen] = []

    def kill(_posted) -> None:
        os.kill(child[0].pid, signal.SIGKILL)

    setattr(stub, "on_post" if moment == "before_reply" else "on_reply", kill)
    url = mart.url.render_as_string(hide_password=False)
    child.append(
        subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    )
    out, err = child[0].communicate(timeout=120)
    assert child[0].returncode == -signal.SIGKILL, out.decode() + err.decode()
    stub.on_post = stub.on_reply = None
    assert len(stub.posted) == 1
    if moment == "before_reply":
        assert _states(mart) == {"sending": 3}  # claimed, committed, posted, never marked

    too_early = deliver_pending(mart)  # the lease (claim_timeout) has not passed: nobody touches it
    assert too_early.recovered == 0 and len(stub.posted) == 1
    report = deliver_pending(mart, now=datetime.now(UTC) + timedelta(minutes=6))

    _exactly_once(mart, stub)
    assert len(stub.calls_of("chat.postMessage")) == 1
    assert {r.slack_ts for r in _rows(mart)} == {stub.posted[0].ts}
    if moment == "before_reply":
        assert report.recovered == 3
        assert stub.calls_of("conversations.history")[-1].params["include_all_metadata"] in (
            "1",
            "true",
            True,
        )


def test_dead_after_max_attempts_then_requeued(mart, stub):
    _enqueue(mart, group="g", count=2)
    stub.script("chat.postMessage", *[Reply(error="channel_not_found")] * 3)
    now = datetime.now(UTC)
    reports = []
    for _ in range(4):
        reports.append(deliver_pending(mart, now=now, max_attempts=3))
        now += timedelta(hours=2)

    assert [r.dead for r in reports] == [0, 0, 2, 0]
    assert [r.retried for r in reports] == [2, 2, 0, 0]
    assert reports[-1].dead_total == 2
    rows = _rows(mart)
    assert {(r.state, r.attempts) for r in rows} == {("dead", 3)}
    assert "channel_not_found" in rows[0].last_error and "_teams.yaml" in rows[0].last_error
    assert len(stub.calls_of("chat.postMessage")) == 3  # nothing after dead
    assert not stub.posted

    assert requeue(mart) == 2  # the channel was fixed
    assert deliver_pending(mart).delivered == 2
    _exactly_once(mart, stub)


def test_backoff_grows_exponentially(mart, stub):
    _enqueue(mart, group="g", count=1)
    stub.script("chat.postMessage", *[Reply(error="not_in_channel")] * 3)
    now = datetime.now(UTC)
    delays = []
    for _ in range(3):
        deliver_pending(mart, now=now, base_delay=timedelta(seconds=30))
        (row,) = _rows(mart)
        delays.append((_utc(row.next_attempt_at) - now).total_seconds())
        now = _utc(row.next_attempt_at)
    assert [round(d) for d in delays] == [30, 60, 120]
    assert "invite the Slack app" in row.last_error


def test_without_a_connection_everything_stays_pending(mart, monkeypatch):
    monkeypatch.delenv(CONN, raising=False)
    _enqueue(mart, group="g", count=2)
    report = deliver_pending(mart)
    assert report.skipped and "metrics_center_slack" in report.skipped
    assert (report.delivered, report.retried, report.dead, report.pending) == (0, 0, 0, 2)
    assert {(r.state, r.attempts) for r in _rows(mart)} == {("pending", 0)}
    monkeypatch.setenv(CONN, '{"conn_type": "slack"}')  # a connection without a token: the same
    assert deliver_pending(mart).skipped
    monkeypatch.setenv(CONN, "")  # docker-compose's default when METRICS_CENTER_SLACK_CONN is unset
    assert deliver_pending(mart).skipped
    assert {(r.state, r.attempts) for r in _rows(mart)} == {("pending", 0)}


def test_without_an_address_it_stays_pending_until_there_is_one(mart, stub):
    _enqueue(mart, group="g", count=2, recipient=Recipient.at("ops", None))
    _enqueue(mart, group="h", count=1)

    report = deliver_pending(mart)

    assert (report.delivered, report.pending, report.unaddressed) == (1, 2, 2)
    assert Counter((r.state, r.address) for r in _rows(mart)) == {
        ("pending", None): 2,
        ("delivered", "C0SALES01"): 1,
    }
    assert readdress(mart, addresses={"ops": "#ops-metrics", "nobody": None}) == 2  # _teams.yaml now has it
    assert deliver_pending(mart).delivered == 2
    _exactly_once(mart, stub)


def test_a_wrong_token_stops_the_call_without_burning_every_row(mart, stub, monkeypatch):
    monkeypatch.setenv(CONN, stub.connection(token="xoxb-revoked"))
    for g in range(5):
        _enqueue(mart, group=f"g{g}", count=1)
    report = deliver_pending(mart, workers=1)
    assert report.retried == 1 and report.delivered == 0
    assert any(
        "invalid_auth" in e and "password of connection metrics_center_slack" in e for e in report.errors
    )
    assert sorted(r.attempts for r in _rows(mart)) == [0, 0, 0, 0, 1]
    monkeypatch.setenv(CONN, stub.connection(token=TOKEN))


def test_two_deliverers_at_once_post_each_group_once(mart, stub):
    stub.latency = 0.05
    for g in range(30):
        _enqueue(mart, group=f"g{g}", count=2, recipient=Recipient.at("d", f"C0CHAN{g % 5:03d}"))
    engines = [create_mart_engine(mart.url) for _ in range(2)]
    start = threading.Barrier(2)
    reports = []

    def run(engine) -> None:
        start.wait()
        reports.append(deliver_pending(engine, channel_interval=0.0, workers=3))

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for engine in engines:
        engine.dispose()

    _exactly_once(mart, stub)
    assert sum(r.delivered for r in reports) == 60 and sum(r.messages for r in reports) == 30
    assert all(r.messages > 0 for r in reports), [r.messages for r in reports]  # both really delivered


def test_rejects_a_lease_shorter_than_slacks_timeout(mart):
    with pytest.raises(ValueError, match="claim_timeout"):
        deliver_pending(mart, claim_timeout=timedelta(seconds=10))


def test_cli_lists_delivers_and_requeues(mart, stub, capsys):
    from metrics_center import cli

    _enqueue(mart, group="g", count=1, recipient=Recipient.at("ops", None))
    _enqueue(mart, group="h", count=1)
    stub.script("chat.postMessage", Reply(error="is_archived"))

    assert cli.main(["notifications", "deliver", "--max-attempts", "1"]) == 0
    out, err = capsys.readouterr()
    assert "0 delivered in 0 message(s)" in out and "1 dead now (1 in all)" in out
    assert "1 pending (1 without an address)" in out
    assert "is_archived — unarchive the channel" in err

    assert cli.main(["notifications", "list"]) == 0
    out = capsys.readouterr().out
    assert "pending   anomaly          gmv_daily                ops → slack (no address)  tries 0" in out
    assert "dead      anomaly          gmv_daily                sales → slack C0SALES01  tries 1" in out
    assert out.strip().endswith("1 pending, 0 sending, 0 delivered, 1 dead")

    assert cli.main(["notifications", "requeue"]) == 0
    assert "1 dead notification(s) pending again" in capsys.readouterr().out
    assert cli.main(["notifications", "deliver"]) == 0
    assert "1 delivered in 1 message(s)" in capsys.readouterr().out
    assert cli.main(["notifications", "list", "--state", "delivered"]) == 0
    assert f"ts {stub.posted[0].ts}" in capsys.readouterr().out
