"""moderation reports: their resolution, local reports and the association concerned

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-07 08:30:00

A report is filed by one of our members (``local``) or received as a ``Flag``. ``group_id`` names
the association whose admins and moderators see it (node admins see every report). A moderator
closes it once: who (``resolved_by_id``), why (``resolution``), what was done (``action``), when
(``resolved_at``). ``forwarded_iri`` is the ``Flag`` our node sent to the content's origin.
Reports stored before this revision stay open, with no association: node admins see them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0016"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("group_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("resolved_by_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("action", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("forwarded_iri", sa.String(length=2048), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_reports_group_id_actors"), "actors", ["group_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_reports_resolved_by_id_actors"),
            "actors",
            ["resolved_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_reports_group_state", ["group_id", "state", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_group_state")
        batch_op.drop_constraint(batch_op.f("fk_reports_resolved_by_id_actors"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_reports_group_id_actors"), type_="foreignkey")
        for column in (
            "forwarded_iri",
            "resolved_at",
            "action",
            "resolution",
            "resolved_by_id",
            "group_id",
            "local",
        ):
            batch_op.drop_column(column)
