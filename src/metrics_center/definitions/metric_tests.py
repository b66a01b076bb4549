"""Metric unit tests (like dbt's): small given rows per source, one period, the rows the transform must return.

A metric's tests live beside the metrics, in ``<metrics folder>/tests/<key>.yaml`` — a subfolder, so the
loader (which reads ``<metrics folder>/*.yaml`` only) never takes them for metric files. Each file is a
list of cases::

    - name: cancelled orders are left out
      period: 2026-11-26            # a day of the period computed (any day of a week or a month)
      given:
        orders:                     # a source of the metric: inline rows…
          - {order_id: 1, region: east, channel: app, amount: 100, status: paid}
        refunds: {csv: gmv_daily_refunds.csv}   # …or a CSV file beside this one
      expect:
        - {region: east, channel: app, value: 100}

This module reads and checks the files against the metric (no SQL runs here); running them is
:mod:`metrics_center.tasks.metric_test_run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    model_validator,
)

from metrics_center.definitions.loader import line_of
from metrics_center.definitions.spec import MetricSource, MetricSpec
from metrics_center.errors import SpecError, SpecProblem

TESTS_FOLDER = "tests"
#: A ratio input's parts, staged beside its value by a metric source.
RATIO_PARTS = ("numerator", "denominator")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = (str, int, float, bool, date, datetime, type(None))


def unit_tests_dir(metrics_dir: Path) -> Path:
    return metrics_dir / TESTS_FOLDER


def unit_test_file(metrics_dir: Path, key: str) -> Path:
    return unit_tests_dir(metrics_dir) / f"{key}.yaml"


def unit_test_files(metrics_dir: Path) -> dict[str, Path]:
    """Every test file under ``<metrics_dir>/tests/`` by the metric key its name says, in key order."""
    folder = unit_tests_dir(metrics_dir)
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if not p.name.startswith("_")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CsvRows(_Strict):
    """Rows from a CSV file, read as a file source's extract reads one (types inferred the same way)."""

    csv: str = Field(
        min_length=1,
        description="Path of the CSV file relative to this test file's folder (a header line first).",
    )


def _scalar(cell: Any) -> Any:
    if not isinstance(cell, _SCALARS):
        raise ValueError(
            f"{type(cell).__name__} is no cell; write a number, text, a date, true/false or ~ (null)"
        )
    return cell


#: One value of a row: a number, text, a date or a timestamp, a boolean or null.
Cell = Annotated[Any, AfterValidator(_scalar)]
Row = dict[str, Cell]


def _given_form(value: Any) -> str:
    return "csv" if isinstance(value, dict | CsvRows) else "rows"


GIVEN_FORMS = frozenset({"rows", "csv"})
#: A source's given rows: a list of ``{column: value}`` rows, or ``{csv: file.csv}``. The tags never reach a message.
Given = Annotated[
    Annotated[list[Row], Tag("rows")] | Annotated[CsvRows, Tag("csv")], Discriminator(_given_form)
]


class MetricTestCase(_Strict):
    """One case: the period, rows for the metric's sources, the rows its transform must return."""

    name: str = Field(min_length=1, description="Says what the case shows; unique in the file.")
    description: str | None = Field(default=None, description="More words, if the name is not enough.")
    period: date = Field(
        description=(
            "A day of the period the transform computes (for a week or a month any day in it); the SQL sees "
            "the template variables of the run that normally computes that period (period_start, ds…)."
        )
    )
    given: dict[str, Given] = Field(
        min_length=1,
        description=(
            "Rows for each source of the metric, by source name: a list of rows ({column: value}) or "
            "{csv: file.csv}. A metric source takes rows of the input metric: its dimensions and value "
            "(period_start, period_end and definition_version are filled in when left out). A source left out "
            "is staged empty: right for a source the transform does not read."
        ),
    )
    expect: list[Row] = Field(
        description=(
            "The rows the transform must return, in any order: every dimension of the metric, and the value "
            "columns to compare (value; numerator, denominator for a ratio; period_start if wanted). Numbers "
            "match within a relative 1e-6 (absolute 1e-9)."
        )
    )


