"""What Great Expectations itself says about a quality rule's arguments, before anything runs.

The two places that ask GX about expectations' arguments: :func:`gx_expectation_snapshot` (regenerate
the committed ``gx_expectations.json`` with ``python -m metrics_center.definitions.gx_rules``) and
:func:`expectation_argument_problems` (``metrics-center validate``'s deep check); plus the helpers
that turn GX's errors into one readable line, shared with :mod:`metrics_center.checks.expectations`.
GX is imported inside the functions only: importing this module is cheap.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from metrics_center.i18n.translate import N_, Deferred, _

if TYPE_CHECKING:
    pass

#: Fields GX declares on top of an expectation's own arguments that a metric's rule may not set: the
#: base ``Expectation`` fields (id, meta, notes, description, rendered_content, result_format,
#: catch_exceptions, severity, windows: bookkeeping, rendering, GX Cloud, or run behaviour that
#: Metrics Center fixes) plus these two, declared lower in GX's class tree.
EXTRA_INTERNAL_FIELDS = ("batch_id", "library_metadata")
SNAPSHOT_JSON = "gx_expectations.json"
_NAMEABLE = re.compile(r"expect_[a-z0-9_]+")  # what spec.Expectation.expect accepts
_MAX_ERROR = 300


class ArgumentProblem(NamedTuple):
    """GX rejects one argument of a rule (``argument`` None: the arguments taken together)."""

    argument: str | None
    message: str
    fix: str


def quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _short(text: object) -> str:
    """First line of an error text, capped: a quality result stores a message, not a traceback."""
    first = (str(text).strip().splitlines() or [""])[0]
    return first if len(first) <= _MAX_ERROR else first[: _MAX_ERROR - 1] + "…"


# --- the committed snapshot of GX's expectations and their arguments ----------------------------


def gx_expectation_snapshot() -> dict[str, Any]:
    """Every nameable built-in expectation of the installed GX with its accepted and required arguments."""
    quiet_gx()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation import Expectation as GxExpectation

    excluded = sorted({*GxExpectation.__fields__, *EXTRA_INTERNAL_FIELDS})
    expectations: dict[str, dict[str, list[str]]] = {}
    for cls in vars(gxe).values():
        if not (inspect.isclass(cls) and issubclass(cls, GxExpectation) and cls is not GxExpectation):
            continue
        if not _NAMEABLE.fullmatch(cls.expectation_type or ""):
            continue
        fields = [f for name, f in cls.__fields__.items() if name not in excluded]
        expectations[cls.expectation_type] = {
            "accepted": sorted(f.alias for f in fields),
            "required": sorted(f.alias for f in fields if f.required),
        }
    return {
        "great_expectations": gx.__version__,
        "excluded": excluded,
        "expectations": dict(sorted(expectations.items())),
    }


def snapshot_texts(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """File name → content of the committed snapshot file."""
    return {SNAPSHOT_JSON: json.dumps(snapshot, indent=2) + "\n"}


def write_gx_snapshot(*, folder: Path) -> list[Path]:
    """Regenerate the snapshot files in ``folder`` (``metrics_center/definitions``) from the installed GX."""
    written = []
    for name, text in snapshot_texts(gx_expectation_snapshot()).items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


# --- `metrics-center validate`: let GX's own models judge a rule's arguments --------------------

#: What to write instead, by pydantic (v1, as GX uses it) error type.
_WANTED = {
    "type_error.float": N_("a number"),
    "type_error.integer": N_("a whole number"),
    "type_error.str": N_("text"),
    "type_error.list": N_("a list such as {example}", example="[a, b]"),
    "type_error.set": N_("a list such as {example}", example="[a, b]"),
    "type_error.bool": N_("true or false"),
    "value_error.date": N_("a date such as 2024-01-31"),
    "value_error.datetime": N_("a date-time such as 2024-01-31T00:00:00"),
    "value_error.number.not_le": N_("a number ≤ {limit_value}"),
    "value_error.number.not_lt": N_("a number < {limit_value}"),
    "value_error.number.not_ge": N_("a number ≥ {limit_value}"),
    "value_error.number.not_gt": N_("a number > {limit_value}"),
    "value_error.const": N_("one of {permitted}"),
}


def _wanted(error: Mapping[str, Any]) -> str | None:
    template = _WANTED.get(error["type"])
    if template is None:
        return None
    ctx = dict(error.get("ctx") or {})
    if "permitted" in ctx:
        ctx["permitted"] = ", ".join(repr(p) for p in ctx["permitted"])
    try:
        return Deferred(template.msgid, {**ctx, **template.values}).shown()
    except (KeyError, IndexError):  # a GX version without that context: say nothing rather than crash
        return None


def _either(choices: list[str]) -> str:
    """``a or b or c`` in the current locale."""
    text = choices[0]
    for other in choices[1:]:
        text = _("{either} or {other}", either=text, other=other)
    return text


def _problems_from_errors(
    expect: str, kwargs: Mapping[str, Any], errors: list[dict[str, Any]]
) -> list[ArgumentProblem]:
    gallery = _("see {expect} in the GX expectation gallery", expect=expect)
    by_argument: dict[str | None, list[dict[str, Any]]] = {}
    for error in errors:
        loc = error.get("loc") or ("__root__",)
        argument = None if loc[0] == "__root__" else str(loc[0])
        by_argument.setdefault(argument, []).append(error)
    if len(by_argument) > 1:
        # GX's whole-rule checks run on what survived the field checks ("min_value and max_value
        # cannot both be None" after a bad min_value): report the arguments themselves first.
        by_argument.pop(None, None)
    problems = []
    for argument, group in by_argument.items():
        if argument is None:
            for error in group:
                message = _("{expect} rejects these arguments: {reason}", expect=expect, reason=error["msg"])
                problems.append(ArgumentProblem(None, message, gallery))
            continue
        # {"$PARAMETER": …} dicts are GX's suite parameters, an alternative nobody means here.
        group = [e for e in group if e["type"] != "type_error.dict"] or group
        messages = list(dict.fromkeys(e["msg"] for e in group))
        wanted = list(dict.fromkeys(w for w in map(_wanted, group) if w))
        value = kwargs.get(argument)
        problems.append(
            ArgumentProblem(
                argument,
                _(
                    "{value} is not valid for {expect} ({reasons})",
                    value=repr(value),
                    expect=expect,
                    reasons="; ".join(messages),
                ),
                _("write {wanted}", wanted=_either(wanted)) if wanted else gallery,
            )
        )
    return problems


def expectation_argument_problems(*, expect: str, kwargs: Mapping[str, Any]) -> list[ArgumentProblem]:
    """Build the expectation through GX's own model; each rejected argument becomes one problem."""
    quiet_gx()
    from great_expectations.compatibility.pydantic import ValidationError
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        get_expectation_impl(expect)(**kwargs)
    except ValidationError as exc:
        return _problems_from_errors(expect, kwargs, list(exc.errors()))
    except Exception as exc:  # GX may raise anything from its validators; report, never crash
        message = _("{expect} rejects these arguments: {reason}", expect=expect, reason=_short(exc))
        return [
            ArgumentProblem(None, message, _("see {expect} in the GX expectation gallery", expect=expect))
        ]
    return []


# --- run time -----------------------------------------------------------------------------------


def gx_error_text(exc: Exception, *, expect: str, kwargs: Mapping[str, Any]) -> str:
    from great_expectations.compatibility.pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = [
            f"{p.argument + ': ' if p.argument else ''}{p.message}"
            for p in _problems_from_errors(expect, kwargs, list(exc.errors()))
        ]
        return _short("invalid arguments: " + "; ".join(parts))
    return _short(f"{type(exc).__name__}: {exc}")


def raised_exception_text(exception_info: Any) -> str | None:
    """GX catches errors while computing metrics and reports them in ``exception_info``, maybe per metric."""
    if not isinstance(exception_info, Mapping):
        return None
    if exception_info.get("raised_exception"):
        return _short(exception_info.get("exception_message") or "Great Expectations raised an error")
    for value in exception_info.values():
        found = raised_exception_text(value)
        if found:
            return found
    return None


if __name__ == "__main__":
    for written in write_gx_snapshot(folder=Path(__file__).resolve().parent):
        print(f"wrote {written}")
