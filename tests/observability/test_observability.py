"""Our metrics arrive at a real StatsD listener through Airflow's own client; our task log lines say which
metric, period and run they are about.

A UDP socket on 127.0.0.1 plays the StatsD server. Airflow reads ``[metrics]`` when its stats module is
initialised (a task process does it at start); the fixture sets the environment and initialises it the
same way, and restores it afterwards.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dag_helpers import metric_dag
from hitl_answers import Answer, Responder

PREFIX = "mctest"
LOGICAL = datetime(2026, 11, 27, tzinfo=UTC)  # daily run computing 2026-11-26
OURS = re.compile(rf"^{PREFIX}\.metrics_center\.")


class StatsdListener:
    """Collects the StatsD packets sent to 127.0.0.1:<port> (one stat per packet with Airflow's client)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.packets.extend(line for line in data.decode().splitlines() if line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def ours(self) -> list[tuple[str, float, str]]:
        """``(name, value, type)`` of every ``mctest.metrics_center.*`` packet so far."""
        found = []
        for packet in list(self.packets):
            if OURS.match(packet):
                name, _, rest = packet.partition(":")
                value, kind = rest.split("|")[:2]
                found.append((name.removeprefix(f"{PREFIX}."), float(value), kind))
        return found

    def wait_for(self, *names: str, deadline_s: float = 10) -> list[tuple[str, float, str]]:
        """Packets so far, once every name in ``names`` arrived (UDP is delivered asynchronously)."""
        until = time.monotonic() + deadline_s
        while time.monotonic() < until and not set(names) <= {n for n, _, _ in self.ours()}:
            time.sleep(0.05)
        return self.ours()


def _initialise_stats() -> None:
    """What Airflow's task runner does at start: build the stats backend from ``[metrics]``."""
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )


def _statsd(monkeypatch, **settings: str):
    listener = StatsdListener()
    with monkeypatch.context() as patched:
        for key, value in {
            "STATSD_ON": "True",
            "STATSD_HOST": "127.0.0.1",
            "STATSD_PORT": str(listener.port),
            "STATSD_PREFIX": PREFIX,
            **settings,
        }.items():
            patched.setenv(f"AIRFLOW__METRICS__{key}", value)
        _initialise_stats()
        try:
            yield listener
        finally:
            listener.close()
    _initialise_stats()  # metrics off again for the tests after this one


@pytest.fixture
def statsd(monkeypatch):
    yield from _statsd(monkeypatch)


@pytest.fixture
def statsd_influx(monkeypatch):
    yield from _statsd(monkeypatch, STATSD_INFLUXDB_ENABLED="True")


def _count(packets, name: str) -> list[float]:
    return [value for n, value, _ in packets if n == name]


# --- a real run --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("airflow_db")
def test_a_published_run_sends_its_metrics_and_logs_its_metric_period_and_run(
    mart, demo_data, statsd, capfd, caplog
):
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history
    from metrics_center.settings import metrics_dir, sql_dir

    spec = load_catalog(metrics_dir(), sql_root=sql_dir()).metrics["gmv_daily"].spec
    seed_history(engine=mart, specs=[spec], first=date(2026, 9, 1), end=LOGICAL.date())  # the planted spike
    dag = metric_dag("gmv_daily")  # parsed before the capture: only the run's lines are looked at
    capfd.readouterr()
    caplog.clear()
    responder = Responder(
        dag_id="gmv_daily",
        answers=[
            Answer("approve_sales_review", "bob", "Approve"),
            Answer("approve_finance_sign_off", "carol", "Approve"),
        ],
    ).start()
    dag_run = dag.test(logical_date=LOGICAL)
    responder.join()
    output = capfd.readouterr().out
    assert str(dag_run.state) == "success"

    packets = statsd.wait_for(
        "metrics_center.published_values.gmv_daily", "metrics_center.approval_wait.gmv_daily"
    )
    # Plain StatsD drops tags: each fact comes as the total and under the metric's key.
    assert _count(packets, "metrics_center.published_values") == [12]
    assert _count(packets, "metrics_center.published_values.gmv_daily") == [12]
    assert _count(packets, "metrics_center.publications.gmv_daily") == [1]
    assert _count(packets, "metrics_center.approvals_requested.gmv_daily") == [1, 1]
    assert _count(packets, "metrics_center.approvals_decided") == [1, 1]
    assert _count(packets, "metrics_center.approvals_decided.gmv_daily.approved") == [1, 1]
    waits = [(v, kind) for n, v, kind in packets if n == "metrics_center.approval_wait.gmv_daily"]
    assert len(waits) == 2 and all(kind == "ms" and value >= 0 for value, kind in waits)
    assert _count(packets, "metrics_center.anomalies_found.gmv_daily") == [1]  # the planted spike
    assert _count(packets, "metrics_center.quality_checks_failed.gmv_daily.warn") == [1]  # settlement gap
    for nothing in ("publish_refused", "quality_gate_blocked", "approvals_timed_out", "periods_restated"):
        assert not [n for n, _, _ in packets if n.startswith(f"metrics_center.{nothing}")], nothing

    # Every line our code wrote in the run's tasks says which metric, period and run it is about: the
    # operators' own loggers (structlog, printed by Airflow's console renderer) and our modules' stdlib
    # loggers (seen here by pytest's handler, as by Airflow's in a worker).
    prefix = f"[gmv_daily 2026-11-26 run={dag_run.run_id}]"
    printed = [(logger, event) for logger, event in _records(output) if logger.startswith(OPERATORS)]
    logged = [
        (r.name, r.getMessage())
        for r in caplog.records
        if r.name.startswith("metrics_center.") and r.thread == threading.main_thread().ident
    ]
    assert {logger.rsplit(".", 1)[-1] for logger, _ in printed} >= {
        "RegisterDefinitionOperator",
        "ExtractOperator",
        "ImpactPreviewOperator",
        "MetricApprovalOperator",  # in execute and, on resume, execute_complete
        "PublishOperator",
    }
    assert {name for name, _ in logged} >= {"metrics_center.notify.approval_requests"}  # the HITL notifier
    without = [line for line in printed + logged if not line[1].startswith(prefix)]
    assert not without, without[:10]
    assert all("loc=task_logs.py" not in line for line in output.splitlines())  # the caller's line


