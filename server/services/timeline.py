"""A member's timeline: what the actors they follow and the associations they joined published or
relayed, newest first, in its current state only (issue 13).

Pages are cut on ``(published, id)``, so content stored by a backfill (read newest first) still
comes in publication order. Deleted objects never appear, and every item passes the read filter
for the member: following an association does not show its members-only content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Activity, Follow, Membership, RemoteObject
from server.services import visibility
from server.services.visibility import Viewer

TIMELINE_KINDS = ("post", "resource", "alert", "proposal")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCAN_BATCHES = 5
"""A page reads at most this many batches of candidates (bounded, whatever the read filter drops)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page stops: the last item's publication instant (microseconds) and id."""

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


def cursor_of(row: RemoteObject) -> Cursor:
    return Cursor(micros(row.published), row.id)


async def sources(session: AsyncSession, member_id: int) -> list[int]:
    """Actors whose content is on the member's timeline: followed (accepted), joined (active)."""
    followed = select(Follow.followed_id).where(Follow.follower_id == member_id, Follow.state == "accepted")
    joined = select(Membership.group_id).where(
        Membership.member_id == member_id, Membership.state == "active"
    )
    return list(await session.scalars(followed.union(joined)))


def _query(ids: list[int], kind: str | None) -> Select[Any]:
    relayed = select(Activity.object_iri).where(Activity.actor_id.in_(ids), Activity.type == "Announce")
    return select(RemoteObject).where(
        or_(
            RemoteObject.attributed_to_id.in_(ids),
            RemoteObject.audience_id.in_(ids),
            RemoteObject.iri.in_(relayed),
        ),
        RemoteObject.deleted_at.is_(None),
        RemoteObject.kind.in_([kind] if kind else TIMELINE_KINDS),
        RemoteObject.in_reply_to_iri.is_(None),
    )


async def timeline(
    session: AsyncSession, viewer: Viewer, *, kind: str | None, before: Cursor | None, limit: int
) -> tuple[list[RemoteObject], Cursor | None]:
    """One page of the member's timeline and the cursor of the next one (None on the last)."""
    assert viewer.actor_id is not None
    ids = await sources(session, viewer.actor_id)
    if not ids:
        return [], None
    query = _query(ids, kind)
    order = (RemoteObject.published.desc(), RemoteObject.id.desc())
    page: list[RemoteObject] = []
    position = before
    for _ in range(SCAN_BATCHES):
        batch_query = query
        if position is not None:
            batch_query = batch_query.where(
                or_(
                    RemoteObject.published < position.published,
                    and_(RemoteObject.published == position.published, RemoteObject.id < position.id),
                )
            )
        batch = list(await session.scalars(batch_query.order_by(*order).limit(limit + 1)))
        for row in batch:
            if await visibility.can_read_object(session, viewer, row):
                page.append(row)
                if len(page) > limit:
                    return page[:limit], cursor_of(page[limit - 1])
        if len(batch) <= limit:
            return page, None
        position = cursor_of(batch[-1])
    return page, position  # bounded: the next page goes on scanning from here


async def newer(
    session: AsyncSession, viewer: Viewer, *, kind: str | None, after: Cursor, limit: int
) -> tuple[list[RemoteObject], bool]:
    """The page just newer than ``after`` (a "previous page" link), newest first, and whether
    there are newer items still (bounded like :func:`timeline`)."""
    assert viewer.actor_id is not None
    ids = await sources(session, viewer.actor_id)
    if not ids:
        return [], False
    query = _query(ids, kind)
    order = (RemoteObject.published.asc(), RemoteObject.id.asc())
    page: list[RemoteObject] = []
    position = after
    for _ in range(SCAN_BATCHES):
        batch_query = query.where(
            or_(
                RemoteObject.published > position.published,
                and_(RemoteObject.published == position.published, RemoteObject.id > position.id),
            )
        )
        batch = list(await session.scalars(batch_query.order_by(*order).limit(limit + 1)))
        for row in batch:
            if await visibility.can_read_object(session, viewer, row):
                page.append(row)
                if len(page) > limit:
                    return list(reversed(page[:limit])), True
        if len(batch) <= limit:
            return list(reversed(page)), False
        position = cursor_of(batch[-1])
    return list(reversed(page)), True
