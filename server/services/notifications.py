"""A member's notifications, derived from what the node holds (issue 13): replies to them, mentions,
votes they took part in that closed (with the result), decisions on their memberships, and new
alerts from the associations they follow or joined. Newest first, current state only.

Nothing is stored per notification: each is a view of a row that exists anyway (a reply, a
closed question, a membership, an answer in the member's inbox), so deleting the reply or the
alert removes its notification too. What was read is one instant per account
(``notifications_read_at``): everything up to it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.models import Account, Actor, InboxActivity, InboxItem, RemoteObject, Vote
from server.services import membership, polls, timeline, visibility
from server.services.visibility import Viewer

PER_SOURCE = 200
"""Each source contributes at most its newest rows: a page is bounded whatever the history."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification: what happened (``type``), when, to which object or association."""

    type: str
    at: datetime
    object: str | None = None
    actor: str | None = None
    detail: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[datetime, str, str]:
        return (self.at, self.type, self.object or self.actor or "")


async def _replies(session: AsyncSession, viewer: Viewer, me: Actor) -> list[Notification]:
    parent = aliased(RemoteObject)
    rows = await session.execute(
        select(RemoteObject, Actor.iri)
        .join(parent, parent.iri == RemoteObject.in_reply_to_iri)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            parent.attributed_to_id == me.id,
            RemoteObject.attributed_to_id != me.id,
            RemoteObject.deleted_at.is_(None),
            RemoteObject.kind == "reply",
        )
        .order_by(RemoteObject.id.desc())
        .limit(PER_SOURCE)
    )
    return [
        Notification("reply", row.received_at, object=row.iri, actor=author)
        for row, author in rows
        if await visibility.can_read_object(session, viewer, row)
    ]


async def _mentions(session: AsyncSession, viewer: Viewer, me: Actor) -> list[Notification]:
    """Objects filed in the member's inbox that name them in a ``Mention`` (not replies: those are
    notified as replies)."""
    rows = await session.execute(
        select(RemoteObject, InboxActivity.actor_iri)
        .join(InboxActivity, InboxActivity.object_iri == RemoteObject.iri)
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .where(
            InboxItem.actor_id == me.id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Create",
            RemoteObject.deleted_at.is_(None),
        )
        .order_by(InboxItem.id.desc())
        .limit(PER_SOURCE)
    )
    found = []
    for row, author in rows:
        tags = row.document.get("tag")
        named = any(
            isinstance(tag, dict) and tag.get("type") == "Mention" and tag.get("href") == me.iri
            for tag in (tags if isinstance(tags, list) else [])
        )
        if named and await visibility.can_read_object(session, viewer, row):
            found.append(Notification("mention", row.received_at, object=row.iri, actor=author))
    return found


async def _closed_votes(
    session: AsyncSession, viewer: Viewer, me: Actor, now: datetime
) -> list[Notification]:
    """Questions the member voted on (here, or on a peer's question through their own vote note)
    that are closed now, with their result."""
    counted = select(Vote.question_id).where(Vote.voter_id == me.id)
    sent = select(RemoteObject.in_reply_to_iri).where(
        RemoteObject.attributed_to_id == me.id, RemoteObject.kind == "vote"
    )
    questions = await session.scalars(
        select(RemoteObject)
        .where(
            (RemoteObject.id.in_(counted)) | (RemoteObject.iri.in_(sent)),
            RemoteObject.type == "Question",
            RemoteObject.deleted_at.is_(None),
        )
        .order_by(RemoteObject.id.desc())
        .limit(PER_SOURCE)
    )
    found = []
    for question in questions:
        if polls.is_closed(question.document, now) and await visibility.can_read_object(
            session, viewer, question
        ):
            result = {"result": polls.results(question.document)}
            at = question.updated or question.published
            found.append(Notification("vote_closed", at, object=question.iri, detail=result))
    return found


async def _memberships(session: AsyncSession, me: Actor) -> list[Notification]:
    """Decisions on the member's memberships, here and elsewhere: accepted, or refused."""
    return [
        Notification("membership", at, actor=iri, detail={"state": state})
        for iri, state, _, at in await membership.memberships_of(session, me.id)
        if state in ("accepted", "refused")
    ]


async def _alerts(session: AsyncSession, viewer: Viewer, me: Actor) -> list[Notification]:
    """Alerts of the associations the member follows or joined."""
    ids = await timeline.sources(session, me.id)
    if not ids:
        return []
    rows = await session.execute(
        select(RemoteObject, Actor.iri)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            RemoteObject.attributed_to_id.in_(ids),
            Actor.type == "Group",
            RemoteObject.kind == "alert",
            RemoteObject.deleted_at.is_(None),
        )
        .order_by(RemoteObject.id.desc())
        .limit(PER_SOURCE)
    )
    return [
        Notification("alert", row.published, object=row.iri, actor=author)
        for row, author in rows
        if await visibility.can_read_object(session, viewer, row)
    ]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Notification]
    next_before: datetime | None
    """Where the next (older) page starts, None on the last one."""
    read_at: datetime | None
    """Notifications up to this instant are read."""


async def notifications(
    session: AsyncSession, viewer: Viewer, *, before: datetime | None, limit: int, now: datetime
) -> Page:
    """A page of the member's notifications, newest first."""
    me = await session.get(Actor, viewer.actor_id)
    account = await session.get(Account, viewer.actor_id)
    assert me is not None
    found = [
        *await _replies(session, viewer, me),
        *await _mentions(session, viewer, me),
        *await _closed_votes(session, viewer, me, now),
        *await _memberships(session, me),
        *await _alerts(session, viewer, me),
    ]
    ordered = sorted({n.key: n for n in found}.values(), key=lambda n: n.key, reverse=True)
    if before is not None:
        ordered = [n for n in ordered if n.at < before]
    page = ordered[:limit]
    more = len(ordered) > limit
    read_at = account.notifications_read_at if account is not None else None
    return Page(page, page[-1].at if more else None, read_at)


async def mark_read(session: AsyncSession, viewer: Viewer, *, now: datetime) -> None:
    """Everything notified up to ``now`` is read."""
    account = await session.get(Account, viewer.actor_id)
    if account is not None:
        account.notifications_read_at = now


UNREAD_LIMIT = 99
"""The navigation counts unread notifications up to this many (it shows "99+" beyond)."""


async def unread_count(session: AsyncSession, viewer: Viewer, *, now: datetime) -> int:
    """How many notifications are newer than the member's last "mark all as read" (at most
    :data:`UNREAD_LIMIT` + 1: the navigation only needs to know there are many)."""
    page = await notifications(session, viewer, before=None, limit=UNREAD_LIMIT + 1, now=now)
    return sum(1 for n in page.items if page.read_at is None or n.at > page.read_at)
