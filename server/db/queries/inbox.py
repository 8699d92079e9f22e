"""The inbox's stored activities: the worker's view (runnable, queued, marked) and the C2S view."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import InboxActivity, InboxItem, Job


async def runnable_inbox_jobs(
    session: AsyncSession,
    *,
    kind: str,
    condition: ColumnElement[bool],
    limit: int,
    exclude_actors: Collection[str],
) -> list[tuple[int, str]]:
    """Runnable ``kind`` jobs matching ``condition``, with the actor of their stored activity, in
    claim order (priority, then ``run_at``, then id), skipping actors in ``exclude_actors``.

    A job whose activity row is gone comes with the actor ``""`` (the caller finishes it).
    """
    activity_id = Job.payload["inbox_activity_id"].as_integer()
    stmt = (
        select(Job.id, func.coalesce(InboxActivity.actor_iri, ""))
        .select_from(Job)
        .outerjoin(InboxActivity, InboxActivity.id == activity_id)
        .where(Job.kind == kind, condition)
    )
    if exclude_actors:
        stmt = stmt.where(
            or_(InboxActivity.actor_iri.is_(None), InboxActivity.actor_iri.not_in(sorted(exclude_actors)))
        )
    stmt = stmt.order_by(Job.priority, Job.run_at, Job.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Job, skip_locked=True)
    return [(int(r[0]), str(r[1])) for r in (await session.execute(stmt)).all()]


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
