"""drafts: members propose publications that an association's admins or moderators publish

Revision ID: 0021
Revises: 0016
Create Date: 2026-12-07 08:30:00

A draft is kept apart from ``objects`` so that no read path, feed, outbox or delivery can ever
show it before it is published (decision 65).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import server.db.types

revision = "0021"
down_revision = "0018"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("group_id", BIGINT, nullable=False),
        sa.Column("author_id", BIGINT, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fields", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", BIGINT, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("object_iri", sa.String(length=2048), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'published', 'refused')", name=op.f("ck_drafts_state")),
        sa.CheckConstraint("kind IN ('alert', 'resource', 'proposal')", name=op.f("ck_drafts_kind")),
        sa.ForeignKeyConstraint(
            ["author_id"], ["actors.id"], name=op.f("fk_drafts_author_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["actors.id"], name=op.f("fk_drafts_decided_by_id_actors"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["actors.id"], name=op.f("fk_drafts_group_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
    )
    op.create_index("ix_drafts_group_state", "drafts", ["group_id", "state"], unique=False)
    op.create_index(op.f("ix_drafts_author_id"), "drafts", ["author_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_drafts_author_id"), table_name="drafts")
    op.drop_index("ix_drafts_group_state", table_name="drafts")
    op.drop_table("drafts")
