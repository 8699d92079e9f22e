"""follower_inboxes: per followed actor and shared inbox, how many accepted remote followers it serves

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-07 08:40:00

Planning a shared-inbox fan-out grouped every follower of the sender by shared inbox on each
publication: linear in the followers (0.2–0.5 s at 50,000 on SQLite, issue 20). This derived table
holds that grouping, kept by triggers in the transaction of every write to ``follows`` (insert,
delete, change of state or ends) and to the ``actors`` columns it depends on (shared inbox,
``local``, ``deleted_at``, the row's deletion), whatever code path writes (decision 70). Planning
reads one row per shared inbox; followers that block the sender, a handful, are subtracted at read
time (``server/db/queries/delivery.py``). Rows whose count fell to 0 stay and are skipped.

A follower counts when its follow is ``accepted`` and the actor is remote, not deleted and has a
non-empty shared inbox: the same filter as the grouped read it replaces (tests/server/test_follower_inboxes.py
compares the two after every kind of write, on both engines).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0019"
branch_labels = None
depends_on = None

# An actor row whose accepted follows count (the filter of the grouped read).
COUNTED = (
    "(NOT {a}.local AND {a}.deleted_at IS NULL AND {a}.shared_inbox_iri IS NOT NULL"
    " AND {a}.shared_inbox_iri <> '')"
)
_ADD_FOLLOW = """INSERT INTO follower_inboxes (followed_id, shared_inbox_iri, n)
      SELECT {f}.followed_id, a.shared_inbox_iri, 1 FROM actors a
      WHERE a.id = {f}.follower_id AND {f}.state = 'accepted' AND {counted}
      ON CONFLICT (followed_id, shared_inbox_iri) DO UPDATE SET n = follower_inboxes.n + 1"""
_REMOVE_FOLLOW = """UPDATE follower_inboxes SET n = n - 1
      WHERE {f}.state = 'accepted' AND followed_id = {f}.followed_id AND shared_inbox_iri = (
        SELECT a.shared_inbox_iri FROM actors a WHERE a.id = {f}.follower_id AND {counted})"""
# An actor leaving or joining the count (or moving to another shared inbox): every followed
# actor it follows (accepted) loses or gains one on that inbox; (follower, followed) is unique.
_REMOVE_ACTOR = """UPDATE follower_inboxes SET n = n - 1
      WHERE {counted} AND shared_inbox_iri = {a}.shared_inbox_iri AND followed_id IN (
        SELECT f.followed_id FROM follows f WHERE f.follower_id = {a}.id AND f.state = 'accepted')"""
_ADD_ACTOR = """INSERT INTO follower_inboxes (followed_id, shared_inbox_iri, n)
      SELECT f.followed_id, {a}.shared_inbox_iri, 1 FROM follows f
      WHERE f.follower_id = {a}.id AND f.state = 'accepted' AND {counted}
      ON CONFLICT (followed_id, shared_inbox_iri) DO UPDATE SET n = follower_inboxes.n + 1"""


def _add_follow(f: str) -> str:
    return _ADD_FOLLOW.format(f=f, counted=COUNTED.format(a="a"))


def _remove_follow(f: str) -> str:
    return _REMOVE_FOLLOW.format(f=f, counted=COUNTED.format(a="a"))


def _add_actor(a: str) -> str:
    return _ADD_ACTOR.format(a=a, counted=COUNTED.format(a=a))


def _remove_actor(a: str) -> str:
    return _REMOVE_ACTOR.format(a=a, counted=COUNTED.format(a=a))


_ACTOR_CHANGED = (
    "OLD.shared_inbox_iri IS DISTINCT FROM NEW.shared_inbox_iri OR OLD.local IS DISTINCT FROM NEW.local"
    " OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at"
)
_FOLLOW_CHANGED = (
    "OLD.state IS DISTINCT FROM NEW.state OR OLD.follower_id IS DISTINCT FROM NEW.follower_id"
    " OR OLD.followed_id IS DISTINCT FROM NEW.followed_id"
)

# SQLite spells IS DISTINCT FROM as IS NOT (3.39 has both; IS NOT is older).
_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER follower_inboxes_follow_insert AFTER INSERT ON follows
    WHEN NEW.state = 'accepted' BEGIN
      {_add_follow("NEW")};
    END""",
    f"""CREATE TRIGGER follower_inboxes_follow_delete AFTER DELETE ON follows
    WHEN OLD.state = 'accepted' BEGIN
      {_remove_follow("OLD")};
    END""",
    f"""CREATE TRIGGER follower_inboxes_follow_update AFTER UPDATE ON follows
    WHEN {_FOLLOW_CHANGED.replace("IS DISTINCT FROM", "IS NOT")} BEGIN
      {_remove_follow("OLD")};
      {_add_follow("NEW")};
    END""",
    f"""CREATE TRIGGER follower_inboxes_actor_update AFTER UPDATE ON actors
    WHEN {_ACTOR_CHANGED.replace("IS DISTINCT FROM", "IS NOT")} BEGIN
      {_remove_actor("OLD")};
      {_add_actor("NEW")};
    END""",
    # Before the row goes: its follows are then deleted by the cascade, when the actor row (and
    # so its shared inbox) can no longer be read by the follows' trigger.
    f"""CREATE TRIGGER follower_inboxes_actor_delete BEFORE DELETE ON actors BEGIN
      {_remove_actor("OLD")};
    END""",
]

