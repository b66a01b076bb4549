"""Where each answer came from and why: the audit of every decision and refused attempt.

``approval_event`` gains ``via`` (slack, page, airflow), ``reason`` (required to reject on our page and
in Slack) and ``evidence_hash`` (SHA-256 of the evidence text the approvers were shown).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("approval_event") as batch:
        batch.add_column(sa.Column("via", sa.String(16), comment="slack, page or airflow (its UI/REST API)."))
        batch.add_column(sa.Column("reason", sa.Text, comment="The approver's reason (required to reject)."))
        batch.add_column(
            sa.Column(
                "evidence_hash", sa.String(64), comment="SHA-256 of the evidence text shown to approvers."
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("approval_event") as batch:
        batch.drop_column("evidence_hash")
        batch.drop_column("reason")
        batch.drop_column("via")
