"""Definition sign-off (申请 → 审批): which versions wait for a department's reviewers, who may sign them off,
and that nothing computed under a pending or rejected version is published."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.approvals.definition_signoff import (
    RUN_ID,
    pending_definitions,
    rejected_refusal,
    sign_off,
    signoff_state,
)
from metrics_center.definitions.meaning import load_definition
from metrics_center.definitions.spec import Teams
from metrics_center.errors import PublishRefused, SignoffPending
from metrics_center.i18n.translate import using
from metrics_center.mart.definitions import register_definition
from metrics_center.mart.tables import approval_event

pytestmark = pytest.mark.parametrize("mart", ["sqlite", "postgres"], indirect=True)


def _teams(*, reviewers: list[str] | None = None) -> Teams:
    return Teams.model_validate(
        {
            "departments": {
                "sales": {"name": "Sales", "definition_reviewers": reviewers if reviewers is not None else ["bob", "alice"]},
                "finance": {"name": "Finance"},
            },
            "people": {
                "alice": {"name": "Alice", "department": "sales"},
                "bob": {"name": "Bob", "department": "sales"},
                "carol": {"name": "Carol", "department": "finance"},
            },
        }
    )  # fmt: skip


def _register(engine, spec, teams, **kwargs):
    definition = load_definition(spec)
    return register_definition(
        engine, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash, teams=teams, **kwargs
    )  # fmt: skip


def _events(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(approval_event.c.stage, approval_event.c.decision, approval_event.c.decided_by)
            .where(approval_event.c.run_id == RUN_ID)
            .order_by(approval_event.c.id)
        ).all()


def test_first_and_breaking_versions_wait_for_the_reviewers_others_do_not(mart):
    teams = _teams()
    _register(mart, metric_spec(), teams)
    assert signoff_state(mart, metric_key="m", version=1).status == "pending"
    _register(mart, metric_spec(), teams)  # the same version again: unchanged, still pending
    assert signoff_state(mart, metric_key="m", version=1).status == "pending"
    # v2 changes only the words people read: not breaking, no sign-off
    _register(mart, metric_spec(version=2, change_note="clearer", description="clearer words"), teams)
    assert signoff_state(mart, metric_key="m", version=2).status == "not_required"
    # v3 counts in another currency: breaking, waits again
    _register(
        mart, metric_spec(version=3, change_note="in dollars", description="clearer words", unit="USD"), teams
    )
    assert signoff_state(mart, metric_key="m", version=3).status == "pending"
    # every_version: even a non-breaking version waits
    _register(mart, metric_spec(version=4, change_note="x", description="again", unit="USD",
                                definition_signoff="every_version"), teams)  # fmt: skip
    assert signoff_state(mart, metric_key="m", version=4).status == "pending"
    assert [(p.metric_key, p.version) for p in pending_definitions(mart, teams=teams, person="bob")] == [
        ("m", 4),
        ("m", 3),
        ("m", 1),
    ]
    assert pending_definitions(mart, teams=teams, person="carol") == []  # not a reviewer of sales


def test_departments_without_reviewers_and_seeded_versions_need_no_signoff(mart):
    _register(mart, metric_spec(key="f", department="finance", owner="carol"), _teams())
    assert signoff_state(mart, metric_key="f", version=1).status == "not_required"
    _register(mart, metric_spec(), _teams(), announced=True)  # demo history: a version already in use
    assert signoff_state(mart, metric_key="m", version=1).status == "not_required"
    _register(mart, metric_spec(key="n"), None)  # no _teams.yaml at all
    assert signoff_state(mart, metric_key="n", version=1).status == "not_required"


def test_only_a_reviewer_who_is_not_the_owner_signs_off_and_every_attempt_is_audited(mart):
    teams = _teams()
    _register(mart, metric_spec(), teams)

    def answer(person, option="Approve", reason=None):
        return sign_off(mart, teams=teams, metric_key="m", version=1, person=person, option=option,
                        reason=reason, via="page")  # fmt: skip

    carol = answer("carol")
    assert (carol.status, str(carol.message)) == (
        "refused",
        "carol is not a definition reviewer of sales (bob, alice)",
    )
    alice = answer("alice")
    assert alice.status == "refused" and "alice owns m and cannot sign off their own definition" in str(
        alice.message
    )
    with using("zh-CN"):
        assert "不能签核自己的定义" in alice.message.shown()
    assert answer("bob", "Reject").status == "invalid"  # no reason: nothing recorded
    assert signoff_state(mart, metric_key="m", version=1).status == "pending"
    bob = answer("bob")
    assert (bob.status, str(bob.message)) == (
        "recorded",
        "Signed off definition v1 of m: values computed under it may be published.",
    )
    state = signoff_state(mart, metric_key="m", version=1)
    assert (state.status, state.by) == ("approved", "bob")
    late = answer("bob", "Reject", "changed my mind")
    assert late.status == "already_decided" and "already approved by bob" in str(late.message)
    assert _events(mart) == [
        ("definition v1", "refused_attempt", "carol"),
        ("definition v1", "refused_attempt", "alice"),
        ("definition v1", "approved", "bob"),
        ("definition v1", "refused_attempt", "bob"),
    ]


def test_the_owner_may_reject_their_own_proposal(mart):
    teams = _teams()
    _register(mart, metric_spec(), teams)
    outcome = sign_off(mart, teams=teams, metric_key="m", version=1, person="alice", option="Reject",
                       reason="wrong join, will fix", via="page")  # fmt: skip
    assert outcome.status == "recorded"
    assert signoff_state(mart, metric_key="m", version=1).status == "rejected"
    # Later runs of the rejected version stop at their first task: nobody is asked about its numbers in vain.
    assert rejected_refusal(mart, metric_key="m", version=1) == (
        "m definition v1 was rejected by alice: wrong join, will fix — nothing is computed or published under it; "
        "fix the definition, bump its version and it is proposed again"
    )
    _register(mart, metric_spec(version=2, change_note="fixed join", unit="USD"), teams)
    assert rejected_refusal(mart, metric_key="m", version=2) is None


def test_publish_waits_for_a_pending_version_and_refuses_a_rejected_one(mart):
    from datetime import date

    from metrics_center.mart.runs import get_run, start_run
    from metrics_center.tasks.publish_run import wait_for_signoff

    teams = _teams()
    spec = metric_spec()
    _register(mart, spec, teams)
    definition = load_definition(spec)
    from metrics_center.definitions.periods import period_containing

    run, _ = start_run(
        mart,
        metric_key="m",
        run_id="r1",
        definition_version=1,
        definition_hash=definition.meaning_hash,
        timezone="UTC",
        periods=[period_containing(date(2026, 11, 26), grain="day")],
        restatement=False,
        is_active=lambda run_id: False,
    )
    with pytest.raises(SignoffPending, match="m definition v1 waits for its sign-off by bob, alice"):
        wait_for_signoff(mart, spec=spec, run=run, teams=teams)
    sign_off(
        mart, teams=teams, metric_key="m", version=1, person="bob", option="Reject", reason="no", via="page"
    )
    with pytest.raises(PublishRefused, match="was rejected by bob: no"):
        wait_for_signoff(mart, spec=spec, run=run, teams=teams)
    assert get_run(mart, metric_key="m", run_id="r1").state == "refused"
