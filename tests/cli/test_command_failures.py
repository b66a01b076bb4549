"""A command that cannot do its job says so in one line with the fix — `metrics-center <cmd>: <what> — <fix>`,
exit 2 — never with a traceback; and `metrics-center --help` names the environment the commands read."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from metrics_center.cli.app import main
from metrics_center.cli.failures import AIRFLOW_DATABASE, EXIT_FAILED, explain
from metrics_center.errors import SpecError, SpecProblem

SRC = Path(__file__).resolve().parents[2] / "src" / "metrics_center"
ONE_LINE = re.compile(r"^metrics-center (?P<cmd>[a-z -]+?): (?P<what>\S.*?) — (?P<fix>\S.*)$")


def _one_line(err: str, *, command: str) -> re.Match[str]:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    match = ONE_LINE.match(line)
    assert match, line
    assert match["cmd"] == command
    return match


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_preview_of_a_metric_without_a_mart_is_one_line(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("METRICS_CENTER_MART_URL", f"sqlite:///{tmp_path / 'no_mart_yet.db'}")
    assert main(["preview", "gmv_daily"]) == EXIT_FAILED
    match = _one_line(capsys.readouterr().err, command="preview")
    assert "no_mart_yet.db has no Metrics Center tables (no such table: metric_definition)" in match["what"]
    assert match["fix"] == "run `metrics-center mart upgrade` first"


def test_a_mart_nobody_listens_on_names_the_url_and_the_settings(capsys):
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/metrics"
    assert main(["notifications", "list", "--url", url]) == EXIT_FAILED
    match = _one_line(capsys.readouterr().err, command="notifications list")
    assert match["what"].startswith(f"cannot use the mart at {url} (")
    assert "METRICS_CENTER_MART_URL" in match["fix"] and "AIRFLOW_CONN_METRICS_MART" in match["fix"]


def test_a_url_that_is_no_url_is_one_line(capsys):
    assert main(["mart", "upgrade", "--url", "not a url"]) == EXIT_FAILED
    match = _one_line(capsys.readouterr().err, command="mart upgrade")
    assert match["what"].startswith("--url 'not a url': Could not parse SQLAlchemy URL")
    assert "postgresql://" in match["fix"] and "sqlite:///" in match["fix"]


@pytest.mark.parametrize("argv", [["history", "gmv_daily"], ["notifications", "list"]])
def test_a_mart_of_another_database_kind_is_one_line(argv, capsys):
    # SQLAlchemy knows MySQL but its driver is not installed: the mart is Postgres or SQLite
    assert main([*argv, "--url", "mysql://someone@db/metrics"]) == EXIT_FAILED
    match = _one_line(capsys.readouterr().err, command=" ".join(argv[:1] if argv[0] == "history" else argv))
    assert match["what"].startswith("the mart cannot be a mysql database")
    assert "postgresql://" in match["fix"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["preview", "nope"], "no valid metric 'nope' under"),
        (["restate", "nope", "--from", "2026-11-01", "--dry-run"], "no valid metric 'nope' under"),
        (["validate", "no/such/folder"], "no/such/folder does not exist"),
    ],
)
def test_a_key_or_path_that_does_not_exist_is_one_line(argv, said, capsys):
    assert main(argv) == EXIT_FAILED
    match = _one_line(capsys.readouterr().err, command=argv[0])
    assert said in match["what"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["staging", "prune", "--older-than", "soon"], "argument --older-than: 'soon' is not a duration"),
        (
            ["demo", "seed", "--end", "2026-13-01"],
            "argument --end: '2026-13-01' is not a date; write YYYY-MM-DD",
        ),
    ],
)
def test_a_bad_argument_is_argparse_s_usage_error(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_airflow_s_metadata_database_is_named_for_the_commands_that_use_it(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as conn:
        conn.execute(sa.text("SELECT pool FROM slot_pool"))
    line = explain(raised.value, args=argparse.Namespace(command="pools", database=AIRFLOW_DATABASE))
    assert line is not None
    assert line.startswith("Airflow's metadata database is not set up (no such table: slot_pool) — ")
    assert "airflow db migrate" in line


def test_a_spec_error_is_its_first_problem_and_the_count(tmp_path: Path):
    problems = [
        SpecProblem(
            path=tmp_path / f"{key}.yaml",
            key="unit",
            message="required key `unit` is missing",
            fix="add this key",
            line=3,
        )
        for key in ("a", "b")
    ]
    line = explain(SpecError(problems), args=argparse.Namespace(command="preview"))
    assert line == f"{problems[0]} (1 more problem(s): run `metrics-center validate`)"


def test_a_bug_keeps_its_traceback():
    assert explain(RuntimeError("a bug"), args=argparse.Namespace(command="preview")) is None
    assert explain(KeyError("x"), args=argparse.Namespace(command="preview")) is None


def _environment_read_by(path: Path) -> set[str]:
    text = path.read_text()
    return (
        set(re.findall(r"""os\.environ(?:\.get)?[(\[]\s*"([A-Z_]+)\"""", text))
        | set(re.findall(r"""in os\.environ\b.*?"([A-Z_]+)\"""", text))
        | set(re.findall(r""""([A-Z_]+)" in os\.environ""", text))
    )


def test_help_names_the_environment_the_commands_read(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    read = _environment_read_by(SRC / "settings.py") | _environment_read_by(SRC / "mart" / "engine.py")
    assert {"METRICS_CENTER_HOME", "METRICS_CENTER_MART_URL", "AIRFLOW_HOME"} <= read  # the scan works
    environment = help_text.split("environment:", 1)[1]
    missing = sorted(name for name in read if name not in environment)
    assert missing == [], f"--help does not name {missing}"
    for name in ("AIRFLOW_CONN_METRICS_MART", "AIRFLOW_CONN_<ID>"):
        assert name in environment
    assert "exits 2" in environment
