"""A member's timeline: what the actors they follow and the associations they joined published or
relayed, newest first, in its current state only (issue 13).

Pages are cut on ``(at, id)``, where ``at`` is the object's publication or its latest relay by a
source, whichever is newer (``Relay`` rows: peers' relays too), so content stored by a backfill
(read newest first) still comes in publication order and a relayed object at its relay. Deleted
objects never appear, and every item passes the read filter for the member: following an
association does not show its members-only content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Actor, Follow, Membership, Relay, RemoteObject
from server.db.types import UtcDateTime
from server.services.moderation import blocks
from server.services.reading import visibility
from server.services.reading.visibility import Viewer

TIMELINE_KINDS = ("post", "resource", "alert", "proposal")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCAN_BATCHES = 5
"""A page reads at most this many batches of candidates (bounded, whatever the read filter drops)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page stops: the last item's place (its publication or relay instant, microseconds)
    and its id."""

    published_us: int
    id: int

    def __str__(self) -> str:
        return f"{self.published_us}-{self.id}"

    @classmethod
    def parse(cls, value: str) -> Cursor | None:
        """The cursor in ``value``, or None when it is not one of ours."""
        head, _, tail = value.partition("-")
        if not (head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit()):
            return None
        if len(head) > 18 or len(tail) > 18:
            return None
        return cls(int(head), int(tail))

    @property
    def published(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.published_us)


def micros(instant: datetime) -> int:
    """``instant`` in microseconds since the epoch (exact, unlike a float timestamp)."""
    return (instant - EPOCH) // timedelta(microseconds=1)


async def sources(session: AsyncSession, member_id: int) -> list[int]:
    """Actors whose content is on the member's timeline: followed (accepted), joined (active)."""
    followed = select(Follow.followed_id).where(Follow.follower_id == member_id, Follow.state == "accepted")
    joined = select(Membership.group_id).where(
        Membership.member_id == member_id, Membership.state == "active"
    )
    return list(await session.scalars(followed.union(joined)))


@dataclass(frozen=True, slots=True)
class Entry:
    """A timeline item: the object as held now, where it stands (its publication, or its latest
    relay by an actor the member follows or joined, whichever is newer) and that relay if any."""

    object: RemoteObject
    at: datetime
    relayed_by: str | None = None
    relayed_at: datetime | None = None

    @property
    def cursor(self) -> Cursor:
        return Cursor(micros(self.at), self.object.id)


def _candidates(ids: list[int], viewer: Viewer, kind: str | None) -> Any:
    """(object id, instant) of every way an object reaches the timeline: published by a source or
    posted into one (at its publication), relayed by a source (at the relay)."""
    shown = (
        RemoteObject.deleted_at.is_(None),
        RemoteObject.kind.in_([kind] if kind else TIMELINE_KINDS),
        RemoteObject.in_reply_to_iri.is_(None),
        visibility.readable_by(viewer),  # narrows only; each row is still checked
    )
    direct = select(RemoteObject.id.label("oid"), RemoteObject.published.label("at")).where(
        or_(RemoteObject.attributed_to_id.in_(ids), RemoteObject.audience_id.in_(ids)), *shown
    )
    # An actor's first relay of an object places it: associations relay an object again when it
    # changes (so that holders refetch it), and an edit must not bring it up again.
    relayed = (
        select(RemoteObject.id.label("oid"), func.min(Relay.relayed_at, type_=UtcDateTime()).label("at"))
        .join(RemoteObject, RemoteObject.iri == Relay.object_iri)
        .where(
            Relay.relayer_id.in_(ids),
            ~blocks.blocked_by(Relay.relayer_id, RemoteObject.attributed_to_id),  # decision 78
            *shown,
        )
        .group_by(RemoteObject.id, Relay.relayer_id)
    )
    entries = union_all(direct, relayed).subquery()
    return (
        select(entries.c.oid, func.max(entries.c.at, type_=UtcDateTime()).label("at"))
        .group_by(entries.c.oid)
        .subquery()
    )


