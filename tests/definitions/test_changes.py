"""Classifying definition changes (breaking or not) and the readable diff, on real documents of the demo's GMV."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from metrics_center.definitions.changes import (
    compare_documents,
    readable_document,
    truncate_diff,
    unified_diff,
)
from metrics_center.definitions.loader import parse_spec
from metrics_center.definitions.meaning import load_definition
from metrics_center.definitions.spec import MetricSpec

INCLUDE = Path(__file__).resolve().parents[2] / "include"


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.delenv("METRICS_CENTER_TIMEZONE", raising=False)


def _gmv(**overrides: Any) -> MetricSpec:
    spec = parse_spec(INCLUDE / "metrics" / "gmv_daily.yaml")
    assert spec is not None
    return MetricSpec.model_validate({**spec.model_dump(mode="json"), **overrides})


def _document(spec: MetricSpec, sql_root: Path = INCLUDE / "sql") -> tuple[dict, str]:
    definition = load_definition(spec, sql_root=sql_root)
    return definition.document, definition.meaning_hash


BASE = _gmv()
APPROVAL = BASE.approval.model_dump(mode="json")


@pytest.mark.parametrize(
    ("overrides", "path", "breaking"),
    [
        ({"grain": "week", "anomaly": None}, "grain", True),
        ({"unit": "USD"}, "unit", True),
        ({"timezone": "Asia/Shanghai"}, "timezone", True),
        ({"dimensions": ["region"], "reconciliations": []}, "dimensions.channel", True),
        ({"dimensions": ["region", "channel", "store"]}, "dimensions.store", False),
        (
            {
                "sources": {
                    **BASE.model_dump()["sources"],
                    "orders": {"conn_id": "replica", "sql": "sales/orders.sql"},
                }
            },
            "sources.orders",
            True,
        ),
        (
            {"sources": {**BASE.model_dump()["sources"], "leads": {"metric": "lead_conversion_rate"}}},
            "sources.leads",
            True,
        ),
        ({"transform": {"sql": "metrics/refund_rate_weekly.sql"}}, "transform", True),
        ({"description": "Paid orders."}, "description", False),
        ({"name": "GMV"}, "name", False),
        ({"formula": "sum(amount)"}, "formula", False),
        ({"owner": "bob"}, "owner", False),
        ({"approval": {**APPROVAL, "timeout": "48h"}}, "approval", False),
        ({"quality": []}, "quality", False),
        ({"schedule": "0 6 * * *"}, "schedule", False),
        ({"subscribers": ["finance"]}, "subscribers", False),
        ({"tags": ["finance"]}, "tags", False),
        ({"anomaly": None}, "anomaly", False),
        ({"reconciliations": []}, "reconciliations", False),
        ({"timezone": "UTC"}, "timezone (written)", False),  # the zone already in effect: periods do not move
    ],
)
def test_each_change_is_classified_and_agrees_with_the_meaning_hash(overrides, path, breaking):
    old_doc, old_hash = _document(BASE)
    new_doc, new_hash = _document(_gmv(**overrides))
    change = compare_documents(old_doc, new_doc)
    assert path in [c.path for c in change.changes], change.summary()
    assert change.breaking is breaking, change.summary()
    # The hash decides what needs a new version; the classification must never disagree with it.
    assert change.meaning_changed is (old_hash != new_hash), change.summary()
    assert change.summary().startswith("breaking" if breaking else "non-breaking")


def test_a_sql_edit_is_breaking_and_names_the_file(tmp_path):
    sql = tmp_path / "sql"
    shutil.copytree(INCLUDE / "sql", sql)
    file = sql / "sales" / "orders.sql"
    file.write_text(file.read_text() + "\n-- replica\n")
    change = compare_documents(_document(BASE)[0], _document(BASE, sql)[0])
    assert [c.path for c in change.changes] == ["sql sales/orders.sql"]
    assert change.breaking and change.meaning_changed
    assert change.summary() == "breaking: sql sales/orders.sql: changed"


def test_breaking_true_forces_breaking_only_for_a_new_version():
    old_doc = _document(BASE)[0]
    bumped = compare_documents(
        old_doc, _document(_gmv(version=2, change_note="x", breaking=True, tags=["t"]))[0]
    )
    assert bumped.breaking and bumped.forced_breaking
    assert bumped.summary() == 'breaking (forced by breaking: true): tags: [] → ["t"]'
    nothing = compare_documents(old_doc, _document(_gmv(version=2, change_note="x", breaking=True))[0])
    assert nothing.summary() == "breaking (forced by breaking: true): no field changed"
    same_version = compare_documents(_document(_gmv(breaking=True))[0], _document(_gmv(breaking=True))[0])
    assert not same_version.breaking and same_version.summary() == "no change"
    assert compare_documents(None, _document(_gmv(breaking=True))[0]).breaking


def test_fields_added_to_the_schema_later_are_not_changes():
    """A version registered before ``breaking``/``preview_periods`` existed compares equal to today's."""
    new_doc = _document(BASE)[0]
    old_doc = {
        **new_doc,
        "spec": {k: v for k, v in new_doc["spec"].items() if k not in ("breaking", "preview_periods")},
    }
    assert compare_documents(old_doc, new_doc).summary() == "no change"
    assert unified_diff(old_doc, new_doc, old_label="v1", new_label="v2") == ""


