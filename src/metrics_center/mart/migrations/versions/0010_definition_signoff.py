"""A definition's sign-off (申请 → 审批): the first and every breaking version of a department's metric wait
for one of its ``definition_reviewers`` before any value computed under them is published.

- ``metric_definition.signoff``: ``not_required`` (every version registered before this revision, and
  versions of departments without reviewers), ``pending``, ``approved`` or ``rejected``;
  ``signed_off_by`` / ``signed_off_at`` / ``signoff_reason`` say who decided, when and why. Every attempt
  (refused ones too) is also an ``approval_event`` with stage ``definition v<N>``.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("metric_definition") as batch:
        batch.add_column(
            sa.Column(
                "signoff",
                sa.String(16),
                nullable=False,
                server_default="not_required",
                comment="not_required, pending, approved or rejected: may values computed under it be published.",
            )
        )
        batch.add_column(sa.Column("signed_off_by", sa.String(255), comment="The reviewer who decided."))
        batch.add_column(sa.Column("signed_off_at", sa.DateTime(timezone=True), comment="When they decided."))
        batch.add_column(sa.Column("signoff_reason", sa.Text, comment="Why (required to reject)."))


def downgrade() -> None:
    with op.batch_alter_table("metric_definition") as batch:
        for column in ("signoff_reason", "signed_off_at", "signed_off_by", "signoff"):
            batch.drop_column(column)
