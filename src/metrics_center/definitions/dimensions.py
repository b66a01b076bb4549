"""The canonical text of a dimension combination — the mart's key for "which slice of the metric".

``{"channel":"app","region":"east"}``: keys sorted, no spaces, UTF-8 (not ``\\u`` escapes). Built in
Python for a handful of rows and in DuckDB for a million; a test keeps the two identical.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8: how the mart writes every JSON value on SQLite."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dimensions_key(values: Mapping[str, Any]) -> str:
    """The canonical JSON text of one dimension combination (``{}`` when the metric has none)."""
    return canonical_json(dict(values))


def dimensions_key_sql(dimensions: Sequence[str]) -> str:
    """A DuckDB expression giving :func:`dimensions_key` of each row's ``dimensions`` columns.

    Dimension names are validated identifiers (``spec.IDENTIFIER``); no user value is spliced in.
    """
    if not dimensions:
        return "'{}'"
    fields = ", ".join(f'"{d}" := "{d}"' for d in sorted(dimensions))
    return f"to_json(struct_pack({fields}))::VARCHAR"
