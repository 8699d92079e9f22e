"""relays: who relayed (Announce) which object, for timelines and the C2S inbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 05:10:00

A member's timeline shows what the associations they follow or joined relayed, also when the
relayed object comes from another node; until now only our own actors' relays were known. Rows
are filled from what is already stored: our actors' ``Announce`` activities, and the processed
``Announce`` activities received from peers, whose object (or the object of the ``Create`` they
wrap, FEP-1b12) this node holds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (announce IRI, relayer, relayed object, when): the object named directly, or through the Create
# the Announce wraps (ours, or one received).
BACKFILL = (
    """
    SELECT a.iri AS announce_iri, a.actor_id AS relayer_id, o.iri AS object_iri, a.published AS relayed_at
    FROM activities a
    JOIN objects o ON o.iri = a.object_iri
    WHERE a.type = 'Announce'
    """,
    """
    SELECT a.iri AS announce_iri, a.actor_id AS relayer_id, o.iri AS object_iri, a.published AS relayed_at
    FROM activities a
    JOIN inbox_activities c ON c.iri = a.object_iri AND c.type = 'Create'
    JOIN objects o ON o.iri = c.object_iri
    WHERE a.type = 'Announce'
    """,
    """
    SELECT i.iri AS announce_iri, r.id AS relayer_id, o.iri AS object_iri, i.received_at AS relayed_at
    FROM inbox_activities i
    JOIN actors r ON r.iri = i.actor_iri
    JOIN objects o ON o.iri = i.object_iri
    WHERE i.type = 'Announce' AND i.state = 'processed'
    """,
    """
    SELECT i.iri AS announce_iri, r.id AS relayer_id, o.iri AS object_iri, i.received_at AS relayed_at
    FROM inbox_activities i
    JOIN actors r ON r.iri = i.actor_iri
    JOIN inbox_activities c ON c.iri = i.object_iri AND c.type = 'Create'
    JOIN objects o ON o.iri = c.object_iri
    WHERE i.type = 'Announce' AND i.state = 'processed'
    """,
    """
    SELECT i.iri AS announce_iri, r.id AS relayer_id, o.iri AS object_iri, i.received_at AS relayed_at
    FROM inbox_activities i
    JOIN actors r ON r.iri = i.actor_iri
    JOIN activities c ON c.iri = i.object_iri AND c.type = 'Create'
    JOIN objects o ON o.iri = c.object_iri
    WHERE i.type = 'Announce' AND i.state = 'processed'
    """,
)


def upgrade() -> None:
    op.create_table(
        "relays",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("announce_iri", sa.String(length=2048), nullable=False),
        sa.Column("relayer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("object_iri", sa.String(length=2048), nullable=False),
        sa.Column("relayed_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["relayer_id"], ["actors.id"], name=op.f("fk_relays_relayer_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relays")),
        sa.UniqueConstraint("announce_iri", name=op.f("uq_relays_announce_iri")),
    )
    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relays_object_iri"), ["object_iri"], unique=False)
        batch_op.create_index("ix_relays_relayer_relayed", ["relayer_id", "relayed_at"], unique=False)
    for select in BACKFILL:
        op.execute(
            "INSERT INTO relays (announce_iri, relayer_id, object_iri, relayed_at) "
            f"SELECT s.announce_iri, s.relayer_id, s.object_iri, s.relayed_at FROM ({select}) s "
            "WHERE NOT EXISTS (SELECT 1 FROM relays x WHERE x.announce_iri = s.announce_iri)"
        )


def downgrade() -> None:
    with op.batch_alter_table("relays", schema=None) as batch_op:
        batch_op.drop_index("ix_relays_relayer_relayed")
        batch_op.drop_index(batch_op.f("ix_relays_object_iri"))
    op.drop_table("relays")
