"""Airflow's own api-server app with the repo's plugins loaded, for the page, API and Slack endpoint tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin(airflow_db):
    """Airflow's plugin manager loading the repo's plugins/ (as AIRFLOW__CORE__PLUGINS_FOLDER does)."""
    import sys

    from airflow import plugins_manager, settings

    def reset() -> None:
        for value in vars(plugins_manager).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()

    before = settings.PLUGINS_FOLDER
    settings.PLUGINS_FOLDER = str(REPO / "plugins")
    sys.path.append(settings.PLUGINS_FOLDER)
    reset()
    yield plugins_manager
    settings.PLUGINS_FOLDER = before
    sys.path.remove(str(REPO / "plugins"))
    reset()
