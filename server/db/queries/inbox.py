"""The inbox's stored activities: the worker's view (runnable, queued, marked) and the C2S view."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import InboxActivity, InboxItem
from server.db.queries import bare


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A stored activity still ``queued``: what processing needs."""

    id: int
    signer_key_iri: str
    actor_iri: str
    document: Any
    received_at: datetime


async def queued_activities(session: AsyncSession, ids: Sequence[int]) -> list[QueuedRow]:
    """The rows among ``ids`` still ``queued``, in one statement through the bare driver
    (decision 95: the inbox lane reads one batch per claim)."""
    if not ids:
        return []
    ordered = sorted(set(ids))
    sql = (
        "SELECT id, signer_key_iri, actor_iri, document, received_at FROM inbox_activities"
        f" WHERE id IN ({bare.marks(len(ordered))}) AND state = 'queued'"
    )
    rows = await bare.fetch(session, sql, ordered)
    return [
        QueuedRow(int(row_id), signer, actor, _decoded(document), bare.utc(received))
        for row_id, signer, actor, document, received in rows
    ]


def _decoded(document: Any) -> Any:
    """A stored activity as the ORM's JSON type decodes it (``json.loads``): ``orjson`` would turn
    an integer beyond 64 bits, which the inbox accepts, into a float."""
    return json.loads(document) if isinstance(document, str | bytes) else document


async def mark_processed(session: AsyncSession, marks: Sequence[tuple[int, str]], *, now: datetime) -> None:
    """Record each ``(id, state)``: one statement per final state through the bare driver, queued
    rows only (a row another run marked meanwhile keeps its state)."""
    by_state: defaultdict[str, list[int]] = defaultdict(list)
    for activity_id, state in marks:
        by_state[state].append(activity_id)
    for state, ids in sorted(by_state.items()):
        ordered = sorted(ids)
        sql = (
            "UPDATE inbox_activities SET state = ?, processed_at = ?, error = NULL"
            f" WHERE id IN ({bare.marks(len(ordered))}) AND state = 'queued'"
        )
        await bare.fetch(session, sql, [state, now, *ordered])


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
