"""C2S inbox lists accepted activities only; notifications remember what was read

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 02:45:00

``inbox_items.accepted``: an activity is filed when it arrives at a personal inbox, but listed by
``GET {inbox}`` only once processing accepted it (security case 50). Rows filed before this
revision were listed unverified: they start hidden, as nothing says processing accepted them.
``accounts.notifications_read_at``: notifications up to this instant are read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notifications_read_at", server.db.types.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("notifications_read_at")
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_column("accepted")
