"""Translate a message into the current locale: ``_("Anomaly: {metric}", metric=…)`` and ``n_`` for counts.

The English text is the message id and the fallback; ``{name}`` placeholders are filled with
``str.format`` after translation, so a translation may reorder them. The current locale is a context
variable (per thread and per task), set around rendering with :func:`using`; nothing is global.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

#: The locales with a catalogue; the first is the default.
LOCALES = ("en", "zh-CN")
DEFAULT = "en"
_FOLDER = Path(__file__).with_name("locale")


@dataclass(frozen=True)
class Translator:
    """Messages of one locale. ``missing`` (strict mode) collects message ids with no translation."""

    locale: str
    messages: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    missing: set[str] | None = None

    def text(self, msgid: str, /, **values: object) -> str:
        found = self.messages.get(msgid) if self.locale != DEFAULT else None
        if isinstance(found, tuple):
            found = found[0]
        if not found:
            self._miss(msgid)
            found = msgid
        return found.format(**values) if values else found

    def plural(self, singular: str, plural: str, count: int, /, **values: object) -> str:
        values = {"count": count, **values}
        found = self.messages.get(singular) if self.locale != DEFAULT else None
        if self.locale == DEFAULT or not found:
            if self.locale != DEFAULT:
                self._miss(singular)
            return (singular if count == 1 else plural).format(**values)
        # Chinese has one form; a catalogue with more would pick by its own rule (not needed yet).
        chosen = found[0] if isinstance(found, tuple) else found
        return chosen.format(**values)

    def _miss(self, msgid: str) -> None:
        if self.missing is not None:
            self.missing.add(msgid)


def normalize(locale: str | None) -> str:
    """``zh``, ``zh_CN``, ``zh-Hans-CN`` … → ``zh-CN``; anything else we have no catalogue for → ``en``."""
    if not locale:
        return DEFAULT
    lowered = locale.strip().replace("_", "-").lower()
    if lowered.startswith("zh") and not re.match(r"zh-(hant|tw|hk|mo)\b", lowered):
        return "zh-CN"
    return DEFAULT


def negotiate(accept_language: str | None) -> str:
    """The best of :data:`LOCALES` for a browser's ``Accept-Language`` header (quality values honoured)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        if tag.lower().startswith("en"):
            return DEFAULT
        if normalize(tag) != DEFAULT:
            return normalize(tag)
    return DEFAULT


@functools.cache
def catalogue(locale: str) -> Mapping[str, str | tuple[str, ...]]:
    """The translations of ``locale`` (read from its ``.po`` file once)."""
    if locale == DEFAULT:
        return {}
    from babel.messages.pofile import read_po

    path = _FOLDER / locale.replace("-", "_") / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale.replace("-", "_"))
    found: dict[str, str | tuple[str, ...]] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        found[key] = tuple(message.string) if isinstance(message.string, tuple | list) else message.string
    return found


def translator(locale: str | None, *, strict: bool = False) -> Translator:
    code = normalize(locale)
    return Translator(locale=code, messages=catalogue(code), missing=set() if strict else None)


_ENGLISH = Translator(DEFAULT)
_current: ContextVar[Translator | None] = ContextVar("metrics_center_translator", default=None)


@contextlib.contextmanager
def using(locale: str | Translator | None) -> Iterator[Translator]:
    """Render in ``locale`` (a code, or a translator — e.g. a strict one in tests) inside the block; None
    keeps the current one (English unless an outer block chose another)."""
    if locale is None:
        yield current()
        return
    chosen = locale if isinstance(locale, Translator) else translator(locale)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def current() -> Translator:
    return _current.get() or _ENGLISH


def _(msgid: str, /, **values: object) -> str:
    """``msgid`` in the current locale, its ``{placeholders}`` filled from ``values``."""
    return current().text(msgid, **values)


def n_(singular: str, plural: str, count: int, /, **values: object) -> str:
    """The form for ``count`` (available as ``{count}``) in the current locale."""
    return current().plural(singular, plural, count, **values)


@dataclass(frozen=True)
class Deferred:
    """A message to be translated where it is shown, not where it is made: ``str()`` is the English text
    (what the audit trail keeps), :meth:`shown` the current locale's (what the person reads)."""

    msgid: str
    values: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return _ENGLISH.text(self.msgid, **self.values)

    def shown(self) -> str:
        return current().text(self.msgid, **self.values)


def N_(msgid: str, /, **values: object) -> Deferred:  # gettext's name for "translate later"
    """Mark ``msgid`` for the catalogue and translate it later, in the reader's locale."""
    return Deferred(msgid, dict(values))


def shown(text: str | Deferred) -> str:
    """What the reader sees: a deferred message in the current locale, plain text as it is."""
    return text.shown() if isinstance(text, Deferred) else text
