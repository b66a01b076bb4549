"""What changed between two versions of a definition — each change classified once, here — and a readable diff.

**Breaking** changes change the numbers: the SQL (any file the definition uses), the sources (added,
removed or changed: connection, query, path, upstream metric), the transform, the grain, the unit,
the effective time zone, a dimension removed. **Non-breaking** changes change what people read or how
the metric is run: description, name, formula text, owner, approvers, quality rules, anomaly and
reconciliation settings, schedule, subscribers, tags, a dimension added. A YAML may force a version to
count as breaking with ``breaking: true`` (e.g. a source's data changed meaning upstream).

Whether a change needs a new version is a different question, answered by the meaning hash
(:data:`metrics_center.definitions.meaning.MEANING_FIELDS`): a new description needs a version but breaks nothing.

Works on the *documents* the mart stores (:func:`metrics_center.definitions.meaning.load_definition`), so a
version registered last year and a file in a git ref compare the same way. A document may also carry
``checks_sql`` (reconciliation SQL by path, added by :mod:`metrics_center.definitions.review` when both sides come
from files); it is compared only when both documents have it. Imports no Airflow.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from metrics_center.definitions.meaning import MEANING_FIELDS

#: Top-level spec fields whose change changes the numbers (dimensions are judged one by one).
BREAKING_FIELDS = frozenset({"key", "grain", "unit", "sources", "transform"})
#: Fields that describe the version itself, never "a change".
VERSION_FIELDS = frozenset({"version", "change_note", "breaking"})
#: Document key of the reconciliation SQL (by path); not part of the meaning.
CHECKS_SQL = "checks_sql"


@dataclass(frozen=True)
class FieldChange:
    """One changed field: ``path`` is ``grain``, ``sources.orders``, ``sql metrics/gmv.sql``, ``timezone``…"""

    path: str
    old: Any
    new: Any
    breaking: bool
    meaning: bool

    def describe(self) -> str:
        if self.old is None:
            what = f"added {_short(self.new)}" if not self.path.startswith(_SQL_PREFIXES) else "added"
        elif self.new is None:
            what = (
                f"removed (was {_short(self.old)})" if not self.path.startswith(_SQL_PREFIXES) else "removed"
            )
        elif self.path.startswith(_SQL_PREFIXES) or _long_text(self.old) or _long_text(self.new):
            what = "changed"  # the diff shows how
        else:
            what = f"{_short(self.old)} → {_short(self.new)}"
        return f"{self.path}: {what}"


_SQL_PREFIXES = ("sql ", "check sql ")


@dataclass(frozen=True)
class DefinitionChange:
    """Every change from one document to another, and whether the new version is breaking."""

    changes: tuple[FieldChange, ...] = field(default_factory=tuple)
    forced_breaking: bool = False

    @property
    def breaking(self) -> bool:
        return self.forced_breaking or any(c.breaking for c in self.changes)

    @property
    def meaning_changed(self) -> bool:
        """Whether a field of the meaning changed (a new version is required); the hash is authoritative."""
        return any(c.meaning for c in self.changes)

    @property
    def breaking_changes(self) -> list[FieldChange]:
        return [c for c in self.changes if c.breaking]

    def summary(self) -> str:
        """``breaking: sql metrics/gmv.sql: changed; dimensions.channel: removed`` (one line)."""
        if not self.changes and not self.forced_breaking:
            return "no change"
        label = "breaking" if self.breaking else "non-breaking"
        forced = " (forced by breaking: true)" if self.forced_breaking and not self.breaking_changes else ""
        described = "; ".join(c.describe() for c in self.changes) or "no field changed"
        return f"{label}{forced}: {described}"


def compare_documents(old: dict[str, Any] | None, new: dict[str, Any]) -> DefinitionChange:
    """Classify every difference between two stored definition documents (``old`` None: a first version).

    ``breaking: true`` in the new YAML forces breaking only for a new version (or a first one): the same
    version compared with itself is no change, whatever it says.
    """
    new_spec = _with_defaults(new["spec"])
    if old is None:
        return DefinitionChange(changes=(), forced_breaking=bool(new_spec.get("breaking")))
    old_spec = _with_defaults(old["spec"])
    forced = bool(new_spec.get("breaking")) and old_spec.get("version") != new_spec.get("version")
    changes: list[FieldChange] = []
    for name in dict.fromkeys([*old_spec, *new_spec]):
        if name in VERSION_FIELDS or name == "timezone" or old_spec.get(name) == new_spec.get(name):
            continue
        before, after = old_spec.get(name), new_spec.get(name)
        meaning = name in MEANING_FIELDS
        if name == "dimensions":
            changes += _dimension_changes(before or [], after or [])
        elif name == "sources":
            changes += _keyed_changes("sources", before or {}, after or {}, breaking=True, meaning=meaning)
        else:
            changes.append(
                FieldChange(
                    path=name, old=before, new=after, breaking=name in BREAKING_FIELDS, meaning=meaning
                )
            )
    changes += _timezone_changes(old, new, old_spec=old_spec, new_spec=new_spec)
    changes += _sql_changes("sql ", old.get("sql") or {}, new.get("sql") or {}, breaking=True)
    if CHECKS_SQL in old and CHECKS_SQL in new:
        changes += _sql_changes("check sql ", old[CHECKS_SQL] or {}, new[CHECKS_SQL] or {}, breaking=False)
    return DefinitionChange(changes=tuple(changes), forced_breaking=forced)


def _timezone_changes(
    old: dict[str, Any], new: dict[str, Any], *, old_spec: dict[str, Any], new_spec: dict[str, Any]
) -> list[FieldChange]:
    """The *effective* zone moves period boundaries (breaking); writing down the zone already in effect does not."""
    before, after = old.get("effective_timezone"), new.get("effective_timezone")
    if before != after:
        return [FieldChange(path="timezone", old=before, new=after, breaking=True, meaning=True)]
    if old_spec.get("timezone") != new_spec.get("timezone"):
        return [
            FieldChange(
                path="timezone (written)",
                old=old_spec.get("timezone"),
                new=new_spec.get("timezone"),
                breaking=False,
                meaning=False,
            )
        ]
    return []


def _sql_changes(
    prefix: str, before: dict[str, str], after: dict[str, str], *, breaking: bool
) -> list[FieldChange]:
    return [
        FieldChange(
            path=f"{prefix}{path}",
            old=before.get(path),
            new=after.get(path),
            breaking=breaking,
            meaning=breaking,
        )
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


def _dimension_changes(before: list[str], after: list[str]) -> list[FieldChange]:
    removed = [d for d in before if d not in after]
    added = [d for d in after if d not in before]
    changes = [
        FieldChange(path=f"dimensions.{d}", old=d, new=None, breaking=True, meaning=True) for d in removed
    ]
    changes += [
        FieldChange(path=f"dimensions.{d}", old=None, new=d, breaking=False, meaning=True) for d in added
    ]
    if not removed and not added:  # the same dimensions in another order: the values are the same
        changes.append(FieldChange(path="dimensions", old=before, new=after, breaking=False, meaning=True))
    return changes


def _keyed_changes(
    prefix: str, before: dict[str, Any], after: dict[str, Any], *, breaking: bool, meaning: bool
) -> list[FieldChange]:
    return [
        FieldChange(
            path=f"{prefix}.{key}",
            old=before.get(key),
            new=after.get(key),
            breaking=breaking,
            meaning=meaning,
        )
        for key in dict.fromkeys([*before, *after])
        if before.get(key) != after.get(key)
    ]


@cache
def _spec_defaults() -> dict[str, Any]:
    """Top-level defaults of :class:`MetricSpec` as JSON values (``breaking: false``, ``aggregation: none``…)."""
    from pydantic_core import to_jsonable_python

    from metrics_center.definitions.spec import MetricSpec

    return {
        name: to_jsonable_python(info.get_default(call_default_factory=True))
        for name, info in MetricSpec.model_fields.items()
        if not info.is_required()
    }


def _with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with the fields added since it was stored filled in, so they do not read as changes."""
    return {**_spec_defaults(), **spec}


