"""membership: join and replies policies of associations, the Join behind each membership

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("join_policy", sa.String(length=16), server_default="approval", nullable=False)
        )
        batch_op.add_column(
            sa.Column("replies_policy", sa.String(length=16), server_default="anyone", nullable=False)
        )
        batch_op.create_check_constraint(
            "join_policy", sa.text("join_policy IN ('open', 'approval', 'closed')")
        )
        batch_op.create_check_constraint("replies_policy", sa.text("replies_policy IN ('anyone', 'members')"))
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("join_iri", sa.String(length=2048), nullable=True))
        batch_op.create_index(batch_op.f("ix_memberships_join_iri"), ["join_iri"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_join_iri"))
        batch_op.drop_column("join_iri")
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_constraint("replies_policy", type_="check")
        batch_op.drop_constraint("join_policy", type_="check")
        batch_op.drop_column("replies_policy")
        batch_op.drop_column("join_policy")
