"""Read metric and teams files, validate them and report every problem as ``path:line: key: what — fix``.

A broken file never stops the others from loading: :func:`load_catalog` returns the good specs and,
separately, the problems of each bad file. A file's problems come in one pass: every schema error, and —
when the only schema errors are unknown keys — the later checks too, run as if each misspelt key were the
key it is close to (else dropped); when the schema fails otherwise, each quality rule is still checked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from metrics_center.definitions.known_keys import closest, known_keys
from metrics_center.definitions.lifecycle import catalog_findings, spec_findings
from metrics_center.definitions.rule_checks import quality_findings, rule_findings
from metrics_center.definitions.spec import (
    DIMENSION_TAGS,
    MAX_KEY_LENGTH,
    Expectation,
    FileSource,
    MetricSource,
    MetricSpec,
    SqlSource,
    Teams,
)
from metrics_center.errors import SpecError, SpecProblem
from metrics_center.i18n.translate import DEFAULT, N_, Deferred, _, current, n_, translator

TEAMS_FILE = "_teams.yaml"
#: ``approval.on_timeout: approve`` after less than this publishes unanswered numbers too fast to go unexplained.
AUTO_APPROVE_MIN_TIMEOUT = timedelta(hours=1)
DATA_ROOT_FIX = N_("give a path relative to METRICS_CENTER_DATA_ROOT")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Short fixes for pydantic's error types; the message already says what is wrong. Translated where shown
# (problems are made in the reader's locale: the CLI's, English while Airflow parses DAGs).
_FIXES = {
    "missing": N_("add this key"),
    "extra_forbidden": N_("remove it, or check its spelling against `metrics-center schema`"),
    "string_pattern_mismatch": N_("use lower-case letters, digits and underscores, starting with a letter"),
    "literal_error": N_("use one of the listed values"),
    "int_parsing": N_("write a whole number"),
    "greater_than_equal": N_("raise the number"),
    "greater_than": N_("use a number above that limit"),
    "less_than": N_("use a number below that limit"),
    "less_than_equal": N_("lower the number"),
    "too_short": N_("add at least one entry"),
    "union_tag_invalid": N_("give either conn_id + sql, path, or metric"),
}

#: pydantic's own messages (its English, word for word, with its context as placeholders), so a reader of
#: another locale gets them translated; a message that does not come out the same in English is kept as
#: pydantic wrote it (another pydantic version).
_PYDANTIC_MESSAGES = {
    "literal_error": N_("Input should be {expected}"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_type": N_("Input should be a valid integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "float_type": N_("Input should be a valid number"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "bool_type": N_("Input should be a valid boolean"),
    "string_type": N_("Input should be a valid string"),
    "dict_type": N_("Input should be a valid dictionary"),
    "list_type": N_("Input should be a valid list"),
    "model_type": N_("Input should be a valid dictionary or instance of {class_name}"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "union_tag_invalid": N_(
        "Input tag '{tag}' found using {discriminator} does not match any of the expected tags: {expected_tags}"
    ),
}
_ENGLISH = translator("en")


def _counted(err: Mapping[str, Any]) -> tuple[str, str] | None:
    """(English, shown) of pydantic's length messages, which say item/items and character/characters."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    try:
        if kind == "too_short":
            forms = (
                "{field_type} should have at least {count} item after validation, not {actual_length}",
                "{field_type} should have at least {count} items after validation, not {actual_length}",
            )
            count, values = (
                ctx["min_length"],
                {"field_type": ctx["field_type"], "actual_length": ctx["actual_length"]},
            )
        elif kind == "too_long":
            forms = (
                "{field_type} should have at most {count} item after validation, not {actual_length}",
                "{field_type} should have at most {count} items after validation, not {actual_length}",
            )
            count, values = (
                ctx["max_length"],
                {"field_type": ctx["field_type"], "actual_length": ctx["actual_length"]},
            )
        elif kind == "string_too_short":
            forms = (
                "String should have at least {count} character",
                "String should have at least {count} characters",
            )
            count, values = ctx["min_length"], {}
        elif kind == "string_too_long":
            forms = (
                "String should have at most {count} character",
                "String should have at most {count} characters",
            )
            count, values = ctx["max_length"], {}
        else:
            return None
        english = _ENGLISH.plural(*forms, count, **values)
    except (KeyError, IndexError, ValueError):
        return None
    # The msgids, spelt out for `make messages` (n_ marks them; the forms above are the same text).
    shown = {
        "too_short": lambda: n_(
            "{field_type} should have at least {count} item after validation, not {actual_length}",
            "{field_type} should have at least {count} items after validation, not {actual_length}",
            count,
            **values,
        ),
        "too_long": lambda: n_(
            "{field_type} should have at most {count} item after validation, not {actual_length}",
            "{field_type} should have at most {count} items after validation, not {actual_length}",
            count,
            **values,
        ),
        "string_too_short": lambda: n_(
            "String should have at least {count} character",
            "String should have at least {count} characters",
            count,
        ),
        "string_too_long": lambda: n_(
            "String should have at most {count} character",
            "String should have at most {count} characters",
            count,
        ),
    }[kind]
    return english, shown()


