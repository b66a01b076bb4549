"""The evidence of an approval request in every language its readers may read.

- ``approval_evidence``: the Markdown an approver reads before answering, per (metric, run, stage) and
  locale other than English (English is the body Airflow keeps with the request). Written by the
  approval task each time it asks; read by the Metrics Center page for a reader in that locale.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "approval_evidence",
        sa.Column("metric_key", sa.String(63), primary_key=True),
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("stage", sa.String(255), primary_key=True),
        sa.Column(
            "locale", sa.String(16), primary_key=True, comment="zh-CN…; English is Airflow's HITL body."
        ),
        sa.Column(
            "try_number", sa.Integer, nullable=False, comment="The try of the approval task that wrote it."
        ),
        sa.Column("body", sa.Text, nullable=False, comment="The evidence Markdown in that language."),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        comment="Approval evidence translated for readers of other languages (the latest try of each stage).",
    )


def downgrade() -> None:
    op.drop_table("approval_evidence")
