"""Audience and delivery rows for the fan-out and deliver jobs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Actor, Block, Delivery, Follow, Membership


async def remote_followers(
    session: AsyncSession, actor_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Accepted remote followers, as (follow id, actor IRI, inbox, shared inbox), by follow id.

    Followers that told us they block ``actor_id`` are left out.
    """
    blocked = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    stmt = (
        select(Follow.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(
            Follow.followed_id == actor_id,
            Follow.state == "accepted",
            Follow.id > after_id,
            Actor.local.is_(False),
            Actor.deleted_at.is_(None),
            Actor.id.not_in(blocked),
        )
        .order_by(Follow.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


async def remote_members(
    session: AsyncSession, group_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Active remote members of a group, as (membership id, actor IRI, inbox, shared inbox)."""
    stmt = (
        select(Membership.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Membership.member_id)
        .where(
            Membership.group_id == group_id,
            Membership.state == "active",
            Membership.id > after_id,
            Actor.local.is_(False),
            Actor.deleted_at.is_(None),
        )
        .order_by(Membership.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


async def remote_actors_by_iri(
    session: AsyncSession, iris: Sequence[str], *, sender_id: int
) -> Sequence[tuple[str, str | None, str | None]]:
    """Known remote actors among ``iris`` (explicitly addressed), minus those blocking the sender."""
    if not iris:
        return []
    blocked = select(Block.blocker_id).where(Block.blocked_id == sender_id)
    stmt = select(Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri).where(
        Actor.iri.in_(iris), Actor.local.is_(False), Actor.deleted_at.is_(None), Actor.id.not_in(blocked)
    )
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


async def insert_deliveries(
    session: AsyncSession, activity_id: int, targets: Sequence[tuple[str, str]], *, now: object
) -> list[int]:
    """Insert one pending delivery per (inbox, host); returns the ids of rows that were new.

    ``ON CONFLICT DO NOTHING`` on the unique (activity, inbox) makes a re-run of an interrupted
    fan-out neither duplicate nor lose deliveries.
    """
    if not targets:
        return []
    rows = [
        {
            "activity_id": activity_id,
            "inbox_iri": inbox,
            "host": host,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
        }
        for inbox, host in targets
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Delivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["activity_id", "inbox_iri"])
        .returning(Delivery.id)
    )
    return [row[0] for row in (await session.execute(stmt)).all()]


async def deactivate_followers_at_inbox(session: AsyncSession, followed_id: int, inbox: str) -> int:
    """An inbox answered 404/410: followers whose personal inbox it is stop receiving."""
    followers = select(Actor.id).where(Actor.inbox_iri == inbox, Actor.local.is_(False))
    result = await session.execute(
        update(Follow)
        .where(and_(Follow.followed_id == followed_id, Follow.follower_id.in_(followers)))
        .values(state="rejected")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
