"""The inbox's stored activities: the worker's view (runnable, queued, marked) and the C2S view."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import InboxActivity, InboxItem


async def queued_activities(session: AsyncSession, ids: Sequence[int]) -> list[Row[Any]]:
    """The rows among ``ids`` still ``queued``: what processing needs (id, signer, actor, document, time)."""
    if not ids:
        return []
    stmt = select(
        InboxActivity.id,
        InboxActivity.signer_key_iri,
        InboxActivity.actor_iri,
        InboxActivity.document,
        InboxActivity.received_at,
    ).where(InboxActivity.id.in_(sorted(set(ids))), InboxActivity.state == "queued")
    return list((await session.execute(stmt)).all())


async def mark_processed(session: AsyncSession, marks: Sequence[tuple[int, str]], *, now: datetime) -> None:
    """Record each ``(id, state)``: one statement per final state, queued rows only."""
    by_state: defaultdict[str, list[int]] = defaultdict(list)
    for activity_id, state in marks:
        by_state[state].append(activity_id)
    for state, ids in sorted(by_state.items()):
        await session.execute(
            update(InboxActivity)
            .where(InboxActivity.id.in_(sorted(ids)), InboxActivity.state == "queued")
            .values(state=state, processed_at=now, error=None)
            .execution_options(synchronize_session=False)
        )


async def inbox_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, InboxActivity]]]:
    """Activities that processing accepted into ``actor_id``'s inbox: total and one page of
    (cursor, stored activity), newest first. The raw body is not what is listed (case 50)."""
    cond = (InboxItem.actor_id == actor_id, InboxItem.accepted.is_(True))
    counted = await session.execute(select(func.count()).select_from(InboxItem).where(*cond))
    total = int(counted.scalar_one())
    stmt = (
        select(InboxItem.id, InboxActivity)
        .join(InboxActivity, InboxActivity.id == InboxItem.inbox_activity_id)
        .where(*cond)
    )
    if before is not None:
        stmt = stmt.where(InboxItem.id < before)
    rows = (await session.execute(stmt.order_by(InboxItem.id.desc()).limit(limit))).all()
    return total, [(r[0], r[1]) for r in rows]
