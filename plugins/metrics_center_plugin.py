"""Airflow plugin: the Metrics Center pages at /metrics-center, a nav entry and a "Metric" tab on DAG pages.

Kept thin on purpose: Airflow imports plugins in every component (also in each task's process), so
this file imports nothing heavy; the app is built on the api-server's first request.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from metrics_center.web.app import URL_PREFIX, lazy_app


class MetricsCenterPlugin(AirflowPlugin):
    name = "metrics_center"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"name": "metrics_center", "app": lazy_app(), "url_prefix": URL_PREFIX}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            # Opens inside Airflow's UI as /plugin/metrics-center (an iframe of our page).
            "name": "Metrics Center",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "metrics-center",
        },
        {
            # A tab on every DAG's page; Airflow 3.3 fills {DAG_ID} (also {RUN_ID}, {TASK_ID}, {MAP_INDEX}).
            "name": "Metric",
            "href": f"{URL_PREFIX}/metrics/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "metric",
        },
    ]