class MetricTestFile(RootModel[list[MetricTestCase]]):
    """A metric's unit tests: ``<metrics folder>/tests/<key>.yaml``, a list of cases."""

    @model_validator(mode="after")
    def _unique_names(self) -> MetricTestFile:
        names = [case.name for case in self.root]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"case names {dupes} are used twice; name each case once")
        return self


def json_schema() -> dict[str, Any]:
    schema = MetricTestFile.model_json_schema()
    schema["title"] = "Metrics Center metric unit tests (<metrics folder>/tests/<key>.yaml)"
    return schema


@dataclass(frozen=True)
class TestProblem(SpecProblem):
    """A problem of one test file, naming the case: ``path:line: case 'name': key: what — fix``."""

    __test__ = False  # not a pytest class
    case: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        case = f"case {self.case!r}: " if self.case is not None else ""
        return f"{where}: {case}{self.key or '<file>'}: {self.message} — {self.fix}"


@dataclass(frozen=True)
class LoadedTests:
    path: Path
    text: str
    cases: list[MetricTestCase]


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_FIXES = {
    "missing": "add this key",
    "extra_forbidden": "remove it, or check its spelling (keys: name, description, period, given, expect)",
    "date_from_datetime_parsing": "write the day as YYYY-MM-DD",
    "date_parsing": "write the day as YYYY-MM-DD",
    "date_type": "write the day as YYYY-MM-DD",
    "list_type": "write a list of rows ({column: value}) or {csv: file.csv}",
    "dict_type": "write {column: value} mappings",
    "too_short": "add at least one entry",
}


def _problem(
    path: Path, text: str, loc: tuple[str | int, ...], message: str, fix: str, data: Any
) -> TestProblem:
    case = None
    if loc and isinstance(loc[0], int) and isinstance(data, list) and loc[0] < len(data):
        raw = data[loc[0]]
        case = str(raw.get("name")) if isinstance(raw, dict) and raw.get("name") else f"#{loc[0] + 1}"
    key = _dotted(loc[1:]) if case is not None else _dotted(loc)
    return TestProblem(path=path, key=key, message=message, fix=fix, line=line_of(text, loc), case=case)


def _given_mapping_without_csv(data: Any, loc: tuple[str | int, ...]) -> bool:
    """Whether ``loc`` points into a source's given rows written as a mapping that is not ``{csv: …}``."""
    if len(loc) < 3 or loc[1] != "given" or not isinstance(loc[0], int) or not isinstance(data, list):
        return False
    case = data[loc[0]] if loc[0] < len(data) else None
    given = case.get("given") if isinstance(case, dict) else None
    rows = given.get(loc[2]) if isinstance(given, dict) else None
    return isinstance(rows, dict) and "csv" not in rows


