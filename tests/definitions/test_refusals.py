"""What `validate` refuses, each with the key, its line and the fix: durations that last no time, approving
unanswered numbers soon without a reason, an unknown status, a replacement that does not exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metrics_center.definitions.loader import load_catalog
from metrics_center.definitions.spec import positive_duration

INCLUDE = Path(__file__).resolve().parents[2] / "include"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copytree(INCLUDE, tmp_path / "include")
    return tmp_path / "include"


def _edit(home: Path, key: str, old: str, new: str) -> Path:
    path = home / "metrics" / f"{key}.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return path


def _line(path: Path, marker: str) -> int:
    (line,) = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    return line


def _problems(home: Path, path: Path) -> list:
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert set(catalog.problems) == {path}, {p.name: [str(x) for x in v] for p, v in catalog.problems.items()}
    return catalog.problems[path]


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("0m", "'0m' lasts no time"),
        ("0d", "'0d' lasts no time"),
        ("-5m", "'-5m' is negative"),
        ("soon", "'soon' is not a duration"),
    ],
)
def test_a_timeout_that_lasts_no_time_is_refused(home: Path, timeout: str, message: str):
    path = _edit(home, "gmv_daily", "  timeout: 24h", f"  timeout: {timeout}")
    (problem,) = _problems(home, path)
    assert problem.key == "approval.timeout"
    assert problem.line == _line(path, f"timeout: {timeout}")
    assert problem.message == message
    assert "30m, 24h, 2d, 1w" in problem.fix


@pytest.mark.parametrize("remind_at", ["0", "-0.5", "1", "1.5"])
def test_a_reminder_outside_the_timeout_is_refused(home: Path, remind_at: str):
    path = _edit(home, "gmv_daily", "  timeout: 24h", f"  timeout: 24h\n  remind_at: {remind_at}")
    (problem,) = _problems(home, path)
    assert (problem.key, problem.line) == ("approval.remind_at", _line(path, "remind_at:"))
    assert "greater than 0" in problem.message or "less than 1" in problem.message
    assert "limit" in problem.fix


def test_positive_duration_accepts_what_lasts():
    assert positive_duration("1s").total_seconds() == 1
    assert positive_duration(" 2w ").days == 14
    for text in ("0s", "-1h", "0"):
        with pytest.raises(ValueError, match="30m, 24h"):
            positive_duration(text)


def test_approving_unanswered_numbers_after_less_than_an_hour_needs_a_reason(home: Path):
    path = _edit(
        home, "gmv_daily", "  timeout: 24h\n  on_timeout: reject", "  timeout: 30m\n  on_timeout: approve"
    )
    (problem,) = _problems(home, path)
    assert (problem.key, problem.line) == ("approval.on_timeout", _line(path, "on_timeout: approve"))
    assert "publishes the number unanswered after only 30m" in problem.message
    assert "approval.auto_approve_reason" in problem.fix and "1h or longer" in problem.fix


def test_a_reason_or_a_longer_timeout_lets_it_pass_and_the_reason_is_stored(home: Path):
    _edit(
        home,
        "gmv_daily",
        "  timeout: 24h\n  on_timeout: reject",
        "  timeout: 30m\n  on_timeout: approve\n  auto_approve_reason: the board reads it at 9:00, late is worse",
    )
    _edit(home, "refunds_daily", "  on_timeout: reject", "  on_timeout: approve")  # 24h: no reason needed
    catalog = load_catalog(home / "metrics", sql_root=home / "sql")
    assert catalog.problems == {}
    approval = catalog.metrics["gmv_daily"].spec.approval
    assert approval.auto_approve_reason == "the board reads it at 9:00, late is worse"
    assert approval.model_dump()["auto_approve_reason"] == approval.auto_approve_reason


def test_exactly_one_hour_needs_no_reason(home: Path):
    _edit(home, "gmv_daily", "  timeout: 24h\n  on_timeout: reject", "  timeout: 60m\n  on_timeout: approve")
    assert load_catalog(home / "metrics", sql_root=home / "sql").problems == {}


def test_a_reason_for_an_approval_that_never_happens_is_refused(home: Path):
    path = _edit(
        home, "gmv_daily", "  on_timeout: reject", "  on_timeout: reject\n  auto_approve_reason: fast"
    )
    (problem,) = _problems(home, path)
    assert (problem.key, problem.line) == ("approval.auto_approve_reason", _line(path, "auto_approve_reason"))
    assert "on_timeout is reject" in problem.message
    assert problem.fix == "remove it, or set on_timeout: approve"


def test_an_unknown_status_is_refused_with_the_close_one(home: Path):
    path = _edit(home, "gmv_daily", "grain: day", "grain: day\nstatus: deprecate")
    (problem,) = _problems(home, path)
    assert (problem.key, problem.line) == ("status", _line(path, "status: deprecate"))
    assert "'active', 'deprecated' or 'retired'" in problem.message
    assert problem.fix == "did you mean 'deprecated'?"


def test_replaced_by_must_name_a_metric_of_the_catalog(home: Path):
    path = _edit(home, "gmv_daily", "grain: day", "grain: day\nstatus: deprecated\nreplaced_by: gmv_daily_v2")
    (problem,) = _problems(home, path)
    assert (problem.key, problem.line) == ("replaced_by", _line(path, "replaced_by:"))
    assert problem.message == f"replaced_by names 'gmv_daily_v2', which is not a metric in {home / 'metrics'}"
    assert "name the key of an existing metric" in problem.fix
