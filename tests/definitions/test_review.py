"""``validate --against REF``, ``diff`` and ``history`` on a real git repository and a real SQLite mart.

Each test commits the demo's metrics and SQL in a fresh repository, edits the working tree the way a
pull request would, and runs the CLI in-process (``metrics_center.cli.app.main``) as CI would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from metrics_center.cli.app import main
from metrics_center.definitions.loader import parse_spec
from metrics_center.definitions.meaning import load_definition

#: The demo's metric files (the repo made in each test starts as a copy of them).
N_DEMO = len([p for p in (Path(__file__).resolve().parents[2] / "include" / "metrics").glob("[!_]*.yaml")])

INCLUDE = Path(__file__).resolve().parents[2] / "include"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
#: ``path:line: key: what — fix`` (as in test_validate_cli.py).
PROBLEM_LINE = re.compile(
    r"^(?P<path>[^:\n]+\.ya?ml):(?P<line>[1-9]\d*): (?P<key>[a-z_.]+): (?P<what>\S.*?) — (?P<fix>\S.*)$"
)


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.metrics = root / "include" / "metrics"
        self.sql = root / "include" / "sql"

    def git(self, *args: str) -> str:
        return subprocess.run(
            [*GIT, "-C", str(self.root), *args], check=True, capture_output=True, text=True
        ).stdout

    def commit(self, message: str = "change") -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def edit(self, rel: str, old: str, new: str) -> Path:
        path = self.root / "include" / rel
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return path

    def line_of(self, rel: str, prefix: str) -> int:
        lines = (self.root / "include" / rel).read_text(encoding="utf-8").splitlines()
        return next(i for i, line in enumerate(lines, 1) if line.startswith(prefix))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Repo:
    monkeypatch.delenv("METRICS_CENTER_TIMEZONE", raising=False)
    root = tmp_path / "metrics-repo"
    shutil.copytree(INCLUDE / "metrics", root / "include" / "metrics")
    shutil.copytree(INCLUDE / "sql", root / "include" / "sql")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = Repo(root)
    repo.commit("metrics")
    return repo


def run(capsys, *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def validate(capsys, repo: Repo, *paths: Path, ref: str = "HEAD") -> tuple[int, str, str]:
    return run(capsys, "validate", *(paths or [repo.metrics]), "--against", ref)


def problems(err: str) -> list[re.Match[str]]:
    matches = [PROBLEM_LINE.match(line) for line in err.splitlines()]
    return [m for m in matches if m]


def test_reformatting_and_comments_change_nothing(repo, capsys):
    path = repo.metrics / "gmv_daily.yaml"
    before = load_definition(parse_spec(path), sql_root=repo.sql).meaning_hash
    data = yaml.safe_load(path.read_text())
    reordered = dict(sorted(data.items()))  # every key in another order, flow lists now block lists
    path.write_text("# GMV, reformatted\n" + yaml.safe_dump(reordered, allow_unicode=True) + "# the end\n")
    assert repo.git("status", "--porcelain").strip() == "M include/metrics/gmv_daily.yaml"

    assert load_definition(parse_spec(path), sql_root=repo.sql).meaning_hash == before
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert f"against HEAD: 0 changed, 0 new, 0 removed, {N_DEMO} unchanged" in out


def test_sql_change_without_a_version_bump_is_an_error_at_the_version_line(repo, capsys):
    repo.edit("sql/metrics/gmv_daily.sql", "WHERE status = 'paid'", "WHERE status = 'paid' AND amount > 0")
    code, out, err = validate(capsys, repo)
    assert code == 1
    [problem] = problems(err)
    assert problem["path"] == str(repo.metrics / "gmv_daily.yaml")
    assert int(problem["line"]) == repo.line_of("metrics/gmv_daily.yaml", "version:")
    assert problem["key"] == "version"
    assert "meaning changed since HEAD (sql metrics/gmv_daily.sql) but version 1 is reused" in problem["what"]
    assert problem["fix"] == "set version: 2 and say what changed in change_note"
    assert "gmv_daily v1 (same version): breaking: sql metrics/gmv_daily.sql: changed" in out
    assert err.splitlines()[-1] == f"1 problem(s) in {N_DEMO} metric file(s)"


def test_a_committed_change_counts_against_an_older_ref(repo, capsys):
    repo.edit("sql/sales/orders.sql", "FROM orders", "FROM orders -- replica")
    repo.commit("orders from the replica")
    code, _, _ = validate(capsys, repo)  # HEAD has it: nothing to review
    assert code == 0
    code, out, err = validate(capsys, repo, ref="HEAD~1")
    assert code == 1
    # Every metric reading sales/orders.sql changed meaning.
    assert sorted(Path(m["path"]).name for m in problems(err)) == [
        "gmv_daily.yaml",
        "lead_conversion_rate.yaml",
        "refund_rate_weekly.yaml",
    ]
    assert f"against HEAD~1: 3 changed, 0 new, 0 removed, {N_DEMO - 3} unchanged" in out


def test_description_change_needs_a_version_but_is_not_breaking(repo, capsys):
    repo.edit(
        "metrics/refund_rate_weekly.yaml", "description: Refunds booked", "description: All refunds booked"
    )
    code, out, err = validate(capsys, repo)
    assert code == 1
    [problem] = problems(err)
    assert (Path(problem["path"]).name, problem["key"]) == ("refund_rate_weekly.yaml", "version")
    assert "(description)" in problem["what"]
    assert "refund_rate_weekly v2 (same version): non-breaking: description: changed" in out


def test_operational_change_needs_no_version(repo, capsys):
    repo.edit("metrics/gmv_daily.yaml", "timeout: 24h", "timeout: 48h")
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert "gmv_daily v1 (same version): non-breaking: approval:" in out


def test_reconciliation_sql_is_shown_but_needs_no_version(repo, capsys):
    repo.edit(
        "sql/reconcile/gmv_vs_settled_cash.sql",
        "SELECT",
        "SELECT /* settled */",
    )
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert (
        "gmv_daily v1 (same version): non-breaking: check sql reconcile/gmv_vs_settled_cash.sql: changed"
        in out
    )


def test_bump_without_a_new_change_note_is_an_error(repo, capsys):
    repo.edit("metrics/gmv_daily.yaml", "unit: CNY", "unit: USD")
    repo.edit("metrics/gmv_daily.yaml", "version: 1", "version: 2")
    code, _, err = validate(capsys, repo)
    assert code == 1
    [problem] = problems(err)
    assert problem["key"] == "change_note"
    assert int(problem["line"]) == repo.line_of("metrics/gmv_daily.yaml", "change_note:")
    assert "version 2 keeps the change_note of version 1 ('First definition.')" in problem["what"]


def test_version_going_backwards_is_an_error(repo, capsys):
    repo.edit(
        "metrics/gmv_daily.yaml",
        "version: 1\nchange_note: First definition.",
        "version: 3\nchange_note: Third.",
    )
    repo.commit("v3")
    repo.edit("metrics/gmv_daily.yaml", "version: 3", "version: 2")
    code, _, err = validate(capsys, repo)
    assert code == 1
    [problem] = problems(err)
    assert problem["key"] == "version"
    assert "version 2 is lower than version 3 at HEAD; versions only go up" in problem["what"]
    assert problem["fix"] == "set version: 3 back (the meaning did not change)"


def test_bumped_version_with_a_new_note_passes_and_is_breaking(repo, capsys):
    repo.edit("sql/metrics/gmv_daily.sql", "WHERE status = 'paid'", "WHERE status = 'paid' AND amount > 0")
    repo.edit(
        "metrics/gmv_daily.yaml",
        "version: 1\nchange_note: First definition.",
        "version: 2\nchange_note: Zero amounts excluded.",
    )
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert "gmv_daily v1 → v2: breaking: sql metrics/gmv_daily.sql: changed" in out
    assert out.splitlines()[-1] == f"ok: {N_DEMO} metric file(s) valid"


def test_breaking_true_forces_breaking(repo, capsys):
    repo.edit(
        "metrics/refund_rate_weekly.yaml",
        "version: 2\nchange_note: >-\n  Published as a ratio",
        "version: 3\nbreaking: true\nchange_note: >-\n  Finance now books refunds at settlement. Published as a ratio",
    )
    repo.edit(
        "metrics/refund_rate_weekly.yaml", "description: Refunds booked", "description: Refunds settled"
    )
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert "refund_rate_weekly v2 → v3: breaking (forced by breaking: true): description: changed" in out


def test_new_and_removed_metrics_are_fine_and_listed(repo, capsys):
    new = repo.metrics / "gmv_net.yaml"  # untracked: git never saw it
    new.write_text((repo.metrics / "gmv_daily.yaml").read_text().replace("key: gmv_daily", "key: gmv_net"))
    (repo.metrics / "lead_conversion_rate.yaml").unlink()
    code, out, err = validate(capsys, repo)
    assert (code, err) == (0, "")
    assert f"against HEAD: 0 changed, 1 new, 1 removed, {N_DEMO - 1} unchanged" in out
    assert "  gmv_net v1: new metric" in out
    assert "  lead_conversion_rate: removed (was v2)" in out


def test_one_file_reports_only_that_file(repo, capsys):
    repo.edit("metrics/gmv_daily.yaml", "unit: CNY", "unit: USD")
    repo.edit("metrics/refund_rate_weekly.yaml", "unit: ratio", "unit: percent")
    code, out, err = validate(capsys, repo, repo.metrics / "refund_rate_weekly.yaml")
    assert code == 1
    assert [Path(m["path"]).name for m in problems(err)] == ["refund_rate_weekly.yaml"]
    assert "gmv_daily" not in out
    assert "refund_rate_weekly v2 (same version): breaking: unit: ratio → percent" in out


def test_unknown_ref_is_a_clear_error(repo, capsys):
    code, _, err = validate(capsys, repo, ref="origin/nope")
    assert code == 1
    assert "metrics-center validate --against origin/nope: 'origin/nope' is not a commit in" in err
    assert "fetch it first" in err and "Traceback" not in err


def test_a_folder_outside_git_is_a_clear_error(tmp_path, capsys):
    shutil.copytree(INCLUDE / "metrics", tmp_path / "include" / "metrics")
    shutil.copytree(INCLUDE / "sql", tmp_path / "include" / "sql")
    code, _, err = run(capsys, "validate", tmp_path / "include" / "metrics", "--against", "HEAD")
    assert code == 1
    assert "is not in a git checkout" in err and "--against needs the definitions under git" in err


def test_diff_against_a_ref_shows_the_classification_and_the_sql_line(repo, capsys):
    repo.edit("sql/metrics/gmv_daily.sql", "WHERE status = 'paid'", "WHERE status = 'paid' AND amount > 0")
    code, out, _ = run(capsys, "diff", "gmv_daily", "--against", "HEAD", "--metrics-dir", repo.metrics)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "gmv_daily v1 (HEAD) → v1 (working tree): breaking: sql metrics/gmv_daily.sql: changed"
    assert (
        lines[1].startswith(f"problem: {repo.metrics / 'gmv_daily.yaml'}:")
        and "version 1 is reused" in lines[1]
    )
    assert "--- HEAD: sql metrics/gmv_daily.sql\n+++ working tree: sql metrics/gmv_daily.sql\n" in out
    assert "-    WHERE status = 'paid'\n+    WHERE status = 'paid' AND amount > 0\n" in out

    code, out, _ = run(
        capsys,
        "diff",
        "gmv_daily",
        "--against",
        "HEAD",
        "--metrics-dir",
        repo.metrics,
        "--format",
        "markdown",
    )
    assert out.startswith(
        "**gmv_daily v1 (HEAD) → v1 (working tree)**: **breaking**: sql metrics/gmv_daily.sql"
    )
    block = re.search(r"^```diff\n(.*?)^```$", out, flags=re.S | re.M)
    assert block and "+    WHERE status = 'paid' AND amount > 0" in block[1]


def test_diff_of_an_unknown_key_is_a_clear_error(repo, capsys):
    code, _, err = run(capsys, "diff", "nope", "--against", "HEAD", "--metrics-dir", repo.metrics)
    assert code == 2  # the command could not do its job (1: problems found)
    assert err.startswith("metrics-center diff: 'nope' is not defined in") and "Traceback" not in err


# --- the mart --------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_mart(tmp_path):
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'mart.db'}"
    engine = create_mart_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()


def _register(engine, repo: Repo, *, at: datetime) -> None:
    from metrics_center.mart.definitions import register_definition

    spec = parse_spec(repo.metrics / "gmv_daily.yaml")
    definition = load_definition(spec, sql_root=repo.sql)
    status = register_definition(
        engine, spec=spec, definition=definition.document, definition_hash=definition.meaning_hash, now=at
    )
    assert status == "new_version"


def test_history_lists_versions_and_diffs_them(repo, sqlite_mart, capsys):
    url, engine = sqlite_mart
    _register(engine, repo, at=datetime(2026, 10, 1, 6, tzinfo=UTC))
    v1_hash = load_definition(parse_spec(repo.metrics / "gmv_daily.yaml"), sql_root=repo.sql).meaning_hash
    repo.edit("sql/metrics/gmv_daily.sql", "WHERE status = 'paid'", "WHERE status = 'paid' AND amount > 0")
    repo.edit(
        "metrics/gmv_daily.yaml",
        "version: 1\nchange_note: First definition.",
        "version: 2\nchange_note: Zero amounts excluded.",
    )
    _register(engine, repo, at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC))

    code, out, err = run(capsys, "history", "gmv_daily", "--url", url)
    assert (code, err) == (0, "")
    assert out.startswith("gmv_daily: 2 version(s) in the mart\n")
    assert f"v1  2026-10-01 06:00 UTC → 2026-11-02 09:30 UTC  meaning {v1_hash[:12]}  first version\n" in out
    assert "v2  2026-11-02 09:30 UTC → current  meaning " in out
    assert "breaking: sql metrics/gmv_daily.sql: changed" in out
    assert "    change note: Zero amounts excluded." in out
    assert "v1 → v2:\n" in out and "+    WHERE status = 'paid' AND amount > 0\n" in out

    code, out, _ = run(capsys, "history", "gmv_daily", "--url", url, "--format", "markdown", "--no-diff")
    assert "| v2 | 2026-11-02 09:30 UTC | current |" in out and "```" not in out


def test_diff_against_the_mart_warns_when_the_mart_would_refuse(repo, sqlite_mart, capsys):
    url, engine = sqlite_mart
    _register(engine, repo, at=datetime(2026, 10, 1, tzinfo=UTC))
    repo.edit("metrics/gmv_daily.yaml", "dimensions: [region, channel]", "dimensions: [region]")
    repo.edit("sql/metrics/gmv_daily.sql", "region, channel", "region")
    code, out, _ = run(capsys, "diff", "gmv_daily", "--url", url, "--metrics-dir", repo.metrics)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(
        "gmv_daily v1 (mart v1) → v1 (working tree): breaking: dimensions.channel: removed"
    )
    assert lines[1] == (
        "problem: the meaning changed but version 1 is already registered with another meaning — set version: 2 "
        "and say what changed in change_note"
    )
    assert " dimensions:\n - region\n-- channel\n" in out
    assert (
        "-    SELECT region, channel, SUM(amount) AS amount\n+    SELECT region, SUM(amount) AS amount\n"
        in out
    )


def test_history_of_an_unregistered_metric_or_a_bad_mart_is_a_clear_error(sqlite_mart, tmp_path, capsys):
    url, _ = sqlite_mart
    code, _, err = run(capsys, "history", "gmv_daily", "--url", url)
    assert code == 1 and "gmv_daily has no version registered in the mart" in err
    code, _, err = run(capsys, "history", "gmv_daily", "--url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert code == 2 and "cannot read metric_definition" in err and "metrics-center mart upgrade" in err
