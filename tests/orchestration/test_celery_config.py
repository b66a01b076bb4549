"""The Celery settings our workers load: Airflow's own, plus task libraries imported once per worker."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow  # a separate process
def test_the_config_is_airflows_and_importing_it_imports_no_task_library():
    # The scheduler reads the same setting: the module must stay light there.
    code = (
        "import sys; from metrics_center.orchestration.celery_config import CELERY_CONFIG;"
        "from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG;"
        "assert CELERY_CONFIG == DEFAULT_CELERY_CONFIG, 'not airflow defaults';"
        "heavy = [m for m in ('great_expectations', 'duckdb', 'pandas') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_preload_imports_what_tasks_need_and_skips_a_broken_module():
    from metrics_center.orchestration.celery_config import PRELOADED_MODULES, preload

    took, failed = preload(
        modules=("duckdb", "metrics_center.no_such_module", "metrics_center.tasks.transform")
    )
    assert set(took) == {"duckdb", "metrics_center.tasks.transform"}
    assert all(seconds >= 0 for seconds in took.values())
    assert failed == {
        "metrics_center.no_such_module": "ModuleNotFoundError: No module named 'metrics_center.no_such_module'"
    }
    assert "great_expectations" in PRELOADED_MODULES
    assert "metrics_center.tasks.quality_gate" in PRELOADED_MODULES
