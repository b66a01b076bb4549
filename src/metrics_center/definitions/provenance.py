"""Who changed a definition: the git author of its files when the definitions live in a git checkout.

Best effort and bounded: no git, no checkout, or a slow repository gives None (the broadcast then says
the author is unknown), never an error. Uncommitted edits are flagged: the author of the last commit
did not write them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5


@dataclass(frozen=True)
class Authorship:
    author: str
    commit: str
    committed_at: str
    uncommitted: bool

    def describe(self) -> str:
        text = f"{self.author} (commit {self.commit[:10]}, {self.committed_at[:10]})"
        return text + (" — with uncommitted edits in the deployed checkout" if self.uncommitted else "")

    def as_json(self) -> dict[str, object]:
        return {
            "author": self.author,
            "commit": self.commit,
            "committed_at": self.committed_at,
            "uncommitted": self.uncommitted,
        }


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def last_change(paths: list[Path]) -> Authorship | None:
    """The last commit touching any of ``paths`` (files of one checkout), or None."""
    existing = [p for p in paths if p.exists()]
    if not existing:
        return None
    cwd = existing[0].parent
    names = [str(p.resolve()) for p in existing]
    out = _git(cwd, "log", "-1", "--format=%an <%ae>%x00%H%x00%cI", "--", *names)
    if not out or "\x00" not in out:
        return None
    author, commit, when = out.strip().split("\x00")
    status = _git(cwd, "status", "--porcelain", "--", *names)
    return Authorship(
        author=author, commit=commit, committed_at=when, uncommitted=bool(status and status.strip())
    )