OPERATORS = "airflow.task.operators.metrics_center.orchestration."  # + module + class
_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[\s*\w+\s*\] (?P<rest>.*)$")


def _records(output: str) -> list[tuple[str, str]]:
    """``(logger, event)`` of each record Airflow's console renderer printed: ``<time> [<level>] <event>
    [<logger>] loc=…``; an event of several lines continues until the next timestamp."""
    records: list[str] = []
    for line in output.splitlines():
        match = _RECORD.match(line)
        if match:
            records.append(match["rest"])
        elif records:
            records[-1] += "\n" + line
    found = []
    for text in records:
        tail = re.search(r" \[(?P<logger>[\w.]+)\](?: \S+=\S+)*\s*$", text)
        if tail:
            found.append((tail["logger"], text[: tail.start()]))
    return found


PROBE = r"""
import logging, sys
from airflow.sdk.log import configure_logging

configure_logging(json_output=True, output=sys.stdout.buffer, sending_to_supervisor=True)  # as a task process

from metrics_center.definitions.loader import load_catalog
from metrics_center.orchestration.task_logs import log_context
from metrics_center.orchestration.operators import PublishOperator
from metrics_center.settings import metrics_dir, sql_dir

op = PublishOperator(task_id="publish", spec=load_catalog(metrics_dir(), sql_root=sql_dir()).metrics["gmv_daily"].spec)
ours = logging.getLogger("metrics_center.tasks.extract")
ours.info("before: %s", 1)
with log_context(metric_key="gmv_daily", period="2026-11-26", run_id="scheduled__2026-11-27T00:00:00+00:00"):
    ours.info("staged %s rows (100%% of %s)", 580, "orders")
    ours.warning("100% literal")
    op.log.info("published %s rows", 12)
    logging.getLogger("great_expectations").info("not ours")
ours.info("after")
"""


