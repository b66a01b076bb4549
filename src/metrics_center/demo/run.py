"""``make demo``: Airflow (SQLite metadata) + the mart + the demo company, every metric awaiting approval.

Starts api-server, scheduler and dag-processor sized for a small machine, triggers each demo metric
for yesterday and waits until every run is waiting for a human. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")
READY_TIMEOUT_S = 240


def _environment(home: Path, port: int) -> dict[str, str]:
    data_root = Path(os.environ.get("METRICS_CENTER_DATA_ROOT", REPO / "demo_data"))
    secret_file = home / "demo_secret"
    if not secret_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_urlsafe(32))
    users = ",".join(["admin:admin", *(f"{p}:user" for p in PEOPLE)])
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "METRICS_CENTER_DATA_ROOT": str(data_root),
        "AIRFLOW_CONN_SALES_DB": json.dumps(
            {"conn_type": "sqlite", "host": str(data_root / "sales" / "sales.db")}
        ),
    }
    return {**os.environ, **env}


class Api:
    """Just enough of Airflow's REST API, with a token for ``admin``."""

    def __init__(self, base: str, password: str) -> None:
        self.base, self.password, self.token = base, password, None

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            if self.token is None:
                self.token = self._call(
                    "POST", "/auth/token", {"username": "admin", "password": self.password}, auth=False
                )["access_token"]
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def healthy(self) -> bool:
        try:
            return (
                self._call("GET", "/api/v2/monitor/health", auth=False)["metadatabase"]["status"] == "healthy"
            )
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return False

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def patch(self, path: str, body: dict) -> dict:
        return self._call("PATCH", path, body)

    def post(self, path: str, body: dict) -> dict:
        return self._call("POST", path, body)


def _wait(
    what: str, check, processes: list[subprocess.Popen], timeout: float = READY_TIMEOUT_S, every: float = 1.0
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dead := [p for p in processes if p.poll() is not None]:
            raise RuntimeError(f"`{' '.join(dead[0].args[1:])}` exited; see $AIRFLOW_HOME/demo-logs/")
        result = check()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}; see the logs in $AIRFLOW_HOME/demo-logs/")


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8080"))
    home = Path(os.environ.get("DEMO_AIRFLOW_HOME", REPO / ".airflow"))
    env = _environment(home, port)
    bin_dir = Path(sys.executable).parent
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin", **{p: p for p in PEOPLE}}))
    logs = home / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)

    def run(*cmd: str) -> None:
        subprocess.run(cmd, env=env, check=True)

    print("• initialising Airflow metadata (SQLite) and the metrics mart …", flush=True)
    run(str(bin_dir / "airflow"), "db", "migrate")
    run(str(bin_dir / "metrics-center"), "mart", "upgrade")
    run(str(bin_dir / "metrics-center"), "demo", "seed", "--end", date.today().isoformat())
    run(str(bin_dir / "metrics-center"), "validate")

    processes: list[subprocess.Popen] = []

    def terminate() -> None:
        print("\n• stopping Airflow …", flush=True)
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(*_args) -> None:
        terminate()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for component in ("api-server", "scheduler", "dag-processor"):
        log = (logs / f"{component}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [str(bin_dir / "airflow"), component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    api = Api(f"http://localhost:{port}", "admin")
    try:
        print("• publishing 75 days of history to the mart while Airflow starts …", flush=True)
        run(str(bin_dir / "metrics-center"), "demo", "history", "--end", date.today().isoformat())
        _wait("the API server", api.healthy, processes)
        metrics = sorted(p.stem for p in (REPO / "include" / "metrics").glob("[!_]*.yaml"))
        _wait(
            "the DAGs to be parsed",
            lambda: (
                len({d["dag_id"] for d in api.get("/api/v2/dags?limit=100")["dags"]} & set(metrics))
                == len(metrics)
            ),
            processes,
        )
        # Unpausing is all it takes: with catchup off, the scheduler creates each metric's latest
        # scheduled run (yesterday for daily metrics, last ISO week for the weekly one).
        for dag_id in metrics:
            api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

        def latest_runs() -> dict[str, str] | None:
            found = {}
            for dag_id in metrics:
                runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-logical_date&limit=1")["dag_runs"]
                if runs:
                    found[dag_id] = runs[0]["dag_run_id"]
            return found if len(found) == len(metrics) else None

        runs = _wait("the scheduler to create the runs", latest_runs, processes, every=2.0)
        print("• running extract → transform → quality_check for each metric …", flush=True)

        def waiting() -> dict[str, str] | None:
            found = {}
            for dag_id, run_id in runs.items():
                tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
                states = {t["task_id"]: t["state"] for t in tis}
                if any(s == "failed" for s in states.values()):
                    raise RuntimeError(f"{dag_id} failed: {states}; see the task logs in the UI")
                done = [
                    t
                    for t, s in states.items()
                    if t.startswith("approve") and s in ("awaiting_input", "success")
                ]
                if done:
                    found[dag_id] = done[0]
            return found if len(found) == len(runs) else None

        awaiting = _wait("every metric to wait for approval", waiting, processes, every=2.0)
    except BaseException:
        terminate()
        raise
    print(
        f"\nMetrics Center demo is up: http://localhost:{port}\n"
        f"  log in as admin/admin to watch the runs, or as an approver (password = user name):\n"
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
