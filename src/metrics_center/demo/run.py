"""``make demo``: Airflow (SQLite metadata) + the mart + the demo company, every metric awaiting approval.

Seeds the demo company and 75 days of published history, starts api-server, scheduler and
dag-processor sized for a small machine, unpauses every metric and waits until each metric's latest
run asks a human for approval. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import date
from pathlib import Path

from metrics_center.local_airflow import REPO, LocalAirflow, airflow_environment

PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8080"))
    home = Path(os.environ.get("DEMO_AIRFLOW_HOME", REPO / ".airflow"))
    data_root = Path(os.environ.get("METRICS_CENTER_DATA_ROOT", REPO / "demo_data"))
    sales_db = {"conn_type": "sqlite", "host": str(data_root / "sales" / "sales.db")}
    env = airflow_environment(
        home=home,
        port=port,
        passwords={"admin": "admin", **{p: p for p in PEOPLE}},
        roles={"admin": "admin", **{p: "user" for p in PEOPLE}},
        extra={"METRICS_CENTER_DATA_ROOT": str(data_root), "AIRFLOW_CONN_SALES_DB": json.dumps(sales_db)},
    )
    airflow = LocalAirflow(env=env, port=port)
    today = date.today().isoformat()

    print("• initialising Airflow metadata (SQLite) and the metrics mart …", flush=True)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")
    airflow.run("metrics-center", "demo", "seed", "--end", today)
    airflow.run("metrics-center", "validate")

    def stop(*_args) -> None:
        print("\n• stopping Airflow …", flush=True)
        airflow.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    airflow.start()
    try:
        print("• publishing 75 days of history to the mart while Airflow starts …", flush=True)
        airflow.run("metrics-center", "demo", "history", "--end", today)
        api = airflow.api(user="admin", password="admin")
        airflow.wait("the API server", api.healthy)
        metrics = sorted(p.stem for p in (REPO / "include" / "metrics").glob("[!_]*.yaml"))
        airflow.wait_for_dags(api, metrics)
        # Unpausing is all it takes: with catchup off, the scheduler creates each metric's latest
        # scheduled run (yesterday for daily metrics, the last ISO week for the weekly one).
        for dag_id in metrics:
            api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

        def latest_runs() -> dict[str, str] | None:
            found = {}
            for dag_id in metrics:
                runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-logical_date&limit=1")["dag_runs"]
                if runs:
                    found[dag_id] = runs[0]["dag_run_id"]
            return found if len(found) == len(metrics) else None

        runs = airflow.wait("the scheduler to create the runs", latest_runs, every=2.0)
        print("• running extract → transform → quality_check for each metric …", flush=True)

        def waiting() -> dict[str, str] | None:
            found = {}
            for dag_id, run_id in runs.items():
                states = airflow.task_states(api, dag_id, run_id)
                if "failed" in states.values():
                    raise RuntimeError(f"{dag_id} failed: {states}; see the task logs in the UI")
                asking = [t for t, s in states.items() if t.startswith("approve") and s == "awaiting_input"]
                if asking:
                    found[dag_id] = asking[0]
            return found if len(found) == len(runs) else None

        awaiting = airflow.wait("every metric to wait for approval", waiting, every=2.0)
    except BaseException:
        airflow.stop()
        raise
    print(
        f"\nMetrics Center demo is up: http://localhost:{port}\n"
        "  log in as admin/admin to watch the runs, or as an approver (password = user name):\n"
    )
    for dag_id, task_id in awaiting.items():
        print(f"  • {dag_id}: {task_id} is waiting — Browse → Required Actions")
    print(
        "\n  approvers: gmv_daily → bob, then carol or dave; lead_conversion_rate → erin or frank;"
        "\n             refund_rate_weekly → carol or dave, then frank"
        f"\n  the mart (SQLite): {home / 'metrics_mart.db'} — query metric_value_current"
        "\n\nCtrl-C stops everything.",
        flush=True,
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
