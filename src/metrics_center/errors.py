"""The one exception family of Metrics Center; every message says how to fix the problem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MetricsCenterError(Exception):
    """Base class for every error Metrics Center raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in one definition file, printed as ``path:line: key: what — fix``."""

    path: Path
    key: str
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.key or '<file>'}: {self.message} — {self.fix}"


class SpecError(MetricsCenterError):
    """A metric or teams file is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MartError(MetricsCenterError):
    """The metrics mart refused an operation (e.g. a definition changed without a version bump)."""


class QualityCheckFailed(MetricsCenterError):
    """At least one blocking expectation failed; nothing is published for the run."""


class PublishRefused(MetricsCenterError):
    """``publish`` refused on purpose (not approved, stale definition, newer data published); nothing written."""


class SignoffPending(MetricsCenterError):
    """The run's definition version waits for its department's sign-off: ``publish`` waits, nothing written."""
