"""Who is who: the lookups of actors and accounts that handlers, pages and commands need.

Most are the queries of :mod:`server.db.queries.actors`, offered here so that the HTTP layer asks
the services (decision 71); the few below are the by-id and by-IRI reads the handlers used to
write inline.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Account, Actor
from server.db.queries.actors import (
    application_actor,
    by_iri,
    count_local_people,
    count_local_posts,
    followers_page,
    following_page,
    local_by_handle,
    local_by_name,
    local_for_reading,
    local_groups,
    local_reference,
    local_tombstone,
    members_page,
    outbox_page,
    outbox_total,
)

__all__ = [
    "account_of",
    "application_actor",
    "by_id",
    "by_ids",
    "by_iri",
    "by_iris",
    "count_local_people",
    "count_local_posts",
    "deleted_local",
    "followers_page",
    "following_page",
    "live_by_iri",
    "local_by_handle",
    "local_by_iri",
    "local_by_name",
    "local_for_reading",
    "local_groups",
    "local_reference",
    "local_tombstone",
    "members_page",
    "outbox_page",
    "outbox_total",
]


async def by_id(session: AsyncSession, actor_id: int | None) -> Actor | None:
    """The actor with this id (deleted ones too), or None; ``None`` asks for nobody."""
    return await session.get(Actor, actor_id) if actor_id is not None else None


async def by_ids(session: AsyncSession, ids: Iterable[int]) -> dict[int, Actor]:
    """The actors with these ids, by id, in one statement."""
    wanted = set(ids)
    if not wanted:
        return {}
    return {a.id: a for a in (await session.scalars(select(Actor).where(Actor.id.in_(wanted)))).all()}


async def by_iris(session: AsyncSession, iris: Iterable[str]) -> dict[str, Actor]:
    """The actors this node knows among ``iris``, by IRI, in one statement."""
    wanted = set(iris)
    if not wanted:
        return {}
    return {a.iri: a for a in (await session.scalars(select(Actor).where(Actor.iri.in_(wanted)))).all()}


async def deleted_local(session: AsyncSession, handle: str, types: Iterable[str]) -> bool:
    """Was a local actor of one of ``types`` under ``handle`` deleted (and none took the handle
    since)? Its WebFinger lookup then answers 410, like its IRI."""
    for actor_type in types:
        if await local_by_handle(session, actor_type, handle) is not None:
            return False
    for actor_type in types:
        if await local_tombstone(session, actor_type, handle) is not None:
            return True
    return False


async def live_by_iri(session: AsyncSession, iri: str) -> Actor | None:
    """A known actor that is not deleted."""
    return await session.scalar(select(Actor).where(Actor.iri == iri, Actor.deleted_at.is_(None)))


async def local_by_iri(session: AsyncSession, iri: str) -> Actor | None:
    """One of our actors, by IRI."""
    return await session.scalar(select(Actor).where(Actor.iri == iri, Actor.local.is_(True)))


async def account_of(session: AsyncSession, actor_id: int) -> Account | None:
    """A local person's account (credentials, node-admin flag), or None."""
    return await session.get(Account, actor_id)