def test_reconciliation_sql_is_compared_only_when_both_sides_carry_it():
    old_doc = {**_document(BASE)[0], "checks_sql": {"reconcile/x.sql": "SELECT 1"}}
    new_doc = {**_document(BASE)[0], "checks_sql": {"reconcile/x.sql": "SELECT 2"}}
    change = compare_documents(old_doc, new_doc)
    assert change.summary() == "non-breaking: check sql reconcile/x.sql: changed"
    assert not change.meaning_changed
    assert compare_documents(_document(BASE)[0], new_doc).summary() == "no change"  # a mart version has none


def test_unified_diff_has_one_section_per_file_and_leaves_defaults_out(tmp_path):
    sql = tmp_path / "sql"
    shutil.copytree(INCLUDE / "sql", sql)
    file = sql / "metrics" / "gmv_daily.sql"
    file.write_text(file.read_text().replace("WHERE status = 'paid'", "WHERE status = 'paid' AND amount > 0"))
    old_doc = _document(BASE)[0]
    new_doc = _document(_gmv(version=2, change_note="Zero amounts excluded."), sql)[0]
    diff = unified_diff(old_doc, new_doc, old_label="v1", new_label="v2")
    assert "--- v1: gmv_daily.yaml\n+++ v2: gmv_daily.yaml\n" in diff
    assert (
        "-version: 1\n-change_note: First definition.\n+version: 2\n+change_note: Zero amounts excluded.\n"
        in diff
    )
    assert "--- v1: sql metrics/gmv_daily.sql\n+++ v2: sql metrics/gmv_daily.sql\n" in diff
    assert "+    WHERE status = 'paid' AND amount > 0\n" in diff
    assert "sql sales/orders.sql" not in diff  # unchanged files are not repeated
    readable = readable_document(new_doc)
    assert "breaking:" not in readable and "preview_periods" not in readable  # defaults
    assert "aggregation: sum" in readable  # not the default: shown
    assert "-- sales/orders.sql\n" in readable


def test_first_version_diff_adds_everything_and_truncation_says_how_much():
    diff = unified_diff(None, _document(BASE)[0], old_label="(none)", new_label="v1")
    assert diff.startswith("--- (none): gmv_daily.yaml\n+++ v1: gmv_daily.yaml\n@@ -0,0 +1,")
    assert "+key: gmv_daily\n" in diff
    cut, truncated = truncate_diff(diff, max_lines=5)
    assert truncated and len(cut.splitlines()) == 6
    assert cut.endswith(f"… {len(diff.splitlines()) - 5} more line(s)\n")
    assert truncate_diff(diff, max_lines=10_000) == (diff, False)
