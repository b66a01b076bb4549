"""The metric definition: pydantic models validated once, at the boundary.

A metric file is ``include/metrics/<key>.yaml``; the teams file ``include/metrics/_teams.yaml``
names departments and people. Cross-file checks (people exist, SQL files exist, expectation names
exist) live in :mod:`metrics_center.definitions.loader`, which knows the paths.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_serializer,
    field_validator,
    model_validator,
)

from metrics_center.definitions.sql_words import ADDED_COLUMNS, SQL_RESERVED
from metrics_center.i18n.translate import _, n_

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
IDENTIFIER_HINT = "use lower-case letters, digits and underscores, starting with a letter (max 63)"
#: A metric key names relations in the mart (``<key>_history``): 63 bytes, Postgres's limit, less 8.
MAX_KEY_LENGTH = 55
METRIC_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_DIMENSIONS = 16
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Grain = Literal["day", "week", "month"]
#: A metric's place in its life: ``deprecated`` still runs (readers are warned), ``retired`` no longer may be read.
Status = Literal["active", "deprecated", "retired"]
#: ``schedule: inputs``: run when any metric this one reads publishes.
SCHEDULE_ON_INPUTS = "inputs"


def _refusal(what: str, fix: str) -> ValueError:
    """A validator's error: ``what; fix`` (the loader splits it into a problem's message and fix)."""
    return ValueError(f"{what}; {fix}")


def _duration_fix() -> str:
    return _("write a positive number and a unit, e.g. {examples}", examples="30m, 24h, 2d, 1w")


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"24h"``, ``"2d"``, ``"1w"`` → timedelta. Raises ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if not match:
        raise _refusal(
            _("{value} is not a duration", value=repr(text)),
            _("write a number and a unit, e.g. {examples}", examples="30m, 24h, 2d, 1w"),
        )
    amount, unit = match.groups()
    return timedelta(**{_DURATION_UNITS[unit]: int(amount)})


def positive_duration(text: str) -> timedelta:
    """:func:`parse_duration` for a setting that must last a while: zero and negative durations are refused."""
    if text.strip().startswith("-"):
        raise _refusal(_("{value} is negative", value=repr(text)), _duration_fix())
    delta = parse_duration(text)
    if delta <= timedelta(0):
        raise _refusal(_("{value} lasts no time", value=repr(text)), _duration_fix())
    return delta


def slugify(text: str) -> str:
    """Stage names → task-id suffixes: ``"finance sign-off"`` → ``"finance_sign_off"``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern, description=IDENTIFIER_HINT)]


class Dimension(_Strict):
    """A dimension with words for people: shown in the dictionary and as its column's comment in the mart."""

    name: Identifier
    description: str | None = Field(
        default=None, description="What the dimension's values are, for BI users."
    )


def _dimension_form(value: Any) -> str:
    return "long" if isinstance(value, dict | Dimension) else "short"


#: A dimension: its name, or ``{name, description}``. The tags (``short``, ``long``) never reach a message.
DimensionEntry = Annotated[
    Annotated[Identifier, Tag("short")] | Annotated[Dimension, Tag("long")], Discriminator(_dimension_form)
]
DIMENSION_TAGS = frozenset({"short", "long"})


class SqlSource(_Strict):
    """Rows read through an Airflow connection by a SQL file under ``include/sql/``."""

    conn_id: str = Field(description="Airflow connection id of the department's database.")
    sql: str = Field(description="Path of the extraction SQL, relative to include/sql/.")


class FileSource(_Strict):
    """A CSV, Parquet or Excel export. Relative paths are under METRICS_CENTER_DATA_ROOT."""

    path: str = Field(description="File path; Jinja-templated with the run's context (ds, period_start…).")
    format: Literal["csv", "parquet", "excel"] | None = Field(
        default=None, description="Defaults from the file extension (.csv, .parquet, .xlsx/.xls)."
    )

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        lower = self.path.lower()
        if lower.endswith(".csv"):
            return "csv"
        if lower.endswith((".parquet", ".pq")):
            return "parquet"
        if lower.endswith((".xlsx", ".xls")):
            return "excel"
        raise _refusal(
            _("cannot tell the format of {path}", path=repr(self.path)),
            _("name it .csv/.parquet/.xlsx or set format:"),
        )


