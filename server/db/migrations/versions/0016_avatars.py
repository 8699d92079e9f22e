"""avatars: the upload a member shows as their picture, kept by the unused-uploads cleanup

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07 06:30:00

``media.avatar_of_id`` names the actor whose avatar (``icon``) an upload is; at most one per
actor. The hourly cleanup of uploads no object uses skips such rows; a replaced or removed avatar
loses the link and is cleaned like any unused upload.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("avatar_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_media_avatar_of_id_actors"),
            "actors",
            ["avatar_of_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_unique_constraint(batch_op.f("uq_media_avatar_of_id"), ["avatar_of_id"])


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_media_avatar_of_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_media_avatar_of_id_actors"), type_="foreignkey")
        batch_op.drop_column("avatar_of_id")
