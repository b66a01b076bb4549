"""The pieces of the pages that need no Airflow: safe Markdown, labels, chart payloads."""

from __future__ import annotations

from datetime import date

from metrics_center.i18n.translate import using
from metrics_center.web.charts import approval_charts, small_multiples
from metrics_center.web.render import dims_label, fmt_number, markdown_html, render_page


def test_evidence_markdown_renders_tables_and_escapes_html():
    html = markdown_html(
        "**GMV** <script>alert(1)</script>\n\n| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | 2 |\n\n"
        "[click](javascript:alert(1)) [ok](https://example.com)"
    )
    assert "<strong>GMV</strong>" in html and "<table>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img" in html
    assert 'href="javascript:' not in html and 'href="https://example.com"' in html


def test_labels_follow_the_definitions_dimension_order():
    assert (
        dims_label('{"channel":"app","region":"east"}', ["region", "channel"]) == "region=east, channel=app"
    )
    assert dims_label({}) == "(all)"
    assert (fmt_number(0.123456), fmt_number(1234.5, "CNY"), fmt_number(None)) == (
        "0.1235",
        "1,234.50 CNY",
        "—",
    )


def _history():
    return [
        {
            "period_start": date(2026, 11, d),
            "dimensions": {"region": r},
            "value": float(d * (2 if r == "east" else 1)),
        }
        for d in (23, 24, 25)
        for r in ("east", "west")
    ]


def test_an_anomaly_chart_shows_its_band_and_the_new_value():
    anomaly = {
        "period_start": date(2026, 11, 26),
        "dimensions": {"region": "east"},
        "value": 99.0,
        "expected": 48.0,
        "band_low": 44.0,
        "band_high": 52.0,
    }
    (chart,) = approval_charts(
        name="GMV", unit="CNY", dimensions=["region"], additive=True, period_start=date(2026, 11, 26),
        history=_history(), new_rows=[], anomalies=[anomaly],
    )  # fmt: skip
    assert chart["title"] == "GMV — region=east"
    assert chart["series"] == [{"label": "region=east", "values": [46.0, 48.0, 50.0, None]}]
    assert chart["new"]["values"] == [[None, None, None, 99.0]]
    assert chart["band"] == {"low": 44.0, "high": 52.0, "expected": 48.0}


def test_without_anomalies_an_additive_metric_shows_its_total_and_a_ratio_its_combinations():
    new = [{"period_start": date(2026, 11, 26), "dimensions": {}, "value": 80.0}]
    (total,) = approval_charts(
        name="GMV", unit="CNY", dimensions=["region"], additive=True, period_start=date(2026, 11, 26),
        history=_history(), new_rows=new, anomalies=[],
    )  # fmt: skip
    assert total["series"] == [{"label": "total", "values": [69.0, 72.0, 75.0, None]}]
    assert total["new"]["values"] == [[None, None, None, 80.0]]
    rows = [{"period_start": date(2026, 11, 26), "dimensions": {"region": "west"}, "value": 0.3}]
    (ratio,) = approval_charts(
        name="Rate", unit="ratio", dimensions=["region"], additive=False, period_start=date(2026, 11, 26),
        history=_history(), new_rows=rows, anomalies=[],
    )  # fmt: skip
    assert [s["label"] for s in ratio["series"]] == ["region=east", "region=west"]
    assert ratio["new"]["values"] == [[None, None, None, None], [None, None, None, 0.3]]
    multiples = small_multiples(unit="CNY", rows=_history(), order=["region"])
    assert [c["title"] for c in multiples] == ["region=east", "region=west"]  # largest latest value first


def test_error_pages_offer_the_login_without_leaking_markup():
    page = render_page(
        "error.html", status=401, detail="<b>Not authenticated</b>", base="", login="/auth/login?next=x"
    )
    assert "&lt;b&gt;Not authenticated&lt;/b&gt;" in page and 'href="/auth/login?next=x"' in page


def test_an_owner_who_may_not_approve_alone_is_told_before_clicking(mart):
    """The card disables Approve and says why (Reject stays): the rule is the one submitting would apply."""
    from builders import metric_spec

    from metrics_center.definitions.spec import Teams
    from metrics_center.web.approvals_view import _approve_blocked

    teams = Teams.model_validate(
        {
            "departments": {"marketing": {"name": "Marketing"}},
            "people": {
                "erin": {"name": "Erin", "department": "marketing"},
                "frank": {"name": "Frank", "department": "marketing"},
            },
        }
    )
    spec = metric_spec(
        key="leads", department="marketing", owner="erin",
        approval={"stages": [{"name": "marketing review", "approvers": ["erin", "frank"]}]},
    )  # fmt: skip
    blocked = {
        person: _approve_blocked(mart, spec=spec, teams=teams, task_id="approve", run_id="r1", person=person)
        for person in ("erin", "frank")
    }
    assert {person: str(why) if why else None for person, why in blocked.items()} == {
        "erin": "erin owns leads and cannot be the only approver of their own number "
        "(approval.allow_self_approval: false)",
        "frank": None,
    }
    # Shown in the reader's language; the audit keeps the English (str).
    with using("zh-CN"):
        assert blocked["erin"].shown() == (
            "erin 是 leads 的负责人，不能成为自己数字的唯一审批人（approval.allow_self_approval: false）"
        )