class MetricSource(_Strict):
    """Another metric's current published values (原子指标 → 派生指标), read from the mart for the run's periods.

    The table has ``period_start, period_end, <its dimensions…>, value, definition_version``: one row per
    published value whose period starts inside the period being computed (a weekly metric reading a daily
    one gets the week's seven days).
    """

    metric: Identifier = Field(description="Key of the metric to read (its current published values).")


Source = SqlSource | FileSource | MetricSource


class Transform(_Strict):
    sql: str = Field(description="DuckDB SQL file relative to include/sql/, one table per source name.")


class Expectation(BaseModel):
    """Any Great Expectations 1.x expectation by its snake_case name; other keys are its kwargs."""

    model_config = ConfigDict(extra="allow", frozen=True)

    expect: str = Field(
        pattern=r"^expect_[a-z0-9_]+$", description="e.g. expect_column_values_to_not_be_null"
    )

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Anomaly(_Strict):
    """Compare each new value with the metric's published history, per dimension combination.

    Defaults follow Elementary's (z-score, sensitivity 3, min training set 7) with a 28-period window.
    """

    method: Literal["zscore", "mad", "pct_change"] = Field(
        default="zscore",
        description=(
            "zscore: distance from the window's mean in standard deviations; mad: robust z from the median "
            "and median absolute deviation; pct_change: relative change vs the previous period and vs the "
            "same period one season back."
        ),
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="Score beyond which a value is an anomaly: default 3 (zscore, mad) or 0.5 = ±50% (pct_change).",
    )
    window: int = Field(default=28, ge=2, description="History points in the baseline (per combination).")
    min_history: int = Field(
        default=7, ge=1, description="Fewer points: 'not enough history', never an alarm."
    )
    direction: Literal["both", "up", "down"] = Field(default="both", description="Which deviations alarm.")
    seasonality: Literal["none", "day_of_week"] = Field(
        default="none", description="day_of_week (daily grain): compare a Monday only with Mondays."
    )
    compare_across_versions: bool = Field(
        default=False, description="Also use values published under older definition versions."
    )
    block: bool = Field(default=False, description="Make an anomaly a quality failure (blocks publishing).")

    @model_validator(mode="after")
    def _history_fits_window(self) -> Anomaly:
        if self.min_history > self.window:
            raise _refusal(_("min_history cannot exceed window"), _("lower min_history or widen window"))
        return self

    @property
    def effective_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.method == "pct_change" else 3.0


class Tolerance(_Strict):
    pct: float | None = Field(
        default=None, ge=0, description="Allowed difference in % of their value (0.5 = 0.5%)."
    )
    abs: float | None = Field(
        default=None, ge=0, description="Allowed absolute difference, in the metric's unit."
    )

    @model_validator(mode="after")
    def _something_allowed(self) -> Tolerance:
        if self.pct is None and self.abs is None:
            raise _refusal(
                _("a tolerance needs pct or abs"), _("e.g. {example}", example="tolerance: {pct: 0.5}")
            )
        return self

    def allows(self, *, difference: float, theirs: float) -> bool:
        """Within tolerance: the larger of the declared allowances (absolute, or % of their value)."""
        allowed = max(self.abs or 0.0, (self.pct or 0.0) / 100 * abs(theirs))
        return abs(difference) <= allowed


