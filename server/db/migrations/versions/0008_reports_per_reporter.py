"""review fixes: Flags indexed per reporter; names escaped in proposals' content; threads re-filed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:40:00

A report is kept only while its reporter has sent fewer than a few in the last hour; the count
reads this index instead of the whole table (security case 61).

Before security case 48 was closed, a proposal published without a body got ``<p>{name}</p>`` as
its content, the name unescaped: a name such as ``&lt;form&gt;`` (stored as the text ``<form>``)
became live markup. Those contents, and the copies in the activities we publish, are rewritten
with the name escaped, as the code now builds them.

Before security case 49 was closed, a peer's object claiming ``context: <one of our threads>`` was
filed into it. Such objects are filed again by their ``inReplyTo`` chain as we hold it (the
parent's thread, else the parent; none without a parent), as the code now files them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_objects = sa.table(
    "objects",
    sa.column("id", sa.Integer),
    sa.column("iri", sa.String),
    sa.column("local", sa.Boolean),
    sa.column("kind", sa.String),
    sa.column("in_reply_to_iri", sa.String),
    sa.column("context_iri", sa.String),
    sa.column("document", _JSON),
)
_THREAD_SUFFIX = "/context"
_activities = sa.table(
    "activities",
    sa.column("id", sa.Integer),
    sa.column("object_iri", sa.String),
    sa.column("document", _JSON),
)


def _escaped(text: str) -> str:
    """As ``server.services.content.sanitize.text_paragraph`` escapes (the serialiser's text escaping)."""
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


def _refile_claimed_threads(bind: Any) -> None:
    """Peers' objects filed in one of our threads by their own claim: filed by inReplyTo instead."""
    local = set(bind.execute(sa.select(_objects.c.iri).where(_objects.c.local.is_(True))).scalars())
    held = _objects.c
    claimed = bind.execute(
        sa.select(held.id, held.in_reply_to_iri, held.context_iri)
        .where(held.local.is_(False), held.context_iri.like(f"%{_THREAD_SUFFIX}"))
        .order_by(held.id)
    ).all()
    for object_id, parent_iri, context_iri in claimed:
        if context_iri.removesuffix(_THREAD_SUFFIX) not in local:
            continue
        thread = None
        if parent_iri is not None:
            parent = bind.execute(
                sa.select(held.iri, held.context_iri).where(held.iri == parent_iri)
            ).one_or_none()
            thread = (parent[1] or parent[0]) if parent is not None else parent_iri
        if thread != context_iri:
            bind.execute(sa.update(_objects).where(held.id == object_id).values(context_iri=thread))


def upgrade() -> None:
    op.create_index("ix_reports_reporter_created", "reports", ["reporter_id", "created_at"])
    repair(op.get_bind())


def repair(bind: Any) -> None:
    """Both repairs, on a connection (the security tests run them on a database in that state)."""
    _refile_claimed_threads(bind)
    _escape_name_contents(bind)


def _escape_name_contents(bind: Any) -> None:
    """Local proposals whose content is their name, unescaped: escaped, in the activities too."""
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