_PG_FUNCTIONS = [
    f"""CREATE FUNCTION follower_inboxes_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND NOT ({_FOLLOW_CHANGED}) THEN
        RETURN NULL;
      END IF;
      IF TG_OP <> 'INSERT' THEN
        {_remove_follow("OLD")};
      END IF;
      IF TG_OP <> 'DELETE' THEN
        {_add_follow("NEW")};
      END IF;
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION follower_inboxes_actor() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND NOT ({_ACTOR_CHANGED}) THEN
        RETURN NULL;
      END IF;
      {_remove_actor("OLD")};
      IF TG_OP = 'UPDATE' THEN
        {_add_actor("NEW")};
        RETURN NULL;
      END IF;
      RETURN OLD;
    END $$""",
]
_PG_TRIGGERS = [
    "CREATE TRIGGER follower_inboxes_follow AFTER INSERT OR UPDATE OR DELETE ON follows "
    "FOR EACH ROW EXECUTE FUNCTION follower_inboxes_follow()",
    "CREATE TRIGGER follower_inboxes_actor_update AFTER UPDATE ON actors "
    "FOR EACH ROW EXECUTE FUNCTION follower_inboxes_actor()",
    "CREATE TRIGGER follower_inboxes_actor_delete BEFORE DELETE ON actors "
    "FOR EACH ROW EXECUTE FUNCTION follower_inboxes_actor()",
]

_FILL = f"""INSERT INTO follower_inboxes (followed_id, shared_inbox_iri, n)
SELECT f.followed_id, a.shared_inbox_iri, count(*) FROM follows f JOIN actors a ON a.id = f.follower_id
WHERE f.state = 'accepted' AND {COUNTED.format(a="a")} GROUP BY f.followed_id, a.shared_inbox_iri"""

TRIGGERS = (
    ("follower_inboxes_follow_insert", "follows"),
    ("follower_inboxes_follow_delete", "follows"),
    ("follower_inboxes_follow_update", "follows"),
    ("follower_inboxes_follow", "follows"),
    ("follower_inboxes_actor_update", "actors"),
    ("follower_inboxes_actor_delete", "actors"),
)


def upgrade() -> None:
    op.create_table(
        "follower_inboxes",
        sa.Column("followed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shared_inbox_iri", sa.String(length=2048), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["followed_id"],
            ["actors.id"],
            name=op.f("fk_follower_inboxes_followed_id_actors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("followed_id", "shared_inbox_iri", name=op.f("pk_follower_inboxes")),
    )
    op.execute(_FILL)
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_PG_FUNCTIONS, *_PG_TRIGGERS):
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger, table in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS follower_inboxes_follow()")
        op.execute("DROP FUNCTION IF EXISTS follower_inboxes_actor()")
    op.drop_table("follower_inboxes")
