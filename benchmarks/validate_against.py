"""validate --against benchmark: reviewing 1,000 metric files against a git ref vs plain validate.

Writes 1,000 variations of ``include/metrics/gmv_daily.yaml`` (``metric_0000`` … ``metric_0999``, each with
its own transform SQL file) into a temp git repository and commits them. Then ~10% change in the working
tree: half get a SQL edit without a version bump (each an error), half a new description with a version
bump and a new change_note (fine). The CLI then runs in-process, the way ``metrics-center`` runs it:

(a) ``metrics-center validate <metrics>`` — schema, cross-file checks, quality rules through Great
    Expectations' model (``check_with_gx=True``), lineage;
(b) ``metrics-center validate <metrics> --against HEAD`` — the same plus the review against HEAD.

Interpreter start and imports (Great Expectations alone takes seconds) are excluded: both run once untimed
first. Medians of interleaved repetitions; (b) must report exactly the SQL edits as problems.

Target: (b) <= 2x (a). Run: ``.venv/bin/python benchmarks/validate_against.py [--metrics N] [--reps N]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "include"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "-c", "commit.gpgsign=false"]


def write_repo(root: Path, *, metrics: int) -> Path:
    """A committed git repository with ``metrics`` metric files; returns its metrics folder."""
    metrics_dir, sql = root / "include" / "metrics", root / "include" / "sql"
    shutil.copytree(DEMO / "sql", sql)
    metrics_dir.mkdir(parents=True)
    shutil.copy(DEMO / "metrics" / "_teams.yaml", metrics_dir)
    template = (DEMO / "metrics" / "gmv_daily.yaml").read_text(encoding="utf-8")
    transform = (sql / "metrics" / "gmv_daily.sql").read_text(encoding="utf-8")
    for i in range(metrics):
        key = f"metric_{i:04d}"
        text = template.replace("key: gmv_daily", f"key: {key}").replace(
            "metrics/gmv_daily.sql", f"metrics/{key}.sql"
        )
        (metrics_dir / f"{key}.yaml").write_text(text, encoding="utf-8")
        (sql / "metrics" / f"{key}.sql").write_text(transform, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "metrics"], check=True)
    return metrics_dir


def change_tenth(metrics_dir: Path, *, metrics: int) -> tuple[int, int]:
    """Edit every 10th metric in the working tree; returns (SQL edits without bump, bumped edits)."""
    sql = metrics_dir.parent / "sql" / "metrics"
    unbumped = bumped = 0
    for n, i in enumerate(range(0, metrics, 10)):
        key = f"metric_{i:04d}"
        if n % 2 == 0:
            path = sql / f"{key}.sql"
            path.write_text(path.read_text().replace("WHERE status = 'paid'", "WHERE status IN ('paid')"))
            unbumped += 1
        else:
            path = metrics_dir / f"{key}.yaml"
            text = path.read_text().replace(
                "excluding cancelled orders.", "excluding cancelled and test orders."
            )
            text = text.replace("version: 1", "version: 2").replace(
                "First definition.", "Test orders excluded."
            )
            path.write_text(text)
            bumped += 1
    return unbumped, bumped


def run_cli(argv: list[str]) -> tuple[float, int, str, str]:
    from metrics_center.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return time.perf_counter() - started, code, out.getvalue(), err.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mc-bench-against-") as tmp:
        root = Path(tmp) / "repo"
        metrics_dir = write_repo(root, metrics=args.metrics)
        unbumped, bumped = change_tenth(metrics_dir, metrics=args.metrics)
        plain = ["validate", str(metrics_dir)]
        against = [*plain, "--against", "HEAD"]

        _, code, out, err = run_cli(plain)  # warm-up: imports (Great Expectations), caches
        assert code == 0, err[-2000:]
        _, code, out, err = run_cli(against)
        problems = re.findall(r"^\S+\.yaml:\d+: version: the meaning changed", err, flags=re.M)
        assert code == 1 and len(problems) == unbumped, f"expected {unbumped} problems:\n{err[-2000:]}"
        assert f"{unbumped + bumped} changed" in out, out[:500]

        times: dict[str, list[float]] = {"plain": [], "against": []}
        for _ in range(args.reps):
            for name, argv in (("plain", plain), ("against", against)):
                elapsed, *_ = run_cli(argv)
                times[name].append(elapsed)

    a, b = statistics.median(times["plain"]), statistics.median(times["against"])
    print(
        f"{args.metrics} metric files, {unbumped + bumped} changed ({unbumped} SQL edits without a version bump)"
    )
    print(
        "in-process metrics_center.cli.app.main([...]) after an untimed warm-up; median of", args.reps, "reps"
    )
    print(
        f"(a) validate                  {a:7.3f} s   (runs: {', '.join(f'{t:.2f}' for t in times['plain'])})"
    )
    print(
        f"(b) validate --against HEAD   {b:7.3f} s   (runs: {', '.join(f'{t:.2f}' for t in times['against'])})"
    )
    print(
        f"ratio (b)/(a) = {b / a:.2f}x   review alone ≈ {b - a:.3f} s   target <= 2x: {'met' if b <= 2 * a else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