class Reconciliation(_Strict):
    """Recompute the same quantity from another department's source and compare it with this metric."""

    name: Identifier = Field(description="Names the check in quality results, evidence and alerts.")
    description: str | None = None
    sql: str = Field(
        description=(
            "DuckDB SQL under include/sql/ over the metric's sources (each a table by its name, like the "
            "transform) returning period_start, <by…>, value — their number."
        )
    )
    by: list[Identifier] = Field(
        default_factory=list, description="Dimensions compared one by one; empty: the total of the period."
    )
    tolerance: Tolerance
    severity: Literal["warn", "block"] = Field(
        default="warn", description="block: a mismatch fails the quality gate; warn: it alerts."
    )


class ApprovalStage(_Strict):
    name: str = Field(min_length=1, description="Shown to approvers; its slug names the task approve_<slug>.")
    approvers: list[str] = Field(
        min_length=1, description="People or departments from the teams file; any one person may answer."
    )

    @property
    def slug(self) -> str:
        return slugify(self.name)


class Approval(_Strict):
    stages: list[ApprovalStage] = Field(min_length=1)
    timeout: str = Field(default="24h", description="How long each stage waits: 30m, 24h, 2d, 1w.")
    allow_self_approval: bool = Field(
        default=False,
        description="Let the metric's owner be the only approver of their own number (off: four eyes).",
    )
    remind_at: float | None = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Remind a stage's approvers after this fraction of the timeout (null: no reminder).",
    )
    on_timeout: Literal["reject", "approve", "fail"] = Field(
        default="reject", description="reject skips publish; approve publishes; fail fails the run."
    )
    auto_approve_reason: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Why publishing without an answer is acceptable: required when on_timeout is approve and the "
            "timeout is shorter than 1h; stored with the definition."
        ),
    )

    @field_validator("timeout")
    @classmethod
    def _valid_timeout(cls, value: str) -> str:
        positive_duration(value)
        return value

    @model_validator(mode="after")
    def _unique_stage_slugs(self) -> Approval:
        slugs = [stage.slug for stage in self.stages]
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise _refusal(
                _("stage names collide after slugging ({slugs})", slugs=", ".join(dupes)), _("rename a stage")
            )
        if any(not s for s in slugs):
            raise ValueError(_("a stage name needs at least one letter or digit"))
        return self

    @property
    def timeout_delta(self) -> timedelta:
        return parse_duration(self.timeout)


