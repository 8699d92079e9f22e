"""Lookups and listings of actors, keys, memberships and follows."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from server.db.models import Account, ActivityCount, Actor, ActorKey, Follow, Membership
from server.db.queries import bare
from server.db.types import UtcDateTime


async def local_by_handle(session: AsyncSession, actor_type: str, handle: str) -> Actor | None:
    stmt = select(Actor).where(
        Actor.local.is_(True), Actor.type == actor_type, Actor.handle == handle, Actor.deleted_at.is_(None)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


_ACTOR_COLUMNS = tuple(Actor.__table__.columns)
_ACTOR_SELECT = "SELECT " + ", ".join(c.name for c in _ACTOR_COLUMNS) + " FROM actors"
_ACTOR_MANAGER = Actor.__mapper__.class_manager


def _actor_value(column: Any, value: Any) -> Any:
    """A column as the driver returns it, as the ORM would give it (see :mod:`bare`)."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return bare.utc(value)
    if isinstance(kind, Boolean):
        return bool(value)
    if isinstance(kind, JSON):
        return bare.document(value)
    return value


async def local_for_reading(session: bare.Source, actor_type: str, handle: str) -> Actor | None:
    """:func:`local_by_handle` in one statement through the bare driver (decision 91), for reads.

    The actor is built from its row and is *not* in the session: nothing may be changed on it
    and its ``keys`` (``lazy="raise"``) are never loaded through it. The reads of an outbox or
    another collection, built on every new cursor, each paid the ORM's four hand-offs for it.
    Its attributes are written to the instance's dictionary, as the ORM's loading does, rather
    than through the constructor's attribute events (decision 96: 17 µs of the 26 columns' events
    per page built, for an object that is only read).
    """
    sql = f"{_ACTOR_SELECT} WHERE local = ? AND type = ? AND handle = ? AND deleted_at IS NULL"
    rows = await bare.fetch(session, sql, [True, actor_type, handle])
    if not rows:
        return None
    actor: Actor = _ACTOR_MANAGER.new_instance()
    actor.__dict__.update((c.key, _actor_value(c, v)) for c, v in zip(_ACTOR_COLUMNS, rows[0], strict=True))
    return actor


async def local_reference(session: bare.Source, actor_type: str, handle: str) -> tuple[int, str] | None:
    """The id and IRI of the live local actor under ``handle``: all that an anonymous outbox page
    needs of its owner (decision 99), without building the ``Actor`` of :func:`local_for_reading`
    (≈ 4 µs against ≈ 22 on SQLite)."""
    sql = "SELECT id, iri FROM actors WHERE local = ? AND type = ? AND handle = ? AND deleted_at IS NULL"
    rows = await bare.fetch(session, sql, [True, actor_type, handle])
    return (rows[0][0], rows[0][1]) if rows else None


async def local_tombstone(session: AsyncSession, actor_type: str, handle: str) -> Actor | None:
    """A deleted local actor under ``handle``: its IRI answers 410 and its handle is never reused."""
    stmt = select(Actor).where(
        Actor.local.is_(True), Actor.type == actor_type, Actor.handle == handle, Actor.deleted_at.is_not(None)
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def local_by_name(session: AsyncSession, handle: str) -> Sequence[Actor]:
    """Every local Person and Group answering to ``handle`` (WebFinger may return both)."""
    stmt = select(Actor).where(
        Actor.local.is_(True),
        Actor.handle == handle,
        Actor.type.in_(("Group", "Person")),
        Actor.deleted_at.is_(None),
    )
    return (await session.execute(stmt)).scalars().all()


async def by_iri(session: AsyncSession, iri: str) -> Actor | None:
    return (await session.execute(select(Actor).where(Actor.iri == iri))).scalar_one_or_none()


async def by_iris(session: AsyncSession, iris: Collection[str]) -> dict[str, Actor]:
    """The stored actors among ``iris`` (one statement), by IRI."""
    if not iris:
        return {}
    rows = await session.scalars(select(Actor).where(Actor.iri.in_(sorted(iris))))
    return {row.iri: row for row in rows}


async def detached_by_iris(session: AsyncSession, iris: Collection[str]) -> dict[str, Actor]:
    """:func:`by_iris` in one statement through the bare driver, for the inbox lane's senders
    (decision 102): on SQLite the ORM's read was four hand-offs to aiosqlite's thread per batch,
    on PostgreSQL a ``BEGIN`` and a ``ROLLBACK`` around it.

    The actors are built from their rows as :func:`local_for_reading` builds one, then made
    *detached*, like rows the ORM read in a session since closed (what :func:`by_iris` returns
    once its session ends): a handler that adds one to its session updates it, never inserts
    it, and its relationships are not loaded through it."""
    if not iris:
        return {}
    among, params = bare.any_of(session, "iri", sorted(set(iris)))
    rows = await bare.fetch(session, f"{_ACTOR_SELECT} WHERE {among}", params)
    actors: dict[str, Actor] = {}
    for row in rows:
        actor: Actor = _ACTOR_MANAGER.new_instance()
        actor.__dict__.update((c.key, _actor_value(c, v)) for c, v in zip(_ACTOR_COLUMNS, row, strict=True))
        make_transient_to_detached(actor)
        actors[actor.iri] = actor
    return actors


async def application_actor(session: AsyncSession) -> Actor | None:
    stmt = select(Actor).where(Actor.local.is_(True), Actor.type == "Application")
    return (await session.execute(stmt)).scalar_one_or_none()


async def keys_of(session: AsyncSession, actor_id: int) -> dict[str, ActorKey]:
    rows = (await session.execute(select(ActorKey).where(ActorKey.actor_id == actor_id))).scalars()
    return {row.kind: row for row in rows}


async def local_groups(session: AsyncSession) -> Sequence[Actor]:
    stmt = (
        select(Actor)
        .where(Actor.local.is_(True), Actor.type == "Group", Actor.deleted_at.is_(None))
        .order_by(Actor.handle)
    )
    return (await session.execute(stmt)).scalars().all()


async def account_of(session: AsyncSession, actor_id: int) -> Account | None:
    return await session.get(Account, actor_id)


async def membership(session: AsyncSession, group_id: int, member_id: int) -> Membership | None:
    stmt = select(Membership).where(Membership.group_id == group_id, Membership.member_id == member_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_local_people(session: AsyncSession) -> int:
    stmt = (
        select(func.count())
        .select_from(Actor)
        .where(Actor.local.is_(True), Actor.type == "Person", Actor.deleted_at.is_(None))
    )
    return int((await session.execute(stmt)).scalar_one())


async def count_local_posts(session: AsyncSession) -> int:
    """Public ``Create`` activities of local actors, read from the counters (decision 46)."""
    stmt = (
        select(func.coalesce(func.sum(ActivityCount.n), 0))
        .join(Actor, Actor.id == ActivityCount.actor_id)
        .where(Actor.local.is_(True), ActivityCount.type == "Create", ActivityCount.visibility == "public")
    )
    return int((await session.execute(stmt)).scalar_one())


# --- collections -----------------------------------------------------------------------------
# Keyset pagination on the row id, newest first: stable under inserts, O(page) per request.


async def followers_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, str]]]:
    """Accepted followers of ``actor_id``: total and one page of (cursor, actor IRI)."""
    base = select(Follow).where(Follow.followed_id == actor_id, Follow.state == "accepted")
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    stmt = (
        select(Follow.id, Actor.iri)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(Follow.followed_id == actor_id, Follow.state == "accepted")
    )
    if before is not None:
        stmt = stmt.where(Follow.id < before)
    rows = (await session.execute(stmt.order_by(Follow.id.desc()).limit(limit))).all()
    return total, [(row[0], row[1]) for row in rows]


