"""Per-department limits: a database is never hit by more than N queries at once, across every metric.

The last test runs 10 metrics on a real scheduler (LocalExecutor, 6 slots): each metric reads a slow
source on the limited connection ``slow_db`` (2 queries at once) and one on the unlimited ``free_db``;
the task instances' start and end times show at most 2 limited extracts at once while the unlimited ones
overlapped more — so the limit, not the executor, held them back.
"""

from __future__ import annotations

import json
import shutil
import socket
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from metrics_center.definitions.loader import load_catalog
from metrics_center.orchestration.pools import (
    PRIORITY_WEIGHTS,
    connection_pool,
    declared_pools,
    department_pool,
    pool_for,
)

REPO = Path(__file__).resolve().parents[2]
SLOW_SQL = """-- a second of waiting on the database, no CPU: the overlaps hold on a busy machine too
SELECT '{{ period_start }}' AS day, count(*) AS rows FROM pg_sleep(1)
"""
# The runs stop at the transform on purpose: this test is about the extracts, and ten quality checks (Great
# Expectations imports) competing with them for the 2 cores only made it slower.
TRANSFORM = "SELECT error('stop: this test measures the extracts') AS value FROM slow\n"


def _home(tmp_path: Path, teams_extra: dict) -> Path:
    home = tmp_path / "include"
    shutil.copytree(REPO / "include", home)
    teams_path = home / "metrics" / "_teams.yaml"
    teams = yaml.safe_load(teams_path.read_text())
    for key, value in teams_extra.items():
        if isinstance(value, dict) and isinstance(teams.get(key), dict):
            for sub, extra in value.items():
                teams[key].setdefault(sub, {}).update(extra)
        else:
            teams[key] = value
    teams_path.write_text(yaml.safe_dump(teams, allow_unicode=True))
    return home


def test_limits_are_declared_per_connection_or_department_and_validated(tmp_path):
    home = _home(
        tmp_path,
        {
            "connections": {"sales_db": {"max_concurrent_queries": 2, "department": "sales"}},
            "departments": {"finance": {"max_concurrent_queries": 3}},
        },
    )
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert catalog.problems == {}
    gmv = catalog.metrics["gmv_daily"].spec
    assert pool_for(spec=gmv, source_name="orders", teams=catalog.teams) == connection_pool("sales_db")
    assert pool_for(spec=gmv, source_name="refunds", teams=catalog.teams) is None  # a file: no database
    derived = catalog.metrics["refund_rate_daily"].spec
    assert (
        pool_for(spec=derived, source_name="gmv", teams=catalog.teams) is None
    )  # the mart, not a department's DB
    weekly = catalog.metrics[
        "refund_rate_weekly"
    ].spec  # finance's metric reading sales_db: the connection wins
    assert pool_for(spec=weekly, source_name="orders", teams=catalog.teams) == connection_pool("sales_db")
    assert {(p.name, p.slots) for p in declared_pools(catalog.teams)} == {
        ("metrics_center__conn__sales_db", 2),
        ("metrics_center__dept__finance", 3),
    }

    broken = _home(
        tmp_path / "b", {"connections": {"sales_db": {"max_concurrent_queries": 0, "department": "nobody"}}}
    )
    problems = [
        str(p)
        for p in load_catalog(broken / "metrics", sql_root=broken / "sql").problems[
            broken / "metrics" / "_teams.yaml"
        ]
    ]
    assert any(
        "connections.sales_db.max_concurrent_queries" in p and "greater than or equal to 1" in p
        for p in problems
    ), problems


def test_extract_tasks_run_in_their_pool_and_priorities_set_the_weight(tmp_path, monkeypatch):
    from metrics_center.orchestration.dag_builder import build_dags

    home = _home(tmp_path, {"connections": {"sales_db": {"max_concurrent_queries": 2}}})
    gmv = home / "metrics" / "gmv_daily.yaml"
    gmv.write_text(gmv.read_text().replace("unit: CNY\n", "unit: CNY\npriority: critical\n"))
    monkeypatch.setenv("METRICS_CENTER_HOME", str(home))
    dags = build_dags()
    tasks = {t.task_id: t for t in dags["gmv_daily"].tasks}
    assert tasks["extract_orders"].pool == connection_pool("sales_db")
    assert tasks["extract_refunds"].pool == "default_pool"
    assert {t.priority_weight for t in tasks.values()} == {PRIORITY_WEIGHTS["critical"]}
    lead = {t.task_id: t for t in dags["lead_conversion_rate"].tasks}
    assert lead["extract_orders"].pool == connection_pool("sales_db")  # marketing's metric, sales' database
    assert {t.priority_weight for t in lead.values()} == {PRIORITY_WEIGHTS["normal"]}
    assert department_pool("sales") not in {t.pool for d in dags.values() for t in d.tasks}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


