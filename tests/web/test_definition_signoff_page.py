"""A department that names definition reviewers: gmv_daily's first version computes and its stages are approved,
then ``publish`` waits — nothing in the mart — until a reviewer signs the definition off on My approvals; the
non-reviewer is refused (the owner's refusal: tests/approvals/test_definition_signoff.py), and the audit shows every attempt. Real ``dag.test()``, the real
api-server app in-process."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from airflow_api import PREFIX, bearer
from dag_helpers import run_with_people, wait_awaiting
from slack_support import app_client, include_without_other_chats

from metrics_center.mart.tables import approval_event

LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture
def reviewed_home(tmp_path, monkeypatch):
    """The demo's include/ with sales naming its definition reviewers (frank, and alice — who owns gmv_daily)."""
    home = include_without_other_chats(tmp_path / "include")
    teams = home / "metrics" / "_teams.yaml"
    text = re.sub(
        r"(\n  sales:\n    name: Sales\n)", r"\1    definition_reviewers: [frank, alice]\n", teams.read_text()
    )
    assert "definition_reviewers" in text
    teams.write_text(text)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    monkeypatch.setenv("METRICS_CENTER_SIGNOFF_POLL", "1")
    return home


def _values(mart) -> int:
    with mart.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM metric_value_current")).scalar_one()


def _form(client, who: str, path: str, **data) -> str:
    """Post the page's form as ``who`` and read the flash My approvals shows after the redirect."""
    headers = {**bearer(client, who), "origin": "http://testserver"}
    posted = client.post(PREFIX + path, data=data, headers=headers, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    page = client.get(PREFIX + "/", headers={**bearer(client, who), "accept": "text/html"})
    flash = re.search(r'<p class="flash[^"]*" role="status">(.*?)</p>', page.text, re.S)
    client.cookies.clear()
    return flash.group(1).strip() if flash else ""


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db", "plugin", "reviewed_home")
def test_publish_waits_for_the_definition_signoff_then_publishes(mart, demo_data):
    seen: dict = {}

    def people(client):
        for stage, who in (("approve_sales_review", "bob"), ("approve_finance_sign_off", "carol")):
            run_id, _ = wait_awaiting("gmv_daily", stage)
            url = f"{PREFIX}/api/approvals/gmv_daily/{quote(run_id, safe='')}/{stage}"
            if who == "bob":
                seen["evidence"] = client.get(PREFIX + "/api/approvals", headers=bearer(client, who)).json()[
                    "approvals"
                ][0]["body_markdown"]
            answered = client.post(url, json={"option": "Approve"}, headers=bearer(client, who))
            assert answered.status_code == 200, answered.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both stages approved: publish is waiting for the sign-off
            listing = client.get(PREFIX + "/api/approvals", headers=bearer(client, "frank")).json()
            if listing["definitions"]:
                break
            time.sleep(0.5)
        seen["frank's list"] = listing["definitions"]
        seen["carol's list"] = client.get(PREFIX + "/api/approvals", headers=bearer(client, "carol")).json()
        time.sleep(3)  # publish has looked (and rescheduled) at least twice
        seen["values before"] = _values(mart)
        page = client.get(PREFIX + "/", headers={**bearer(client, "frank"), "accept": "text/html"})
        seen["frank's page"] = page.text
        forged = client.post(  # a page elsewhere posting frank's sign-off with his cookie: refused unread
            PREFIX + "/definitions/gmv_daily/1",
            data={"action": "approve"},
            headers={**bearer(client, "frank"), "origin": "https://evil.example"},
            follow_redirects=False,
        )
        seen["cross-site"] = forged.status_code
        seen["carol"] = _form(client, "carol", "/definitions/gmv_daily/1", action="approve")
        seen["frank"] = _form(client, "frank", "/definitions/gmv_daily/1", action="approve")

    dag_run = run_with_people("gmv_daily", people, logical_date=LOGICAL, client_factory=app_client)
    assert dag_run.state == "success"
    (card,) = seen["frank's list"]
    assert (card["metric_key"], card["version"], card["summary"]) == ("gmv_daily", 1, "first version")
    assert card["reviewers"] == ["Frank Zhou", "Alice Wang"]
    assert "+key: gmv_daily" in card["diff"] and "sql metrics/gmv_daily.sql" in card["diff"]
    assert seen["carol's list"]["definitions"] == []  # not a reviewer
    assert (
        "Definitions to sign off" in seen["frank's page"]
        and 'action="/metrics-center/definitions/gmv_daily/1"' in seen["frank's page"]
    )
    assert seen["values before"] == 0  # approved values, but nothing published under an unsigned definition
    # Approvers were told before answering that the definition still waits for its sign-off.
    assert "**The definition awaits its sign-off** by Frank Zhou, Alice Wang" in seen["evidence"]
    assert seen["cross-site"] == 403
    assert seen["carol"] == "carol is not a definition reviewer of sales (frank, alice)"
    assert (
        seen["frank"] == "Signed off definition v1 of gmv_daily: values computed under it may be published."
    )
    assert _values(mart) == 12
    # The reviewers were asked in their chats once (the owner alice, a reviewer too, is not asked).
    with mart.connect() as conn:
        asked = conn.execute(
            sa.text(
                "SELECT recipient, channel FROM notification WHERE kind = 'definition_signoff' ORDER BY 1, 2"
            )
        ).all()
    assert [tuple(a) for a in asked] == [("frank", "slack")]
    with mart.connect() as conn:
        audit = conn.execute(
            sa.select(approval_event.c.stage, approval_event.c.decision, approval_event.c.decided_by)
            .where(approval_event.c.run_id == "definition")
            .order_by(approval_event.c.id)
        ).all()
    assert [tuple(a) for a in audit] == [
        ("definition v1", "refused_attempt", "carol"),
        ("definition v1", "approved", "frank"),
    ]
