"""``make demo``: Airflow (SQLite metadata) + the mart + the demo company, every metric awaiting approval.

Seeds the demo company and 75 days of published history, starts api-server, scheduler and
dag-processor sized for a small machine, unpauses every metric and waits until each metric's latest
run asks a human for approval. Ctrl-C stops everything it started.

The api-server listens on 127.0.0.1 only: the demo passwords are public. ``DEMO_HOST=0.0.0.0`` opens it
to the network on purpose (with a warning); ``DEMO_PORT`` changes the port (default 8080).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from metrics_center.orchestration.local_airflow import (
    DEFAULT_HOST,
    REPO,
    LocalAirflow,
    airflow_environment,
    listen_notice,
)

PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")
MAINTENANCE_DAG = "metrics_center_maintenance"


@dataclass(frozen=True)
class DemoSetup:
    home: Path
    host: str
    port: int
    env: dict[str, str]


def demo_setup(*, environ: Mapping[str, str]) -> DemoSetup:
    """The demo's Airflow environment from ``DEMO_HOST``, ``DEMO_PORT``, ``DEMO_AIRFLOW_HOME`` and friends."""
    port = int(environ.get("DEMO_PORT", "8080"))
    host = environ.get("DEMO_HOST", "").strip() or DEFAULT_HOST
    home = Path(environ.get("DEMO_AIRFLOW_HOME", REPO / ".airflow"))
    data_root = Path(environ.get("METRICS_CENTER_DATA_ROOT", REPO / "demo_data"))
    sales_db = {"conn_type": "sqlite", "host": str(data_root / "sales" / "sales.db")}
    env = airflow_environment(
        home=home,
        port=port,
        host=host,
        passwords={"admin": "admin", **{p: p for p in PEOPLE}},
        roles={"admin": "admin", **{p: "user" for p in PEOPLE}},
        extra={
            "METRICS_CENTER_DATA_ROOT": str(data_root),
            "AIRFLOW_CONN_SALES_DB": json.dumps(sales_db),
            # Channels without a connection write what they would have sent here (notifications inbox).
            "METRICS_CENTER_INBOX": environ.get("METRICS_CENTER_INBOX", str(home / "inbox")),
        },
    )
    return DemoSetup(home=home, host=host, port=port, env=env)


def main() -> int:
    setup = demo_setup(environ=os.environ)
    home, host, port = setup.home, setup.host, setup.port
    airflow = LocalAirflow(env=setup.env, port=port)
    today = date.today().isoformat()
    notice = listen_notice(host=host, port=port)
    for line in notice[1:]:  # a warning when opened beyond this machine: say it before starting anything
        print(line, file=sys.stderr, flush=True)

    print("• initialising Airflow metadata (SQLite) and the metrics mart …", flush=True)
    airflow.run("airflow", "db", "migrate")
    airflow.run("metrics-center", "mart", "upgrade")
    airflow.run("metrics-center", "pools", "sync")  # the query limits _teams.yaml declares
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
        all_metrics = sorted(p.stem for p in (REPO / "include" / "metrics").glob("[!_]*.yaml"))
        airflow.wait_for_dags(api, [*all_metrics, MAINTENANCE_DAG])
        # Metrics scheduled on their inputs run by themselves once those publish (after your approvals).
        metrics = [k for k in all_metrics if k not in _on_inputs()]
        # Unpausing is all it takes: with catchup off, the scheduler creates each metric's latest
        # scheduled run (yesterday for daily metrics, the last ISO week for the weekly one). The
        # maintenance DAG delivers notifications (they stay pending without Slack) and prunes staging.
        for dag_id in [*all_metrics, MAINTENANCE_DAG]:
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
        f"\nMetrics Center demo is up: {airflow.url}\n"
        f"  {notice[0]}\n"
        "  log in as admin/admin to watch the runs, or as an approver (password = user name):\n"
        f"  approve, read the metric dictionary and the audit in Metrics Center: {airflow.url}/plugin/metrics-center\n"
    )
    for dag_id, task_id in awaiting.items():
        print(f"  • {dag_id}: {task_id} is waiting — Browse → Required Actions")
    print(
        "\n  approvers: gmv_daily → bob, then carol or dave; lead_conversion_rate → frank (its owner erin may reject, not approve alone);"
        "\n             refund_rate_weekly → carol or dave, then frank; refunds_daily → dave (its owner carol may not approve alone)"
        "\n  refund_rate_daily is built on gmv_daily and refunds_daily (schedule: inputs): approve both, and its run"
        "\n  starts by itself for the day both published (Airflow Assets); carol approves it"
        f"\n  the mart (SQLite): {home / 'metrics_mart.db'} — one relation per metric, e.g. metrics__gmv_daily;"
        "\n  BI: `make superset` in another terminal (Superset 6.1 on http://127.0.0.1:8088, admin/admin)"
        f"\n  chats: no Slack / Feishu / DingTalk / WeCom account needed — what each would have received is in"
        f"\n         {home / 'inbox'} (feishu.md, dingtalk.md …; `metrics-center notifications inbox`)"
        "\n\nCtrl-C stops everything.",
        flush=True,
    )
    for line in notice[1:]:
        print(f"\n{line}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def _on_inputs() -> set[str]:
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(REPO / "include" / "metrics", sql_root=REPO / "include" / "sql")
    return {k for k, m in catalog.metrics.items() if m.spec.on_inputs}


if __name__ == "__main__":
    sys.exit(main())
