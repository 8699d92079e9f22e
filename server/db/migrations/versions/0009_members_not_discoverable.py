"""members are not discoverable unless they opt in: local accounts created before are set to no

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:40:00

Until now every local ``Person`` advertised ``discoverable`` and ``indexable: true`` without being
asked (security case 59). No member could have chosen it, so every local account goes back to the
default, no; a member who wants to be found says so with ``entraide member set NAME --discoverable
yes``. Associations keep theirs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    actors = sa.table(
        "actors",
        sa.column("type", sa.String),
        sa.column("local", sa.Boolean),
        sa.column("discoverable", sa.Boolean),
    )
    op.execute(
        actors.update().where(actors.c.type == "Person", actors.c.local.is_(True)).values(discoverable=False)
    )


def downgrade() -> None:
    """Nothing to undo: who opted in since cannot be told from who was set by default."""
