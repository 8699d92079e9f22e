"""blocks: the node's policy, domain blocks, actor blocks and subscribed block lists in the database

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-07 08:30:00

Until now the only block was ``federation.blocked_domains`` in the configuration file. The node's
policy (open or allowlist, the allowlist, who may create associations) now lives in
``node_policy`` (one row, seeded from the configuration at start), domain blocks in
``domain_blocks`` (with Mastodon's fields), per-actor blocks in ``actor_blocks`` and the shared
lists the node follows in ``block_list_subscriptions`` (docs/decisions.md 62-64).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = "0020"
down_revision = "0021"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _by(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["created_by_id"], ["actors.id"], name=op.f(f"fk_{table}_created_by_id_actors"), ondelete="SET NULL"
    )


def upgrade() -> None:
    op.create_table(
        "node_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("federation_mode", sa.String(length=16), nullable=False),
        sa.Column("allowed_domains", server.db.types.JsonType, nullable=False),
        sa.Column("association_creators", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "federation_mode IN ('open', 'allowlist')", name=op.f("ck_node_policy_federation_mode")
        ),
        sa.CheckConstraint(
            "association_creators IN ('admins', 'members')", name=op.f("ck_node_policy_association_creators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_policy")),
    )
    op.create_table(
        "domain_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("reject_media", sa.Boolean(), nullable=False),
        sa.Column("reject_reports", sa.Boolean(), nullable=False),
        sa.Column("public_comment", sa.Text(), nullable=False),
        sa.Column("private_comment", sa.Text(), nullable=False),
        sa.Column("obfuscate", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=2048), nullable=False),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("severity IN ('suspend', 'silence')", name=op.f("ck_domain_blocks_severity")),
        _by("domain_blocks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_blocks")),
        sa.UniqueConstraint("domain", name=op.f("uq_domain_blocks_domain")),
    )
    op.create_table(
        "actor_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("actor_iri", sa.String(length=2048), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["actors.id"], name=op.f("fk_actor_blocks_group_id_actors"), ondelete="CASCADE"
        ),
        _by("actor_blocks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actor_blocks")),
        sa.UniqueConstraint("scope", "actor_iri", name=op.f("uq_actor_blocks_scope_actor_iri")),
    )
    with op.batch_alter_table("actor_blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actor_blocks_actor_iri"), ["actor_iri"], unique=False)
        batch_op.create_index(batch_op.f("ix_actor_blocks_group_id"), ["group_id"], unique=False)
    op.create_table(
        "block_list_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("refresh_interval_s", sa.Integer(), nullable=False),
        sa.Column("last_fetched_at", server.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("etag", sa.String(length=1024), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("created_at", server.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('blocks', 'allowlist')", name=op.f("ck_block_list_subscriptions_kind")),
        _by("block_list_subscriptions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_list_subscriptions")),
        sa.UniqueConstraint("url", name=op.f("uq_block_list_subscriptions_url")),
    )


def downgrade() -> None:
    op.drop_table("block_list_subscriptions")
    with op.batch_alter_table("actor_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actor_blocks_group_id"))
        batch_op.drop_index(batch_op.f("ix_actor_blocks_actor_iri"))
    op.drop_table("actor_blocks")
    op.drop_table("domain_blocks")
    op.drop_table("node_policy")
