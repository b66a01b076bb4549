"""Which keys a model accepts at a place in a file, and which one an unknown key was probably meant to be.

Walks the pydantic models' field types along a validation error's location (``("approval", "timout")``,
``("sources", "orders", "SqlSource", "sqll")`` — a union member's name or tag picks the member), so every
"unknown key" gets a "did you mean" from the model itself, at the top level and nested alike.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag

_Typed = tuple[Any, str | None]  # (a type, the union tag it was declared with)
_SEQUENCES = (list, tuple, set, frozenset, Sequence)
_MAPPINGS = (dict, Mapping)


def _flatten(annotation: Any, tag: str | None = None) -> list[_Typed]:
    """A type's alternatives: ``Annotated`` unwrapped (keeping a ``Tag``), unions and ``None`` split."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *meta = get_args(annotation)
        found = next((m.tag for m in meta if isinstance(m, Tag)), None)
        return _flatten(base, found or tag)
    if origin is Union or origin is types.UnionType:
        return [typed for arg in get_args(annotation) for typed in _flatten(arg, tag)]
    return [(annotation, tag)]


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _step(candidates: list[_Typed], part: str | int) -> list[_Typed]:
    if isinstance(part, str):
        members = [(t, tag) for t, tag in candidates if part in (tag, getattr(t, "__name__", None))]
        if members:  # pydantic names the union member it tried: keep only that one
            return members
        if "[" in part:  # a validator's wrapper (``function-after[...]``): not a place in the file
            return candidates
    found: list[_Typed] = []
    for candidate, _ in candidates:
        origin = get_origin(candidate)
        if _is_model(candidate):
            field = candidate.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                found += _flatten(field.annotation)
        elif origin in _SEQUENCES and isinstance(part, int) and get_args(candidate):
            found += _flatten(get_args(candidate)[0])
        elif origin in _MAPPINGS and len(get_args(candidate)) == 2:
            found += _flatten(get_args(candidate)[1])
    return found


def known_keys(model: type[BaseModel], loc: Sequence[str | int]) -> frozenset[str]:
    """The keys ``model`` accepts in the mapping at ``loc`` (pydantic's location, union members included)."""
    candidates: list[_Typed] = [(model, None)]
    for part in loc:
        candidates = _step(candidates, part)
    return frozenset(name for c, _ in candidates if _is_model(c) for name in c.model_fields)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` is most likely a misspelling of, if one is close enough."""
    match = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return match[0] if match else None
