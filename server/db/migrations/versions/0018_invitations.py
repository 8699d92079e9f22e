"""invitations: links that let a local member join an association without waiting for approval;
members may leave the member directory

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-07 08:30:00

``invitations`` holds only the SHA-256 of each link's token, with its association, its author,
its expiry and how many times it may be and was used (decision 58). ``accounts.directory_opt_out``
leaves a member out of the member directories of their associations (decision 59).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0018"
down_revision = "0022"
branch_labels = None
depends_on = None

ACTOR_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("group_id", ACTOR_ID, nullable=False),
        sa.Column("created_by_id", ACTOR_ID, nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("max_uses >= 1", name=op.f("ck_invitations_max_uses")),
        sa.CheckConstraint("uses >= 0 AND uses <= max_uses", name=op.f("ck_invitations_uses")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["actors.id"], name=op.f("fk_invitations_group_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["actors.id"],
            name=op.f("fk_invitations_created_by_id_actors"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_group_id"), ["group_id"], unique=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("directory_opt_out", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("directory_opt_out")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_group_id"))
    op.drop_table("invitations")