@pytest.mark.slow  # a separate process
def test_a_task_process_log_carries_the_context_through_airflows_json_logging():
    """The worker's chain, not pytest's handlers: Airflow's task-process logging (structlog JSON, stdlib
    records formatted by structlog's ProcessorFormatter, which copies each record)."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "Logging error" not in result.stderr, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    prefix = "[gmv_daily 2026-11-26 run=scheduled__2026-11-27T00:00:00+00:00] "
    assert [(line["logger"].rsplit(".", 1)[-1], line["event"]) for line in lines] == [
        ("extract", "before: 1"),
        ("extract", prefix + "staged 580 rows (100% of orders)"),
        ("extract", prefix + "100% literal"),
        ("PublishOperator", prefix + "published 12 rows"),
        ("great_expectations", "not ours"),
        ("extract", "after"),
    ]
    assert {line["filename"] for line in lines} == {"<string>"}  # the caller's line, not ours


def test_the_maintenance_run_gauges_waiting_approvals_and_the_outbox(
    mart, statsd, monkeypatch, airflow_db, tmp_path
):
    from metrics_center.notify.addresses import Recipient
    from metrics_center.notify.outbox import enqueue

    monkeypatch.delenv("AIRFLOW_CONN_METRICS_CENTER_SLACK", raising=False)
    monkeypatch.setenv(
        "METRICS_CENTER_STAGING", (tmp_path / "staging").as_uri()
    )  # its pruning: nothing else's
    with mart.begin() as conn:
        for i in range(3):
            enqueue(
                conn,
                kind="anomaly",
                dedupe_key=f"observability:{i}",
                recipient=Recipient.at("sales", "#sales-metrics"),
                group_key="anomaly:gmv_daily:run",
                payload={"metric_key": "gmv_daily", "metric_name": "GMV", "value": i, "score": i},
            )
    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "metrics_center_maintenance.py"
    dag = DagBag(dag_folder=str(dag_file), safe_mode=True).dags["metrics_center_maintenance"]
    assert str(dag.test().state) == "success"

    packets = statsd.wait_for("metrics_center.notifications_pending", "metrics_center.approvals_pending")
    gauges = {n: v for n, v, kind in packets if kind == "g"}
    assert gauges == {
        "metrics_center.approvals_pending": 0,
        "metrics_center.notifications_pending": 3,  # no Slack connection: all wait
        "metrics_center.notifications_unaddressed": 0,
        "metrics_center.notifications_dead": 0,
    }
    assert not [n for n, _, kind in packets if kind == "c"]  # nothing delivered, retried or given up


def test_a_refused_publish_is_counted_with_its_reason(mart, statsd):
    """A run computed under a definition that is no longer in force: publish refuses and writes nothing."""
    import sqlalchemy as sa

    from metrics_center.definitions.loader import load_catalog
    from metrics_center.errors import PublishRefused
    from metrics_center.mart.tables import metric_run
    from metrics_center.settings import metrics_dir, sql_dir
    from metrics_center.tasks.publish_run import publish_run

    spec = load_catalog(metrics_dir(), sql_root=sql_dir()).metrics["gmv_daily"].spec
    now = datetime.now(UTC)
    with mart.begin() as conn:
        conn.execute(
            sa.insert(metric_run).values(
                metric_key="gmv_daily",
                run_id="scheduled__2026-11-27T00:00:00+00:00",
                definition_version=1,
                definition_hash="0" * 64,  # not the meaning of the YAML in force
                timezone="UTC",
                period_start=date(2026, 11, 26),
                period_end=date(2026, 11, 27),
                restatement=False,
                state="computed",
                result_hash="1" * 64,
                started_at=now,
                updated_at=now,
            )
        )
    with pytest.raises(PublishRefused, match="definition changed while this run waited"):
        publish_run(mart, spec=spec, teams=None, context={"run_id": "scheduled__2026-11-27T00:00:00+00:00"})

    packets = statsd.wait_for("metrics_center.publish_refused.gmv_daily")
    assert [(n, v) for n, v, _ in packets] == [
        ("metrics_center.publish_refused", 1),
        ("metrics_center.publish_refused.gmv_daily", 1),
    ]


# --- the client ----------------------------------------------------------------------------------------------


def test_with_influxdb_tags_the_key_is_a_tag_not_a_name(statsd_influx):
    from metrics_center.observability import stats

    stats.published(metric_key="gmv_daily", rows=12)
    stats.approval_attempt(metric_key="gmv_daily", via="slack", decision="refused_attempt")
    stats.approval_decided(
        metric_key="gmv_daily",
        stage="finance sign-off",
        decision="rejected_on_timeout",
        asked_at=datetime(2026, 11, 27, 8, tzinfo=UTC),
        answered_at=None,
    )
    statsd_influx.wait_for(
        "metrics_center.approvals_timed_out,metric_key=gmv_daily,stage=finance_sign-off,"
        "decision=rejected_on_timeout"
    )
    ours = sorted(p for p in statsd_influx.packets if OURS.match(p))
    assert ours == [
        "mctest.metrics_center.approval_attempts,metric_key=gmv_daily,via=slack,outcome=refused_attempt:1|c",
        "mctest.metrics_center.approvals_decided,metric_key=gmv_daily,stage=finance_sign-off,"
        "decision=rejected_on_timeout:1|c",
        "mctest.metrics_center.approvals_timed_out,metric_key=gmv_daily,stage=finance_sign-off,"
        "decision=rejected_on_timeout:1|c",
        "mctest.metrics_center.publications,metric_key=gmv_daily:1|c",
        "mctest.metrics_center.published_values,metric_key=gmv_daily:12|c",
    ]


def test_a_broken_metrics_setup_never_fails_the_caller(monkeypatch):
    from metrics_center.observability import stats as ours

    # Airflow refuses a custom client that is not a StatsClient when it builds the backend.
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_CUSTOM_CLIENT_PATH", "builtins.object")
    _initialise_stats()
    try:
        from airflow.sdk.observability import stats as airflows

        with pytest.raises(Exception, match=r"must extend the statsd\.StatsClient"):
            airflows.incr("metrics_center.anything")  # Airflow's own call raises
        ours.published(metric_key="gmv_daily", rows=3)
        ours.approvals_pending(count=2)
    finally:
        monkeypatch.undo()
        _initialise_stats()
