"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 18:20:39.021760
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import server.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iri", sa.String(length=2048), nullable=False),
        sa.Column("local", sa.Boolean(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("handle", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("inbox_iri", sa.String(length=2048), nullable=True),
        sa.Column("shared_inbox_iri", sa.String(length=2048), nullable=True),
        sa.Column("outbox_iri", sa.String(length=2048), nullable=True),
        sa.Column("followers_iri", sa.String(length=2048), nullable=True),
        sa.Column("following_iri", sa.String(length=2048), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("manually_approves_followers", sa.Boolean(), nullable=False),
        sa.Column("discoverable", sa.Boolean(), nullable=False),
        sa.Column("members_visibility", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("fetched_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "members_visibility IN ('public', 'members', 'hidden')", name=op.f("ck_actors_members_visibility")
        ),
        sa.CheckConstraint(
            "type IN ('Application', 'Group', 'Person', 'Service', 'Organization')",
            name=op.f("ck_actors_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actors")),
        sa.UniqueConstraint("host", "type", "handle", name=op.f("uq_actors_host_type_handle")),
        sa.UniqueConstraint("iri", name=op.f("uq_actors_iri")),
    )
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actors_local"), ["local"], unique=False)

    op.create_table(
        "accounts",
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_node_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_accounts_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("actor_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iri", sa.String(length=2048), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("object_iri", sa.String(length=2048), nullable=True),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("published", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "visibility IN ('public', 'unlisted', 'followers', 'members', 'direct')",
            name=op.f("ck_activities_visibility"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_activities_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
        sa.UniqueConstraint("iri", name=op.f("uq_activities_iri")),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index("ix_activities_actor_outbox", ["actor_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_activities_object_iri"), ["object_iri"], unique=False)

    op.create_table(
        "actor_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key_iri", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('rsa', 'ed25519')", name=op.f("ck_actor_keys_kind")),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["actors.id"], name=op.f("fk_actor_keys_actor_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_keys")),
        sa.UniqueConstraint("key_iri", name=op.f("uq_actor_keys_key_iri")),
    )
    with op.batch_alter_table("actor_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actor_keys_actor_id"), ["actor_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("by_actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["by_actor_id"], ["actors.id"], name=op.f("fk_audit_log_by_actor_id_actors"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["actors.id"], name=op.f("fk_audit_log_group_id_actors"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_group_id"), ["group_id"], unique=False)

    op.create_table(
        "follows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("follower_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("followed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("follow_iri", sa.String(length=2048), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'accepted', 'rejected')", name=op.f("ck_follows_state")),
        sa.ForeignKeyConstraint(
            ["followed_id"], ["actors.id"], name=op.f("fk_follows_followed_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["actors.id"], name=op.f("fk_follows_follower_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follows")),
        sa.UniqueConstraint("follow_iri", name=op.f("uq_follows_follow_iri")),
        sa.UniqueConstraint("follower_id", "followed_id", name=op.f("uq_follows_follower_id_followed_id")),
    )
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.create_index("ix_follows_followed_state", ["followed_id", "state", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_follows_follower_id"), ["follower_id"], unique=False)

    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'moderator', 'member')", name=op.f("ck_memberships_role")),
        sa.CheckConstraint("state IN ('active', 'pending', 'invited')", name=op.f("ck_memberships_state")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["actors.id"], name=op.f("fk_memberships_group_id_actors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["actors.id"], name=op.f("fk_memberships_member_id_actors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("group_id", "member_id", name=op.f("uq_memberships_group_id_member_id")),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_memberships_member_id"), ["member_id"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name=op.f("ck_tokens_scope")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.actor_id"],
            name=op.f("fk_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tokens_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_account_id"))

    op.drop_table("tokens")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_member_id"))
        batch_op.drop_index(batch_op.f("ix_memberships_group_id"))

    op.drop_table("memberships")
    with op.batch_alter_table("follows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_follows_follower_id"))
        batch_op.drop_index("ix_follows_followed_state")

    op.drop_table("follows")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_group_id"))

    op.drop_table("audit_log")
    with op.batch_alter_table("actor_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actor_keys_actor_id"))

    op.drop_table("actor_keys")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_object_iri"))
        batch_op.drop_index("ix_activities_actor_outbox")

    op.drop_table("activities")
    op.drop_table("accounts")
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actors_local"))

    op.drop_table("actors")
