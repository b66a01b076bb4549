"""A new metric to start from: ``<key>.yaml``, its SQL and a unit test that passes (``metrics-center new``).

Every section of the metric file is present and commented, so an author sees what to change. The files are
valid as written — ``metrics-center validate`` and ``metrics-center test <key>`` pass at once — and are
checked against the models before anything is written. The stage's approvers are the department's people
other than the owner (an owner may never be the only approver of their own number).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from metrics_center.definitions.loader import TEAMS_FILE, load_teams
from metrics_center.definitions.metric_tests import MetricTestFile, unit_test_file
from metrics_center.definitions.spec import MAX_KEY_LENGTH, METRIC_KEY, MetricSpec, Teams
from metrics_center.errors import MetricsCenterError, SpecError

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class ScaffoldRefused(MetricsCenterError):
    """The metric cannot be created as asked (the key exists or is invalid, an unknown department or person)."""


@dataclass(frozen=True)
class Scaffold:
    """The files written: the metric, its transform SQL and its unit test."""

    metric: Path
    sql: Path
    tests: Path

    @property
    def files(self) -> list[Path]:
        return [self.metric, self.sql, self.tests]


def _scalar(text: str) -> str:
    """A YAML scalar for ``text``: plain when it is a simple word, else double-quoted (JSON is valid YAML)."""
    return (
        text
        if _PLAIN.match(text) and text.lower() not in {"yes", "no", "on", "off", "true", "false", "null"}
        else json.dumps(text)
    )


def _flow(items: Sequence[str]) -> str:
    return "[" + ", ".join(_scalar(i) for i in items) + "]"


def check_key(key: str) -> None:
    """The rule of :class:`~metrics_center.definitions.spec.MetricSpec`'s ``key`` (it names the file, the DAG and the
    mart's relations)."""
    if not METRIC_KEY.match(key):
        raise ScaffoldRefused(
            f"{key!r} is not a metric key — use lower-case letters, digits and _, starting with a letter "
            "(e.g. orders_daily)"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ScaffoldRefused(
            f"{key!r} has {len(key)} characters; a metric key has at most {MAX_KEY_LENGTH} (the mart names its "
            "relations <key> and <key>_history) — shorten it"
        )


def choose_approvers(
    teams: Teams, *, department: str, owner: str, approvers: Sequence[str] = ()
) -> list[str]:
    """``approvers`` if given (people or departments of the teams file), else the department's other people."""
    if approvers:
        unknown = [a for a in approvers if a not in teams.people and a not in teams.departments]
        if unknown:
            raise ScaffoldRefused(
                f"approver(s) {unknown} are neither people nor departments in {TEAMS_FILE} — use some of "
                f"{sorted(teams.people)} or {sorted(teams.departments)}"
            )
        if teams.resolve(list(approvers)) == [owner]:
            raise ScaffoldRefused(
                f"{owner} would be the only approver of their own metric — add another approver (four eyes)"
            )
        return list(dict.fromkeys(approvers))
    others = [p for p in teams.members(department) if p != owner]
    if not others:
        outsiders = sorted(p for p in teams.people if p != owner)
        raise ScaffoldRefused(
            f"{department} has nobody but {owner} to approve {owner}'s metric, who may not be its only approver — "
            f"name one with --approver (e.g. one of {outsiders})"
        )
    return others


def _metric_text(*, key: str, department: str, owner: str, approvers: Sequence[str], teams: Teams) -> str:
    departments = ", ".join(sorted(teams.departments))
    name = key.replace("_", " ").capitalize()
    stage = f"{teams.departments[department].name} review"
    example = next((d for d in sorted(teams.departments) if d != department), department)
    return f"""\
# yaml-language-server: $schema=../../schemas/metric.schema.json
# A new metric: change every line marked TODO, then `metrics-center validate` and `metrics-center test {key}`.
# Reference: README.md (Metric definitions) or `metrics-center schema`.
# The key is the stable id: the file name, the DAG id and the mart's relation; never rename it.
key: {key}
# TODO: the name people read (any language).
name: {_scalar(name)}
description: >-
  TODO: what the number means, for someone who has never seen it — what is counted, what is left out.
# The owning department (one of {departments}) and the person answering for the number (people: in {TEAMS_FILE}).
department: {department}
owner: {_scalar(owner)}
version: 1                     # bump with every change of meaning (SQL, sources, dimensions…); subscribers are told
change_note: First definition. # why this version exists
unit: CNY                      # TODO: the unit of value (CNY, orders, ratio, %…)
grain: day                     # day | week (ISO, Monday to Sunday) | month: the period one value covers
schedule: "@daily"             # cron or preset in the business time zone; `inputs` for a metric of metrics; null: manual
# timezone: Asia/Shanghai      # the zone closing each period (default: METRICS_CENTER_TIMEZONE)
# formula: sum(amount) of the period's events, per region   # shown in the docs
dimensions: [region]           # columns the value is broken down by; each is a column of the transform's result
aggregation: sum               # sum (totals add up) | ratio (SQL returns numerator, denominator) | none
sources:
  # Each source is staged as a table named by its key, which the transform's SQL reads. One of:
  #   a database query:  orders: {{conn_id: sales_db, sql: sales/orders.sql}}    (SQL under include/sql/)
  #   a file export:     events: {{path: {department}/{key}_{{{{ ds }}}}.csv}}    (under METRICS_CENTER_DATA_ROOT)
  #   another metric:    gmv: {{metric: gmv_daily}}                              (its published values)
  events:                      # TODO: your source(s); update the SQL and tests/{key}.yaml to match
    path: {department}/{key}_{{{{ ds }}}}.csv
transform:                     # DuckDB SQL under include/sql/ returning period_start, the dimensions and value
  sql: metrics/{key}.sql
quality:                       # Great Expectations rules on the result; a failed rule blocks publishing
  - expect: expect_column_values_to_not_be_null
    column: value
  - expect: expect_column_values_to_be_between
    column: value
    min_value: 0
anomaly:                       # each new value against its published history (remove the section to turn it off)
  method: zscore               # zscore | mad | pct_change
  threshold: 3                 # score beyond which a value is an anomaly
  window: 28                   # history points in the baseline
  min_history: 7               # fewer points: "not enough history", never an alarm
approval:
  # Stages in order; any one approver of a stage answers for it. Approvers are people or departments, never
  # only the owner (four eyes).
  stages:
    - name: {_scalar(stage)}
      approvers: {_flow(approvers)}
  timeout: 24h                 # how long each stage waits: 30m, 24h, 2d, 1w
  on_timeout: reject           # reject (nothing published) | approve | fail
subscribers: []                # departments told when the definition changes, e.g. [{example}]
"""


def _sql_text(*, key: str) -> str:
    return f"""\
-- {key}: TODO say what it computes. Runs in DuckDB over the staged sources (each a table by its name), once per
-- period; {{{{ period_start }}}} and {{{{ period_end }}}} are the period [start, end) in the business time zone.
-- Return exactly period_start, the dimensions and value, one row per dimension combination.
SELECT DATE '{{{{ period_start }}}}' AS period_start,
       CAST(region AS VARCHAR) AS region,
       SUM(CAST(amount AS DOUBLE)) AS value
FROM events
WHERE CAST(occurred_at AS TIMESTAMP) >= DATE '{{{{ period_start }}}}'
  AND CAST(occurred_at AS TIMESTAMP) < DATE '{{{{ period_end }}}}'
GROUP BY 2
"""


def _tests_text(*, key: str) -> str:
    return f"""\
# yaml-language-server: $schema=../../../schemas/metric_test.schema.json
# Unit tests of {key}: `metrics-center test {key}`. Each case gives rows per source, the period computed, and
# the rows the transform must return (any order; numbers within 1e-6). TODO: add the cases that pin its meaning.
- name: amounts of the day add up by region; other days are left out
  period: 2026-01-15
  given:
    events:
      - {{occurred_at: "2026-01-15 09:00:00", region: east, amount: 10}}
      - {{occurred_at: "2026-01-15 23:59:59", region: east, amount: 5.5}}
      - {{occurred_at: "2026-01-15 12:00:00", region: west, amount: 7}}
      - {{occurred_at: "2026-01-14 23:59:59", region: east, amount: 100}}
      - {{occurred_at: "2026-01-16 00:00:00", region: west, amount: 100}}
  expect:
    - {{region: east, value: 15.5}}
    - {{region: west, value: 7}}
"""


def _check_rendered(path: Path, text: str, model: type) -> None:
    """What is about to be written passes its model (a bug here must never leave an invalid file behind)."""
    from pydantic import ValidationError

    try:
        model.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise MetricsCenterError(f"internal error: the scaffold of {path} is invalid: {exc}") from exc


def scaffold_metric(
    *,
    key: str,
    department: str,
    owner: str,
    metrics_dir: Path,
    sql_root: Path | None = None,
    approvers: Sequence[str] = (),
) -> Scaffold:
    """Write ``<metrics_dir>/<key>.yaml``, ``<sql_root>/metrics/<key>.sql`` and ``<metrics_dir>/tests/<key>.yaml``.

    Refuses (:class:`ScaffoldRefused`) an invalid or existing key, a department or owner not in the teams file.
    """
    check_key(key)
    sql_root = sql_root or metrics_dir.parent / "sql"
    target = Scaffold(
        metric=metrics_dir / f"{key}.yaml",
        sql=sql_root / "metrics" / f"{key}.sql",
        tests=unit_test_file(metrics_dir, key),
    )
    existing = [p for p in (*target.files, metrics_dir / f"{key}.yml") if p.exists()]
    if existing:
        raise ScaffoldRefused(
            f"metric {key} exists already ({', '.join(map(str, existing))}) — choose another key, or edit it"
        )
    try:
        teams = load_teams(metrics_dir / TEAMS_FILE)
    except SpecError as exc:
        raise ScaffoldRefused(f"cannot read {metrics_dir / TEAMS_FILE}:\n{exc}") from None
    if department not in teams.departments:
        raise ScaffoldRefused(
            f"department {department!r} is not in {TEAMS_FILE} — use one of {sorted(teams.departments)}"
        )
    if owner not in teams.people:
        raise ScaffoldRefused(
            f"owner {owner!r} is not a person in {TEAMS_FILE} — use one of {sorted(teams.people)}"
        )
    chosen = choose_approvers(teams, department=department, owner=owner, approvers=approvers)
    metric_text = _metric_text(key=key, department=department, owner=owner, approvers=chosen, teams=teams)
    tests_text = _tests_text(key=key)
    _check_rendered(target.metric, metric_text, MetricSpec)
    _check_rendered(target.tests, tests_text, MetricTestFile)
    for path, text in (
        (target.sql, _sql_text(key=key)),
        (target.tests, tests_text),
        (target.metric, metric_text),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as fh:  # never overwrite, even a file created meanwhile
            fh.write(text)
    return target
