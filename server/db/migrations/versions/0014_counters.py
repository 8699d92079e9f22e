"""counters kept by triggers: activities per actor, type and visibility; a change marker per feed

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-07 05:00:00

An outbox's ``totalItems``, NodeInfo's ``localPosts`` and the feeds' validators counted or
aggregated every row of an association on each request, a cost linear in what it ever
published (issue 20). Two derived tables replace those aggregates (decisions 46 and 47):

* ``activity_counts`` (actor, type, visibility) -> n, kept by triggers on ``activities``;
* ``feed_marks`` (actor, kind) -> version, changed_at, kept by triggers on ``objects`` rows a
  feed may list (local, ``public``, not a reply, tombstones included).

Triggers run in the transaction of the write, whichever code path writes (publishing, a bulk
import, a backup restore, a cascade), so the counters cannot drift from the rows. Both tables
are filled from the existing rows here, and the statistics are refreshed (``ANALYZE``) so
PostgreSQL plans the outbox's keyset pages as index scans at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None

# The feeds' scope (server.services.reading.feeds.feed_scope with visibility.feed_levels() == ("public",));
# tests/server/test_counters.py fails if the two disagree.
FEED_SCOPE = "{row}.local AND {row}.visibility = 'public' AND {row}.in_reply_to_iri IS NULL"
_CHANGE = "coalesce({row}.deleted_at, {row}.updated, {row}.published)"
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

_SQLITE_TRIGGERS = [
    # activities -> activity_counts
    """CREATE TRIGGER activity_counts_insert AFTER INSERT ON activities BEGIN
      INSERT INTO activity_counts (actor_id, type, visibility, n)
      VALUES (NEW.actor_id, NEW.type, NEW.visibility, 1)
      ON CONFLICT (actor_id, type, visibility) DO UPDATE SET n = activity_counts.n + 1;
    END""",
    """CREATE TRIGGER activity_counts_delete AFTER DELETE ON activities BEGIN
      UPDATE activity_counts SET n = n - 1
      WHERE actor_id = OLD.actor_id AND type = OLD.type AND visibility = OLD.visibility;
    END""",
    """CREATE TRIGGER activity_counts_update AFTER UPDATE OF actor_id, type, visibility ON activities
    BEGIN
      UPDATE activity_counts SET n = n - 1
      WHERE actor_id = OLD.actor_id AND type = OLD.type AND visibility = OLD.visibility;
      INSERT INTO activity_counts (actor_id, type, visibility, n)
      VALUES (NEW.actor_id, NEW.type, NEW.visibility, 1)
      ON CONFLICT (actor_id, type, visibility) DO UPDATE SET n = activity_counts.n + 1;
    END""",
    # objects -> feed_marks
    f"""CREATE TRIGGER feed_marks_insert AFTER INSERT ON objects
    WHEN {FEED_SCOPE.format(row="NEW")} BEGIN
      INSERT INTO feed_marks (actor_id, kind, version, changed_at)
      VALUES (NEW.attributed_to_id, NEW.kind, 1, {_CHANGE.format(row="NEW")})
      ON CONFLICT (actor_id, kind) DO UPDATE SET version = feed_marks.version + 1,
        changed_at = max(feed_marks.changed_at, excluded.changed_at);
    END""",
    f"""CREATE TRIGGER feed_marks_update AFTER UPDATE ON objects
    WHEN ({FEED_SCOPE.format(row="OLD")}) OR ({FEED_SCOPE.format(row="NEW")}) BEGIN
      INSERT INTO feed_marks (actor_id, kind, version, changed_at)
      SELECT OLD.attributed_to_id, OLD.kind, 1, {_SQLITE_NOW}
      WHERE ({FEED_SCOPE.format(row="OLD")}) AND NOT (({FEED_SCOPE.format(row="NEW")})
        AND NEW.attributed_to_id = OLD.attributed_to_id AND NEW.kind = OLD.kind)
      ON CONFLICT (actor_id, kind) DO UPDATE SET version = feed_marks.version + 1,
        changed_at = max(feed_marks.changed_at, excluded.changed_at);
      INSERT INTO feed_marks (actor_id, kind, version, changed_at)
      SELECT NEW.attributed_to_id, NEW.kind, 1, {_CHANGE.format(row="NEW")}
      WHERE {FEED_SCOPE.format(row="NEW")}
      ON CONFLICT (actor_id, kind) DO UPDATE SET version = feed_marks.version + 1,
        changed_at = max(feed_marks.changed_at, excluded.changed_at);
    END""",
    f"""CREATE TRIGGER feed_marks_delete AFTER DELETE ON objects
    WHEN {FEED_SCOPE.format(row="OLD")} BEGIN
      UPDATE feed_marks SET version = version + 1, changed_at = max(changed_at, {_SQLITE_NOW})
      WHERE actor_id = OLD.attributed_to_id AND kind = OLD.kind;
    END""",
]

# PostgreSQL: activities are counted per statement (transition tables: a batch insert is one
# grouped upsert, in key order so concurrent batches lock counter rows in the same order).
_PG_FUNCTIONS = [
    """CREATE FUNCTION activity_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO activity_counts (actor_id, type, visibility, n)
      SELECT actor_id, type, visibility, count(*) FROM added
      GROUP BY actor_id, type, visibility ORDER BY actor_id, type, visibility
      ON CONFLICT (actor_id, type, visibility) DO UPDATE SET n = activity_counts.n + excluded.n;
      RETURN NULL;
    END $$""",
    """CREATE FUNCTION activity_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE activity_counts c SET n = c.n - r.n
      FROM (SELECT actor_id, type, visibility, count(*) AS n FROM removed
            GROUP BY actor_id, type, visibility) r
      WHERE c.actor_id = r.actor_id AND c.type = r.type AND c.visibility = r.visibility;
      RETURN NULL;
    END $$""",
    """CREATE FUNCTION activity_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE activity_counts c SET n = c.n - r.n
      FROM (SELECT o.actor_id, o.type, o.visibility, count(*) AS n FROM removed o
            JOIN added a ON a.id = o.id
            WHERE (a.actor_id, a.type, a.visibility) IS DISTINCT FROM (o.actor_id, o.type, o.visibility)
            GROUP BY o.actor_id, o.type, o.visibility) r
      WHERE c.actor_id = r.actor_id AND c.type = r.type AND c.visibility = r.visibility;
      INSERT INTO activity_counts (actor_id, type, visibility, n)
      SELECT a.actor_id, a.type, a.visibility, count(*) FROM added a JOIN removed o ON a.id = o.id
      WHERE (a.actor_id, a.type, a.visibility) IS DISTINCT FROM (o.actor_id, o.type, o.visibility)
      GROUP BY a.actor_id, a.type, a.visibility ORDER BY a.actor_id, a.type, a.visibility
      ON CONFLICT (actor_id, type, visibility) DO UPDATE SET n = activity_counts.n + excluded.n;
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION feed_marks_track() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      old_in boolean := false;
      new_in boolean := false;
    BEGIN
      IF TG_OP <> 'INSERT' THEN
        old_in := coalesce({FEED_SCOPE.format(row="OLD")}, false);
      END IF;
      IF TG_OP <> 'DELETE' THEN
        new_in := coalesce({FEED_SCOPE.format(row="NEW")}, false);
      END IF;
      IF old_in AND NOT (new_in AND NEW.attributed_to_id = OLD.attributed_to_id AND NEW.kind = OLD.kind)
      THEN
        INSERT INTO feed_marks (actor_id, kind, version, changed_at)
        VALUES (OLD.attributed_to_id, OLD.kind, 1, clock_timestamp())
        ON CONFLICT (actor_id, kind) DO UPDATE SET version = feed_marks.version + 1,
          changed_at = greatest(feed_marks.changed_at, excluded.changed_at);
      END IF;
      IF new_in THEN
        INSERT INTO feed_marks (actor_id, kind, version, changed_at)
        VALUES (NEW.attributed_to_id, NEW.kind, 1, {_CHANGE.format(row="NEW")})
        ON CONFLICT (actor_id, kind) DO UPDATE SET version = feed_marks.version + 1,
          changed_at = greatest(feed_marks.changed_at, excluded.changed_at);
      END IF;
      RETURN NULL;
    END $$""",
]
_PG_TRIGGERS = [
    "CREATE TRIGGER activity_counts_insert AFTER INSERT ON activities "
    "REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION activity_counts_added()",
    "CREATE TRIGGER activity_counts_delete AFTER DELETE ON activities "
    "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION activity_counts_removed()",
    "CREATE TRIGGER activity_counts_update AFTER UPDATE ON activities "
    "REFERENCING OLD TABLE AS removed NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION activity_counts_changed()",
    "CREATE TRIGGER feed_marks_track AFTER INSERT OR UPDATE OR DELETE ON objects "
    "FOR EACH ROW EXECUTE FUNCTION feed_marks_track()",
]

_FILL_COUNTS = """INSERT INTO activity_counts (actor_id, type, visibility, n)
SELECT actor_id, type, visibility, count(*) FROM activities GROUP BY actor_id, type, visibility"""
_FILL_MARKS = f"""INSERT INTO feed_marks (actor_id, kind, version, changed_at)
SELECT o.attributed_to_id, o.kind, count(*), max({_CHANGE.format(row="o")}) FROM objects o
WHERE {FEED_SCOPE.format(row="o")} GROUP BY o.attributed_to_id, o.kind"""


def upgrade() -> None:
    op.create_table(
        "activity_counts",
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_activity_counts_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("actor_id", "type", "visibility", name=op.f("pk_activity_counts")),
    )
    op.create_table(
        "feed_marks",
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_feed_marks_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("actor_id", "kind", name=op.f("pk_feed_marks")),
    )
    op.execute(_FILL_COUNTS)
    op.execute(_FILL_MARKS)
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_PG_FUNCTIONS, *_PG_TRIGGERS):
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute("ANALYZE")


def downgrade() -> None:
    for trigger, table in (
        ("activity_counts_insert", "activities"),
        ("activity_counts_delete", "activities"),
        ("activity_counts_update", "activities"),
        ("feed_marks_insert", "objects"),
        ("feed_marks_update", "objects"),
        ("feed_marks_delete", "objects"),
        ("feed_marks_track", "objects"),
    ):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        for function in ("activity_counts_added", "activity_counts_removed", "activity_counts_changed"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
        op.execute("DROP FUNCTION IF EXISTS feed_marks_track()")
    op.drop_table("feed_marks")
    op.drop_table("activity_counts")