class MetricSpec(_Strict):
    """One metric: what it means, who owns it, where it comes from, how it is checked and approved."""

    key: Annotated[str, Field(pattern=METRIC_KEY.pattern, max_length=MAX_KEY_LENGTH)] = Field(
        description=(
            "Stable id: DAG id, mart key and file name (<key>.yaml); lower-case letters, digits and _, at most "
            f"{MAX_KEY_LENGTH} characters (the mart names its relations <key> and <key>_history)."
        )
    )
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    department: Identifier
    owner: str
    version: int = Field(ge=1, description="Bump with every change of meaning; subscribers are told.")
    change_note: str = Field(min_length=1, description="Why this version exists.")
    unit: str = Field(min_length=1)
    grain: Grain
    schedule: str | None = Field(
        description=(
            "Cron or preset (@daily…) in the business time zone; `inputs` to run whenever a metric it reads "
            "publishes (Airflow Assets); null for manual runs only."
        )
    )
    timezone: str | None = Field(default=None, description="IANA zone closing the period; default env.")
    formula: str | None = Field(default=None, description="Human-readable formula shown in docs.")
    dimensions: list[DimensionEntry] = Field(
        default_factory=list,
        max_length=MAX_DIMENSIONS,
        description=(
            "Columns the metric is broken down by: names ([region, channel]) or {name, description} entries; "
            "each becomes a column of the metric's relation in the mart."
        ),
    )
    aggregation: Literal["sum", "ratio", "none"] = Field(
        default="none",
        description=(
            "How values combine across dimensions: sum (additive, e.g. GMV: totals are sums); ratio (the "
            "transform returns numerator and denominator, value = numerator / denominator, and every total is "
            "SUM(numerator) / SUM(denominator)); none (averages, distinct counts: no total is shown)."
        ),
    )
    access: Literal["public", "department", "restricted"] = Field(
        default="public",
        description=(
            "Who may read the published values (权限分级): public (everyone), department (the owning department "
            "and the readers listed), restricted (only the readers listed)."
        ),
    )
    readers: list[str] = Field(
        default_factory=list,
        description="Departments or people of _teams.yaml who may read beside those `access` lets in.",
    )
    sources: dict[Identifier, Source] = Field(min_length=1)
    transform: Transform
    quality: list[Expectation] = Field(default_factory=list)
    anomaly: Anomaly | None = None
    reconciliations: list[Reconciliation] = Field(
        default_factory=list, description="Checks against another department's number (对账)."
    )
    approval: Approval
    subscribers: list[str] = Field(default_factory=list, description="Departments told of changes.")
    tags: list[str] = Field(default_factory=list)
    breaking: bool = Field(
        default=False,
        description="Count this version as a breaking change even if no field says so (e.g. upstream data changed meaning).",
    )
    priority: Literal["critical", "high", "normal", "low"] | Annotated[int, Field(ge=1, le=100_000)] = Field(
        default="normal",
        description=(
            "Who goes first when slots are short: critical (board-level), high, normal, low — Airflow priority "
            "weights 1000/100/10/1 — or a weight of your own."
        ),
    )
    definition_signoff: Literal["breaking", "every_version"] = Field(
        default="breaking",
        description=(
            "Which versions the department's definition_reviewers must sign off before any value computed "
            "under them is published: the first and every breaking one (default), or every version."
        ),
    )
    preview_periods: int = Field(
        default=28,
        ge=0,
        le=366,
        description="A breaking version is first computed over this many recently published periods and compared (0: no preview).",
    )
    status: Status = Field(
        default="active",
        description=(
            "active; deprecated (still computed, metrics reading it are warned); retired (no metric may read "
            "it). Not part of the meaning: changing it needs no new version."
        ),
    )
    replaced_by: Annotated[str, Field(pattern=METRIC_KEY.pattern, max_length=MAX_KEY_LENGTH)] | None = Field(
        default=None,
        description="Key of the metric to read instead (deprecated or retired metrics only).",
    )

    _dimension_descriptions: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("dimensions")
    @classmethod
    def _dimensions_unique_and_free(cls, value: list[str | Dimension]) -> list[str | Dimension]:
        names = [d.name if isinstance(d, Dimension) else d for d in value]
        if len(set(names)) != len(names):
            raise _refusal(_("dimensions are listed twice"), _("list each dimension once"))
        clash = sorted(ADDED_COLUMNS.intersection(names))
        if clash:
            raise _refusal(
                n_(
                    "{names} is a column the mart adds beside the dimensions",
                    "{names} are columns the mart adds beside the dimensions",
                    len(clash),
                    names=clash,
                ),
                _("rename the dimension (e.g. {example})", example="region_value"),
            )
        reserved = sorted(SQL_RESERVED.intersection(names))
        if reserved:
            raise _refusal(
                n_(
                    "{names} is a reserved SQL word(s), which BI tools would have to quote",
                    "{names} are reserved SQL word(s), which BI tools would have to quote",
                    len(reserved),
                    names=reserved,
                ),
                _(
                    "rename the dimension (e.g. {example} instead of {word})",
                    example="order_type",
                    word="order",
                ),
            )
        return value

    @model_validator(mode="after")
    def _dimension_names(self) -> MetricSpec:
        """Keep ``dimensions`` as names everywhere; descriptions of the long form are kept aside."""
        descriptions = {
            d.name: d.description for d in self.dimensions if isinstance(d, Dimension) and d.description
        }
        object.__setattr__(
            self, "dimensions", [d.name if isinstance(d, Dimension) else d for d in self.dimensions]
        )
        self._dimension_descriptions.update(descriptions)
        return self

    @field_serializer("dimensions")
    def _dimensions_as_written(self, names: list[str]) -> list[str | dict[str, str]]:
        docs = self._dimension_descriptions
        return [{"name": n, "description": docs[n]} if n in docs else n for n in names]

    def dimension_description(self, name: str) -> str | None:
        """The description given in the long form ``{name, description}``, if any."""
        return self._dimension_descriptions.get(name)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise _refusal(
                    _("{value} is not an IANA time zone", value=repr(value)),
                    _("e.g. {zone} or {other}", zone="Asia/Shanghai", other="UTC"),
                ) from None
        return value

    @property
    def on_inputs(self) -> bool:
        """Scheduled on its input metrics' Asset events (``schedule: inputs``)."""
        return self.schedule == SCHEDULE_ON_INPUTS

    @property
    def is_ratio(self) -> bool:
        return self.aggregation == "ratio"

    @property
    def output_columns(self) -> list[str]:
        """What the transform returns: a ratio's two parts instead of its value (which we compute)."""
        parts = ["numerator", "denominator"] if self.is_ratio else ["value"]
        return ["period_start", *self.dimensions, *parts]

    @property
    def result_columns(self) -> list[str]:
        """The columns of a checked result (what quality rules see): a ratio's parts and its value."""
        return ["period_start", *self.dimensions, *self.value_columns]

    @property
    def value_columns(self) -> list[str]:
        """What a staged result and the mart hold per row besides the period and the dimensions."""
        return ["numerator", "denominator", "value"] if self.is_ratio else ["value"]

    @property
    def approvers(self) -> set[str]:
        return {person for stage in self.approval.stages for person in stage.approvers}


