"""SQLAlchemy Core handles on the mart's tables for queries and inserts.

The schema itself is created only by the Alembic migrations in ``migrations/versions``; these
definitions mirror them (a test compares both) and are never used for DDL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
metadata = sa.MetaData()

metric_definition = sa.Table(
    "metric_definition",
    metadata,
    sa.Column("metric_key", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("department", sa.String(63)),
    sa.Column("owner", sa.String(255)),
    sa.Column("unit", sa.String(63)),
    sa.Column("grain", sa.String(16)),
    sa.Column("dimensions", JSON),
    sa.Column("formula", sa.Text),
    sa.Column("definition_hash", sa.String(64)),
    sa.Column("definition", JSON),
    sa.Column("change_note", sa.Text),
    sa.Column("registered_at", TS),
    sa.Column("valid_from", TS),
    sa.Column("valid_to", TS),
    sa.Column("announced_at", TS),
    sa.Column("aggregation", sa.String(8)),
    sa.Column("access", sa.String(12)),
    sa.Column("readers", JSON),
    sa.Column("signoff", sa.String(16)),
    sa.Column("signed_off_by", sa.String(255)),
    sa.Column("signed_off_at", TS),
    sa.Column("signoff_reason", sa.Text),
)

metric_input = sa.Table(
    "metric_input",
    metadata,
    sa.Column("metric_key", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("source_name", sa.String(63), primary_key=True),
    sa.Column("input_key", sa.String(63)),
)

impact_preview = sa.Table(
    "impact_preview",
    metadata,
    sa.Column("metric_key", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("from_version", sa.Integer),
    sa.Column("run_id", sa.String(250)),
    sa.Column("computed_at", TS),
    sa.Column("summary", JSON),
    sa.Column("error", sa.Text),
)

publication = sa.Table(
    "publication",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric_key", sa.String(63)),
    sa.Column("definition_version", sa.Integer),
    sa.Column("run_id", sa.String(250)),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("periods", JSON),
    sa.Column("row_count", sa.Integer),
    sa.Column("approved_by", sa.Text),
    sa.Column("published_at", TS),
    sa.Column("data_as_of", TS),
    sa.Column("restatement", sa.Boolean),
)

quality_result = sa.Table(
    "quality_result",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric_key", sa.String(63)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("period_start", sa.Date),
    sa.Column("expectation", sa.String(255)),
    sa.Column("kwargs", JSON),
    sa.Column("success", sa.Boolean),
    sa.Column("observed", JSON),
    sa.Column("checked_at", TS),
    sa.Column("severity", sa.String(8)),
)

approval_event = sa.Table(
    "approval_event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric_key", sa.String(63)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("stage", sa.String(255)),
    sa.Column("decision", sa.String(32)),
    sa.Column("decided_by", sa.String(255)),
    sa.Column("decided_at", TS),
    sa.Column("detail", sa.Text),
    sa.Column("ti_id", sa.String(36)),
    sa.Column("try_number", sa.Integer),
    sa.Column("result_hash", sa.String(64)),
    sa.Column("via", sa.String(16)),
    sa.Column("reason", sa.Text),
    sa.Column("evidence_hash", sa.String(64)),
)

approval_evidence = sa.Table(
    "approval_evidence",
    metadata,
    sa.Column("metric_key", sa.String(63), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("stage", sa.String(255), primary_key=True),
    sa.Column("locale", sa.String(16), primary_key=True),
    sa.Column("try_number", sa.Integer),
    sa.Column("body", sa.Text),
    sa.Column("written_at", TS),
)

metric_run = sa.Table(
    "metric_run",
    metadata,
    sa.Column("metric_key", sa.String(63), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("definition_version", sa.Integer),
    sa.Column("definition_hash", sa.String(64)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("period_start", sa.Date),
    sa.Column("period_end", sa.Date),
    sa.Column("restatement", sa.Boolean),
    sa.Column("state", sa.String(16)),
    sa.Column("started_at", TS),
    sa.Column("computed_at", TS),
    sa.Column("result_hash", sa.String(64)),
    sa.Column("result_rows", sa.Integer),
    sa.Column("publication_id", sa.Integer),
    sa.Column("detail", sa.Text),
    sa.Column("updated_at", TS),
    sa.Column("periods", JSON),
)

anomaly = sa.Table(
    "anomaly",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("metric_key", sa.String(63)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("period_start", sa.Date),
    sa.Column("dimensions", JSON),
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("expected", sa.Float(precision=53)),
    sa.Column("band_low", sa.Float(precision=53)),
    sa.Column("band_high", sa.Float(precision=53)),
    sa.Column("score", sa.Float(precision=53)),
    sa.Column("method", sa.String(16)),
    sa.Column("baseline_points", sa.Integer),
    sa.Column("definition_version", sa.Integer),
    sa.Column("detected_at", TS),
    sa.Column("marked_expected_by", sa.String(255)),
    sa.Column("marked_expected_at", TS),
)

notification = sa.Table(
    "notification",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32)),
    sa.Column("dedupe_key", sa.String(255)),
    sa.Column("metric_key", sa.String(63)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("recipient", sa.String(255)),
    sa.Column("address", sa.String(255)),
    sa.Column("group_key", sa.String(255)),
    sa.Column("payload", JSON),
    sa.Column("state", sa.String(16)),
    sa.Column("attempts", sa.Integer),
    sa.Column("next_attempt_at", TS),
    sa.Column("delivery_token", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("channel", sa.String(16)),
    sa.Column("locale", sa.String(16)),
    sa.Column(
        "slack_channel", sa.String(128)
    ),  # every channel's conversation id (named before there were others)
    sa.Column("slack_ts", sa.String(128)),  # every channel's message id
    sa.Column("created_at", TS),
    sa.Column("delivered_at", TS),
)

slack_request = sa.Table(
    "slack_request",
    metadata,
    sa.Column("signature", sa.String(128), primary_key=True),
    sa.Column("request_ts", sa.BigInteger),
    sa.Column("received_at", TS),
)

chat_request_refusal = sa.Table(
    "chat_request_refusal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("channel", sa.String(16)),
    sa.Column("locale", sa.String(16)),
    sa.Column("reason", sa.Text),
    sa.Column("status", sa.Integer),
    sa.Column("remote", sa.String(64)),
    sa.Column("body_sha256", sa.String(64)),
    sa.Column("received_at", TS),
)

mart_reader = sa.Table(
    "mart_reader",
    metadata,
    sa.Column("role_name", sa.String(63), primary_key=True),
    sa.Column("department", sa.String(63)),
    sa.Column("granted_at", TS),
)

#: Every metric's storage in one tall view (:mod:`metrics_center.mart.relations` builds it); internal.
metric_value_all = sa.table(
    "metric_value_all",
    sa.column("metric_key"),
    sa.column("period_start", sa.Date),
    sa.column("period_end", sa.Date),
    sa.column("dimensions", JSON),
    sa.column("value", sa.Float),
    sa.column("numerator", sa.Float),
    sa.column("denominator", sa.Float),
    sa.column("definition_version"),
    sa.column("publication_id"),
    sa.column("superseded_at", TS),
)

metric_value_current = sa.table(
    "metric_value_current",
    sa.column("metric_key"),
    sa.column("period_start", sa.Date),
    sa.column("period_end", sa.Date),
    sa.column("dimensions", JSON),
    sa.column("value", sa.Float),
    sa.column("numerator", sa.Float),
    sa.column("denominator", sa.Float),
    sa.column("unit"),
    sa.column("definition_version"),
    sa.column("run_id"),
    sa.column("approved_by"),
    sa.column("published_at", TS),
)
