"""events: the calendar facts of Event objects and their participants (issue 18)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 08:30:00

An event is a content object (``objects``, kind ``event``) plus one ``events`` row: start and end in
UTC with the IANA time zone they were given in, the place (Mobilizon's ``Place`` and
``PostalAddress`` fields) or the online link, the join mode, the capacity, the status and the
iCalendar ``SEQUENCE``. ``event_participants`` holds every ``Join`` and its answer.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0017"
down_revision = "0020"
branch_labels = None
depends_on = None

OLD_KINDS = ("post", "resource", "alert", "proposal", "reply", "vote", "endorsement")
KINDS = (*OLD_KINDS, "event")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IRI = sa.String(length=2048)


def _allow_kinds(kinds: tuple[str, ...]) -> None:
    """Replace the check on ``objects.kind``. SQLite rebuilds the table for that (batch mode),
    which drops its triggers (the feed markers of 0014): they are read before and created again
    after, exactly as they were."""
    bind = op.get_bind()
    triggers: list[tuple[str, str]] = []
    if bind.dialect.name == "sqlite":
        triggers = [
            (str(name), str(sql))
            for name, sql in bind.execute(
                sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'objects'")
            )
        ]
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_constraint("kind", type_="check")
        batch_op.create_check_constraint("kind", sa.text(f"kind IN {kinds!r}"))
    for name, sql in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(sql)


def upgrade() -> None:
    _allow_kinds(KINDS)
    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("object_id", ID, nullable=False),
        sa.Column("start_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("location_name", sa.String(length=500), nullable=True),
        sa.Column("street", sa.String(length=500), nullable=True),
        sa.Column("locality", sa.String(length=200), nullable=True),
        sa.Column("postal_code", sa.String(length=32), nullable=True),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("country", sa.String(length=100), nullable=True),
        sa.Column("online_url", IRI, nullable=True),
        sa.Column("join_mode", sa.String(length=16), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.CheckConstraint("join_mode IN ('free', 'restricted', 'invite')", name=op.f("ck_events_join_mode")),
        sa.CheckConstraint(
            "status IN ('tentative', 'confirmed', 'cancelled')", name=op.f("ck_events_status")
        ),
        sa.CheckConstraint("capacity IS NULL OR capacity >= 0", name=op.f("ck_events_capacity")),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.id"], name=op.f("fk_events_object_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("object_id", name=op.f("uq_events_object_id")),
    )
    op.create_index("ix_events_start_at", "events", ["start_at"], unique=False)
    op.create_table(
        "event_participants",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("actor_id", ID, nullable=False),
        sa.Column("actor_iri", IRI, nullable=False),
        sa.Column("join_iri", IRI, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'accepted', 'rejected')", name=op.f("ck_event_participants_state")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_participants_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["actors.id"],
            name=op.f("fk_event_participants_actor_id_actors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_participants")),
        sa.UniqueConstraint("event_id", "actor_id", name=op.f("uq_event_participants_event_id_actor_id")),
        sa.UniqueConstraint("join_iri", name=op.f("uq_event_participants_join_iri")),
    )
    op.create_index(op.f("ix_event_participants_event_id"), "event_participants", ["event_id"], unique=False)
    op.create_index(op.f("ix_event_participants_actor_id"), "event_participants", ["actor_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_event_participants_actor_id"), table_name="event_participants")
    op.drop_index(op.f("ix_event_participants_event_id"), table_name="event_participants")
    op.drop_table("event_participants")
    op.drop_index("ix_events_start_at", table_name="events")
    op.drop_table("events")
    # Event objects have no kind before this revision: they become generic content again.
    op.execute("UPDATE objects SET kind = 'post' WHERE kind = 'event'")
    _allow_kinds(OLD_KINDS)