#: The chat tools (and e-mail) a notification can go to.
ChannelName = Literal["slack", "feishu", "dingtalk", "wecom", "email"]
#: The message kinds ``notify:`` can route (the outbox's kinds; ``approval_update`` follows its request).
MessageKind = Literal[
    "anomaly",
    "quality_failure",
    "reconciliation",
    "approval_request",
    "approval_reminder",
    "definition_change",
    "history_changed",
]
Locale = Literal["en", "zh-CN"]
_CONN_ID = r"^[A-Za-z0-9_.-]+$"


class _Addresses(_Strict):
    """Where a department or person can be reached; secrets stay in Airflow connections."""

    feishu_chat_id: str | None = Field(
        default=None, pattern=r"^oc_[A-Za-z0-9]+$", description="Feishu / Lark group chat id (oc_…)."
    )
    email: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Used when no chat address is configured (or when notify: names email).",
    )
    locale: Locale | None = Field(
        default=None, description="Language of messages and pages: en (default) or zh-CN (简体中文)."
    )
    notify: dict[MessageKind, list[ChannelName]] = Field(
        default_factory=dict,
        description=(
            "Which channels each message kind goes to, e.g. {anomaly: [dingtalk, wecom]}. "
            "A kind not listed goes to every configured chat channel (e-mail only when there is none)."
        ),
    )


class Department(_Addresses):
    name: str
    slack_channel: str | None = Field(default=None, description="e.g. #sales-metrics or a channel id.")
    dingtalk_webhook: str | None = Field(
        default=None,
        pattern=_CONN_ID,
        description="Airflow connection id of the department's DingTalk group robot (token and SEC secret there).",
    )
    wecom_webhook: str | None = Field(
        default=None,
        pattern=_CONN_ID,
        description="Airflow connection id of the department's WeCom (企业微信) group robot (its key there).",
    )
    max_concurrent_queries: int | None = Field(
        default=None,
        ge=1,
        description=(
            "At most this many source queries at once on this department's databases, across every metric "
            "(an Airflow pool; a connection's own limit wins). Unset: no limit."
        ),
    )
    definition_reviewers: list[str] = Field(
        default_factory=list,
        description=(
            "People (keys of people:) who sign off the department's metric definitions: the first version and "
            "every breaking one publish nothing until one of them approves it on the Metrics Center page. "
            "Empty: the department's definitions need no sign-off."
        ),
    )


