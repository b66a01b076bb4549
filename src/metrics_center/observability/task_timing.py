"""Where a task's time goes, when asked (``METRICS_CENTER_TASK_TIMING=1``): our imports, the mart, staging I/O.

For the throughput benchmark (benchmarks/celery_throughput.py), which reads the one line each task logs —
``metrics_center.timing {"task": …, "wall": …, "imports": …, "mart": …, "staging": …, "ours": …}`` — and
reports our overhead against each task's wall time. Off by default: nothing is patched or measured then.

- imports: time spent importing modules not imported yet (``builtins.__import__``, outermost call only);
- mart: SQL statements executed through SQLAlchemy (cursor time; publish's bulk ``COPY`` of the values is the
  task's work, not overhead, and is not counted);
- staging: writing and reading staged Parquet (``PartWriter``, results, downloads).
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_totals: dict[str, float] = {}
_state: dict[str, Any] = {}


def enabled() -> bool:
    return os.environ.get("METRICS_CENTER_TASK_TIMING", "").lower() in ("1", "true", "yes")


@contextmanager
def staging() -> Iterator[None]:
    """Count the block as staging I/O (only while a task is being timed)."""
    if "start" not in _state:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        _totals["staging"] = _totals.get("staging", 0.0) + time.perf_counter() - start


def _timed_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    original = _state["import"]
    if level == 0 and name in sys.modules and not fromlist:
        return original(name, globals, locals, fromlist, level)
    depth = _state.get("depth", 0)
    _state["depth"] = depth + 1
    start = time.perf_counter()
    try:
        return original(name, globals, locals, fromlist, level)
    finally:
        _state["depth"] = depth
        if depth == 0:
            _totals["imports"] = _totals.get("imports", 0.0) + time.perf_counter() - start


def _before(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: Any) -> None:
    conn.info["mc_timing_start"] = time.perf_counter()


def _after(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: Any) -> None:
    start = conn.info.pop("mc_timing_start", None)
    if start is not None and "start" in _state:
        _totals["mart"] = _totals.get("mart", 0.0) + time.perf_counter() - start


def begin() -> None:
    """Start timing this task (the operator's ``pre_execute``)."""
    if not enabled() or "start" in _state:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _totals.clear()
    _state.update(start=time.perf_counter(), depth=0, **{"import": builtins.__import__})
    builtins.__import__ = _timed_import
    if not event.contains(Engine, "before_cursor_execute", _before):
        event.listen(Engine, "before_cursor_execute", _before)
        event.listen(Engine, "after_cursor_execute", _after)


def end(*, task_id: str) -> str | None:
    """Stop timing; the line to log (the operator's ``post_execute``), or None when not timing."""
    if "start" not in _state:
        return None
    builtins.__import__ = _state.pop("import")
    wall = time.perf_counter() - _state.pop("start")
    parts = {k: round(_totals.get(k, 0.0), 4) for k in ("imports", "mart", "staging")}
    record = {"task": task_id, "wall": round(wall, 4), **parts, "ours": round(sum(parts.values()), 4)}
    return "metrics_center.timing " + json.dumps(record)
