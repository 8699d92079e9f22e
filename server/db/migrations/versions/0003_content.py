"""content: object kinds, votes, endorsements, media

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 20:42:12.070832
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import server.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KINDS = ("post", "resource", "alert", "proposal", "reply", "vote", "endorsement")


def upgrade() -> None:
    op.create_table(
        "endorsements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iri", sa.String(length=2048), nullable=False),
        sa.Column("proposal_iri", sa.String(length=2048), nullable=False),
        sa.Column("proposal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("endorser_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endorser_id"],
            ["actors.id"],
            name=op.f("fk_endorsements_endorser_id_actors"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["objects.id"],
            name=op.f("fk_endorsements_proposal_id_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endorsements")),
        sa.UniqueConstraint("iri", name=op.f("uq_endorsements_iri")),
        sa.UniqueConstraint(
            "proposal_iri", "endorser_id", name=op.f("uq_endorsements_proposal_iri_endorser_id")
        ),
    )
    with op.batch_alter_table("endorsements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_endorsements_proposal_iri"), ["proposal_iri"], unique=False)

    op.create_table(
        "media",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uploaded_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1500), nullable=False),
        sa.Column("object_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.id"], name=op.f("fk_media_object_id_objects"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["actors.id"], name=op.f("fk_media_owner_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"],
            ["actors.id"],
            name=op.f("fk_media_uploaded_by_id_actors"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        sa.UniqueConstraint("key", name=op.f("uq_media_key")),
    )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_media_object_id"), ["object_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_media_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "votes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("question_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("voter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("choice", sa.String(length=500), nullable=False),
        sa.Column("activity_iri", sa.String(length=2048), nullable=False),
        sa.Column("note_iri", sa.String(length=2048), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["question_id"], ["objects.id"], name=op.f("fk_votes_question_id_objects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["voter_id"], ["actors.id"], name=op.f("fk_votes_voter_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
        sa.UniqueConstraint("activity_iri", name=op.f("uq_votes_activity_iri")),
        sa.UniqueConstraint(
            "question_id", "voter_id", "choice", name=op.f("uq_votes_question_id_voter_id_choice")
        ),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_votes_question_id"), ["question_id"], unique=False)

    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="post", nullable=False))
        batch_op.create_index("ix_objects_attributed_kind", ["attributed_to_id", "kind", "id"], unique=False)
        batch_op.create_check_constraint("kind", sa.text(f"kind IN {KINDS!r}"))
    # Objects stored before this revision: replies are the only kind we can tell apart.
    op.execute("UPDATE objects SET kind = 'reply' WHERE in_reply_to_iri IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_constraint("kind", type_="check")
        batch_op.drop_index("ix_objects_attributed_kind")
        batch_op.drop_column("kind")

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_question_id"))

    op.drop_table("votes")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_owner_id"))
        batch_op.drop_index(batch_op.f("ix_media_object_id"))

    op.drop_table("media")
    with op.batch_alter_table("endorsements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_endorsements_proposal_iri"))

    op.drop_table("endorsements")
