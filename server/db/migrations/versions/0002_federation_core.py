"""federation core: objects, inbox, jobs, deliveries, peer hosts, reactions, blocks, reports, sync

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 18:31:56.842933
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import server.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_activities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iri", sa.String(length=2048), nullable=False),
        sa.Column("actor_iri", sa.String(length=2048), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("object_iri", sa.String(length=2048), nullable=True),
        sa.Column("signer_key_iri", sa.String(length=2048), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=1024), nullable=True),
        sa.Column("received_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'processed', 'ignored', 'failed')", name=op.f("ck_inbox_activities_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_activities")),
        sa.UniqueConstraint("iri", name=op.f("uq_inbox_activities_iri")),
    )
    with op.batch_alter_table("inbox_activities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_activities_actor_iri"), ["actor_iri"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbox_activities_object_iri"), ["object_iri"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbox_activities_received_at"), ["received_at"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("dedup_key", sa.String(length=512), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_jobs_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_jobs_dedup_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_claim", ["state", "priority", "run_at", "id"], unique=False)

    op.create_table(
        "peer_hosts",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("breaker", sa.String(length=16), nullable=False),
        sa.Column("recent_failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("open_until", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("failing_days", sa.Integer(), nullable=False),
        sa.Column("last_failure_day", sa.String(length=10), nullable=True),
        sa.Column("unavailable", sa.Boolean(), nullable=False),
        sa.Column("signature_spec", sa.String(length=16), nullable=True),
        sa.Column("last_success_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("breaker IN ('closed', 'open', 'half_open')", name=op.f("ck_peer_hosts_breaker")),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_peer_hosts")),
    )
    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_iri", sa.String(length=2048), nullable=False),
        sa.Column("blocker_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("blocked_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["blocked_id"], ["actors.id"], name=op.f("fk_blocks_blocked_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["blocker_id"], ["actors.id"], name=op.f("fk_blocks_blocker_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
        sa.UniqueConstraint("activity_iri", name=op.f("uq_blocks_activity_iri")),
        sa.UniqueConstraint("blocker_id", "blocked_id", name=op.f("uq_blocks_blocker_id_blocked_id")),
    )
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blocks_blocker_id"), ["blocker_id"], unique=False)

    op.create_table(
        "inbox_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("inbox_activity_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_inbox_items_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["inbox_activity_id"],
            ["inbox_activities.id"],
            name=op.f("fk_inbox_items_inbox_activity_id_inbox_activities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_items")),
        sa.UniqueConstraint(
            "actor_id", "inbox_activity_id", name=op.f("uq_inbox_items_actor_id_inbox_activity_id")
        ),
    )
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_items_actor_id_id", ["actor_id", "id"], unique=False)

    op.create_table(
        "objects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iri", sa.String(length=2048), nullable=False),
        sa.Column("local", sa.Boolean(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("attributed_to_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("audience_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("in_reply_to_iri", sa.String(length=2048), nullable=True),
        sa.Column("context_iri", sa.String(length=2048), nullable=True),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("published", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("received_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "visibility IN ('public', 'unlisted', 'followers', 'members', 'direct')",
            name=op.f("ck_objects_visibility"),
        ),
        sa.ForeignKeyConstraint(
            ["attributed_to_id"],
            ["actors.id"],
            name=op.f("fk_objects_attributed_to_id_actors"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["audience_id"], ["actors.id"], name=op.f("fk_objects_audience_id_actors"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objects")),
        sa.UniqueConstraint("iri", name=op.f("uq_objects_iri")),
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index("ix_objects_attributed_published", ["attributed_to_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_objects_audience_id"), ["audience_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_objects_context_iri"), ["context_iri"], unique=False)
        batch_op.create_index(batch_op.f("ix_objects_in_reply_to_iri"), ["in_reply_to_iri"], unique=False)

    op.create_table(
        "reactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_iri", sa.String(length=2048), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("object_iri", sa.String(length=2048), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("type IN ('Like', 'Announce')", name=op.f("ck_reactions_type")),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_reactions_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reactions")),
        sa.UniqueConstraint("activity_iri", name=op.f("uq_reactions_activity_iri")),
    )
    with op.batch_alter_table("reactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reactions_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reactions_object_iri"), ["object_iri"], unique=False)

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_iri", sa.String(length=2048), nullable=False),
        sa.Column("reporter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("target_iris", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('open', 'resolved', 'dismissed')", name=op.f("ck_reports_state")),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["actors.id"], name=op.f("fk_reports_reporter_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("activity_iri", name=op.f("uq_reports_activity_iri")),
    )
    op.create_table(
        "sync_states",
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("newest_seen_iri", sa.String(length=2048), nullable=True),
        sa.Column("backfilled_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("items_fetched", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_sync_states_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("actor_id", name=op.f("pk_sync_states")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("activity_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("inbox_iri", sa.String(length=2048), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed', 'gone', 'rejected')",
            name=op.f("ck_deliveries_state"),
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_deliveries_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("activity_id", "inbox_iri", name=op.f("uq_deliveries_activity_id_inbox_iri")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_activity_id"), ["activity_id"], unique=False)
        batch_op.create_index("ix_deliveries_host_state", ["host", "state"], unique=False)

    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moved_to_iri", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_column("moved_to_iri")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_host_state")
        batch_op.drop_index(batch_op.f("ix_deliveries_activity_id"))

    op.drop_table("deliveries")
    op.drop_table("sync_states")
    op.drop_table("reports")
    with op.batch_alter_table("reactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reactions_object_iri"))
        batch_op.drop_index(batch_op.f("ix_reactions_actor_id"))

    op.drop_table("reactions")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_objects_in_reply_to_iri"))
        batch_op.drop_index(batch_op.f("ix_objects_context_iri"))
        batch_op.drop_index(batch_op.f("ix_objects_audience_id"))
        batch_op.drop_index("ix_objects_attributed_published")

    op.drop_table("objects")
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_items_actor_id_id")

    op.drop_table("inbox_items")
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blocks_blocker_id"))

    op.drop_table("blocks")
    op.drop_table("peer_hosts")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")

    op.drop_table("jobs")
    with op.batch_alter_table("inbox_activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_activities_received_at"))
        batch_op.drop_index(batch_op.f("ix_inbox_activities_object_iri"))
        batch_op.drop_index(batch_op.f("ix_inbox_activities_actor_iri"))

    op.drop_table("inbox_activities")
