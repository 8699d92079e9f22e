"""one Like per actor and object: duplicate reactions are merged, then a unique index keeps it so

Revision ID: 0011
Revises: 0015
Create Date: 2026-12-07 05:30:00

Likes from our own actors (C2S ``Like``, issue 15) are stored with the Likes received, in
``reactions``. A second Like of the same object by the same actor is the same Like: the oldest
Like of each (actor, object) is kept and a partial unique index makes a concurrent double Like
one. Announces are left as they are (a peer may relay an object again after an edit).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    reactions = sa.table(
        "reactions",
        sa.column("id", sa.Integer),
        sa.column("type", sa.String),
        sa.column("actor_id", sa.Integer),
        sa.column("object_iri", sa.String),
    )
    likes = reactions.c.type == "Like"
    kept = (
        sa.select(sa.func.min(reactions.c.id))
        .where(likes)
        .group_by(reactions.c.actor_id, reactions.c.object_iri)
    )
    op.execute(reactions.delete().where(likes, reactions.c.id.not_in(kept)))
    op.create_index(
        "uq_reactions_like_actor_object",
        "reactions",
        ["actor_id", "object_iri"],
        unique=True,
        sqlite_where=sa.text("type = 'Like'"),
        postgresql_where=sa.text("type = 'Like'"),
    )


def downgrade() -> None:
    op.drop_index("uq_reactions_like_actor_object", table_name="reactions")