@pytest.mark.slow  # a separate process
def test_ten_metrics_never_run_more_than_the_limit_on_one_database(tmp_path, postgres_mart_url):
    from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment

    home = _home(tmp_path, {"connections": {"slow_db": {"max_concurrent_queries": 2}}})
    for path in (home / "metrics").glob("[!_]*.yaml"):
        path.unlink()
    (home / "sql" / "bench").mkdir()
    (home / "sql" / "bench" / "slow.sql").write_text(SLOW_SQL)
    (home / "sql" / "bench" / "t.sql").write_text(TRANSFORM)
    for i in range(10):
        (home / "metrics" / f"m{i:02d}.yaml").write_text(
            yaml.safe_dump(
                {
                    "key": f"m{i:02d}",
                    "name": f"M{i}",
                    "description": "d",
                    "department": "sales",
                    "owner": "alice",
                    "version": 1,
                    "change_note": "n",
                    "unit": "rows",
                    "grain": "day",
                    "schedule": None,
                    "sources": {
                        "slow": {"conn_id": "slow_db", "sql": "bench/slow.sql"},
                        "free": {"conn_id": "free_db", "sql": "bench/slow.sql"},
                    },
                    "transform": {"sql": "bench/t.sql"},
                    "approval": {"stages": [{"name": "review", "approvers": ["bob"]}], "timeout": "1s"},
                }
            )
        )
    url = sa.make_url(postgres_mart_url)
    database = json.dumps(
        {
            "conn_type": "postgres",
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "schema": url.database,
        }
    )
    port = _free_port()
    env = airflow_environment(
        home=tmp_path / "airflow",
        port=port,
        passwords={"admin": "admin"},
        roles={"admin": "admin"},
        extra={
            "METRICS_CENTER_HOME": str(home),
            "METRICS_CENTER_STAGING": (tmp_path / "staging").as_uri(),
            "AIRFLOW__CORE__PARALLELISM": "6",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "6",
            "AIRFLOW_CONN_SLOW_DB": database,
            "AIRFLOW_CONN_FREE_DB": database,
            "METRICS_CENTER_MART_URL": f"sqlite:///{tmp_path / 'mart.db'}",
        },
    )
    env.pop("AIRFLOW__CORE__DAGS_FOLDER_OVERRIDE", None)
    airflow = LocalAirflow(env=env, port=port)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")
    airflow.run("metrics-center", "pools", "sync")
    airflow.start()
    try:
        admin = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", admin.healthy)
        dag_ids = [f"m{i:02d}" for i in range(10)]
        airflow.wait_for_dags(admin, dag_ids)
        pools = {p["name"]: p["slots"] for p in admin.get("/api/v2/pools")["pools"]}
        assert pools[connection_pool("slow_db")] == 2
        for dag_id in dag_ids:
            admin.post(
                f"/api/v2/dags/{dag_id}/dagRuns",
                {"dag_run_id": "limit", "logical_date": "2026-11-27T00:00:00+00:00"},
            )
            admin.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

        def extracted() -> dict | None:
            found = {}
            for dag_id in dag_ids:
                for ti in admin.get(f"/api/v2/dags/{dag_id}/dagRuns/limit/taskInstances")["task_instances"]:
                    if ti["task_id"].startswith("extract_"):
                        found[(dag_id, ti["task_id"])] = ti
            done = [ti for ti in found.values() if ti["state"] in ("success", "failed")]
            return found if len(done) == 20 else None

        tis = airflow.wait("every extract to finish", extracted, timeout=300, every=2.0)
    finally:
        airflow.stop()
    assert {ti["state"] for ti in tis.values()} == {"success"}

    def spans(task_id: str) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
            for (_, tid), ti in tis.items()
            if tid == task_id
        ]

    assert {ti["pool"] for (_, tid), ti in tis.items() if tid == "extract_slow"} == {
        connection_pool("slow_db")
    }
    limited, free = _max_overlap(spans("extract_slow")), _max_overlap(spans("extract_free"))
    assert limited <= 2, limited
    assert free > 2, free  # the executor had room: the pool, not the slots, held the limited ones back
