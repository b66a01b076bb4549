"""Slack approval messages as people read them, and signed requests as slack-sdk verifies them."""

from __future__ import annotations

import json

from slack_support import BASE_URL, SIGNING_SECRET, form, request_payload, signed


def test_signed_requests_verify_with_slack_sdk():
    from slack_sdk.signature import SignatureVerifier

    body = form({"type": "block_actions"})
    headers = signed(body)
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)


def test_request_reads_well_and_its_buttons_name_the_try():
    from metrics_center.notify.approval_messages import APPROVE_ACTION, REJECT_ACTION, ActionRef
    from metrics_center.notify.blocks import Item
    from metrics_center.notify.slack import render_group

    message = render_group([Item(kind="approval_request", payload=request_payload())])
    text = json.dumps(message.blocks, ensure_ascii=False)
    assert message.blocks[0]["text"]["text"] == "🟡 Approve GMV — 2026-11-26"
    assert "Carol Zhang, your answer is needed. Any one of Carol Zhang, Dave Chen may answer." in text
    assert "answer by *2026-11-28 10:00 UTC*; after that it is rejected" in text
    assert "Total: *65,859.87 CNY* over 12 row(s)" in text  # value and change
    assert (
        "• region=east, channel=app: *18,200.00 CNY* (previous 13,190.00 CNY, change +5,010.00 (+38.0%))"
        in text
    )
    assert "_… and 10 more row(s) on the Metrics Center page_" in text
    assert "*Anomalies* (1" in text and "*Quality checks*: 3/4 passed" in text
    assert "• `orders`: 1,024 rows from sales_db" in text  # rows per source
    assert "Definition v3: Refunds now net of fees." in text
    assert "*Earlier stages*: sales review: approved by bob" in text
    assert "# GMV" not in text  # the definition after --- is left to the linked pages
    actions = message.blocks[-1]["elements"]
    assert [a["action_id"] for a in actions] == [
        APPROVE_ACTION,
        REJECT_ACTION,
        "metrics_center_page",
        "metrics_center_required_actions",
    ]
    ref = ActionRef.decode(actions[0]["value"])
    assert (ref.dag_id, ref.task_id, ref.try_number) == ("gmv_daily", "approve_finance_sign_off", 1)
    assert actions[2]["url"] == f"{BASE_URL}/metrics-center/"
    assert message.text.startswith(
        "Approval needed: GMV (gmv_daily) 2026-11-26, stage finance sign-off. Total:"
    )
    assert len(message.blocks) <= 50 and all(len(json.dumps(b)) < 3500 for b in message.blocks)


def test_people_without_slack_ids_are_asked_together_in_the_channel():
    from metrics_center.notify.blocks import Item
    from metrics_center.notify.slack import render_group

    items = [
        Item(
            kind="approval_request",
            payload=request_payload(person="carol", person_name="Carol Zhang", slack_user_id=None),
        ),
        Item(
            kind="approval_request",
            payload=request_payload(person="dave", person_name="Dave Chen", slack_user_id=None),
        ),
    ]
    text = json.dumps(render_group(items).blocks, ensure_ascii=False)
    assert "Asked: Carol Zhang, Dave Chen (no chat id of theirs in _teams.yaml: posted here)." in text


def test_update_says_who_what_when_and_drops_the_buttons():
    from metrics_center.notify.approval_messages import Decision
    from metrics_center.notify.blocks import Item
    from metrics_center.notify.slack import render_group

    decision = Decision(outcome="rejected", by="Dave Chen", at=None, via="slack", reason="refunds look low")
    payload = {
        "target_id": 1,
        "request": request_payload(),
        "decision": {**decision.as_payload(), "at": "2026-11-27T10:02:00+00:00"},
    }
    message = render_group([Item(kind="approval_update", payload=payload)])
    text = json.dumps(message.blocks, ensure_ascii=False)
    assert message.blocks[0]["text"]["text"] == "❌ finance sign-off: GMV — 2026-11-26"
    assert "❌ *Rejected* by *Dave Chen* at 2026-11-27 10:02 UTC via Slack\\n>refunds look low" in text
    assert "metrics_center_approve" not in text and "metrics_center_page" in text
    assert message.text.startswith("❌ Rejected by Dave Chen at 2026-11-27 10:02 UTC via Slack")


def test_an_unreadable_payload_still_renders():
    from metrics_center.notify.blocks import Item
    from metrics_center.notify.slack import render_group

    message = render_group([Item(kind="approval_request", payload={"evidence": None})])
    assert message.blocks and message.text