async def following_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, str]]]:
    """Actors ``actor_id`` follows (accepted): total and one page of (cursor, actor IRI)."""
    base = select(Follow).where(Follow.follower_id == actor_id, Follow.state == "accepted")
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    stmt = (
        select(Follow.id, Actor.iri)
        .join(Actor, Actor.id == Follow.followed_id)
        .where(Follow.follower_id == actor_id, Follow.state == "accepted")
    )
    if before is not None:
        stmt = stmt.where(Follow.id < before)
    rows = (await session.execute(stmt.order_by(Follow.id.desc()).limit(limit))).all()
    return total, [(row[0], row[1]) for row in rows]


async def members_page(
    session: AsyncSession, group_id: int, *, before: int | None, limit: int, listed_only: bool = False
) -> tuple[int, list[tuple[int, str, str]]]:
    """Active members of a group: total and one page of (cursor, actor IRI, role). ``listed_only``
    leaves out the local members who opted out of the member directory (decision 59)."""
    cond = [Membership.group_id == group_id, Membership.state == "active"]
    if listed_only:
        opted_out = select(Account.actor_id).where(Account.directory_opt_out.is_(True))
        cond.append(Membership.member_id.not_in(opted_out))
    total = int(
        (await session.execute(select(func.count()).select_from(Membership).where(*cond))).scalar_one()
    )
    stmt = (
        select(Membership.id, Actor.iri, Membership.role)
        .join(Actor, Actor.id == Membership.member_id)
        .where(*cond)
    )
    if before is not None:
        stmt = stmt.where(Membership.id < before)
    rows = (await session.execute(stmt.order_by(Membership.id.desc()).limit(limit))).all()
    return total, [(row[0], row[1], row[2]) for row in rows]


async def outbox_total(session: AsyncSession, actor_id: int, *, visibilities: Sequence[str]) -> int:
    """How many activities ``actor_id`` published with one of ``visibilities``: a sum over at most
    one counter row per (type, visibility), whatever the outbox's size (decision 46)."""
    stmt = select(func.coalesce(func.sum(ActivityCount.n), 0)).where(
        ActivityCount.actor_id == actor_id, ActivityCount.visibility.in_(visibilities)
    )
    return int((await session.execute(stmt)).scalar_one())


async def outbox_page(
    session: bare.Source, actor_id: int, *, visibilities: Sequence[str], before: int | None, limit: int
) -> list[tuple[int, dict[str, object]]]:
    """Published activities of ``actor_id`` with one of ``visibilities``, newest first.

    A backward scan of ``ix_activities_actor_outbox`` (actor, id) from ``before``: it reads the
    page's rows and the skipped ones of other visibilities, never counts the outbox. One statement
    through the bare driver (:mod:`server.db.queries.bare`): a page is built on every new cursor.
    """
    levels = bare.marks(len(visibilities))
    sql = f"SELECT id, document FROM activities WHERE actor_id = ? AND visibility IN ({levels})"
    params: list[object] = [actor_id, *map(str, visibilities)]
    if before is not None:
        sql += " AND id < ?"
        params.append(before)
    rows = await bare.fetch(session, sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
    return [(row[0], bare.document(row[1])) for row in rows]
