"""A Superset import bundle (``metrics-center bi superset``): database, one dataset per metric, charts, a dashboard.

Each dataset is the metric's relation (``metrics.<key>``, typed dimension columns) with every column's
description, ``period_start`` as its time column and one saved metric that totals the metric the only right way:
``SUM(value)`` for additive metrics, ``SUM(numerator) / SUM(denominator)`` for ratios, and for the others
``MAX(value)`` with a warning to group by every dimension (their values do not add up). Number formats follow
the unit. A deprecated or retired metric says so, and what replaces it, in its dataset's and saved metric's
description and as the saved metric's warning. A "Metrics Center" dashboard has one chart per metric at its grain. The format is Superset's own
export format (``metadata.yaml`` + YAML per object, version 1.0.0), imported with
``superset import-dashboards -p bundle.zip -u admin`` or Settings → Import dashboards.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from metrics_center.mart.comments import HISTORY_COLUMNS, lifecycle_words, relation_comments

if TYPE_CHECKING:
    from metrics_center.definitions.spec import MetricSpec

ROOT = "metrics_center_bundle"
DASHBOARD_TITLE = "Metrics Center"
TIME_GRAINS = {"day": "P1D", "week": "P1W", "month": "P1M"}
_NAMESPACE = uuid.UUID(
    "6f1d7c1e-5a3b-4c8e-9a2d-4d0c6b1e2f30"
)  # stable uuids: re-import updates, not duplicates
_CURRENCIES = {"CNY", "USD", "EUR", "JPY", "GBP", "HKD"}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True, kw_only=True)
class BundleTarget:
    """Where Superset reads the mart: a database name for Superset, the URI it connects with, the schema."""

    database_name: str = "Metrics Center mart"
    sqlalchemy_uri: str
    schema: str | None = "metrics"  # Postgres; None on SQLite (relations are metrics__<key>)


def saved_metric(spec: MetricSpec, *, replacement: str | None = None) -> dict[str, Any]:
    """The one way this metric totals, as a Superset saved metric named after the metric key; ``replacement``:
    the name of the metric a deprecated or retired one is replaced by."""
    number = _d3format(spec.unit)
    if spec.is_ratio:
        expression, words = "SUM(numerator) / NULLIF(SUM(denominator), 0)", "ratio of the sums"
        warning = None
    elif spec.aggregation == "sum":
        expression, words, warning = "SUM(value)", "sum", None
    else:
        expression, words = "MAX(value)", "one value per row"
        warning = (
            f"{spec.name} does not add up: group by every dimension ({', '.join(spec.dimensions) or 'none'})."
        )
    status = lifecycle_words(spec, replacement=replacement)
    if status:  # Superset shows the warning beside the metric wherever it is picked
        warning = f"{status} {warning}" if warning else status
    metric: dict[str, Any] = {
        "metric_name": spec.key,
        "verbose_name": spec.name,
        "metric_type": None,
        "expression": expression,
        "description": (f"{status} " if status else "") + f"{spec.name} ({words}); {spec.description}",
        "d3format": number,
        "extra": {},
        "warning_text": warning,
    }
    if spec.unit.upper() in _CURRENCIES:
        metric["currency"] = {"symbol": spec.unit.upper(), "symbolPosition": "prefix"}
    return metric


def _d3format(unit: str) -> str:
    if unit in ("%", "percent"):
        return ",.2f"
    if unit == "ratio":
        return ".2%"
    if unit.lower() in ("count", "orders", "rows", "people"):
        return ",d"
    return ",.2f"


def _columns(spec: MetricSpec, *, replacement: str | None) -> list[dict[str, Any]]:
    comments = relation_comments(spec, replacement=replacement)[0]["current"]
    types = {
        "period_start": "DATE",
        "period_end": "DATE",
        "definition_version": "INTEGER",
        "published_at": "TIMESTAMP WITH TIME ZONE",
        **dict.fromkeys(["value", "numerator", "denominator"], "DOUBLE PRECISION"),
    }
    names = [
        "period_start",
        "period_end",
        "period",
        *spec.dimensions,
        "value",
        *(["numerator", "denominator"] if spec.is_ratio else []),
        "unit",
        "definition_version",
        "approved_by",
        "published_at",
    ]
    return [
        {
            "column_name": name,
            "verbose_name": name.replace("_", " ") if name not in spec.dimensions else name,
            "is_dttm": name in ("period_start", "period_end", "published_at"),
            "is_active": True,
            "type": types.get(name, "TEXT"),
            "groupby": name not in ("value", "numerator", "denominator"),
            "filterable": True,
            "expression": None,
            "description": comments.get(name) or HISTORY_COLUMNS.get(name),
            "python_date_format": None,
            "extra": {},
        }
        for name in names
    ]


def _dataset(spec: MetricSpec, target: BundleTarget, *, replacement: str | None = None) -> dict[str, Any]:
    return {
        "table_name": spec.key if target.schema else f"metrics__{spec.key}",
        "main_dttm_col": "period_start",
        "description": relation_comments(spec, replacement=replacement)[1]["current"],
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "schema": target.schema,
        "sql": None,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": {
            "metrics_center": {"metric_key": spec.key, "grain": spec.grain, "aggregation": spec.aggregation}
        },
        "uuid": _uuid("dataset", spec.key),
        "metrics": [saved_metric(spec, replacement=replacement)],
        "columns": _columns(spec, replacement=replacement),
        "version": "1.0.0",
        "database_uuid": _uuid("database", target.database_name),
    }


def _chart(spec: MetricSpec) -> dict[str, Any]:
    return {
        "slice_name": spec.name,
        "description": spec.description,
        "viz_type": "echarts_timeseries_line",
        "params": {
            "viz_type": "echarts_timeseries_line",
            "x_axis": "period_start",
            "time_grain_sqla": TIME_GRAINS[spec.grain],
            "metrics": [spec.key],
            "groupby": [],
            "adhoc_filters": [],
            "row_limit": 10000,
            "truncate_metric": True,
            "show_legend": True,
        },
        "query_context": None,
        "cache_timeout": None,
        "uuid": _uuid("chart", spec.key),
        "version": "1.0.0",
        "dataset_uuid": _uuid("dataset", spec.key),
    }


def _dashboard(specs: Sequence[MetricSpec]) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": DASHBOARD_TITLE}},
    }
    for row_index in range(0, len(specs), 3):
        row_id = f"ROW-{row_index // 3}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for spec in specs[row_index : row_index + 3]:
            chart_id = f"CHART-{spec.key}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                # chartId: any number here; Superset maps charts by uuid on import and rewrites it.
                "meta": {
                    "width": 4,
                    "height": 50,
                    "chartId": specs.index(spec) + 1,
                    "uuid": _uuid("chart", spec.key),
                    "sliceName": spec.name,
                },
            }
    return {
        "dashboard_title": DASHBOARD_TITLE,
        "description": "Every governed metric: approved values only, one chart per metric at its grain.",
        "css": "",
        "slug": "metrics-center",
        "uuid": _uuid("dashboard", "metrics-center"),
        "position": position,
        "metadata": {"color_scheme": "supersetColors", "refresh_frequency": 0, "expanded_slices": {}},
        "version": "1.0.0",
        "published": True,
    }


def superset_bundle(
    *, specs: Sequence[MetricSpec], target: BundleTarget, now: datetime | None = None
) -> bytes:
    """The ZIP Superset imports: ``metadata.yaml``, the database, a dataset and a chart per metric, the dashboard."""
    specs = sorted(specs, key=lambda s: s.key)
    names = {s.key: s.name for s in specs}
    database = {
        "database_name": target.database_name,
        "sqlalchemy_uri": target.sqlalchemy_uri,
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_csv_upload": False,
        "extra": {"allows_virtual_table_explore": True},
        "uuid": _uuid("database", target.database_name),
        "version": "1.0.0",
    }
    files = {
        "metadata.yaml": {
            "version": "1.0.0",
            "type": "Dashboard",
            "timestamp": (now or datetime.now(UTC)).isoformat(),
        },
        "databases/metrics_center_mart.yaml": database,
        **{
            f"datasets/metrics_center_mart/{s.key}.yaml": _dataset(
                s, target, replacement=names.get(s.replaced_by or "")
            )
            for s in specs
        },
        **{f"charts/{s.key}.yaml": _chart(s) for s in specs},
        "dashboards/metrics_center.yaml": _dashboard(specs),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(f"{ROOT}/{name}", yaml.safe_dump(content, allow_unicode=True, sort_keys=False))
    return buffer.getvalue()