def readable_document(document: dict[str, Any]) -> str:
    """The definition as people read it in a review: the YAML fields (defaults left out), then each SQL file."""
    return "\n".join(text for _, text in _sections(document))


def _sections(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, text) of each part of a document: the YAML, then every SQL file by path."""
    import yaml

    defaults = _spec_defaults()
    spec = document["spec"]
    shown = {
        k: v for k, v in spec.items() if v not in (None, [], {}) and (k not in defaults or v != defaults[k])
    }
    yaml_text = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100).rstrip()
    yaml_text += f"\n# effective time zone: {document.get('effective_timezone')}\n"
    sections = [(f"{spec.get('key', 'metric')}.yaml", yaml_text)]
    for prefix, key in (("sql", "sql"), ("check sql", CHECKS_SQL)):
        for path, text in sorted((document.get(key) or {}).items()):
            body = "(missing)\n" if text is None else text.rstrip() + "\n"
            sections.append((f"{prefix} {path}", f"-- {path}\n{body}"))
    return sections


def unified_diff(old: dict[str, Any] | None, new: dict[str, Any], *, old_label: str, new_label: str) -> str:
    """A unified diff of :func:`readable_document`, one section per part (YAML, each SQL file).

    Everything is added when ``old`` is None. Labels read ``<old_label>: <part>``, e.g.
    ``origin/main: sql metrics/gmv_daily.sql``.
    """
    before = dict(_sections(old)) if old is not None else {}
    after = dict(_sections(new))
    out: list[str] = []
    for name in dict.fromkeys([*after, *before]):
        out += difflib.unified_diff(
            before.get(name, "").splitlines(keepends=True),
            after.get(name, "").splitlines(keepends=True),
            fromfile=f"{old_label}: {name}",
            tofile=f"{new_label}: {name}",
            n=3,
        )
    return "".join(out)


def truncate_diff(diff: str, *, max_lines: int) -> tuple[str, bool]:
    """The first ``max_lines`` lines of a diff, and whether anything was cut."""
    lines = diff.splitlines()
    if len(lines) <= max_lines:
        return diff, False
    return "\n".join(lines[:max_lines]) + f"\n… {len(lines) - max_lines} more line(s)\n", True


def _long_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 40


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
