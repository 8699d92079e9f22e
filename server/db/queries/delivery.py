"""Audience and delivery rows for the fan-out and deliver jobs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Actor, Block, Delivery, Follow, FollowerInbox, Membership
from server.db.upsert import insert_for

DELIVERIES = cast(Table, Delivery.__table__)


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


def _accepted_remote_followers(actor_id: int) -> tuple[ColumnElement[bool], ...]:
    """Follows of ``actor_id`` that are accepted, by remote actors not deleted (blocks aside)."""
    return (
        Follow.followed_id == actor_id,
        Follow.state == "accepted",
        Actor.local.is_(False),
        Actor.deleted_at.is_(None),
    )


def _followers_filter(actor_id: int) -> tuple[ColumnElement[bool], ...]:
    blocked = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    return (*_accepted_remote_followers(actor_id), Actor.id.not_in(blocked))


def _has_shared_inbox() -> ColumnElement[bool]:
    return and_(Actor.shared_inbox_iri.is_not(None), Actor.shared_inbox_iri != "")


async def remote_follower_shared_inboxes(session: AsyncSession, actor_id: int) -> list[tuple[str, int]]:
    """The shared inboxes of ``actor_id``'s accepted remote followers, with how many each serves.

    Read from ``follower_inboxes`` (kept by triggers, decision 70): one row per shared inbox (a
    host, in practice), so planning a shared fan-out costs O(hosts) whatever the number of
    followers. Followers that told us they block ``actor_id`` are counted there too; they are
    few and are grouped here and subtracted.
    """
    counts = await session.execute(
        select(FollowerInbox.shared_inbox_iri, FollowerInbox.n)
        .where(FollowerInbox.followed_id == actor_id, FollowerInbox.n > 0)
        .order_by(FollowerInbox.shared_inbox_iri)
    )
    blockers = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    blocking = await session.execute(
        select(Actor.shared_inbox_iri, func.count())
        .select_from(Follow)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(*_accepted_remote_followers(actor_id), _has_shared_inbox(), Actor.id.in_(blockers))
        .group_by(Actor.shared_inbox_iri)
    )
    blocked = {str(inbox): int(n) for inbox, n in blocking.all()}
    served = [(str(inbox), int(n) - blocked.get(str(inbox), 0)) for inbox, n in counts.all()]
    return [(inbox, n) for inbox, n in served if n > 0]


async def remote_followers_without_shared_inbox(
    session: AsyncSession, actor_id: int, *, after_id: int, limit: int
) -> Sequence[tuple[int, str, str | None, str | None]]:
    """Like :func:`remote_followers`, only those without a shared inbox (their own inbox is used)."""
    stmt = (
        select(Follow.id, Actor.iri, Actor.inbox_iri, Actor.shared_inbox_iri)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(*_followers_filter(actor_id), Follow.id > after_id, ~_has_shared_inbox())
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


async def known_addressees(session: AsyncSession, iris: Sequence[str]) -> set[str]:
    """Those of ``iris`` that are a stored actor or a stored actor's followers collection."""
    if not iris:
        return set()
    stmt = select(Actor.iri, Actor.followers_iri).where(
        or_(Actor.iri.in_(iris), Actor.followers_iri.in_(iris))
    )
    wanted = set(iris)
    return {iri for row in (await session.execute(stmt)).all() for iri in row if iri in wanted}


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
    # One statement shape whatever the number of rows (executemany through SQLAlchemy's
    # "insertmanyvalues"): compiled once and cached instead of once per fan-out page.
    stmt = (
        insert_for(session, DELIVERIES)
        .on_conflict_do_nothing(index_elements=["activity_id", "inbox_iri"])
        .returning(Delivery.id)
    )
    return [row[0] for row in (await session.execute(stmt, rows)).all()]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """What a delivery attempt needs of its row (and the values it leaves unchanged)."""

    id: int
    activity_id: int
    inbox_iri: str
    host: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime


async def deliveries_by_id(session: AsyncSession, ids: Collection[int]) -> dict[int, DeliveryRow]:
    """The delivery rows among ``ids``, by id (Core, no ORM objects)."""
    if not ids:
        return {}
    t = DELIVERIES.c
    columns = (t.id, t.activity_id, t.inbox_iri, t.host, t.state, t.attempts, t.last_status, t.last_error)
    stmt = select(*columns, t.created_at).where(t.id.in_(sorted(ids)))
    return {r.id: DeliveryRow(*r) for r in (await session.execute(stmt)).all()}


async def record_deliveries(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    """Write the outcome of many attempts in one executemany; only rows still pending change.

    Each dict has ``b_id``, ``state``, ``attempts``, ``last_status``, ``last_error`` and
    ``delivered_at`` (the caller copies the values that do not change).
    """
    if not rows:
        return
    t = DELIVERIES
    stmt = (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.state == "pending")
        .values(
            state=bindparam("state"),
            attempts=bindparam("attempts"),
            last_status=bindparam("last_status"),
            last_error=bindparam("last_error"),
            delivered_at=bindparam("delivered_at"),
        )
    )
    await session.execute(stmt, list(rows))


async def deactivate_followers_at_inbox(session: AsyncSession, followed_id: int, inbox: str) -> int:
    """An inbox answered 404/410: followers whose personal inbox it is stop receiving."""
    followers = select(Actor.id).where(Actor.inbox_iri == inbox, Actor.local.is_(False))
    result = await session.execute(
        update(Follow)
        .where(and_(Follow.followed_id == followed_id, Follow.follower_id.in_(followers)))
        .values(state="rejected")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
