"""A small local Airflow (api-server + scheduler + dag-processor) for the demo and the slow tests.

Sized for a 2-core machine: LocalExecutor with parallelism 4, one API worker. Users come from
SimpleAuthManager with passwords we choose, so scripts can log in through the real REST API. The
api-server listens on 127.0.0.1 unless asked otherwise: those passwords are known to everyone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[3]
COMPONENTS = ("api-server", "scheduler", "dag-processor")


#: Where the api-server listens unless asked otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def is_loopback(host: str) -> bool:
    """True if only this machine can reach ``host`` (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may be reachable from elsewhere


def api_url(*, host: str, port: int) -> str:
    """The URL at which this machine reaches an api-server listening on ``host`` (wildcards → loopback)."""
    connect = _WILDCARDS.get(host, host)
    return f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"


def listen_notice(*, host: str, port: int) -> list[str]:
    """Where the api-server listens, for a person; plus a warning when that is beyond this machine."""
    if is_loopback(host):
        where = "this machine only"
    elif host in _WILDCARDS:
        where = "every network interface of this machine"
    else:
        where = "reachable from the network"
    address = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
    lines = [f"the api-server listens on {address} ({where})"]
    if not is_loopback(host):
        lines.append(
            f"WARNING: the api-server is open beyond this machine ({address}): anyone who can reach it can log "
            "in with the demo passwords (admin/admin, bob/bob, …) and approve numbers. "
            "Unset DEMO_HOST to listen on 127.0.0.1 only."
        )
    return lines


def airflow_environment(
    *,
    home: Path,
    port: int,
    passwords: Mapping[str, str],
    roles: Mapping[str, str],
    extra: Mapping[str, str],
    host: str = DEFAULT_HOST,
) -> dict[str, str]:
    """Environment for every Airflow process of one local installation.

    The api-server listens on ``host`` (``[api] host``): 127.0.0.1 by default, so that nobody else on the
    network can log in with the known passwords; ``0.0.0.0`` opens it on purpose.
    """
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(64))
    (home / "passwords.json").write_text(json.dumps(dict(passwords)))
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in roles.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api_url(host=host, port=port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(host=host, port=port)}/execution/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "GX_ANALYTICS_ENABLED": "false",
        **extra,
    }
    return {**os.environ, **env}


class Api:
    """Just enough of Airflow's REST API, logged in as one user."""

    def __init__(self, base: str, *, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password
        self._token: str | None = None

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            if self._token is None:
                self._token = self._call(
                    "POST", "/auth/token", {"username": self.user, "password": self.password}, auth=False
                )["access_token"]
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def healthy(self) -> bool:
        try:
            health = self._call("GET", "/api/v2/monitor/health", auth=False)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return health.get("metadatabase", {}).get("status") == "healthy"

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def patch(self, path: str, body: dict) -> Any:
        return self._call("PATCH", path, body)

    def post(self, path: str, body: dict) -> Any:
        return self._call("POST", path, body)


class LocalAirflow:
    """Start/stop the three components as process groups, logging to ``<home>/component-logs``."""

    def __init__(self, *, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.home = Path(env["AIRFLOW_HOME"])
        #: Where this machine reaches the api-server (``[api] base_url`` of :func:`airflow_environment`).
        self.url = env.get("AIRFLOW__API__BASE_URL", f"http://127.0.0.1:{port}").rstrip("/")
        self.bin = Path(sys.executable).parent
        self.processes: list[subprocess.Popen] = []

    def run(self, *cmd: str) -> None:
        """Run a one-off command (``airflow db migrate``, ``metrics-center …``) in this environment."""
        subprocess.run([str(self.bin / cmd[0]), *cmd[1:]], env=self.env, check=True)

    def start(self, *, components: tuple[str, ...] = COMPONENTS) -> LocalAirflow:
        logs = self.home / "component-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for component in components:
            log = (logs / f"{component}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [str(self.bin / "airflow"), component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return self

    def start_celery_workers(self, *, names: list[str], concurrency: int = 1) -> LocalAirflow:
        """Celery workers as separate processes, each in a working directory of its own and named apart.

        Several workers on one machine share a host name: ``[core] hostname_callable`` is pointed at
        :func:`worker_hostname`, so each task instance records which worker ran it.
        """
        logs = self.home / "component-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in names:
            workdir = self.home / "workers" / name
            workdir.mkdir(parents=True, exist_ok=True)
            env = {
                **self.env,
                "METRICS_CENTER_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "metrics_center.orchestration.local_airflow.worker_hostname",
                "TMPDIR": str(workdir / "tmp"),
            }
            (workdir / "tmp").mkdir(exist_ok=True)
            log = (logs / f"worker-{name}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [
                        str(self.bin / "airflow"),
                        "celery",
                        "worker",
                        "--concurrency",
                        str(concurrency),
                        "--celery-hostname",
                        f"{name}@%h",
                        "--without-mingle",
                        "--without-gossip",
                    ],
                    env=env,
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return self

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()

    def wait(
        self, what: str, check: Callable[[], T | None], *, timeout: float = 240, every: float = 1.0
    ) -> T:
        """Poll ``check`` until it returns something truthy; fail fast if a component died."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if dead := [p for p in self.processes if p.poll() is not None]:
                raise RuntimeError(f"`airflow {dead[0].args[1]}` exited; see {self.home / 'component-logs'}")
            try:
                result = check()
            except (TimeoutError, ConnectionError) as slow:
                # A busy API server (one worker, answering the tasks' execution API too) may
                # miss one poll's read deadline; that is "not yet", the next poll asks again.
                last_error = slow
                time.sleep(every)
                continue
            if result:
                return result
            time.sleep(every)
        raise TimeoutError(
            f"timed out waiting for {what}; see {self.home / 'component-logs'}"
        ) from last_error

    def api(self, *, user: str, password: str) -> Api:
        return Api(self.url, user=user, password=password)

    def wait_for_dags(self, api: Api, dag_ids: list[str]) -> None:
        def parsed() -> bool:
            known = {d["dag_id"] for d in api.get("/api/v2/dags?limit=1000")["dags"]}
            return set(dag_ids) <= known

        self.wait("the DAGs to be parsed", parsed)

    def wait_parked(self, api: Api, dag_id: str, run_id: str, task_id: str, *, timeout: float = 240) -> dict:
        """Wait until an approval task waits for its answer *and* the scheduler has handled the exit of the
        worker that parked it; return the task instance.

        Airflow 3.3.2 can fail a human-in-the-loop task answered before the scheduler processes that exit
        event (an upstream race, #66374 and kin); under load that took 6 s here, so a fixed pause
        is not enough. Only the scheduler's log says when it happened: this local Airflow keeps it.
        """
        log = self.home / "component-logs" / "scheduler.log"
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"

        def parked() -> dict | None:
            ti = api.get(path)
            if ti["state"] != "awaiting_input":
                return None
            handled = (
                "Received executor event with state success for task instance TaskInstanceKey("
                f"dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', try_number={ti['try_number']},"
            )
            return ti if log.exists() and handled in log.read_text(errors="replace") else None

        return self.wait(f"{dag_id}.{task_id} to be parked", parked, timeout=timeout, every=0.25)

    def task_states(self, api: Api, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in tis}


def worker_hostname() -> str:
    """``[core] hostname_callable`` for several workers on one machine: the worker's own name."""
    import socket

    return os.environ.get("METRICS_CENTER_WORKER_NAME") or socket.getfqdn()
