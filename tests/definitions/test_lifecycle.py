"""`status: active | deprecated | retired` and `replaced_by`: what the files may say, what readers of a
deprecated or retired metric are told, and that deprecating needs no new version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metrics_center.cli.app import main
from metrics_center.definitions.changes import compare_documents
from metrics_center.definitions.loader import load_catalog
from metrics_center.definitions.meaning import MEANING_FIELDS, load_definition

INCLUDE = Path(__file__).resolve().parents[2] / "include"
#: refund_rate_daily reads gmv_daily (source `gmv`) and refunds_daily.
READER, READ = "refund_rate_daily", "gmv_daily"


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    shutil.copytree(INCLUDE, tmp_path / "include")
    monkeypatch.delenv("METRICS_CENTER_TIMEZONE", raising=False)
    return tmp_path / "include"


def _lifecycle(home: Path, key: str, lines: str) -> Path:
    """Add lifecycle lines after `grain:` of a metric."""
    path = home / "metrics" / f"{key}.yaml"
    text = path.read_text()
    marker = next(line for line in text.splitlines() if line.startswith("grain:"))
    path.write_text(text.replace(marker, f"{marker}\n{lines}", 1))
    return path


def _line(path: Path, marker: str) -> int:
    (line,) = [n for n, text in enumerate(path.read_text().splitlines(), 1) if marker in text]
    return line


def _catalog(home: Path):
    return load_catalog(home / "metrics", sql_root=home / "sql")


def test_status_defaults_to_active_and_the_demo_has_no_lifecycle_findings():
    catalog = load_catalog(INCLUDE / "metrics", sql_root=INCLUDE / "sql")
    assert catalog.problems == {} and catalog.warnings == {}
    assert {m.spec.status for m in catalog.metrics.values()} == {"active"}
    assert {m.spec.replaced_by for m in catalog.metrics.values()} == {None}


def test_reading_a_retired_metric_is_refused_naming_its_replacement(home: Path):
    _lifecycle(home, READ, "status: retired\nreplaced_by: refunds_daily")
    catalog = _catalog(home)
    reader = home / "metrics" / f"{READER}.yaml"
    (problem,) = catalog.problems[reader]
    assert (problem.key, problem.line) == ("sources.gmv.metric", _line(reader, "metric: gmv_daily"))
    assert str(problem).endswith(
        "sources.gmv.metric: reads retired metric gmv_daily — read refunds_daily (its replacement) instead"
    )
    assert READER not in catalog.metrics and READ in catalog.metrics  # the retired one itself is fine


def test_reading_a_retired_metric_without_replacement_says_so(home: Path):
    _lifecycle(home, READ, "status: retired")
    (problem,) = _catalog(home).problems[home / "metrics" / f"{READER}.yaml"]
    assert problem.message == "reads retired metric gmv_daily"
    assert problem.fix == (
        "gmv_daily names no replacement (replaced_by): remove this source instead, or ask its owner (alice)"
    )


def test_reading_a_deprecated_metric_is_a_warning_not_a_problem(home: Path, capsys):
    _lifecycle(home, READ, "status: deprecated\nreplaced_by: refunds_daily")
    catalog = _catalog(home)
    reader = home / "metrics" / f"{READER}.yaml"
    assert catalog.problems == {} and READER in catalog.metrics
    (warning,) = catalog.warnings[reader]
    assert (warning.key, warning.line) == ("sources.gmv.metric", _line(reader, "metric: gmv_daily"))
    assert warning.message == "reads deprecated metric gmv_daily"
    assert warning.fix == "read refunds_daily (its replacement) before gmv_daily is retired"

    assert main(["validate", str(home / "metrics")]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"warning: {warning}"]
    assert out.strip() == "ok: 5 metric file(s) valid, 1 warning(s)"
    # validating another file alone does not show this file's warning
    assert main(["validate", str(home / "metrics" / "gmv_daily.yaml")]) == 0
    assert capsys.readouterr().err == ""


def test_a_retired_metric_may_read_a_retired_one(home: Path):
    _lifecycle(home, READ, "status: retired")
    _lifecycle(home, READER, "status: retired")
    assert _catalog(home).problems == {}


def test_replaced_by_on_an_active_metric_is_refused(home: Path):
    path = _lifecycle(home, READ, "replaced_by: refunds_daily")
    (problem,) = _catalog(home).problems[path]
    assert (problem.key, problem.line) == ("replaced_by", _line(path, "replaced_by:"))
    assert "status is active" in problem.message
    assert problem.fix == "set status: deprecated (or retired), or remove replaced_by"


def test_a_metric_cannot_be_replaced_by_itself(home: Path):
    path = _lifecycle(home, READ, "status: deprecated\nreplaced_by: gmv_daily")
    (problem,) = _catalog(home).problems[path]
    assert (problem.key, problem.message) == ("replaced_by", "a metric cannot be replaced by itself")


def test_a_replacement_that_is_retired_itself_is_refused(home: Path):
    _lifecycle(home, "refunds_daily", "status: retired\nreplaced_by: lead_conversion_rate")
    path = _lifecycle(home, "lead_conversion_rate", "status: deprecated\nreplaced_by: refunds_daily")
    catalog = _catalog(home)
    (problem,) = catalog.problems[path]
    assert problem.message == "replaced_by names refunds_daily, which is retired itself"
    assert (
        problem.fix
        == "name the metric that replaces it (lead_conversion_rate), or another metric that is not retired"
    )


def test_a_replacement_whose_file_is_broken_is_not_called_missing(home: Path):
    broken = home / "metrics" / "refunds_daily.yaml"
    broken.write_text(broken.read_text().replace("grain: day", "grain: hour"))
    _lifecycle(home, "lead_conversion_rate", "status: deprecated\nreplaced_by: refunds_daily")
    catalog = _catalog(home)
    assert "lead_conversion_rate" in catalog.metrics  # refunds_daily reports its own problem
    assert home / "metrics" / "lead_conversion_rate.yaml" not in catalog.problems


def test_deprecating_changes_no_meaning_and_needs_no_new_version(home: Path):
    assert "status" not in MEANING_FIELDS and "replaced_by" not in MEANING_FIELDS
    before = _catalog(home).metrics[READ].spec
    _lifecycle(home, READ, "status: deprecated\nreplaced_by: refunds_daily")
    after = _catalog(home).metrics[READ].spec
    old, new = load_definition(before, sql_root=home / "sql"), load_definition(after, sql_root=home / "sql")
    assert old.meaning_hash == new.meaning_hash
    change = compare_documents(old.document, new.document)
    assert not change.meaning_changed and not change.breaking
    assert change.summary() == ("non-breaking: status: active → deprecated; replaced_by: added refunds_daily")
    # a document stored before these fields existed reads as active, not as a change
    stored = {
        **old.document,
        "spec": {k: v for k, v in old.document["spec"].items() if k not in ("status", "replaced_by")},
    }
    assert compare_documents(stored, old.document).changes == ()
