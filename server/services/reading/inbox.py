"""An actor's C2S inbox (``GET {inbox}``): what processing accepted for it, as served now."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Actor
from server.db.queries import inbox as q
from server.services.content.current import inbox_documents
from server.services.reading.visibility import Viewer, ViewerKind


async def inbox_page(
    session: AsyncSession, owner: Actor, *, before: int | None, limit: int
) -> tuple[int, list[dict[str, Any]], int | None]:
    """The inbox's total, one page of its activities newest first (read as ``owner`` reads them:
    relays shown as boosts, objects in their current state), and the next page's cursor."""
    total, rows = await q.inbox_page(session, owner.id, before=before, limit=limit)
    reader = Viewer(ViewerKind.LOCAL, actor_id=owner.id, actor_iri=owner.iri)
    documents = await inbox_documents(session, [row for _, row in rows], reader)
    return total, documents, rows[-1][0] if len(rows) == limit else None
