"""Turning data into HTML safely: the evidence Markdown (raw HTML escaped), Jinja2 templates, number formats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metrics_center.i18n.translate import N_, Deferred, _, n_, shown

if TYPE_CHECKING:
    from jinja2 import Environment
    from markdown_it import MarkdownIt

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # CommonMark + tables; ``html: False`` escapes any raw HTML in the text (and the default link
    # validation refuses javascript:, vbscript:, file: and data: links).
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown_html(text: str) -> str:
    """Markdown (an approval's evidence, a definition's doc) as HTML with every raw HTML tag escaped."""
    return _markdown().render(text or "")


def fmt_number(value: float | None, unit: str | None = None) -> str:
    """``12,345.68 CNY``; small ratios keep four significant digits (``0.1234``); ``—`` for nothing."""
    if value is None:
        return "—"
    text = f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{text} {unit}" if unit else text


def dims_label(dimensions: Any, order: Sequence[str] = ()) -> str:
    """``region=east, channel=app`` (in the definition's ``order``); ``(all)`` without dimensions."""
    dims = json.loads(dimensions) if isinstance(dimensions, str) else dict(dimensions or {})
    keys = [k for k in order if k in dims] + [k for k in dims if k not in order]
    return ", ".join(f"{k}={dims[k]}" for k in keys) or "(all)"


def fmt_when(moment: datetime | date | None) -> str:
    """UTC minutes for instants, ISO for days, ``—`` for nothing."""
    if moment is None:
        return "—"
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


#: The audit's decisions and the grains as people read them (the stored codes stay English).
_DECISIONS: dict[str, Deferred] = {
    "requested": N_("requested"),
    "submitted": N_("submitted"),
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    "refused": N_("refused"),
    "refused_attempt": N_("refused attempt"),
    "timed_out": N_("timed out"),
    "approved_on_timeout": N_("approved on timeout"),
    "rejected_on_timeout": N_("rejected on timeout"),
}
_GRAINS: dict[str, Deferred] = {"day": N_("day"), "week": N_("week"), "month": N_("month")}
_STATUSES: dict[str, Deferred] = {
    "active": N_("active"),
    "deprecated": N_("deprecated"),
    "retired": N_("retired"),
}


def decision_label(decision: str) -> str:
    known = _DECISIONS.get(decision)
    return known.shown() if known else decision.replace("_", " ")


def grain_label(grain: str) -> str:
    known = _GRAINS.get(grain)
    return known.shown() if known else grain


def status_label(status: str) -> str:
    """A metric's status (active, deprecated, retired) in the reader's language."""
    known = _STATUSES.get(status)
    return known.shown() if known else status


@cache
def templates() -> Environment:
    """The Jinja2 environment of the pages: autoescaped, undefined variables are errors."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
    from markupsafe import Markup

    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = fmt_number
    env.filters["dims"] = dims_label
    env.filters["when"] = fmt_when
    env.filters["markdown"] = lambda text: Markup(markdown_html(text))
    # Called while rendering, so the locale is whatever `using(...)` chose around `render_page`.
    env.globals.update(
        _=_,
        n_=n_,
        shown=shown,
        decision_label=decision_label,
        grain_label=grain_label,
        status_label=status_label,
    )
    return env


def render_page(template: str, *, locale: str | None = None, **context: Any) -> str:
    """``template`` in ``locale`` (``en``, ``zh-CN``; None: the current one): every ``_("…")`` of it and
    of what it calls."""
    from metrics_center.i18n.translate import using

    with using(locale) as chosen:
        return templates().get_template(template).render(locale=chosen.locale, **context)