async def _relayers(
    session: AsyncSession, ids: list[int], iris: list[str]
) -> dict[str, tuple[str, datetime]]:
    """The latest relayer among the sources of each of ``iris`` and when it first relayed it."""
    if not iris:
        return {}
    first = func.min(Relay.relayed_at, type_=UtcDateTime()).label("at")
    rows = await session.execute(
        select(Relay.object_iri, Actor.iri, first)
        .join(Actor, Actor.id == Relay.relayer_id)
        .where(Relay.relayer_id.in_(ids), Relay.object_iri.in_(iris))
        .group_by(Relay.object_iri, Actor.iri)
    )
    latest: dict[str, tuple[str, datetime]] = {}
    for object_iri, relayer, at in rows:
        if object_iri not in latest or (at, relayer) > (latest[object_iri][1], latest[object_iri][0]):
            latest[object_iri] = (relayer, at)
    return latest


async def timeline(
    session: AsyncSession, viewer: Viewer, *, kind: str | None, before: Cursor | None, limit: int
) -> tuple[list[Entry], Cursor | None]:
    """One page of the member's timeline and the cursor of the next one (None on the last).

    Each object appears once, at the newest of its publication by a source and its relays by
    sources: a relay brings it up (like a boost), and an object both published and relayed by
    sources is not shown twice.
    """
    assert viewer.actor_id is not None
    ids = await sources(session, viewer.actor_id)
    if not ids:
        return [], None
    placed = _candidates(ids, viewer, kind)
    query = select(RemoteObject, placed.c.at).join(placed, placed.c.oid == RemoteObject.id)
    order = (placed.c.at.desc(), RemoteObject.id.desc())
    found: list[tuple[RemoteObject, datetime]] = []
    position = before
    more: Cursor | None = None
    for _ in range(SCAN_BATCHES):
        batch_query = query
        if position is not None:
            batch_query = batch_query.where(
                or_(
                    placed.c.at < position.published,
                    and_(placed.c.at == position.published, RemoteObject.id < position.id),
                )
            )
        batch = (await session.execute(batch_query.order_by(*order).limit(limit + 1))).all()
        for row, at in batch:
            if await visibility.can_read_object(session, viewer, row):
                found.append((row, at))
        if len(found) > limit:
            found = found[:limit]
            more = Cursor(micros(found[-1][1]), found[-1][0].id)
            break
        if len(batch) <= limit:
            more = None
            break
        position = Cursor(micros(batch[-1][1]), batch[-1][0].id)
        more = position  # bounded: the next page goes on scanning from here
    relays = await _relayers(session, ids, [row.iri for row, _ in found])
    return [Entry(row, at, *relays.get(row.iri, (None, None))) for row, at in found], more


async def newer(
    session: AsyncSession, viewer: Viewer, *, kind: str | None, after: Cursor, limit: int
) -> tuple[list[Entry], bool]:
    """The page just newer than ``after`` (a "previous page" link), newest first, and whether
    there are newer items still (bounded like :func:`timeline`)."""
    assert viewer.actor_id is not None
    ids = await sources(session, viewer.actor_id)
    if not ids:
        return [], False
    placed = _candidates(ids, viewer, kind)
    query = select(RemoteObject, placed.c.at).join(placed, placed.c.oid == RemoteObject.id)
    order = (placed.c.at.asc(), RemoteObject.id.asc())
    found: list[tuple[RemoteObject, datetime]] = []
    position = after
    more = False
    for _ in range(SCAN_BATCHES):
        batch_query = query.where(
            or_(
                placed.c.at > position.published,
                and_(placed.c.at == position.published, RemoteObject.id > position.id),
            )
        )
        batch = (await session.execute(batch_query.order_by(*order).limit(limit + 1))).all()
        for row, at in batch:
            if await visibility.can_read_object(session, viewer, row):
                found.append((row, at))
        if len(found) > limit:
            found, more = found[:limit], True
            break
        if len(batch) <= limit:
            break
        position = Cursor(micros(batch[-1][1]), batch[-1][0].id)
        more = True  # bounded: the newer page goes on scanning from here
    found.reverse()
    relays = await _relayers(session, ids, [row.iri for row, _ in found])
    return [Entry(row, at, *relays.get(row.iri, (None, None))) for row, at in found], more
