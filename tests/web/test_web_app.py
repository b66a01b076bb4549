"""The Metrics Center plugin app in Airflow's own api-server app (in-process): registration, Airflow's
auth on every route, and the dictionary, audit and CSV read back against the mart."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from airflow_api import PREFIX, bearer, token

REPO = Path(__file__).resolve().parents[2]
HISTORY_FIRST, HISTORY_END = date(2026, 11, 18), date(2026, 11, 27)  # 8 published days of each daily metric


@pytest.fixture(scope="module")
def client(plugin):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app())


def test_the_plugin_mounts_the_app_a_nav_entry_and_a_dag_tab(client, plugin):
    plugins, errors = plugin._get_plugins()
    names = {p.name: p for p in plugins}
    assert "metrics_center" in names, errors
    assert [(a["name"], a["url_prefix"]) for a in names["metrics_center"].fastapi_apps] == [
        ("metrics_center", PREFIX)
    ]
    info = client.get("/api/v2/plugins", headers=bearer(client, "bob")).json()["plugins"]
    views = {v["name"]: v for p in info if p["name"] == "metrics_center" for v in p["external_views"]}
    assert (views["Metrics Center"]["destination"], views["Metrics Center"]["url_route"]) == (
        "nav",
        "metrics-center",
    )
    assert views["Metric"]["href"] == f"{PREFIX}/metrics/{{DAG_ID}}"
    assert (views["Metric"]["destination"], views["Metric"]["url_route"]) == ("dag", "metric")
    # No schema or docs of our own: they would be served without Airflow's auth.
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(PREFIX + path, headers=bearer(client, "bob")).status_code == 404


ROUTES = [
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/metrics/gmv_daily"),
    ("GET", "/audit"),
    ("GET", "/static/charts.js"),
    ("GET", "/api/approvals"),
    ("GET", "/api/metrics"),
    ("GET", "/api/metrics/gmv_daily"),
    ("GET", "/api/metrics/gmv_daily/values?format=csv"),
    ("GET", "/api/audit"),
    ("POST", "/api/approvals/gmv_daily/manual__x/approve_sales_review"),
    ("POST", "/approvals/gmv_daily/manual__x/approve_sales_review"),
    ("POST", "/api/definitions/gmv_daily/1"),
    ("POST", "/definitions/gmv_daily/1"),
]


def _forged(client) -> str:
    """A token for bob signed with a secret Airflow does not know."""
    real = jwt.decode(token(client, "bob"), options={"verify_signature": False})
    return jwt.encode(real, "not-the-secret-" + "x" * 64, algorithm="HS512")


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_an_airflow_login(client, mart, method, path):
    json_api = "/api/approvals/" in path or "/api/definitions/" in path
    body = {"json": {"option": "Approve"}} if json_api else {"data": {"action": "approve"}}
    kwargs = body if method == "POST" else {}
    anonymous = client.request(method, PREFIX + path, **kwargs)
    assert anonymous.status_code == 401, anonymous.text
    forged = client.request(
        method, PREFIX + path, headers={"Authorization": f"Bearer {_forged(client)}"}, **kwargs
    )
    assert forged.status_code in (401, 403), forged.text
    client.cookies.set("_token", _forged(client))
    try:
        assert client.request(method, PREFIX + path, **kwargs).status_code in (401, 403)
    finally:
        client.cookies.clear()


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_the_ui_cookie_logs_in_and_a_browser_gets_a_login_link(client, mart):
    client.cookies.set("_token", token(client, "bob"))
    try:
        page = client.get(PREFIX + "/", headers={"accept": "text/html"})
    finally:
        client.cookies.clear()
    assert page.status_code == 200
    assert "Bob Li" in page.text and "Nothing waits for you, Bob Li" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    refused = client.get(PREFIX + "/metrics", headers={"accept": "text/html"})
    assert refused.status_code == 401
    assert "Log in to Airflow" in refused.text and "/auth/login" in refused.text
    assert client.get(PREFIX + "/api/metrics").json() == {"detail": "Not authenticated"}


@pytest.fixture
def published(mart, demo_data):
    """8 days of each daily metric published to the mart by the demo's own history seeding."""
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    specs = [catalog.metrics[k].spec for k in ("gmv_daily", "lead_conversion_rate")]
    seed_history(engine=mart, specs=specs, first=HISTORY_FIRST, end=HISTORY_END)
    return mart


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_dictionary_search_and_a_metric_page_read_the_mart(client, published):
    headers = bearer(client, "carol")
    listing = client.get(PREFIX + "/api/metrics", headers=headers).json()["metrics"]
    assert [m["key"] for m in listing] == [
        "gmv_daily",
        "lead_conversion_rate",
        "refund_rate_daily",
        "refund_rate_weekly",
        "refunds_daily",
    ]
    gmv = listing[0]
    assert gmv["owner"] == {"key": "alice", "name": "Alice Wang"}
    assert (gmv["department"]["name"], gmv["version"], gmv["registered_version"]) == ("Sales", 1, 1)
    assert listing[2]["registered_version"] is None  # never run: nothing registered yet

    def search(**params):
        return [
            m["key"]
            for m in client.get(PREFIX + "/api/metrics", params=params, headers=headers).json()["metrics"]
        ]

    assert search(q="成交额") == ["gmv_daily"]
    assert search(q="alice gmv") == ["gmv_daily"]
    assert search(department="marketing") == ["lead_conversion_rate"]
    assert search(owner="nobody") == []

    detail = client.get(PREFIX + "/api/metrics/gmv_daily", headers=headers).json()
    assert detail["timezone"] == "UTC" and detail["dimensions"] == ["region", "channel"]
    stages = detail["approval"]["stages"]
    assert [(s["name"], [p["name"] for p in s["people"]]) for s in stages] == [
        ("sales review", ["Bob Li"]),
        ("finance sign-off", ["Carol Zhang", "Dave Chen"]),
    ]
    assert "orders" in detail["sources"][0]["sql"].lower()
    assert detail["transform"]["sql"] and detail["versions"][0]["change_note"] == "First definition."
    with published.connect() as conn:
        latest = conn.execute(
            sa.text("SELECT max(period_start) FROM metric_value_current WHERE metric_key='gmv_daily'")
        ).scalar()
        expected = {
            (json.dumps(json.loads(d) if isinstance(d, str) else d, sort_keys=True), v)
            for d, v in conn.execute(
                sa.text(
                    "SELECT dimensions, value FROM metric_value_current WHERE metric_key='gmv_daily' "
                    "AND period_start = (SELECT max(period_start) FROM metric_value_current WHERE metric_key='gmv_daily')"
                )
            )
        }
    assert str(latest)[:10] == "2026-11-25"  # 11-26 is left for the live run to ask about
    assert {(json.dumps(r["dimensions"], sort_keys=True), r["value"]) for r in detail["latest"]} == expected
    assert len(detail["charts"]) == 12 and all(len(c["x"]) == 8 for c in detail["charts"])
    assert detail["publications"][0]["approved_by"] == "demo history (seeded, not reviewed)"

    page = client.get(PREFIX + "/metrics/gmv_daily", headers=headers)
    assert page.status_code == 200
    for text in ("GMV (成交额)", "Alice Wang", "Carol Zhang", "Version history", "First definition."):
        assert text in page.text
    assert page.text.count('class="mc-chart"') == 12
    assert client.get(PREFIX + "/metrics/no_such_metric", headers=headers).status_code == 404

    # Lineage both ways, and each version's change with its diff.
    assert detail["lineage"] == {
        "upstream": [],
        "downstream": [{"key": "refund_rate_daily", "name": "Refund rate (退款率, daily)"}],
    }
    derived = client.get(PREFIX + "/api/metrics/refund_rate_daily", headers=headers).json()
    assert [u["key"] for u in derived["lineage"]["upstream"]] == ["gmv_daily", "refunds_daily"]
    assert [s["kind"] for s in derived["sources"]] == ["metric", "metric"]
    assert 'href="/metrics-center/metrics/refund_rate_daily"' in page.text.replace(PREFIX, "/metrics-center")
    from metrics_center import settings
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.definitions.meaning import load_definition
    from metrics_center.mart.definitions import register_definition

    spec = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir()).metrics["gmv_daily"].spec
    v2 = spec.model_copy(update={"version": 2, "unit": "CNY thousand", "change_note": "In thousands."})
    definition = load_definition(v2)
    register_definition(
        published, spec=v2, definition=definition.document, definition_hash=definition.meaning_hash
    )
    changes = client.get(PREFIX + "/api/metrics/gmv_daily", headers=headers).json()["version_changes"]
    assert changes["1"]["summary"] == "first version"
    assert changes["2"]["breaking"] is True and "unit: CNY → CNY thousand" in changes["2"]["summary"]
    assert "+unit: CNY thousand" in changes["2"]["diff"]
    page = client.get(PREFIX + "/metrics/gmv_daily", headers=headers).text
    assert 'id="v2"' in page and "<summary>diff</summary>" in page and "breaking</span>" in page


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_the_csv_download_streams_every_current_value(client, published):
    response = client.get(PREFIX + "/api/metrics/gmv_daily/values?format=csv", headers=bearer(client, "erin"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="gmv_daily_values.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "metric_key", "period_start", "period_end", "region", "channel", "value", "unit",
        "definition_version", "run_id", "approved_by", "published_at", "dimensions",
    ]  # fmt: skip
    with published.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT period_start, value FROM metric_value_current WHERE metric_key='gmv_daily'")
        ).all()
    assert len(rows) == len(stored) == 8 * 12
    assert sorted((r["period_start"], float(r["value"])) for r in rows) == sorted(
        (str(p)[:10], v) for p, v in stored
    )
    assert {r["region"] for r in rows} == {"east", "west", "north", "south"}
    window = client.get(
        PREFIX + "/api/metrics/gmv_daily/values?from=2026-11-24&to=2026-11-25", headers=bearer(client, "erin")
    ).json()
    assert len(window) == 24 and {v["period_start"] for v in window} == {"2026-11-24", "2026-11-25"}


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_the_audit_lists_every_event_newest_first_filtered_and_paginated(client, mart):
    from metrics_center.approvals.rules import record_attempt

    for i in range(60):
        record_attempt(
            mart,
            metric_key="gmv_daily" if i % 2 else "lead_conversion_rate",
            run_id=f"manual__{i:02d}",
            stage="sales review" if i % 2 else "marketing review",
            person="bob" if i % 3 else "mallory",
            via="page" if i % 2 else "slack",
            decision="refused_attempt" if i % 3 == 0 else "submitted",
            detail="mallory is not an approver" if i % 3 == 0 else "Approve",
            reason=None,
        )
    headers = bearer(client, "dave")
    everything = client.get(PREFIX + "/api/audit", headers=headers).json()
    assert everything["total"] == 60 and len(everything["events"]) == 50
    assert [e["run_id"] for e in everything["events"][:3]] == ["manual__59", "manual__58", "manual__57"]
    second = client.get(PREFIX + "/api/audit?page=2", headers=headers).json()["events"]
    assert [e["run_id"] for e in second][-1] == "manual__00" and len(second) == 10
    refused = client.get(
        PREFIX + "/api/audit", params={"person": "mallory", "metric": "gmv_daily"}, headers=headers
    ).json()
    assert refused["total"] == 10
    assert {(e["decision"], e["via"], e["stage"]) for e in refused["events"]} == {
        ("refused_attempt", "page", "sales review")
    }
    today = datetime.now(UTC).date().isoformat()
    assert (
        client.get(PREFIX + f"/api/audit?since={today}&until={today}", headers=headers).json()["total"] == 60
    )
    assert client.get(PREFIX + "/api/audit?until=2020-01-01", headers=headers).json()["total"] == 0

    page = client.get(PREFIX + "/audit?person=mallory&page=1", headers=headers)
    assert page.status_code == 200
    assert page.text.count('class="decision-refused_attempt"') == 20
    assert "mallory is not an approver" in page.text


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_one_page_of_cards_reads_histories_in_one_go_exactly_as_one_by_one(published):
    """My approvals builds a page of cards with ``histories``: the same rows ``history`` gives per card."""
    from datetime import timedelta

    from metrics_center.web import queries

    cutoffs = [HISTORY_END, HISTORY_END - timedelta(days=3), None, HISTORY_FIRST]
    batched = queries.histories(published, "gmv_daily", periods=4, befores=cutoffs)
    for before in cutoffs:
        one = queries.history(published, "gmv_daily", periods=4, before=before)
        assert batched[before] == one, before
    assert len({r["period_start"] for r in batched[HISTORY_END]}) == 4
    assert batched[HISTORY_FIRST] == []
