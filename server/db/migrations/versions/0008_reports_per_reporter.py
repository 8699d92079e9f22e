"""review fixes: an index for the per-reporter limit on Flags; proposals' names escaped in their content

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-07 02:40:00

A report is kept only while its reporter has sent fewer than a few in the last hour; the count
reads this index instead of the whole table (security case 61).

Before security case 48 was closed, a proposal published without a body got ``<p>{name}</p>`` as
its content, the name unescaped: a name such as ``&lt;form&gt;`` (stored as the text ``<form>``)
became live markup. Those contents, and the copies in the activities we publish, are rewritten
with the name escaped, as the code now builds them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_objects = sa.table(
    "objects",
    sa.column("id", sa.Integer),
    sa.column("iri", sa.String),
    sa.column("local", sa.Boolean),
    sa.column("kind", sa.String),
    sa.column("document", _JSON),
)
_activities = sa.table(
    "activities",
    sa.column("id", sa.Integer),
    sa.column("object_iri", sa.String),
    sa.column("document", _JSON),
)


def _escaped(text: str) -> str:
    """As ``server.services.sanitize.text_paragraph`` escapes (the serialiser's text escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\xa0", "&nbsp;")


def _repaired(document: Any) -> dict[str, Any] | None:
    """The document with its name-built content escaped, or None when it needs nothing."""
    if not isinstance(document, dict):
        return None
    name, content = document.get("name"), document.get("content")
    if not isinstance(name, str) or content != f"<p>{name}</p>" or _escaped(name) == name:
        return None
    fixed = {**document, "content": f"<p>{_escaped(name)}</p>"}
    if isinstance(fixed.get("contentMap"), dict):
        fixed["contentMap"] = {k: fixed["content"] for k in fixed["contentMap"]}
    return fixed


def upgrade() -> None:
    op.create_index("ix_reports_reporter_created", "reports", ["reporter_id", "created_at"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_objects.c.id, _objects.c.iri, _objects.c.document).where(
            _objects.c.local.is_(True), _objects.c.kind == "proposal"
        )
    ).all()
    for object_id, iri, document in rows:
        fixed = _repaired(document)
        if fixed is None:
            continue
        bind.execute(sa.update(_objects).where(_objects.c.id == object_id).values(document=fixed))
        for activity_id, activity in bind.execute(
            sa.select(_activities.c.id, _activities.c.document).where(_activities.c.object_iri == iri)
        ).all():
            inner = _repaired(activity.get("object")) if isinstance(activity, dict) else None
            if inner is not None:
                bind.execute(
                    sa.update(_activities)
                    .where(_activities.c.id == activity_id)
                    .values(document={**activity, "object": inner})
                )


def downgrade() -> None:
    op.drop_index("ix_reports_reporter_created", table_name="reports")
