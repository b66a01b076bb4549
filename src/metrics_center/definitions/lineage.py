"""Metrics built from metrics (原子指标 → 派生指标): the graph of ``sources: {x: {metric: key}}`` and its rules.

An input may be as fine as the metric or finer — a weekly or monthly metric may read a daily one, a
monthly one cannot feed a daily one, and ISO weeks do not nest in months — and the graph may not
have a cycle. Pure functions over specs: the loader checks a catalog with them, the CLI prints
lineage, the dictionary shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from metrics_center.definitions.spec import Grain, MetricSource, MetricSpec

#: Which input grains a metric of each grain may read (an input period must fit inside one period).
FITS: dict[str, frozenset[str]] = {
    "day": frozenset({"day"}),
    "week": frozenset({"day", "week"}),
    "month": frozenset({"day", "month"}),
}


def grain_fits(*, input_grain: Grain, grain: Grain) -> bool:
    return input_grain in FITS[grain]


def metric_inputs(spec: MetricSpec) -> dict[str, str]:
    """``{source name: upstream metric key}`` of a metric's metric sources."""
    return {name: s.metric for name, s in spec.sources.items() if isinstance(s, MetricSource)}


def asset_uri(key: str) -> str:
    """The Asset a metric's ``publish`` emits and its downstream metrics are scheduled on."""
    return f"metrics_mart://{key}"


@dataclass(frozen=True)
class Lineage:
    """Direct edges both ways; ``upstream[k]`` are the metrics ``k`` reads."""

    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, specs: Iterable[MetricSpec]) -> Lineage:
        up: dict[str, tuple[str, ...]] = {}
        down: dict[str, list[str]] = {}
        for spec in specs:
            inputs = tuple(dict.fromkeys(metric_inputs(spec).values()))
            up[spec.key] = inputs
            for key in inputs:
                down.setdefault(key, []).append(spec.key)
        return cls(upstream=up, downstream={k: tuple(sorted(v)) for k, v in down.items()})

    def ancestors(self, key: str) -> list[str]:
        return self._walk(key, self.upstream)

    def descendants(self, key: str) -> list[str]:
        return self._walk(key, self.downstream)

    @staticmethod
    def _walk(key: str, edges: Mapping[str, tuple[str, ...]]) -> list[str]:
        seen: dict[str, None] = {}
        stack = list(edges.get(key, ()))
        while stack:
            node = stack.pop(0)
            if node in seen or node == key:
                continue
            seen[node] = None
            stack += edges.get(node, ())
        return list(seen)

    def cycles(self) -> list[list[str]]:
        """Each cycle once, as the list of keys around it (``[a, b]`` for a → b → a)."""
        found: list[list[str]] = []
        seen_sets: set[frozenset[str]] = set()
        state: dict[str, int] = {}  # 1 on the stack, 2 done

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            path.append(node)
            for nxt in self.upstream.get(node, ()):
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt) :]
                    if frozenset(cycle) not in seen_sets:
                        seen_sets.add(frozenset(cycle))
                        found.append(cycle)
                elif state.get(nxt) is None and nxt in self.upstream:
                    visit(nxt, path)
            path.pop()
            state[node] = 2

        for node in sorted(self.upstream):
            if state.get(node) is None:
                visit(node, [])
        return found

    def tree(self, key: str, *, direction: str) -> list[str]:
        """Indented lines of the lineage of ``key`` (``direction``: ``up`` or ``down``)."""
        edges = self.upstream if direction == "up" else self.downstream
        lines: list[str] = []

        def walk(node: str, depth: int, trail: frozenset[str]) -> None:
            for nxt in edges.get(node, ()):
                loop = " (cycle)" if nxt in trail else ""
                lines.append(f"{'  ' * depth}- {nxt}{loop}")
                if not loop:
                    walk(nxt, depth + 1, trail | {nxt})

        walk(key, 0, frozenset({key}))
        return lines
