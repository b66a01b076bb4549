"""Every message people read in a chat, in English and in 简体中文: the catalogue is complete and current, and
rendering each message kind in zh-CN with a strict translator meets no string left untranslated."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest
from slack_support import request_payload

from metrics_center.i18n.translate import catalogue, negotiate, normalize, translator, using
from metrics_center.notify.blocks import Item
from metrics_center.notify.feishu_cards import card
from metrics_center.notify.markdown import from_blocks
from metrics_center.notify.robots import DingTalkRobot
from metrics_center.notify.slack import render_group

REPO = Path(__file__).resolve().parents[2]
PO = REPO / "src" / "metrics_center" / "i18n" / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
CJK = re.compile(r"[\u4e00-\u9fff]")
RUN = "scheduled__2026-11-27T00:00:00+00:00"


def _anomaly(i: int) -> dict:
    return {
        "metric_key": "gmv_daily",
        "metric_name": "GMV",
        "unit": "CNY",
        "period": f"2026-11-{20 + i % 2}",
        "run_id": RUN,
        "dag_id": "gmv_daily",
        "dimensions": {"region": f"r{i}"},
        "value": 17000.0 + i,
        "expected": 12400.0,
        "band_low": 11300.0,
        "band_high": 13500.0,
        "score": 4.0 + i / 10,
        "method": ["zscore", "mad", "pct_change"][i % 3],
        "definition_version": 1,
    }


def _decision(outcome: str) -> dict:
    return {
        "target_id": 1,
        "request": request_payload(),
        "decision": {
            "outcome": outcome,
            "by": "Carol Zhang",
            "at": "2026-11-27T10:02:00+00:00",
            "via": "feishu",
            "reason": "numbers look low" if outcome == "rejected" else None,
            "detail": "the owner may not approve alone" if outcome == "refused" else None,
        },
    }


#: One group per message kind and variant, every branch that writes words.
GROUPS: dict[str, list[Item]] = {
    "anomaly, several periods and more than the top": [Item("anomaly", _anomaly(i)) for i in range(12)],
    "quality failure": [
        Item(
            "quality_failure",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "period": "2026-11-26",
                "run_id": RUN,
                "dag_id": "gmv_daily",
                "failed": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "region"},
                        "observed": 3,
                    },
                    {"expectation": None},
                ],
            },
        )
    ],
    "reconciliation, blocking and warning, with an error": [
        Item(
            "reconciliation",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "unit": "CNY",
                "period": "2026-11-26",
                "run_id": RUN,
                "dag_id": "gmv_daily",
                "name": "settled_cash",
                "severity": severity,
                "tolerance": {"pct": 1, "abs": 5},
                "ours": 65859.87,
                "theirs": 65000.0,
                "difference": 859.87,
                "by": ["region"] if severity == "block" else [],
                "rows": [
                    {
                        "dimensions": {"region": "east"},
                        "ours": 1.0,
                        "theirs": 2.0,
                        "difference": -1.0,
                        "within": False,
                    },
                    {
                        "dimensions": {"region": "west"},
                        "ours": 1.0,
                        "theirs": 1.0,
                        "difference": 0.0,
                        "within": True,
                    },
                ],
                **({"error": "the settlement file is missing"} if severity == "warn" else {}),
            },
        )
        for severity in ("block", "warn")
    ],
    "approval request to a person": [Item("approval_request", request_payload())],
    "approval request in a group, several approvers": [
        Item(
            "approval_request",
            request_payload(person_name=name, person=name, slack_user_id=None, direct=False),
        )
        for name in ("Carol Zhang", "Dave Chen")
    ],
    "reminder, on_timeout approve": [
        Item("approval_reminder", request_payload(kind="approval_reminder", on_timeout="approve"))
    ],
    **{
        f"decided: {outcome}": [Item("approval_update", _decision(outcome))]
        for outcome in (
            "approved",
            "rejected",
            "approved_on_timeout",
            "rejected_on_timeout",
            "timed_out",
            "refused",
            "superseded",
            "closed",
            "something new",
        )
    },
    "new metric": [
        Item(
            "definition_change",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "new_version": 1,
                "change_note": "First version.",
            },
        )
    ],
    "breaking change with columns, impact, long diff and why": [
        Item(
            "definition_change",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "unit": "CNY",
                "old_version": 1,
                "new_version": 2,
                "breaking": True,
                "change_note": "East books marketplace fees as GMV.",
                "changes": ["transform.sql changed"],
                "takes_effect": "the next run",
                "columns": {"added": ["channel"], "removed": ["store"]},
                "downstream": ["refund_rate_daily"],
                "why": ["gmv_daily belongs to your department"],
                "preview": {
                    "periods": ["2026-11-20", "2026-11-21"],
                    "headline": "+10%",
                    "largest": [
                        {"period": "2026-11-20", "dimensions": {}, "old": 1.0, "new": 1.1, "rel": 0.1}
                    ],
                },
                "diff": "x\n" * 3000,
            },
        )
    ],
    "a definition to sign off": [
        Item(
            "definition_signoff",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "dag_id": "gmv_daily",
                "version": 2,
                "first": False,
                "change_note": "Marketplace fees count as GMV.",
                "owner": "alice",
                "owner_name": "Alice Wang",
                "reviewers": ["Frank Zhou"],
            },
        )
    ],
    "non-breaking change whose preview failed": [
        Item(
            "definition_change",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "old_version": 2,
                "new_version": 3,
                "breaking": False,
                "change_note": "Typo.",
                "preview": {"error": "DuckDB failed"},
            },
        )
    ],
    "restatement of many periods": [
        Item(
            "history_changed",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "unit": "CNY",
                "version": 2,
                "approved_by": "carol",
                "explicit": explicit,
                "why": ["you own refund_rate_daily"],
                "periods": [
                    {
                        "period": f"2026-11-{d:02d}",
                        "old_total": 1.0,
                        "new_total": 2.0,
                        "old_rows": 3,
                        "new_rows": 3,
                    }
                    for d in range(1, 14)
                ],
            },
        )
        for explicit in (True,)
    ],
    "metric deprecated, with a replacement, metrics built on it and why": [
        Item(
            "metric_deprecated",
            {
                "metric_key": "gmv_daily",
                "metric_name": "GMV",
                "dag_id": "gmv_daily",
                "status": "deprecated",
                "replaced_by": "net_gmv_daily",
                "replaced_by_name": "Net GMV",
                "owner": "alice",
                "owner_name": "Alice Wang",
                "downstream": ["refund_rate_daily"],
                "why": ["you own refund_rate_daily, which is built on gmv_daily"],
            },
        )
    ],
    "metric deprecated, no replacement, nothing built on it": [
        Item(
            "metric_deprecated",
            {"metric_key": "gmv_daily", "metric_name": "GMV", "status": "deprecated", "owner": "alice"},
        )
    ],
    "an anomaly of a deprecated metric": [
        Item("anomaly", {**_anomaly(0), "metric_status": "deprecated", "replaced_by": "net_gmv_daily"})
    ],
    "an anomaly of a deprecated metric with no replacement": [
        Item("anomaly", {**_anomaly(1), "metric_status": "deprecated", "replaced_by": None})
    ],
    "decided: approved, a retired metric": [
        Item(
            "approval_update",
            {
                **_decision("approved"),
                "request": request_payload(metric_status="retired", replaced_by="net_gmv_daily"),
            },
        )
    ],
    "a request about a retired metric with no replacement": [
        Item("approval_request", request_payload(metric_status="retired", replaced_by=None))
    ],
    "a kind nobody renders": [Item("something_else", {"metric_key": "gmv_daily", "period": "2026-11-26"})],
}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_catalogue_is_complete_and_its_placeholders_match():
    from babel.messages.pofile import read_po

    with PO.open("rb") as handle:
        catalog = read_po(handle)
    messages = [m for m in catalog if m.id]
    assert len(messages) > 100
    for message in messages:
        msgid = message.id[0] if isinstance(message.id, tuple) else message.id
        translated = message.string[0] if isinstance(message.string, tuple) else message.string
        assert translated, f"no translation for {msgid!r}"
        assert not message.fuzzy, f"fuzzy translation for {msgid!r}"
        assert _placeholders(translated) == _placeholders(msgid) | (
            {"count"} if isinstance(message.id, tuple) else set()
        ) or _placeholders(translated) == _placeholders(msgid), msgid


def test_the_catalogue_holds_exactly_the_strings_of_the_code():
    """`make messages` was run: every _("…") in the code has a catalogue entry, and no entry is stale."""
    from babel.messages.extract import extract_from_dir

    found = {
        (message[0] if isinstance(message, tuple) else message)
        for _, _, message, _, _ in extract_from_dir(
            str(REPO / "src" / "metrics_center"),
            method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
            keywords={"_": None, "n_": (1, 2), "N_": None},
        )
    }
    assert set(catalogue("zh-CN")) == found


@pytest.mark.parametrize("name", list(GROUPS))
def test_every_message_kind_reads_in_chinese_with_nothing_left_in_english(name):
    strict = translator("zh-CN", strict=True)
    with using(strict):
        message = render_group(GROUPS[name], base_url="https://airflow.example.com")
        rich = from_blocks(message, locale="zh-CN")
        feishu = json.dumps(card(rich, token="t0ken"), ensure_ascii=False)
        robot = json.dumps(DingTalkRobot().body(rich, token="t0ken"), ensure_ascii=False)
    assert strict.missing == set(), f"untranslated: {sorted(strict.missing)}"
    blocks = json.dumps(message.blocks, ensure_ascii=False)
    assert CJK.search(blocks), blocks[:300]
    if name != "a kind nobody renders":  # its fallback is the kind's name and the raw payload, on purpose
        assert CJK.search(message.text), message.text
    assert CJK.search(feishu) and CJK.search(robot)


@pytest.mark.parametrize("name", list(GROUPS))
def test_the_same_messages_in_english_have_no_chinese(name):
    message = render_group(GROUPS[name], base_url="https://airflow.example.com", locale="en")
    text = json.dumps(message.blocks, ensure_ascii=False) + message.text
    assert not CJK.search(text.replace("成交额", "")), text[:300]


def test_a_request_card_in_chinese_has_chinese_buttons_and_the_same_reference():
    items = GROUPS["approval request to a person"]
    en = card(from_blocks(render_group(items, locale="en")))
    zh = card(from_blocks(render_group(items, locale="zh-CN"), locale="zh-CN"))

    def buttons(c: dict) -> list[tuple[str, str]]:
        form = next(e for e in c["body"]["elements"] if e.get("tag") == "form")
        columns = next(e for e in form["elements"] if e.get("tag") == "column_set")["columns"]
        return [
            (b["text"]["content"], b["behaviors"][0]["value"]["ref"])
            for col in columns
            for b in col["elements"]
        ]

    assert [label for label, _ in buttons(zh)] == ["批准", "驳回"]
    assert [label for label, _ in buttons(en)] == ["Approve", "Reject"]
    assert [ref for _, ref in buttons(zh)] == [ref for _, ref in buttons(en)]
    assert zh["header"]["title"]["content"].startswith("🟡 审批 GMV — 2026-11-26")


def test_locales_are_read_from_teams_and_browsers():
    assert normalize("zh_CN") == normalize("zh-Hans-CN") == normalize("zh") == "zh-CN"
    assert normalize("zh-TW") == normalize("fr") == normalize(None) == "en"
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert negotiate("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert negotiate("fr-FR, zh;q=0.5") == "zh-CN"
    assert negotiate("de, fr") == negotiate(None) == negotiate("zh-CN;q=0") == "en"


def _evidence_inputs(**overrides) -> dict:
    """Evidence with every branch that writes words: totals, restatement of several periods, an impact
    preview, a published period, anomalies, a blocking and a warn-only reconciliation, earlier stages."""
    reconcile = {
        "expectation": "reconcile:settled_cash",
        "kwargs": {"by": ["region"], "tolerance": {"pct": 1}},
        "severity": "warn",
        "success": False,
        "observed": {
            "ours": 100.0,
            "theirs": 90.0,
            "mismatched": 1,
            "compared": 4,
            "rows": [{"dimensions": {"region": "east"}, "ours": 50.0, "theirs": 40.0, "within": False}],
        },
    }
    inputs = {
        "name": "GMV",
        "unit": "CNY",
        "period": "2026-11-26 (day, Asia/Shanghai)",
        "stage": "finance sign-off",
        "previous_period": "2026-11-25",
        "rows": 25,
        "total": 1234.5,
        "values": [{"period_start": "2026-11-26", "region": f"r{i}", "value": float(i)} for i in range(25)],
        "previous": {},
        "already_published": {"a": 1.0},
        "sources": [{"source": "orders", "rows": 1200, "origin": "sales_db"}],
        "quality": [
            {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "value"}, "success": True},
            {"expectation": "expect_table_row_count_to_be_between", "kwargs": {}, "success": False},
            reconcile,
            {**reconcile, "kwargs": {"tolerance": {"abs": 5}}, "observed": {"error": "no rows"}},
            {**reconcile, "kwargs": {"tolerance": {"pct": 1}}, "observed": {"ours": 1.0, "theirs": 1.0}},
        ],
        "anomalies": [
            {"dimensions": {"region": "east"}, "value": 9.0, "expected": 4.0, "band_low": 3.0, "band_high": 5.0,
             "score": 4.2, "method": "zscore"},
            {"dimensions": {}, "value": 9.0, "expected": None},
            {"dimensions": {"region": "west"}, "value": 2.0, "expected": 4.0, "band_low": 4.0, "band_high": 4.0,
             "score": None, "method": "mad"},
        ] * 8,
        "earlier_approvals": ["sales review: bob"],
        "reject_only": ["Erin Liu"],
        "signoff_waiting": ["Frank Zhou"],
        "doc": "",
        "restatement": True,
        "impact": {"from_version": 1, "to_version": 2, "periods": ["2026-11-25"], "headline": "+3%",
                   "largest": [{"period": "2026-11-25", "dimensions": {}, "old": 1.0, "new": 1.03}]},
        "previous_total": 1000.0,
    }  # fmt: skip
    return {**inputs, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"by_period": [{"period": f"2026-11-{d}", "old_rows": 1, "new_rows": 2, "old_total": 1.0,
                        "new_total": 2.0} for d in range(1, 40)]},
        {"total": None, "rows": 0, "values": [], "restatement": False, "impact": {"error": "no history"}},
        {"quality": []},
    ],
    ids=["one period", "several periods", "empty, no total, failed preview", "no checks"],
)  # fmt: skip
def test_the_approval_evidence_reads_in_chinese(overrides):
    from metrics_center.approvals.evidence import approval_body

    strict = translator("zh-CN", strict=True)
    with using(strict):
        chinese = approval_body(**_evidence_inputs(**overrides))
    assert strict.missing == set()
    english = approval_body(**_evidence_inputs(**overrides))
    assert not CJK.search(english)
    assert CJK.search(chinese) and chinese != english
    # Numbers, names and codes are data: the same in both.
    for data in ("1,234.50 CNY", "reconcile:settled_cash", "finance sign-off", "sales review: bob"):
        assert (data in chinese) == (data in english), data
    # Who may only reject is said before anyone clicks (Airflow's Required Actions lists them all alike).
    assert "**May reject, not approve**: Erin Liu — the owner is never the only approver" in english
    assert "**可驳回、不可批准**：Erin Liu" in chinese


def test_a_metric_doc_in_the_evidence_reads_in_chinese():
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.meaning import render_doc

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    for entry in catalog.metrics.values():
        strict = translator("zh-CN", strict=True)
        with using(strict):
            chinese = render_doc(entry.spec, path=None)
        assert strict.missing == set(), entry.spec.key
        assert "**数据源**" in chinese and "**审批**" in chinese
        assert "**Sources**" in render_doc(entry.spec, path=None)


def test_the_pages_speak_the_persons_locale_then_the_browsers():
    from types import SimpleNamespace

    from metrics_center.definitions.spec import Teams
    from metrics_center.web.auth import viewer_for

    teams = Teams.model_validate(
        {
            "departments": {"sales": {"name": "Sales", "locale": "zh-CN"}, "data": {"name": "Data"}},
            "people": {
                "alice": {"name": "Alice", "department": "sales"},  # the department's language
                "frank": {"name": "Frank", "department": "data"},  # none: the browser's
                "grace": {
                    "name": "Grace",
                    "department": "sales",
                    "locale": "en",
                },  # her own beats the department's
            },
        }
    )

    def user(name: str):
        return SimpleNamespace(get_id=lambda: name, get_name=lambda: name)

    english_browser, chinese_browser = "en-US,en;q=0.9", "zh-CN,zh;q=0.9"
    assert viewer_for(user("alice"), teams, accept_language=english_browser).locale == "zh-CN"
    assert viewer_for(user("grace"), teams, accept_language=chinese_browser).locale == "en"
    assert viewer_for(user("frank"), teams, accept_language=chinese_browser).locale == "zh-CN"
    assert viewer_for(user("frank"), teams, accept_language=english_browser).locale == "en"
    assert viewer_for(user("mallory"), teams, accept_language=None).locale == "en"