class Connection(_Strict):
    """Limits of one source database (an Airflow connection id), whoever's metrics read it."""

    department: Identifier | None = Field(default=None, description="The department that runs this database.")
    max_concurrent_queries: int | None = Field(
        default=None,
        ge=1,
        description="At most this many queries at once on this connection, across every metric (an Airflow pool).",
    )


class Person(_Addresses):
    name: str
    department: Identifier
    airflow_user: str | None = Field(
        default=None,
        description="Airflow user id (default: the person's key) — set it for FAB/Keycloak ids that differ.",
    )
    slack_user_id: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]+$")
    feishu_open_id: str | None = Field(
        default=None,
        pattern=r"^ou_[A-Za-z0-9]+$",
        description="Feishu / Lark open id (ou_…) of the person in the Metrics Center app: direct messages, and "
        "who clicked a card.",
    )
    feishu_union_id: str | None = Field(
        default=None,
        pattern=r"^on_[A-Za-z0-9]+$",
        description="Feishu / Lark union id (on_…): identifies the person across the company's apps.",
    )


class Teams(_Strict):
    """``_teams.yaml``: departments and people; person keys are Airflow user names."""

    departments: dict[Identifier, Department]
    people: dict[str, Person]
    connections: dict[str, Connection] = Field(
        default_factory=dict,
        description="Source databases by Airflow connection id, with their query limits.",
    )

    def airflow_user(self, person: str) -> str:
        """The Airflow user id a person answers as."""
        return self.people[person].airflow_user or person

    def person_for_airflow_user(self, user_id: str) -> str | None:
        return next((k for k, p in self.people.items() if (p.airflow_user or k) == user_id), None)

    def person_for_slack_user(self, slack_user_id: str) -> str | None:
        return next((k for k, p in self.people.items() if p.slack_user_id == slack_user_id), None)

    def person_for_feishu_user(self, *, open_id: str | None, union_id: str | None = None) -> str | None:
        """The person a Feishu / Lark click came from: by open id, else by union id."""
        for key, person in self.people.items():
            if (open_id and person.feishu_open_id == open_id) or (
                union_id and person.feishu_union_id == union_id
            ):
                return key
        return None

    def members(self, approver: str) -> list[str]:
        """A stage approver is a person, or a whole department (every person in it)."""
        if approver in self.people:
            return [approver]
        return sorted(k for k, p in self.people.items() if p.department == approver)

    def definition_reviewers(self, department: str) -> list[str]:
        """Who signs off ``department``'s definitions (none: its definitions need no sign-off)."""
        found = self.departments.get(department)
        return list(found.definition_reviewers) if found is not None else []

    def resolve(self, approvers: list[str]) -> list[str]:
        """People who may answer a stage, in a stable order, each once."""
        return list(dict.fromkeys(person for a in approvers for person in self.members(a)))

    @model_validator(mode="after")
    def _people_in_known_departments(self) -> Teams:
        for login, person in self.people.items():
            if person.department not in self.departments:
                raise _refusal(
                    _(
                        "people.{person}.department {department} is not a department",
                        person=login,
                        department=repr(person.department),
                    ),
                    _(
                        "add it under departments: or use one of {departments}",
                        departments=sorted(self.departments),
                    ),
                )
        for key, department in self.departments.items():
            for i, reviewer in enumerate(department.definition_reviewers):
                if reviewer not in self.people:
                    raise _refusal(
                        _(
                            "departments.{department}.definition_reviewers[{index}] {reviewer} is not a person",
                            department=key,
                            index=i,
                            reviewer=repr(reviewer),
                        ),
                        _("use one of {people}", people=sorted(self.people)),
                    )
        for conn_id, connection in self.connections.items():
            if connection.department is not None and connection.department not in self.departments:
                raise _refusal(
                    _(
                        "connections.{conn_id}.department {department} is not a department",
                        conn_id=conn_id,
                        department=repr(connection.department),
                    ),
                    _(
                        "add it under departments: or use one of {departments}",
                        departments=sorted(self.departments),
                    ),
                )
        return self
