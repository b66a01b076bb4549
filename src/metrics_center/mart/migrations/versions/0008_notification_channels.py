"""Notifications go to several chat tools: each outbox row names its ``channel``.

- ``notification.channel``: ``slack`` (every row before this revision), ``feishu``, ``dingtalk``, ``wecom``,
  ``email`` or ``inbox`` (the demo's local file). ``address`` is an address *of that channel*: a Slack
  channel or user id, a Feishu chat / open id, the Airflow connection id of a DingTalk or WeCom robot, an
  e-mail address.
- ``slack_channel`` / ``slack_ts`` keep their names (dashboards read them) but hold, for every channel, the
  conversation and message id the platform answered with, so a message can be edited in place.
- ``notification.locale``: the language the recipient reads (``locale:`` in ``_teams.yaml``), rendered at
  delivery.
- ``chat_request_refusal``: every chat callback refused before it was read (forged, stale, replayed,
  oversized), kept for the security review: which chat, why, from where, and a digest of the body.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(
            sa.Column(
                "channel",
                sa.String(16),
                nullable=False,
                server_default="slack",
                comment="The chat tool this row goes to: slack, feishu, dingtalk, wecom, email or inbox.",
            )
        )
        batch.add_column(
            sa.Column(
                "locale",
                sa.String(16),
                comment="The recipient's language when the row was written (en, zh-CN); NULL: English.",
            )
        )
        batch.alter_column(
            "slack_channel",
            existing_type=sa.String(64),
            type_=sa.String(128),
            comment="Conversation id the channel answered with (Slack channel id, Feishu chat id…).",
        )
        batch.alter_column(
            "slack_ts",
            existing_type=sa.String(64),
            type_=sa.String(128),
            comment="Message id the channel answered with (Slack ts, Feishu message id…).",
        )

    op.create_table(
        "chat_request_refusal",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False, comment="slack or feishu."),
        sa.Column("reason", sa.Text, nullable=False, comment="Why it was refused, as answered."),
        sa.Column("status", sa.Integer, nullable=False, comment="The HTTP status answered."),
        sa.Column("remote", sa.String(64), comment="The client address the api-server saw."),
        sa.Column("body_sha256", sa.String(64), comment="Digest of the body (the body itself is not kept)."),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        comment="Chat callbacks refused before being read: forged, stale, replayed or oversized requests.",
    )
    op.create_index("ix_chat_request_refusal_received", "chat_request_refusal", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_chat_request_refusal_received", "chat_request_refusal")
    op.drop_table("chat_request_refusal")
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("locale")
        batch.drop_column("channel")
