"""audit log: the channel (web, cli, api, system) and the target of every entry, listed by time

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-07 05:00:00

Every administrative or moderation action is recorded by the service that does it
(``server/services/audit.py``). Entries written before this revision did not say through which
channel they came: they are marked ``unknown``, and their target is read from their detail.

An association also gets a default language (``actors.language``, a BCP 47 tag or null), used for
its content published without one (``entraide association set --language``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=35), nullable=True))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), nullable=False, server_default="unknown")
        )
        batch_op.add_column(sa.Column("target", sa.String(length=2048), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_log_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_by_actor_id"), ["by_actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))
        batch_op.drop_index(batch_op.f("ix_audit_log_by_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_created_at"))
        batch_op.drop_column("target")
        batch_op.drop_column("channel")
    with op.batch_alter_table("actors", schema=None) as batch_op:
        batch_op.drop_column("language")
