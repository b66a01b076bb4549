"""`make demo` listens on 127.0.0.1 unless DEMO_HOST opens it: its passwords (admin/admin, bob/bob) are public."""

from __future__ import annotations

import socket

import psutil
import pytest

from metrics_center.demo.run import demo_setup
from metrics_center.orchestration.local_airflow import LocalAirflow, airflow_environment, listen_notice

pytestmark = pytest.mark.slow  # starts Airflow or a separate process (`make test-fast` leaves it out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_listens_on_loopback_unless_demo_host_opens_it(tmp_path):
    default = demo_setup(environ={"DEMO_AIRFLOW_HOME": str(tmp_path / "a"), "DEMO_PORT": "8181"})
    assert default.env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert default.env["AIRFLOW__API__PORT"] == "8181"
    assert default.env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8181"
    assert default.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8181/execution/"

    opened = demo_setup(environ={"DEMO_AIRFLOW_HOME": str(tmp_path / "b"), "DEMO_HOST": "0.0.0.0"})
    assert opened.env["AIRFLOW__API__HOST"] == "0.0.0.0"
    # Components on this machine still talk to it over loopback.
    assert opened.env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("host", "warns"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True), ("192.0.2.10", True)],
)
def test_listen_notice_says_where_and_warns_beyond_this_machine(host, warns):
    notice = listen_notice(host=host, port=8080)
    assert host in notice[0]
    assert (len(notice) == 2) is warns
    if warns:
        assert "WARNING" in notice[1] and "DEMO_HOST" in notice[1]


def test_api_server_listens_on_loopback_only(airflow_db, tmp_path):
    """A real `airflow api-server` (≈10 s here) on the session's metadata DB: bound to 127.0.0.1 only."""
    from airflow.configuration import conf

    port = _free_port()
    env = airflow_environment(
        home=tmp_path / "airflow",
        port=port,
        passwords={"admin": "admin-pw"},
        roles={"admin": "admin"},
        extra={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conf.get("database", "sql_alchemy_conn")},
    )
    airflow = LocalAirflow(env=env, port=port).start(components=("api-server",))
    try:
        admin = airflow.api(user="admin", password="admin-pw")
        airflow.wait("the API server", admin.healthy, timeout=90, every=0.5)
        listening = {
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening == {"127.0.0.1"}
        assert "dags" in admin.get("/api/v2/dags?limit=1")  # logging in works at the URL it gives
    finally:
        airflow.stop()
