"""The same DAGs on Airflow's distributed executor, staging on object storage — nothing home-made.

A real installation on loopback: api-server, scheduler, dag-processor, triggerer and **two Celery workers as
separate processes with separate working directories** (Redis broker on 127.0.0.1:6379, Postgres metadata),
staging on a real S3-compatible server (moto's server mode on 127.0.0.1) reached through the Airflow
connection ``aws_default``. Two demo metrics run end to end with their approvals answered through the REST
API; the mart gets their values; the staged data is in the bucket and nowhere on the workers' disks; and the
task instances' ``hostname`` shows that one run's tasks ran on both workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)

REPO = Path(__file__).resolve().parents[2]
LOGICAL = "2026-11-27T00:00:00+00:00"
RUN_ID = "celery__2026-11-27"
PEOPLE = ("bob", "carol", "dave", "erin", "frank")
BUCKET = "metrics-center"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
WORKERS = ["worker-a", "worker-b"]
PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on loopback, with the staging bucket."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=url, **KEYS)
        client.create_bucket(Bucket=BUCKET)
        yield url, client
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def databases():
    """Two throwaway Postgres databases: Airflow's metadata (Celery needs a real database) and the mart."""
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    names = {k: f"mc_test_celery_{uuid.uuid4().hex[:8]}_{k}" for k in ("af", "mart")}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    urls = {
        k: sa.make_url(PG_ADMIN_URL).set(database=n).render_as_string(hide_password=False)
        for k, n in names.items()
    }
    yield urls
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def celery(tmp_path_factory, databases, s3, demo_data):
    import redis

    root = tmp_path_factory.mktemp("celery")
    include = root / "include"
    shutil.copytree(REPO / "include", include)
    for path in (include / "metrics").glob("[!_]*.yaml"):  # only our runs
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith("schedule:") and "inputs" not in line:
                text = text.replace(line, "schedule: null")
        path.write_text(text)
    broker_db = 11
    broker = redis.Redis(host="127.0.0.1", port=6379, db=broker_db)
    broker.flushdb()
    endpoint, _client = s3
    port = _free_port()
    af = databases["af"].replace("postgresql://", "postgresql+psycopg://")
    env = airflow_environment(
        home=root / "airflow",
        port=port,
        passwords={"admin": "admin", **{p: f"{p}-pw" for p in PEOPLE}},
        roles={"admin": "admin", **{p: "user" for p in PEOPLE}},
        extra={
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + databases["af"],
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "metrics_center.orchestration.celery_config.CELERY_CONFIG",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "METRICS_CENTER_HOME": str(include),
            "METRICS_CENTER_DATA_ROOT": str(demo_data.root),
            "METRICS_CENTER_STAGING": f"s3://{BUCKET}/staging",
            # DuckDB reads the staged parts in place from the bucket (the default downloads them first,
            # which tests/demo/test_demo.py exercises on fsspec's memory filesystem).
            "METRICS_CENTER_STAGING_READ": "direct",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": KEYS["aws_access_key_id"],
                    "password": KEYS["aws_secret_access_key"],
                    "extra": {"endpoint_url": endpoint, "region_name": KEYS["region_name"]},
                }
            ),
            "AIRFLOW_CONN_METRICS_MART": databases["mart"],
            "AIRFLOW_CONN_SALES_DB": os.environ["AIRFLOW_CONN_SALES_DB"],
        },
    )
    airflow = LocalAirflow(env=env, port=port)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")
    airflow.run("metrics-center", "pools", "sync")  # extracts of a limited source wait for their pool
    airflow.start(components=("api-server", "scheduler", "dag-processor", "triggerer"))
    airflow.start_celery_workers(names=WORKERS, concurrency=1)
    try:
        admin = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", admin.healthy)
        airflow.wait_for_dags(admin, ["gmv_daily", "lead_conversion_rate"])
        yield (
            airflow,
            admin,
            sa.create_engine(databases["mart"].replace("postgresql://", "postgresql+psycopg://")),
        )
    finally:
        airflow.stop()
        broker.flushdb()


