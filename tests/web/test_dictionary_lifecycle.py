"""The dictionary and a metric's page for a deprecated and a retired metric: badges, the status filter, what to use
instead — and a retired metric's published history still read (values, charts, publications, CSV rows, its BI
relation)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from metrics_center.web import dictionary, queries
from metrics_center.web.render import render_page

REPO = Path(__file__).resolve().parents[2]
RETIRED, DEPRECATED = "lead_conversion_rate", "gmv_daily"
FIRST, END = date(2026, 11, 20), date(2026, 11, 24)  # a few published days


def _lifecycle(home: Path, key: str, lines: str) -> None:
    path = home / "metrics" / f"{key}.yaml"
    text = path.read_text()
    marker = next(line for line in text.splitlines() if line.startswith("grain:"))
    path.write_text(text.replace(marker, f"{marker}\n{lines}", 1))


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    from metrics_center.definitions.loader import load_catalog

    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    _lifecycle(home, RETIRED, "status: retired\nreplaced_by: gmv_daily")
    _lifecycle(home, DEPRECATED, "status: deprecated\nreplaced_by: refunds_daily")
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    found = load_catalog(home / "metrics", sql_root=home / "sql")
    assert found.problems == {}
    return found


@pytest.fixture
def retired_history(mart, demo_data, catalog):
    """lead_conversion_rate published for 4 days, then retired (the catalog above)."""
    from metrics_center.demo.history import seed_history

    active = catalog.metrics[RETIRED].spec.model_copy(update={"status": "active", "replaced_by": None})
    seed_history(engine=mart, specs=[active], first=FIRST, end=END)
    return mart


def _page(template: str, *, locale: str = "en", **values) -> str:
    viewer = SimpleNamespace(user_id="carol", name="Carol Zhang", person="carol", locale=locale)
    return render_page(
        template,
        locale=locale,
        viewer=viewer,
        section="dictionary",
        base="/metrics-center",
        quote=lambda v: quote(str(v), safe=""),
        **values,
    )


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_the_dictionary_badges_and_filters_deprecated_and_retired_metrics(catalog, retired_history):
    keys = sorted(catalog.metrics)
    every = dictionary.entries(catalog, retired_history, keys, dictionary.Search())
    by_key = {e["key"]: e for e in every}
    assert by_key[RETIRED]["status"] == "retired"
    assert by_key[RETIRED]["replaced_by"] == {"key": "gmv_daily", "name": "GMV (成交额)"}
    assert by_key[DEPRECATED]["replaced_by"] == {"key": "refunds_daily", "name": "Refunds (退款额)"}
    assert by_key["refunds_daily"]["status"] == "active" and by_key["refunds_daily"]["replaced_by"] is None

    def found(**search) -> list[str]:
        return [
            e["key"] for e in dictionary.entries(catalog, retired_history, keys, dictionary.Search(**search))
        ]

    assert found(status="retired") == [RETIRED]
    assert found(status="deprecated") == [DEPRECATED]
    assert RETIRED not in found(status="active") and len(found(status="active")) == len(keys) - 2
    assert found(q="retired") == [RETIRED]  # the status is words of the free-text search too

    choices = dictionary.filter_choices(catalog)
    assert choices["statuses"] == ["active", "deprecated", "retired"]
    search = dictionary.Search(status="retired")
    page = _page("dictionary.html", entries=every, search=search, choices=choices)
    assert '<option value="retired" selected>retired</option>' in page
    assert '<span class="badge retired">retired</span>' in page
    assert '<span class="badge deprecated">deprecated</span>' in page
    assert '<a href="/metrics-center/metrics/refunds_daily">Refunds (退款额)</a>' in page
    chinese = _page("dictionary.html", locale="zh-CN", entries=every, search=search, choices=choices)
    assert '<span class="badge retired">已归档</span>' in chinese and ">全部状态</option>" in chinese


@pytest.mark.parametrize("mart", ["postgres", "sqlite"], indirect=True)
def test_a_retired_metrics_page_says_so_and_its_published_history_stays_readable(catalog, retired_history):
    spec = catalog.metrics[RETIRED].spec
    detail = dictionary.detail(catalog, retired_history, spec)
    assert detail["status"] == "retired" and detail["replaced_by"]["key"] == "gmv_daily"
    published = list(queries.stream_values(retired_history, RETIRED, since=None, until=None))
    newest = max(str(r["period_start"])[:10] for r in published)
    assert detail["latest"] and str(detail["latest"][0]["period_start"])[:10] == newest
    assert detail["charts"] and detail["publications"] and detail["versions"]

    page = _page("metric.html", metric=detail)
    assert '<span class="badge retired">retired</span>' in page
    assert "This metric is retired: no new periods are computed." in page
    assert (
        '<strong>Use instead:</strong> <a href="/metrics-center/metrics/gmv_daily">GMV (成交额)</a>' in page
    )
    assert "Download all published values (CSV)" in page
    chinese = _page("metric.html", locale="zh-CN", metric=detail)
    assert "此指标已归档" in chinese and "请改用：" in chinese

    deprecated = dictionary.detail(catalog, retired_history, catalog.metrics[DEPRECATED].spec)
    assert "This metric is deprecated: it is still computed and published for now" in _page(
        "metric.html", metric=deprecated
    )

    # The CSV download's rows and the BI relation: every published value, as before the retirement.
    relation = "metrics." + RETIRED if retired_history.dialect.name == "postgresql" else "metrics__" + RETIRED
    with retired_history.connect() as conn:
        in_bi = conn.execute(sa.text(f"SELECT count(*) FROM {relation}")).scalar()
    assert len(published) == in_bi > 0
