"""Dates mean the business day, templates see only documented variables, DuckDB reads only staged data,
and a result with NULL/NaN/∞ values or duplicate keys is refused before anyone is asked to approve it."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from builders import expected_gmv, metric_spec

from metrics_center.definitions.dimensions import dimensions_key, dimensions_key_sql
from metrics_center.definitions.loader import load_catalog
from metrics_center.definitions.spec import MetricSpec
from metrics_center.errors import MetricsCenterError
from metrics_center.tasks.extract import extract_source
from metrics_center.tasks.runtime import render, template_variables
from metrics_center.tasks.transform import transform

REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"
SHANGHAI_MIDNIGHT = datetime(2026, 11, 26, 16, tzinfo=UTC)  # 2026-11-27 00:00 +08:00


def _spec(**overrides) -> MetricSpec:
    return metric_spec(**{"dimensions": ["region"], "transform": {"sql": "t.sql"}, **overrides})


def _context(instant: datetime, run_id: str = "manual__t") -> dict:
    return {"logical_date": instant, "run_id": run_id}


# --- the business day -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grain", "instant", "expected"),
    [
        (
            "day",
            SHANGHAI_MIDNIGHT,
            {
                "ds": "2026-11-27",
                "period_start": "2026-11-26",
                "period_end": "2026-11-27",
                "period_last_day": "2026-11-26",
            },
        ),
        (
            "week",
            datetime(2026, 11, 29, 18, tzinfo=UTC),  # Monday 2026-11-30 02:00 in Shanghai
            {
                "ds": "2026-11-30",
                "period_start": "2026-11-23",
                "period_end": "2026-11-30",
                "period_last_day": "2026-11-29",
            },
        ),
        (
            "month",
            datetime(2026, 11, 30, 17, tzinfo=UTC),  # 2026-12-01 01:00 in Shanghai
            {
                "ds": "2026-12-01",
                "period_start": "2026-11-01",
                "period_end": "2026-12-01",
                "period_last_day": "2026-11-30",
            },
        ),
    ],
)
def test_template_dates_are_business_dates(grain, instant, expected):
    variables = template_variables(_context(instant), _spec(grain=grain, timezone="Asia/Shanghai"))
    assert {k: variables[k] for k in expected} == expected
    assert variables["timezone"] == "Asia/Shanghai"
    assert variables["logical_date"].endswith("+08:00")


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.region }}",
        "{{ conf.get('core', 'fernet_key') }}",
        "{{ var.value.secret }}",
        "{{ conn.sales_db.password }}",
        "{{ dag_run.conf }}",
        "{{ run_id }}",
    ],
)
def test_templates_see_only_documented_variables(template):
    context = {
        **_context(SHANGHAI_MIDNIGHT),
        "params": {"region": "x' OR 1=1 --"},
        "conf": object(),
        "dag_run": object(),
    }
    with pytest.raises(MetricsCenterError, match="is undefined; templates see only ds, ds_nodash, grain"):
        render(template, context=context, spec=_spec(), what="sql/x.sql")


def test_templates_render_in_the_sandbox():
    with pytest.raises(MetricsCenterError, match="cannot render the template"):
        render(
            "{{ ds.__class__.__mro__[1].__subclasses__() }}",
            context=_context(SHANGHAI_MIDNIGHT),
            spec=_spec(),
        )


@pytest.fixture
def shanghai_include(tmp_path, monkeypatch):
    home = tmp_path / "include"
    shutil.copytree(REPO_INCLUDE, home)
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("METRICS_CENTER_TIMEZONE", "Asia/Shanghai")
    return home


def test_a_shanghai_metric_reads_the_business_days_export(shanghai_include, demo_data):
    """Airflow's UTC `ds` would pick the wrong day's refund export and over-state GMV with all checks green."""
    spec = (
        load_catalog(shanghai_include / "metrics", sql_root=shanghai_include / "sql")
        .metrics["gmv_daily"]
        .spec
    )
    context = _context(SHANGHAI_MIDNIGHT, run_id="scheduled__shanghai")
    staged = {name: extract_source(spec=spec, source_name=name, context=context) for name in spec.sources}
    assert staged["refunds"]["origin"] == "finance/refunds_2026-11-27.csv"
    summary = transform(spec=spec, context=context)
    got = {(v["region"], v["channel"]): v["value"] for v in summary["values"]}
    expected = expected_gmv(demo_data.root, date(2026, 11, 26))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9)


# --- DuckDB, locked down -----------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "home" / "sql").mkdir(parents=True)
    monkeypatch.setenv("METRICS_CENTER_DATA_ROOT", str(data))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri())
    pd.DataFrame({"region": ["east", "west"], "amount": [1.5, 2.5]}).to_csv(data / "s.csv", index=False)
    return tmp_path


def _run_transform(workspace: Path, sql: str, **spec_overrides) -> dict:
    (workspace / "home" / "sql" / "t.sql").write_text(sql)
    spec = _spec(**spec_overrides)
    for name in spec.sources:
        extract_source(spec=spec, source_name=name, context=_context(SHANGHAI_MIDNIGHT))
    return transform(spec=spec, context=_context(SHANGHAI_MIDNIGHT))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT DATE '{{ period_start }}' AS period_start, region, length(line) AS value "
        "FROM read_csv('/etc/passwd', columns={'line': 'VARCHAR'}) CROSS JOIN (SELECT 'east' AS region)",
        "COPY (SELECT 1) TO '/tmp/metrics-center-escape.csv'",
        "ATTACH '/tmp/metrics-center-escape.db'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
    ],
)
def test_the_transform_cannot_reach_outside_the_staged_sources(workspace, sql):
    with pytest.raises(MetricsCenterError, match=r"failed in DuckDB: .*(disabled|locked)"):
        _run_transform(workspace, sql)
    assert not Path("/tmp/metrics-center-escape.csv").exists()


def test_duckdb_casts_timestamps_in_the_business_time_zone(workspace):
    """`CAST(ts AS DATE)` of an instant gives the Shanghai day whatever the host's zone."""
    summary = _run_transform(
        workspace,
        "SELECT CAST(TIMESTAMPTZ '2026-11-26 16:30:00+00' AS DATE) AS period_start, region, amount AS value FROM s",
        timezone="Asia/Shanghai",
    )
    assert summary["periods"] == ["2026-11-27"]


