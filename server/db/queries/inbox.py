"""The C2S view of an actor's inbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import InboxActivity, InboxItem


async def inbox_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
    """Activities filed in ``actor_id``'s inbox: total and one page of (cursor, document), newest first."""
    total = int(
        (
            await session.execute(
                select(func.count()).select_from(InboxItem).where(InboxItem.actor_id == actor_id)
            )
        ).scalar_one()
    )
    stmt = (
        select(InboxItem.id, InboxActivity.document)
        .join(InboxActivity, InboxActivity.id == InboxItem.inbox_activity_id)
        .where(InboxItem.actor_id == actor_id)
    )
    if before is not None:
        stmt = stmt.where(InboxItem.id < before)
    rows = (await session.execute(stmt.order_by(InboxItem.id.desc()).limit(limit))).all()
    return total, [(r[0], r[1]) for r in rows]