def _validation_problems(path: Path, text: str, exc: ValidationError, data: Any) -> list[TestProblem]:
    problems = []
    reported: set[tuple[str | int, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if len(loc) > 3 and loc[1] == "given" and loc[3] in GIVEN_FORMS:
            loc = loc[:3] + loc[4:]  # the union's tag (rows | csv) is no key of the file
        if _given_mapping_without_csv(data, loc):
            if loc[:3] not in reported:
                reported.add(loc[:3])
                problems.append(
                    _problem(
                        path,
                        text,
                        loc[:3],
                        f"`{loc[2]}` is a mapping; a source's given rows are a list or {{csv: file.csv}}",
                        "write each row as a list item (`- {column: value, …}`), or name a CSV file",
                        data,
                    )
                )
            continue
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = f"required key `{loc[-1]}` is missing"
        elif err["type"] == "extra_forbidden":
            message = f"unknown key `{loc[-1]}`"
        fix = _FIXES.get(
            err["type"], "see the format in README.md (Metric unit tests) or `metrics-center test --schema`"
        )
        if err["type"] == "list_type" and len(loc) == 2 and loc[1] == "expect":
            fix = "write a list of rows (`- {column: value, …}`); [] expects no row"
        if "; " in message and err["type"] == "value_error":
            message, fix = message.split("; ", 1)
        problems.append(_problem(path, text, loc, message, fix, data))
    return problems


def load_test_file(path: Path) -> LoadedTests:
    """Parse and validate one test file; raise :class:`SpecError` naming the file, the case and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            [TestProblem(path=path, key="", message=str(exc), fix="check the file exists")]
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = TestProblem(
            path=path,
            key="",
            line=mark.line + 1 if mark else None,
            message=f"not valid YAML ({getattr(exc, 'problem', exc)})",
            fix="fix the indentation/quoting at that line",
        )
        raise SpecError([problem]) from None
    except ValueError as exc:  # a timestamp-looking scalar that is no real date: 2026-13-01
        problem = TestProblem(
            path=path, key="", message=f"a date is not a real day ({exc})", fix="write dates as YYYY-MM-DD"
        )
        raise SpecError([problem]) from None
    if not isinstance(data, list):
        problem = TestProblem(
            path=path,
            key="",
            line=1,
            message="is not a list of cases",
            fix="start each case with `- name: …`",
        )
        raise SpecError([problem])
    try:
        parsed = MetricTestFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_validation_problems(path, text, exc, data)) from None
    return LoadedTests(path=path, text=text, cases=list(parsed.root))


def csv_path(loaded: LoadedTests, given: CsvRows) -> Path:
    return loaded.path.parent / given.csv


@dataclass
class _Findings:
    """Problems of one case, each naming the file, the case, the key and its line."""

    loaded: LoadedTests
    index: int
    case: MetricTestCase
    problems: list[TestProblem]

    def add(self, loc: tuple[str | int, ...], message: str, fix: str) -> None:
        self.problems.append(
            TestProblem(
                path=self.loaded.path,
                key=_dotted(loc),
                message=message,
                fix=fix,
                line=line_of(self.loaded.text, (self.index, *loc)),
                case=self.case.name,
            )
        )


def check_tests(
    loaded: LoadedTests, *, spec: MetricSpec, inputs: Mapping[str, MetricSpec]
) -> list[TestProblem]:
    """The cases against the metric: sources given, columns expected, rows of one shape, CSV files present.

    ``inputs``: the specs of the metrics that ``spec``'s metric sources read (their dimensions and parts).
    """
    problems: list[TestProblem] = []
    sources = ", ".join(spec.sources)
    for name, source in spec.sources.items():
        if isinstance(source, MetricSource) and source.metric not in inputs:
            problems.append(
                TestProblem(
                    path=loaded.path,
                    key="",
                    message=f"{spec.key} reads metric {source.metric} (source `{name}`), which is not a valid "
                    "metric of this folder",
                    fix=f"fix {source.metric}.yaml (`metrics-center validate`)",
                )
            )
    if problems:
        return problems
    for index, case in enumerate(loaded.cases):
        found = _Findings(loaded=loaded, index=index, case=case, problems=problems)
        for name, given in case.given.items():
            if name not in spec.sources:
                found.add(
                    ("given", name),
                    f"`{name}` is not a source of {spec.key}; its sources are: {sources}",
                    "give rows for those sources only (check the spelling)",
                )
                continue
            source = spec.sources[name]
            if isinstance(given, CsvRows):
                _check_csv(given, found=found, loc=("given", name, "csv"))
                continue
            _check_shape(given, where=("given", name), found=found)
            if isinstance(source, MetricSource):
                _check_metric_rows(given, name=name, source=source, inputs=inputs, found=found)
            elif not given:
                found.add(
                    ("given", name),
                    "has no rows, so its columns are unknown",
                    "give at least one row, or a CSV with only its header line ({csv: file.csv}) for no rows",
                )
        _check_expect(case, spec=spec, found=found)
    return problems


def _check_csv(given: CsvRows, *, found: _Findings, loc: tuple[str | int, ...]) -> None:
    if Path(given.csv).is_absolute() or ".." in Path(given.csv).parts:
        found.add(
            loc, f"{given.csv!r} leaves the tests folder", "give a path relative to this test file's folder"
        )
    elif not csv_path(found.loaded, given).is_file():
        found.add(
            loc,
            f"CSV file {given.csv!r} does not exist beside {found.loaded.path.name}",
            "create it or fix the path",
        )


def _check_shape(rows: list[Row], *, where: tuple[str | int, ...], found: _Findings) -> None:
    """Every row names the same columns (a typo in one row would otherwise be a silent NULL column)."""
    if not rows:
        return
    first = list(rows[0])
    for i, row in enumerate(rows[1:], 1):
        extra, missing = sorted(set(row) - set(first)), sorted(set(first) - set(row))
        said = [f"has {extra} which row 1 has not"] if extra else []
        said += [f"lacks {missing} which row 1 has"] if missing else []
        if said:
            found.add(
                (*where, i),
                f"row {i + 1} {' and '.join(said)}",
                "give every row the same columns (~ for NULL)",
            )


def _check_metric_rows(
    rows: list[Row], *, name: str, source: MetricSource, inputs: Mapping[str, MetricSpec], found: _Findings
) -> None:
    upstream = inputs[source.metric]
    allowed = metric_source_columns(upstream)
    if not rows:
        return
    for column in rows[0]:
        if column not in allowed:
            found.add(
                ("given", name, 0, column),
                f"`{column}` is not a column of metric source `{name}` ({source.metric}: {', '.join(allowed)})",
                "give the input metric's dimensions and value (and the period columns if needed) only",
            )
    missing = [c for c in (*upstream.dimensions, "value") if c not in rows[0]]
    if missing:
        found.add(
            ("given", name, 0),
            f"rows of {source.metric} need {', '.join(missing)} (its dimensions and value)",
            "add the column(s) to every row",
        )


def metric_source_columns(upstream: MetricSpec) -> list[str]:
    """The columns a metric source reading ``upstream`` stages, in their order."""
    parts = RATIO_PARTS if upstream.is_ratio else ()
    return ["period_start", "period_end", *upstream.dimensions, "value", *parts, "definition_version"]


def _check_expect(case: MetricTestCase, *, spec: MetricSpec, found: _Findings) -> None:
    _check_shape(case.expect, where=("expect",), found=found)
    if not case.expect:
        return
    named = list(case.expect[0])
    result = spec.result_columns
    for column in named:
        if column not in result:
            found.add(
                ("expect", 0, column),
                f"expected column `{column}` is not in the result of {spec.key} ({', '.join(result)})",
                "compare only columns of the result",
            )
    missing = [d for d in spec.dimensions if d not in named]
    if missing:
        found.add(
            ("expect", 0),
            f"expected rows must name every dimension of {spec.key}; {', '.join(missing)} missing",
            "add the dimension column(s) to every expected row",
        )
    for i, row in enumerate(case.expect):
        for column in spec.value_columns:
            cell = row.get(column)
            if column in row and (isinstance(cell, bool) or not isinstance(cell, int | float)):
                found.add(
                    ("expect", i, column), f"{column} {cell!r} is not a number", "write the expected number"
                )
    keys = [c for c in ("period_start", *spec.dimensions) if c in named]
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(case.expect):
        key = tuple(cell_text(row.get(c)) for c in keys)
        if key in seen:
            label = ", ".join(f"{c}={v}" for c, v in zip(keys, key, strict=True))
            found.add(
                ("expect", i),
                f"expected rows {seen[key] + 1} and {i + 1} are the same row ({label})",
                "list each row once",
            )
        seen.setdefault(key, i)


def cell_text(cell: Any) -> str | None:
    """A dimension or period cell as the result holds it: text (dates ISO, booleans lower-case), or None."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == datetime.min.time() else cell.isoformat(sep=" ")
    if isinstance(cell, date):
        return cell.isoformat()
    return str(cell)