def test_a_source_named_like_an_internal_variable_cannot_shadow_the_result(workspace):
    summary = _run_transform(
        workspace,
        "SELECT DATE '{{ period_start }}' AS period_start, region, amount * 10 AS value FROM relation",
        sources={"relation": {"path": "s.csv"}},
    )
    assert [v["value"] for v in summary["values"]] == [15.0, 25.0]


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("CASE WHEN region = 'west' THEN NULL ELSE amount END", "region=west, value=None"),
        ("CASE WHEN region = 'west' THEN 'NaN'::DOUBLE ELSE amount END", "region=west, value=nan"),
        ("amount / (CASE WHEN region = 'east' THEN 0.0 ELSE 1 END)", "region=east, value=inf"),
    ],
)
def test_null_nan_and_infinite_values_are_refused_naming_the_rows(workspace, expression, shown):
    with pytest.raises(
        MetricsCenterError, match=r"1 row\(s\) whose value is NULL, NaN or infinite"
    ) as refused:
        _run_transform(
            workspace,
            f"SELECT DATE '{{{{ period_start }}}}' AS period_start, region, {expression} AS value FROM s",
        )
    assert f"(period_start=2026-11-25, {shown})" in str(refused.value)


def test_duplicate_keys_are_refused_naming_them(workspace):
    with pytest.raises(MetricsCenterError, match="several rows for the same period_start, region") as refused:
        _run_transform(
            workspace,
            "SELECT DATE '{{ period_start }}' AS period_start, 'east' AS region, amount AS value FROM s",
        )
    assert "(period_start=2026-11-25, region=east, rows=2)" in str(refused.value)


@pytest.mark.parametrize("values", [{"region": "华东", "channel": 'a "b" \\ c'}, {"n": 3, "x": None}, {}])
def test_canonical_dimensions_are_the_same_in_python_and_duckdb(values):
    con = duckdb.connect()
    columns = ", ".join(f'$v{i} AS "{k}"' for i, k in enumerate(values)) or "1 AS unused"
    params = {f"v{i}": v for i, v in enumerate(values.values())}
    sql = f"SELECT {dimensions_key_sql(list(values))} FROM (SELECT {columns})"
    assert con.execute(sql, params).fetchone()[0] == dimensions_key(values)


# --- ratios: the transform returns the parts, the value is computed -------------------------------------------


def test_a_ratio_returns_its_parts_and_the_value_and_total_are_computed(workspace):
    summary = _run_transform(
        workspace,
        "SELECT DATE '{{ period_start }}' AS period_start, region, amount AS numerator, 10 AS denominator FROM s",
        aggregation="ratio",
    )
    rows = {v["region"]: (v["numerator"], v["denominator"], v["value"]) for v in summary["values"]}
    assert rows == {"east": (1.5, 10.0, 0.15), "west": (2.5, 10.0, 0.25)}
    assert summary["total"] == 0.2  # SUM(numerator) / SUM(denominator); here AVG would agree, SUM would not


def test_a_ratio_whose_sql_returns_a_value_is_told_to_return_the_parts(workspace):
    with pytest.raises(
        MetricsCenterError, match=r"aggregation: ratio — return the numerator and the denominator"
    ):
        _run_transform(
            workspace,
            "SELECT DATE '{{ period_start }}' AS period_start, region, amount AS value FROM s",
            aggregation="ratio",
        )


def test_a_ratio_with_a_zero_denominator_is_refused_naming_the_row(workspace):
    with pytest.raises(MetricsCenterError, match=r"1 row\(s\) whose denominator is 0") as refused:
        _run_transform(
            workspace,
            "SELECT DATE '{{ period_start }}' AS period_start, region, amount AS numerator, "
            "CASE WHEN region = 'east' THEN 0 ELSE 4 END AS denominator FROM s",
            aggregation="ratio",
        )
    assert "region=east, numerator=1.5, denominator=0.0" in str(refused.value)


def test_dimensions_are_staged_as_text(workspace):
    summary = _run_transform(
        workspace,
        "SELECT DATE '{{ period_start }}' AS period_start, 7 AS store, SUM(amount) AS value FROM s",
        dimensions=["store"],
    )
    assert summary["values"][0]["store"] == "7"