def _answer(airflow: LocalAirflow, dag_id: str, task_id: str, user: str) -> None:
    # Waits for the scheduler to handle the parked worker's exit: Airflow 3.3.2 fails a task answered earlier.
    airflow.wait_parked(airflow.api(user="admin", password="admin"), dag_id, RUN_ID, task_id)
    airflow.api(user=user, password=f"{user}-pw").patch(
        f"/api/v2/dags/{dag_id}/dagRuns/{RUN_ID}/taskInstances/{task_id}/-1/hitlDetails",
        {"chosen_options": ["Approve"], "params_input": {}},
    )


def test_two_metrics_run_across_two_celery_workers_with_staging_on_s3(celery, s3):
    airflow, admin, mart = celery
    _endpoint, client = s3
    for dag_id in ("gmv_daily", "lead_conversion_rate"):
        admin.post(f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": LOGICAL})
        admin.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
    _answer(airflow, "gmv_daily", "approve_sales_review", "bob")
    _answer(airflow, "lead_conversion_rate", "approve", "frank")
    _answer(airflow, "gmv_daily", "approve_finance_sign_off", "carol")

    def finished():
        states = {
            d: admin.get(f"/api/v2/dags/{d}/dagRuns/{RUN_ID}")["state"]
            for d in ("gmv_daily", "lead_conversion_rate")
        }
        return states if all(s in ("success", "failed") for s in states.values()) else None

    assert airflow.wait("both runs to finish", finished, timeout=240) == {
        "gmv_daily": "success",
        "lead_conversion_rate": "success",
    }

    with mart.connect() as conn:
        rows = dict(
            conn.execute(
                sa.text(
                    "SELECT metric_key, count(*) FROM metrics_mart.metric_value_current "
                    "WHERE period_start = '2026-11-26' GROUP BY 1"
                )
            ).all()
        )
    assert rows == {"gmv_daily": 12, "lead_conversion_rate": 4}

    # One run's tasks ran on both workers (each records its own name as the task instance's hostname).
    tis = admin.get(f"/api/v2/dags/gmv_daily/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    hosts = {t["task_id"]: t["hostname"] for t in tis if t["state"] == "success"}
    assert set(hosts.values()) == set(WORKERS), hosts
    lead = admin.get(f"/api/v2/dags/lead_conversion_rate/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    assert {t["hostname"] for t in lead if t["state"] == "success"} <= set(WORKERS)

    # Every staged part is in the bucket; no worker kept a staged file on its own disk.
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    for source in ("orders", "refunds", "settlements"):
        assert any(k.startswith(f"staging/gmv_daily/{RUN_ID}/sources/{source}/part-") for k in keys), source
    assert any(k.startswith(f"staging/gmv_daily/{RUN_ID}/result/part-") for k in keys)
    for worker in WORKERS:
        leftovers = [p for p in (airflow.home / "workers" / worker).rglob("*.parquet")]
        assert leftovers == [], leftovers

    # Each worker imported the task libraries once, before forking its tasks (metrics_center.orchestration.celery_config).
    for worker in WORKERS:
        log = (airflow.home / "component-logs" / f"worker-{worker}.log").read_text(errors="replace")
        assert "metrics_center: preloaded" in log, log[-2000:]


def test_staging_init_creates_the_bucket_through_the_connection(s3, monkeypatch, capsys):
    from metrics_center.cli.app import main

    endpoint, client = s3
    connection = {
        "conn_type": "aws",
        "login": KEYS["aws_access_key_id"],
        "password": KEYS["aws_secret_access_key"],
        "extra": {"endpoint_url": endpoint, "region_name": KEYS["region_name"]},
    }
    monkeypatch.setenv("METRICS_CENTER_STAGING", "s3://fresh-staging/metrics")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    assert main(["staging", "init"]) == 0
    assert "staging ready at s3://fresh-staging/metrics (connection aws_default)" in capsys.readouterr().out
    assert client.get_object(Bucket="fresh-staging", Key="metrics/.metrics-center")["Body"].read()
    monkeypatch.setenv("METRICS_CENTER_STAGING_CONN", "no_such_connection")
    assert main(["staging", "init"]) == 1
    assert "connection no_such_connection" in capsys.readouterr().err
