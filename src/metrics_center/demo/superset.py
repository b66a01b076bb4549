"""A local Apache Superset beside the demo, provisioned with the Metrics Center bundle (``make superset``).

Superset lives in its own virtual environment (``.superset/venv``, ``requirements-superset.txt``: its pins clash
with Airflow's) and runs as separate processes: metadata in SQLite under its home, the bundle of
``metrics-center bi superset`` imported, an admin user, the web server on 127.0.0.1. It reads the mart through
the URI it is given — on Postgres, a reader role of ``metrics-center mart grant-reader``; the demo's SQLite mart
is opened read-only.

``python -m metrics_center.demo.superset --mart-uri URI`` provisions and serves it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
DEFAULT_VENV = REPO / ".superset" / "venv"
CONFIG = """\
# Written by metrics_center.demo.superset: a local Superset for the demo and the tests.
SECRET_KEY = {secret!r}
SQLALCHEMY_DATABASE_URI = {metadata!r}
PREVENT_UNSAFE_DB_CONNECTIONS = False  # the demo's mart is a SQLite file (opened read-only)
WTF_CSRF_ENABLED = False  # API clients (the tests) log in with a token
"""


class LocalSuperset:
    """Superset's CLI and web server in their own venv, with a home of their own."""

    def __init__(self, *, home: Path, port: int, venv: Path | None = None) -> None:
        self.home, self.port = home, port
        self.venv = venv or Path(os.environ.get("METRICS_CENTER_SUPERSET_VENV", DEFAULT_VENV))
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        binary = self.venv / "bin" / "superset"
        if not binary.exists():
            raise FileNotFoundError(
                f"{binary} is missing — run `make superset-venv` (requirements-superset.txt)"
            )
        home.mkdir(parents=True, exist_ok=True)
        config = home / "superset_config.py"
        if not config.exists():
            config.write_text(
                CONFIG.format(secret=secrets.token_hex(32), metadata=f"sqlite:///{home / 'superset.db'}")
            )
        self.env = {**os.environ, "SUPERSET_CONFIG_PATH": str(config), "SUPERSET_HOME": str(home)}

    def cli(self, *args: str) -> None:
        log = self.home / "superset-cli.log"
        with log.open("ab") as out:
            done = subprocess.run(
                [str(self.venv / "bin" / "superset"), *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode:
            raise RuntimeError(f"`superset {' '.join(args[:1])}` failed; see {log}")

    def provision(self, *, bundle: Path, admin_password: str) -> None:
        """Metadata database, roles, an ``admin`` user, and the bundle imported (re-importing updates it)."""
        self.cli("db", "upgrade")
        self.cli(
            "fab", "create-admin", "--username", "admin", "--firstname", "Metrics", "--lastname", "Center",
            "--email", "admin@metrics-center.local", "--password", admin_password,
        )  # fmt: skip
        self.cli("init")
        self.cli("import-dashboards", "-p", str(bundle), "-u", "admin")

    def start(self, *, timeout: float = 120) -> LocalSuperset:
        log = (self.home / "superset-server.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.venv / "bin" / "superset"),
                "run",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--with-threads",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Superset exited; see {self.home / 'superset-server.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"Superset did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "content-type": "application/json",
                **({"authorization": f"Bearer {token}"} if token else {}),
            },
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def token(self, *, user: str = "admin", password: str) -> str:
        body = {"username": user, "password": password, "provider": "db", "refresh": True}
        return self.call("POST", "/api/v1/security/login", body)["access_token"]


def write_bundle(path: Path, *, mart_uri: str) -> Path:
    """The bundle of every valid metric under $METRICS_CENTER_HOME, for Superset reading ``mart_uri``."""
    from sqlalchemy import make_url

    from metrics_center import settings
    from metrics_center.bi.superset import BundleTarget, superset_bundle
    from metrics_center.definitions.loader import load_catalog

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    postgres = make_url(mart_uri).get_backend_name() == "postgresql"
    target = BundleTarget(sqlalchemy_uri=mart_uri, schema="metrics" if postgres else None)
    path.write_bytes(superset_bundle(specs=[m.spec for m in catalog.metrics.values()], target=target))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mart-uri", required=True, help="how Superset reads the mart (a reader role's URI)")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--home", default=str(REPO / ".superset" / "home"))
    parser.add_argument("--admin-password", default=os.environ.get("SUPERSET_ADMIN_PASSWORD", "admin"))
    args = parser.parse_args(argv)
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    bundle = write_bundle(home / "metrics_center_superset.zip", mart_uri=args.mart_uri)
    superset = LocalSuperset(home=home, port=args.port)
    print("provisioning Superset (first time: about a minute) …", flush=True)
    superset.provision(bundle=bundle, admin_password=args.admin_password)
    superset.start()
    print(
        f"Superset is up: {superset.url}/superset/dashboard/metrics-center/ (admin / {args.admin_password})"
    )
    try:
        while superset.process is not None and superset.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        superset.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
