"""member suspension: a membership may be suspended, for a while or until lifted

Revision ID: 0025
Revises: 0017
Create Date: 2026-12-07 11:40:00

``memberships.suspended_at`` marks a suspended member (decision 76): still a member who reads what
members read, but who neither publishes, replies, votes, co-signs, proposes drafts nor invites in
the association. ``suspended_until`` ends it by itself (None: until a moderator lifts it), and
``suspension_reason`` is what the moderator told the member.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0025"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("suspended_at", server.db.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("suspended_until", server.db.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("suspension_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("suspension_reason")
        batch_op.drop_column("suspended_until")
        batch_op.drop_column("suspended_at")