def _pydantic_message(err: Mapping[str, Any]) -> str:
    """pydantic's message of ``err`` in the current locale (its own words when we have no translation)."""
    message = str(err["msg"])
    if err["type"] == "value_error":
        return message.removeprefix("Value error, ")  # our validators' words, already in the locale
    counted = _counted(err)
    if counted is not None:
        return counted[1] if counted[0] == message else message
    template = _PYDANTIC_MESSAGES.get(err["type"])
    if template is None:
        return message
    try:
        ctx = dict(err.get("ctx") or {})
        filled = Deferred(template.msgid, ctx)
        if str(filled) != message:
            return message
        choices = re.findall(r"'[^']*'", str(ctx.get("expected", "")))
        if err["type"] == "literal_error" and choices and current().locale != DEFAULT:
            # pydantic's "'a', 'b' or 'c'" has an English "or": the choices alone, for other languages.
            filled = Deferred(template.msgid, {**ctx, "expected": ", ".join(choices)})
        return filled.shown()
    except (KeyError, IndexError, ValueError):
        return message


@dataclass(frozen=True)
class LoadedMetric:
    path: Path
    spec: MetricSpec


@dataclass
class Catalog:
    """Everything found under a metrics folder: good metrics by key, problems by file, and warnings by file
    (printed by ``validate`` but no problem: e.g. reading a deprecated metric)."""

    metrics: dict[str, LoadedMetric] = field(default_factory=dict)
    problems: dict[Path, list[SpecProblem]] = field(default_factory=dict)
    teams: Teams | None = None
    warnings: dict[Path, list[SpecProblem]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_yaml(path: Path) -> tuple[str, Any]:
    text = path.read_text(encoding="utf-8")
    return text, yaml.load(text, Loader=_Loader)


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            key_node = next((k for k, _ in node.value if k.value == str(part)), None)
            if match is None:
                break
            line = key_node.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


#: Fixes for the chat addresses of ``_teams.yaml`` whose form is checked.
_ADDRESS_FORMS = {
    "feishu_chat_id": N_(
        "copy the group's chat id (oc_ followed by letters and digits) from Feishu's group settings "
        "or the im/v1/chats API"
    ),
    "feishu_open_id": N_(
        "use the person's open id in the Metrics Center app (ou_ followed by letters and digits)"
    ),
    "feishu_union_id": N_("use the person's union id (on_ followed by letters and digits)"),
    "slack_user_id": N_(
        "use the member id from the person's Slack profile (U… or W…, capital letters and digits)"
    ),
    "dingtalk_webhook": N_(
        "name the Airflow connection that holds the robot's token (letters, digits, _ . -)"
    ),
    "wecom_webhook": N_("name the Airflow connection that holds the robot's key (letters, digits, _ . -)"),
    "email": N_("write one e-mail address, e.g. data-team@example.com"),
}

_SOURCE_KINDS = (SqlSource.__name__, FileSource.__name__, MetricSource.__name__)
Loc = tuple[str | int, ...]


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union-member names (``SqlSource``, ``function-after[...]``, a dimension's form) from a
    location."""
    members = {SqlSource.__name__, FileSource.__name__, MetricSource.__name__}
    kept = [p for p in loc if not (isinstance(p, str) and (p in members or "[" in p))]
    if len(kept) > 2 and kept[0] == "dimensions" and kept[2] in DIMENSION_TAGS:
        del kept[2]
    return tuple(kept)


def _source_kind(source: Any) -> str | None:
    """Which kind of source the author meant, from the keys written (None: neither)."""
    if not isinstance(source, dict):
        return None
    if "metric" in source:
        return MetricSource.__name__
    if "path" in source:
        return FileSource.__name__
    if "conn_id" in source or "sql" in source:
        return SqlSource.__name__
    return None


def _meant_kind(raw: tuple[str | int, ...], data: Any) -> str | None:
    """For an error inside a source: the kind of source the author meant (None: neither, or not a source)."""
    sources = data.get("sources") if isinstance(data, dict) else None
    return _source_kind(sources.get(raw[1]) if isinstance(sources, dict) else None)


def _in_source_union(raw: tuple[str | int, ...]) -> bool:
    return raw[:1] == ("sources",) and len(raw) > 3 and raw[2] in _SOURCE_KINDS


def _meant_errors(exc: ValidationError, data: Any) -> list[dict[str, Any]]:
    """The errors about what the author wrote.

    A source is SqlSource | FileSource | MetricSource: keep only the errors of the kind the author meant, not
    e.g. "conn_id: extra" from the file branch when a SQL source just lacks `sql:`.
    """
    source_keys = set(SqlSource.model_fields) | set(FileSource.model_fields) | set(MetricSource.model_fields)
    kept = []
    for err in exc.errors(include_url=False):
        raw = tuple(err["loc"])
        if _in_source_union(raw):
            meant = _meant_kind(raw, data)
            if meant is not None and raw[2] != meant:
                continue
            if meant is None and err["type"] == "extra_forbidden" and raw[-1] in source_keys:
                continue
        kept.append(err)
    return kept


def _value_at(data: Any, loc: Loc) -> Any:
    """The value at a (cleaned) location of the file's data, None where there is none."""
    for part in loc:
        in_mapping = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_mapping or in_list):
            return None
        data = data[part]
    return data


def _misspellings(model: type[BaseModel], errors: list[dict[str, Any]], data: Any) -> dict[Loc, str]:
    """``{location of an unknown key: the known key it is close to}``, among the keys its mapping lacks."""
    found: dict[Loc, str] = {}
    for err in errors:
        if err["type"] != "extra_forbidden" or not err["loc"]:
            continue
        raw = tuple(err["loc"])
        loc = _clean_loc(raw)
        parent = _value_at(data, loc[:-1])
        written = {str(k) for k in parent} if isinstance(parent, dict) else set()
        close = closest(str(loc[-1]), known_keys(model, raw[:-1]) - written)
        if close is not None:
            found[loc] = close
    return found


def _validation_problems(
    path: Path, text: str, errors: list[dict[str, Any]], data: Any, misspelt: Mapping[Loc, str]
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        raw = tuple(err["loc"])
        loc = _clean_loc(raw)
        message = _pydantic_message(err)
        known_fix = _FIXES.get(err["type"])
        fix = known_fix.shown() if known_fix is not None else _("see the YAML reference in README.md")
        if err["type"] == "missing" and loc:
            message = _("required key `{key}` is missing", key=loc[-1])
            typo = next((k for k, v in misspelt.items() if k[:-1] == loc[:-1] and v == loc[-1]), None)
            if typo is not None:
                fix = _("rename `{typo}` to `{key}`", typo=typo[-1], key=loc[-1])
        elif err["type"] == "extra_forbidden" and loc:
            message = _("unknown key `{key}`", key=loc[-1])
            if loc in misspelt:
                fix = _(
                    "did you mean '{close}'? otherwise remove it (`metrics-center schema` lists every key)",
                    close=misspelt[loc],
                )
        elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
            choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            if (close := closest(err["input"], choices)) is not None:
                fix = _("did you mean '{close}'?", close=close)
        elif err["type"] == "string_too_long" and loc == ("key",):
            message = _(
                "the key is {length} characters; a metric key has at most {limit}",
                length=len(str(err["input"])),
                limit=MAX_KEY_LENGTH,
            )
            fix = _(
                "shorten it (and the file name): the mart names the metric's relations <key> and <key>_history"
            )
        elif err["type"] == "string_pattern_mismatch":
            if loc and loc[-1] == "expect":
                message = _("{value} is not an expectation name", value=repr(err["input"]))
                fix = _("use a Great Expectations name such as expect_column_values_to_not_be_null")
            elif loc and str(loc[-1]) in _ADDRESS_FORMS:
                message = _("{value} is not a {field}", value=repr(err["input"]), field=loc[-1])
                fix = _ADDRESS_FORMS[str(loc[-1])].shown()
            else:
                message = _("{value} is not a safe identifier", value=repr(err["input"]))
        if _in_source_union(raw) and _meant_kind(raw, data) is None and err["type"] == "missing":
            loc, message = loc[:-1], _("a source needs either `conn_id` + `sql`, `path` or `metric`")
            fix = _(
                "add `path:` for a file, `conn_id:` and `sql:` for a database query, or `metric:` for another metric"
            )
        dotted = _dotted(loc)
        if (dotted, message) in seen:
            continue
        seen.add((dotted, message))
        if "; " in message and err["type"] == "value_error":
            message, fix = message.split("; ", 1)
        problems.append(SpecProblem(path=path, key=dotted, message=message, fix=fix, line=line_of(text, loc)))
    return problems


@dataclass(frozen=True)
class _Parsed:
    """A file read and validated. ``salvaged``: when the model fails only because of unknown keys, the model
    validated with each of them renamed to the key it is close to (else dropped) — what the later checks
    see; ``renamed`` maps such a key's location as checked to where it is written."""

    text: str
    data: Any
    model: BaseModel | None
    problems: list[SpecProblem]
    salvaged: BaseModel | None = None
    renamed: Mapping[Loc, Loc] = field(default_factory=dict)


def _salvage(
    model: type[BaseModel], data: Any, misspelt: Mapping[Loc, str], errors: list[dict[str, Any]]
) -> tuple[BaseModel | None, dict[Loc, Loc]]:
    """``data`` without its unknown keys (a misspelt one renamed), validated; (None, {}) if it still fails."""
    unknown = [_clean_loc(tuple(e["loc"])) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if not unknown:
        return None, {}
    repaired = copy.deepcopy(data)
    renamed: dict[Loc, Loc] = {}
    for loc in unknown:
        parent = _value_at(repaired, loc[:-1])
        if not isinstance(parent, dict) or loc[-1] not in parent:
            continue
        value = parent.pop(loc[-1])
        meant = misspelt.get(loc)
        if meant is not None and meant not in parent:
            parent[meant] = value
            renamed[(*loc[:-1], meant)] = loc
    try:
        return model.model_validate(repaired), renamed
    except ValidationError:
        return None, {}


def _parse(path: Path, model: type[BaseModel]) -> _Parsed:
    try:
        text, data = _read_yaml(path)
    except OSError as exc:
        return _Parsed(
            "", None, None, [SpecProblem(path=path, key="", message=str(exc), fix=_("check the file exists"))]
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = SpecProblem(
            path=path,
            key="",
            line=mark.line + 1 if mark else None,
            message=_("not valid YAML ({reason})", reason=getattr(exc, "problem", exc)),
            fix=_("fix the indentation/quoting at that line"),
        )
        return _Parsed("", None, None, [problem])
    if not isinstance(data, dict):
        problem = SpecProblem(
            path=path,
            key="",
            line=line_of(text, ()) or 1,
            message=_("is not a YAML mapping"),
            fix=_("write key: value"),
        )
        return _Parsed(text, data, None, [problem])
    try:
        return _Parsed(text, data, model.model_validate(data), [])
    except ValidationError as exc:
        errors = _meant_errors(exc, data)
        misspelt = _misspellings(model, errors, data)
        salvaged, renamed = _salvage(model, data, misspelt, errors)
        problems = _validation_problems(path, text, errors, data, misspelt)
        return _Parsed(text, data, None, problems, salvaged=salvaged, renamed=renamed)


def parse_spec(path: Path) -> MetricSpec | None:
    """The file's spec if it passes the schema (no cross-file checks), else None."""
    parsed = _parse(path, MetricSpec)
    return parsed.model if not parsed.problems and isinstance(parsed.model, MetricSpec) else None


def load_teams(path: Path) -> Teams:
    parsed = _parse(path, Teams)
    if parsed.problems:
        raise SpecError(parsed.problems)
    assert isinstance(parsed.model, Teams)
    return parsed.model


_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:[/\\])")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


def data_root_escape(raw: str) -> str | None:
    """Why a file source's raw (unrendered) path would leave METRICS_CENTER_DATA_ROOT, else None.

    Looks at the template text's path parts, with and without the Jinja markers in them, so both
    ``../{{ ds }}.csv`` and ``{{ ds }}/../x.csv`` are caught; what a template renders to is checked
    at run time.
    """
    text = raw.strip()
    if _ABSOLUTE.match(text):
        return _(
            "{path} is an absolute path; file sources are read under METRICS_CENTER_DATA_ROOT only",
            path=repr(raw),
        )
    parts = [part.strip() for part in re.split(r"[/\\]", text)]
    if any(".." in (part, _JINJA.sub("", part).strip()) for part in parts):
        return _("{path} climbs out of METRICS_CENTER_DATA_ROOT with a `..` part", path=repr(raw))
    return None


def _approval_findings(spec: MetricSpec) -> list[tuple[Loc, str, str]]:
    """Publishing unanswered numbers soon after asking needs a reason written down."""
    approval = spec.approval
    if approval.on_timeout != "approve":
        if approval.auto_approve_reason:
            return [
                (
                    ("approval", "auto_approve_reason"),
                    _(
                        "auto_approve_reason explains on_timeout: approve, but on_timeout is {on_timeout}",
                        on_timeout=approval.on_timeout,
                    ),
                    _("remove it, or set on_timeout: approve"),
                )
            ]
        return []
    if approval.timeout_delta < AUTO_APPROVE_MIN_TIMEOUT and not approval.auto_approve_reason:
        return [
            (
                ("approval", "on_timeout"),
                _(
                    "on_timeout: approve publishes the number unanswered after only {timeout} (under 1h)",
                    timeout=approval.timeout,
                ),
                _(
                    "say why under approval.auto_approve_reason:, or set timeout: 1h or longer, or on_timeout: reject"
                ),
            )
        ]
    return []


def _check_findings(spec: MetricSpec) -> list[tuple[Loc, str, str]]:
    """Settings that only make sense together: anomaly and reconciliations with this metric's grain and
    dimensions, access with readers, approval on timeout with its timeout, status with replaced_by."""
    findings: list[tuple[Loc, str, str]] = [*_approval_findings(spec), *spec_findings(spec)]
    if spec.anomaly and spec.anomaly.seasonality == "day_of_week" and spec.grain != "day":
        findings.append(
            (
                ("anomaly", "seasonality"),
                _("day_of_week seasonality needs grain: day"),
                _("remove it, or use grain: day"),
            )
        )
    if spec.access == "restricted" and not spec.readers:
        findings.append(
            (
                ("access",),
                _("access: restricted lets in only the readers listed, and none is"),
                _("list departments or people under readers:, or use access: department"),
            )
        )
    if spec.access == "public" and spec.readers:
        findings.append(
            (
                ("readers",),
                _("readers are listed but access is public (the default), so everyone reads it anyway"),
                _("set access: department or restricted, or remove readers:"),
            )
        )
    names = [check.name for check in spec.reconciliations]
    for i, check in enumerate(spec.reconciliations):
        if names.count(check.name) > 1:
            findings.append(
                (
                    ("reconciliations", i, "name"),
                    _("{name} is used twice", name=repr(check.name)),
                    _("name each check once"),
                )
            )
        for j, dim in enumerate(check.by):
            if dim not in spec.dimensions:
                findings.append(
                    (
                        ("reconciliations", i, "by", j),
                        _("{dimension} is not a dimension of the metric", dimension=repr(dim)),
                        _(
                            "use some of {dimensions} (or none, to compare the total)",
                            dimensions=spec.dimensions,
                        ),
                    )
                )
        if set(check.by) != set(spec.dimensions) and spec.aggregation != "sum":
            findings.append(
                (
                    ("reconciliations", i, "by"),
                    _(
                        "comparing fewer dimensions than the metric has sums its values, but the metric is not "
                        "additive"
                    ),
                    _("set aggregation: sum, or compare by all of {dimensions}", dimensions=spec.dimensions),
                )
            )
    return findings


def _as_written(loc: Loc, renamed: Mapping[Loc, Loc]) -> Loc:
    """Where a location checked under a renamed key (see :class:`_Parsed`) is written in the file."""
    for checked, written in renamed.items():
        if loc[: len(checked)] == checked:
            return (*written, *loc[len(checked) :])
    return loc


def _cross_checks(
    path: Path,
    text: str,
    spec: MetricSpec,
    *,
    teams: Teams | None,
    sql_root: Path,
    check_with_gx: bool,
    renamed: Mapping[Loc, Loc] | None = None,
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []

    def add(loc: tuple[str | int, ...], message: str, fix: str) -> None:
        line = line_of(text, _as_written(loc, renamed or {}))
        problems.append(SpecProblem(path=path, key=_dotted(loc), message=message, fix=fix, line=line))

    if path.stem != spec.key:
        add(
            ("key",),
            _("key {key} differs from the file name {file}", key=repr(spec.key), file=repr(path.name)),
            _("rename the file to {key}.yaml", key=spec.key),
        )
    sql_files: list[tuple[tuple[str | int, ...], str]] = [(("transform", "sql"), spec.transform.sql)]
    for name, source in spec.sources.items():
        if isinstance(source, SqlSource):
            sql_files.append((("sources", name, "sql"), source.sql))
        elif isinstance(source, FileSource):
            escape = data_root_escape(source.path)
            if escape is not None:
                add(("sources", name, "path"), escape, DATA_ROOT_FIX.shown())
            try:
                source.resolved_format()
            except ValueError as exc:
                add(("sources", name, "path"), *str(exc).split("; ", 1))
    for i, check in enumerate(spec.reconciliations):
        sql_files.append((("reconciliations", i, "sql"), check.sql))
    if spec.on_inputs and not any(isinstance(s, MetricSource) for s in spec.sources.values()):
        add(
            ("schedule",),
            _("schedule: inputs runs the metric when a metric it reads publishes, but it reads no metric"),
            _("add a source `{source}`, or give a cron schedule", source="{metric: <key>}"),
        )
    for loc, message, fix in _check_findings(spec):
        add(loc, message, fix)
    for loc, rel in sql_files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            add(
                loc,
                _("{path} leaves the sql folder", path=repr(rel)),
                _("give a path relative to include/sql/"),
            )
        elif not (sql_root / rel).is_file():
            add(
                loc,
                _("SQL file {path} does not exist under {folder}", path=repr(rel), folder=sql_root),
                _("create it or fix the path"),
            )
    for finding in quality_findings(spec, check_with_gx=check_with_gx):
        add(*finding)
    if teams is not None:
        if spec.department not in teams.departments:
            add(
                ("department",),
                _(
                    "department {department} is not in {teams}",
                    department=repr(spec.department),
                    teams=TEAMS_FILE,
                ),
                _(
                    "add it to {teams} or use one of {departments}",
                    teams=TEAMS_FILE,
                    departments=sorted(teams.departments),
                ),
            )
        if spec.owner not in teams.people:
            add(
                ("owner",),
                _("owner {owner} is not a person in {teams}", owner=repr(spec.owner), teams=TEAMS_FILE),
                _("add them to {teams}", teams=TEAMS_FILE),
            )
        for s, stage in enumerate(spec.approval.stages):
            for a, person in enumerate(stage.approvers):
                if person in teams.people and person in teams.departments:
                    add(
                        ("approval", "stages", s, "approvers", a),
                        _(
                            "approver {approver} is both a person and a department in {teams}",
                            approver=repr(person),
                            teams=TEAMS_FILE,
                        ),
                        _("rename one of them"),
                    )
                elif not teams.members(person):
                    add(
                        ("approval", "stages", s, "approvers", a),
                        _(
                            "approver {approver} is not a person (or a department with people) in {teams}",
                            approver=repr(person),
                            teams=TEAMS_FILE,
                        ),
                        _("add them to {teams} or fix the spelling", teams=TEAMS_FILE),
                    )
            only_owner = teams.resolve(stage.approvers) == [spec.owner]
            if only_owner and not spec.approval.allow_self_approval and len(spec.approval.stages) == 1:
                add(
                    ("approval", "stages", s, "approvers"),
                    _(
                        "the owner {owner} is the stage's only approver, and may not approve their own number",
                        owner=repr(spec.owner),
                    ),
                    _("add another approver, or set approval.allow_self_approval: true"),
                )
        department = teams.departments.get(spec.department)
        reviewers = list(department.definition_reviewers) if department is not None else []
        if reviewers and not set(reviewers) - {spec.owner}:
            add(
                ("owner",),
                _(
                    "the owner {owner} is the only definition reviewer of {department}, and may not sign off their "
                    "own definition",
                    owner=repr(spec.owner),
                    department=spec.department,
                ),
                _(
                    "add another person to departments.{department}.definition_reviewers in {teams}",
                    department=spec.department,
                    teams=TEAMS_FILE,
                ),
            )
        for i, reader in enumerate(spec.readers):
            if reader not in teams.departments and reader not in teams.people:
                add(
                    ("readers", i),
                    _(
                        "reader {reader} is neither a department nor a person in {teams}",
                        reader=repr(reader),
                        teams=TEAMS_FILE,
                    ),
                    _(
                        "use a department ({departments}) or a person's key",
                        departments=", ".join(sorted(teams.departments)),
                    ),
                )
        for i, dept in enumerate(spec.subscribers):
            if dept not in teams.departments:
                add(
                    ("subscribers", i),
                    _(
                        "subscriber {department} is not a department in {teams}",
                        department=repr(dept),
                        teams=TEAMS_FILE,
                    ),
                    _("use one of {departments}", departments=sorted(teams.departments)),
                )
    return problems


def load_metric(
    path: Path, *, teams: Teams | None, sql_root: Path, check_with_gx: bool = False
) -> MetricSpec:
    """Validate one metric file; raise :class:`SpecError` with every problem found.

    ``check_with_gx`` also builds each quality rule through Great Expectations' own model, catching
    wrong argument types and values; it imports GX (seconds), so only the CLI asks for it.
    """
    parsed = _parse(path, MetricSpec)
    problems = list(parsed.problems)
    checked = parsed.model or parsed.salvaged
    if isinstance(checked, MetricSpec):
        problems += _cross_checks(
            path,
            parsed.text,
            checked,
            teams=teams,
            sql_root=sql_root,
            check_with_gx=check_with_gx,
            renamed=parsed.renamed,
        )
    else:
        problems += _rule_problems(path, parsed, check_with_gx=check_with_gx)
    if problems:
        raise SpecError(problems)
    assert isinstance(parsed.model, MetricSpec)
    return parsed.model


def _rule_problems(path: Path, parsed: _Parsed, *, check_with_gx: bool) -> list[SpecProblem]:
    """Each quality rule's name and arguments, when the rest of the file fails the schema: they need nothing else."""
    rules = parsed.data.get("quality") if isinstance(parsed.data, dict) else None
    problems: list[SpecProblem] = []
    for index, raw in enumerate(rules if isinstance(rules, list) else []):
        try:
            rule = Expectation.model_validate(raw)
        except ValidationError:
            continue  # the schema problems name it
        for loc, message, fix in rule_findings(index, rule, check_with_gx=check_with_gx):
            problems.append(
                SpecProblem(
                    path=path, key=_dotted(loc), message=message, fix=fix, line=line_of(parsed.text, loc)
                )
            )
    return problems


def metric_files(metrics_dir: Path) -> list[Path]:
    """Metric files in a stable order; names starting with ``_`` (teams, shared) are not metrics."""
    return sorted(
        p for p in metrics_dir.glob("*.y*ml") if not p.name.startswith("_") and p.suffix in (".yaml", ".yml")
    )


def load_catalog(
    metrics_dir: Path, *, sql_root: Path, only: Iterable[Path] | None = None, check_with_gx: bool = False
) -> Catalog:
    """Load every metric under ``metrics_dir`` (or just ``only``); bad files are reported, not raised.

    ``check_with_gx``: see :func:`load_metric` (the CLI's deep check; never at DAG parse time).
    """
    catalog = Catalog()
    teams_path = metrics_dir / TEAMS_FILE
    if teams_path.exists():
        try:
            catalog.teams = load_teams(teams_path)
        except SpecError as exc:
            catalog.problems[teams_path] = exc.problems
    else:
        catalog.problems[teams_path] = [
            SpecProblem(
                path=teams_path,
                key="",
                message=_("teams file is missing"),
                fix=_("create it with departments: and people: (see README)"),
            )
        ]
    for path in list(only) if only is not None else metric_files(metrics_dir):
        try:
            spec = load_metric(path, teams=catalog.teams, sql_root=sql_root, check_with_gx=check_with_gx)
        except SpecError as exc:
            catalog.problems[path] = exc.problems
            continue
        if spec.key in catalog.metrics:
            other = catalog.metrics[spec.key].path
            catalog.problems[path] = [
                SpecProblem(
                    path=path,
                    key="key",
                    line=1,
                    message=_("key {key} is already used by {file}", key=repr(spec.key), file=other.name),
                    fix=_("give each metric its own key"),
                )
            ]
            continue
        catalog.metrics[spec.key] = LoadedMetric(path=path, spec=spec)
    if only is None:
        _check_lineage(catalog, metrics_dir)
    return catalog


def _check_lineage(catalog: Catalog, metrics_dir: Path) -> None:
    """Metric sources name metrics that exist, with a grain that fits, and the graph has no cycle; lifecycles
    fit (:mod:`metrics_center.definitions.lifecycle`: replacements exist, nothing reads a retired metric).

    A metric whose input file exists but is broken keeps loading (its input shows its own errors); an
    input nobody defines, a grain that does not fit and every metric on a cycle are errors.
    """
    from metrics_center.definitions.lineage import Lineage, grain_fits, metric_inputs

    broken_keys = {p.stem for p in catalog.problems}
    found: dict[str, list[SpecProblem]] = {}

    def add(key: str, loc: tuple[str | int, ...], message: str, fix: str) -> None:
        loaded = catalog.metrics[key]
        text = loaded.path.read_text(encoding="utf-8")
        found.setdefault(key, []).append(
            SpecProblem(path=loaded.path, key=_dotted(loc), message=message, fix=fix, line=line_of(text, loc))
        )

    specs = [m.spec for m in catalog.metrics.values()]
    for spec in specs:
        for name, input_key in metric_inputs(spec).items():
            loc = ("sources", name, "metric")
            upstream = catalog.metrics.get(input_key)
            if input_key == spec.key:
                add(spec.key, loc, _("a metric cannot read itself"), _("read another metric"))
            elif upstream is None and input_key not in broken_keys:
                add(
                    spec.key,
                    loc,
                    _("metric {key} is not defined in {folder}", key=repr(input_key), folder=metrics_dir),
                    _("add {key}.yaml or fix the key", key=input_key),
                )
            elif upstream is not None and not grain_fits(input_grain=upstream.spec.grain, grain=spec.grain):
                add(
                    spec.key,
                    loc,
                    _(
                        "{key} is a {input_grain} metric; a {grain} metric cannot read it (its periods do not fit "
                        "inside a {grain})",
                        key=input_key,
                        input_grain=upstream.spec.grain,
                        grain=spec.grain,
                    ),
                    _(
                        "read a metric of the same or a finer grain (a day fits in a week or a month; a week does "
                        "not fit in a month)"
                    ),
                )
    by_key = {m.spec.key: m.spec for m in catalog.metrics.values()}
    for finding in catalog_findings(by_key, broken=broken_keys, where=str(metrics_dir)):
        if finding.warning:
            loaded = catalog.metrics[finding.key]
            text = loaded.path.read_text(encoding="utf-8")
            catalog.warnings.setdefault(loaded.path, []).append(
                SpecProblem(
                    path=loaded.path,
                    key=_dotted(finding.loc),
                    message=finding.message,
                    fix=finding.fix,
                    line=line_of(text, finding.loc),
                )
            )
        else:
            add(finding.key, finding.loc, finding.message, finding.fix)
    for cycle in Lineage.of(specs).cycles():
        if len(cycle) == 1:
            continue  # reading itself, reported above
        for at, key in enumerate(cycle):
            seen_from_here = [*cycle[at:], *cycle[:at]]
            loop = " → ".join([*seen_from_here, key])
            spec = catalog.metrics[key].spec
            name = next(n for n, k in metric_inputs(spec).items() if k in cycle)
            add(
                key,
                ("sources", name, "metric"),
                _("metrics read each other in a cycle: {loop}", loop=loop),
                _("break the cycle: a metric cannot depend on itself through others"),
            )
    for key, problems in found.items():
        loaded = catalog.metrics.pop(key)
        catalog.problems[loaded.path] = problems
