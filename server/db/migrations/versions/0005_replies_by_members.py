"""replies by members only, by default: new associations take replies from their members only

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:20:00

Existing associations keep the setting they have (``entraide association set SLUG --replies``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.alter_column(
            "replies_policy",
            existing_type=sa.String(length=16),
            server_default="members",
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.alter_column(
            "replies_policy",
            existing_type=sa.String(length=16),
            server_default="anyone",
            existing_nullable=False,
        )
