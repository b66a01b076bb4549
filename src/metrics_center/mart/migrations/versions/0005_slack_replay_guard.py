"""Slack requests already seen: replay protection shared by every api-server worker.

``slack_request`` holds the signature of every verified Slack interaction for a while; a second request
with the same signature is a replay and is refused. Slack's own timestamps expire after 5 minutes; the
maintenance DAG forgets signatures older than a day.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "slack_request",
        sa.Column("signature", sa.String(128), primary_key=True, comment="X-Slack-Signature (v0=…)."),
        sa.Column("request_ts", sa.BigInteger, nullable=False, comment="X-Slack-Request-Timestamp."),
        sa.Column("received_at", TS, nullable=False, comment="When it was first seen."),
        comment="Signatures of verified Slack requests: the same signature twice is a replay.",
    )
    op.create_index("ix_slack_request_received", "slack_request", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_request_received", "slack_request")
    op.drop_table("slack_request")
