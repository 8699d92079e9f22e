"""A member's notifications, derived from what the node holds (issue 13): replies to them, mentions,
votes they took part in that closed (with the result), decisions on their memberships, and new
alerts from the associations they follow or joined, warnings from moderators, their suspensions
and their lifting, people joining with an invitation (for admins), and the events they take part
in: changed, cancelled, starting soon (issue 18, decision 72), and follows waiting for their answer
(their own, or an association's for its admins: decision 88). Newest first, current state only.

Nothing is stored per notification: each is a view of a row that exists anyway (a reply, a
closed question, a membership, an answer in the member's inbox), so deleting the reply or the
alert removes its notification too. What was read is one instant per account
(``notifications_read_at``): everything up to it is read.

Pages are cut on a keyset, ``(at, type, iri)`` in descending order, where ``iri`` is the object's
(or, for a membership, the association's): unique per notification, so items with the same
instant never straddle a page boundary. Each source applies the cursor in SQL and reads in
batches until it has enough items that pass its checks (the read filter, a question being
closed), so a deep page loses nothing; the sources' lists are then merged.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, func, literal_column, or_, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.models import (
    Account,
    Actor,
    AuditEntry,
    Event,
    EventParticipant,
    Follow,
    InboxActivity,
    InboxItem,
    Membership,
    RemoteObject,
    Vote,
)
from server.db.models import Activity as OutboxActivity
from server.db.types import UtcDateTime
from server.services.content import polls
from server.services.reading import timeline, visibility
from server.services.reading.visibility import Viewer

TYPES = (
    "alert",
    "association_deleted",
    "event_cancelled",
    "event_changed",
    "event_reminder",
    "follow_request",
    "member_joined",
    "membership",
    "mention",
    "reply",
    "suspension",
    "vote_closed",
    "warning",
)
DEFAULT_REMINDER = timedelta(hours=24)
"""``events.reminder_before_s`` when the caller does not say (server/config.py)."""
BATCH = 200
"""Rows a source reads at once; it reads on from where the batch stopped until it has enough."""
MAX_CURSOR_CHARS = 4096
MAX_MICROS = 10**18


@dataclass(frozen=True, slots=True, order=True)
class Key:
    """Where a notification stands: newest first by instant, then type, then IRI."""

    at: datetime
    type: str
    iri: str

    def encode(self) -> str:
        """The opaque cursor of a page that starts after this notification."""
        raw = json.dumps([timeline.micros(self.at), self.type, self.iri], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, value: str) -> Key | None:
        """The key in a cursor made by :meth:`encode`, or None when ``value`` is not one."""
        if not value or len(value) > MAX_CURSOR_CHARS or not value.isascii():
            return None
        try:
            decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(decoded, list) or len(decoded) != 3:
            return None
        micros, kind, iri = decoded
        if not isinstance(micros, int) or isinstance(micros, bool) or not 0 <= micros < MAX_MICROS:
            return None
        if kind not in TYPES or not isinstance(iri, str) or len(iri) > 2048:
            return None
        return cls(timeline.EPOCH + timedelta(microseconds=micros), kind, iri)


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification: what happened (``type``), when, to which object or association."""

    type: str
    at: datetime
    object: str | None = None
    actor: str | None = None
    detail: dict[str, Any] | None = None

    @property
    def key(self) -> Key:
        return Key(self.at, self.type, self.object or self.actor or "")


Make = Callable[[Any], Awaitable[Notification | None]]


def _after(
    kind: str, at: ColumnElement[datetime], iri: ColumnElement[str], cursor: Key | None
) -> ColumnElement[bool]:
    """Rows of a source of ``kind`` that come after ``cursor`` (descending ``(at, type, iri)``)."""
    if cursor is None:
        return true()
    if kind < cursor.type:
        return at <= cursor.at
    if kind > cursor.type:
        return at < cursor.at
    return or_(at < cursor.at, and_(at == cursor.at, iri < cursor.iri))


async def _scan(
    session: AsyncSession,
    kind: str,
    query: Select[*tuple[Any, ...]],
    make: Make,
    *,
    after: Key | None,
    want: int,
) -> list[Notification]:
    """Up to ``want`` notifications of one source after ``after``, in order. ``query`` selects
    ``at`` and ``iri`` (labelled) first; rows ``make`` turns down are skipped and reading goes on."""
    source = query.subquery()
    at, iri = source.c.at, source.c.iri
    found: list[Notification] = []
    position = after
    previous: tuple[datetime, str] | None = None
    while len(found) < want:
        rows = (
            await session.execute(
                select(source)
                .where(_after(kind, at, iri, position))
                .order_by(at.desc(), iri.desc())
                .limit(BATCH)
            )
        ).all()
        for row in rows:
            if (row.at, row.iri) == previous:
                continue  # the same notification reached twice (two activities for one object)
            previous = (row.at, row.iri)
            notification = await make(row)
            if notification is not None:
                found.append(notification)
                if len(found) == want:
                    break
        if len(rows) < BATCH:
            break
        position = Key(rows[-1].at, kind, rows[-1].iri)
    return found


async def _replies(
    session: AsyncSession, viewer: Viewer, me: Actor, after: Key | None, want: int
) -> list[Notification]:
    parent = aliased(RemoteObject)
    query = (
        select(
            RemoteObject.received_at.label("at"),
            RemoteObject.iri.label("iri"),
            RemoteObject.id.label("object_id"),
            Actor.iri.label("author"),
        )
        .join(parent, parent.iri == RemoteObject.in_reply_to_iri)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            parent.attributed_to_id == me.id,
            RemoteObject.attributed_to_id != me.id,
            RemoteObject.deleted_at.is_(None),
            RemoteObject.kind == "reply",
        )
    )

    async def make(row: Any) -> Notification | None:
        reply = await session.get(RemoteObject, row.object_id)
        if reply is None or not await visibility.can_read_object(session, viewer, reply):
            return None
        return Notification("reply", row.at, object=row.iri, actor=row.author)

    return await _scan(session, "reply", query, make, after=after, want=want)


async def _mentions(
    session: AsyncSession, viewer: Viewer, me: Actor, after: Key | None, want: int
) -> list[Notification]:
    """Objects filed in the member's inbox that name them in a ``Mention`` (not replies: those are
    notified as replies)."""
    query = (
        select(
            RemoteObject.received_at.label("at"),
            RemoteObject.iri.label("iri"),
            RemoteObject.id.label("object_id"),
            InboxActivity.actor_iri.label("author"),
        )
        .join(InboxActivity, InboxActivity.object_iri == RemoteObject.iri)
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .where(
            InboxItem.actor_id == me.id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Create",
            RemoteObject.deleted_at.is_(None),
        )
    )

    async def make(row: Any) -> Notification | None:
        found = await session.get(RemoteObject, row.object_id)
        if found is None:
            return None
        tags = found.document.get("tag")
        named = any(
            isinstance(tag, dict) and tag.get("type") == "Mention" and tag.get("href") == me.iri
            for tag in (tags if isinstance(tags, list) else [])
        )
        if not named or not await visibility.can_read_object(session, viewer, found):
            return None
        return Notification("mention", row.at, object=row.iri, actor=row.author)

    return await _scan(session, "mention", query, make, after=after, want=want)


async def _closed_votes(
    session: AsyncSession, viewer: Viewer, me: Actor, after: Key | None, want: int, now: datetime
) -> list[Notification]:
    """Questions the member voted on (here, or on a peer's question through their own vote note)
    that are closed now, with their result."""
    counted = select(Vote.question_id).where(Vote.voter_id == me.id)
    sent = select(RemoteObject.in_reply_to_iri).where(
        RemoteObject.attributed_to_id == me.id, RemoteObject.kind == "vote"
    )
    query = select(
        func.coalesce(RemoteObject.updated, RemoteObject.published, type_=UtcDateTime()).label("at"),
        RemoteObject.iri.label("iri"),
        RemoteObject.id.label("object_id"),
    ).where(
        (RemoteObject.id.in_(counted)) | (RemoteObject.iri.in_(sent)),
        RemoteObject.type == "Question",
        RemoteObject.deleted_at.is_(None),
    )

    async def make(row: Any) -> Notification | None:
        question = await session.get(RemoteObject, row.object_id)
        if question is None or not polls.is_closed(question.document, now):
            return None
        if not await visibility.can_read_object(session, viewer, question):
            return None
        result = {"result": polls.results(question.document)}
        return Notification("vote_closed", row.at, object=row.iri, detail=result)

    return await _scan(session, "vote_closed", query, make, after=after, want=want)


async def _memberships(session: AsyncSession, me: Actor, after: Key | None, want: int) -> list[Notification]:
    """Decisions on the member's memberships, here and elsewhere: accepted (an active membership),
    or refused (an association's ``Reject`` of their ``Join``, or one of ours refusing their
    request, ``member.refuse`` in the audit log, unless they are in it now)."""
    accepted = (
        select(
            Membership.updated_at.label("at"),
            Actor.iri.label("iri"),
            literal_column("'accepted'", String).label("state"),
        )
        .join(Actor, Actor.id == Membership.group_id)
        .where(Membership.member_id == me.id, Membership.state == "active")
    )
    held = (
        select(Actor.iri)
        .join(Membership, Membership.group_id == Actor.id)
        .where(Membership.member_id == me.id)
    )
    refused = (
        select(
            InboxActivity.received_at.label("at"),
            InboxActivity.actor_iri.label("iri"),
            literal_column("'refused'", String).label("state"),
        )
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .join(OutboxActivity, OutboxActivity.iri == InboxActivity.object_iri)
        .where(
            InboxItem.actor_id == me.id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Reject",
            OutboxActivity.type == "Join",
            OutboxActivity.actor_id == me.id,
            InboxActivity.actor_iri.not_in(held),
        )
    )
    refused_here = (
        select(
            AuditEntry.created_at.label("at"),
            Actor.iri.label("iri"),
            literal_column("'refused'", String).label("state"),
        )
        .join(Actor, Actor.id == AuditEntry.group_id)
        .where(AuditEntry.action == "member.refuse", AuditEntry.target == me.iri, Actor.iri.not_in(held))
    )
    decisions = union_all(accepted, refused, refused_here).subquery()
    query = select(decisions.c.at, decisions.c.iri, decisions.c.state)

    async def make(row: Any) -> Notification | None:
        return Notification("membership", row.at, actor=row.iri, detail={"state": row.state})

    return await _scan(session, "membership", query, make, after=after, want=want)


async def _alerts(
    session: AsyncSession, viewer: Viewer, me: Actor, after: Key | None, want: int
) -> list[Notification]:
    """Alerts of the associations the member follows or joined."""
    ids = await timeline.sources(session, me.id)
    if not ids:
        return []
    query = (
        select(
            RemoteObject.published.label("at"),
            RemoteObject.iri.label("iri"),
            RemoteObject.id.label("object_id"),
            Actor.iri.label("author"),
        )
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            RemoteObject.attributed_to_id.in_(ids),
            Actor.type == "Group",
            RemoteObject.kind == "alert",
            RemoteObject.deleted_at.is_(None),
        )
    )

    async def make(row: Any) -> Notification | None:
        alert = await session.get(RemoteObject, row.object_id)
        if alert is None or not await visibility.can_read_object(session, viewer, alert):
            return None
        return Notification("alert", row.at, object=row.iri, actor=row.author)

    return await _scan(session, "alert", query, make, after=after, want=want)


def _audited_for(me: Actor, actions: tuple[str, ...]) -> Select[*tuple[Any, ...]]:
    """Audit entries naming ``me`` as their target (warnings, suspensions, an association's
    deletion): when, the association's IRI, the action and its detail."""
    group = aliased(Actor)
    return (
        select(
            AuditEntry.created_at.label("at"),
            group.iri.label("iri"),
            AuditEntry.action.label("action"),
            AuditEntry.detail.label("detail"),
        )
        .join(group, group.id == AuditEntry.group_id)
        .where(AuditEntry.action.in_(actions), AuditEntry.target == me.iri)
    )


async def _warnings(session: AsyncSession, me: Actor, after: Key | None, want: int) -> list[Notification]:
    """Warnings a moderator sent the member about a report (``report.warn`` in the audit log,
    ``server/services/moderation/reports.py``), with the association and the message; never the
    reporter."""
    query = _audited_for(me, ("report.warn",))

    async def make(row: Any) -> Notification | None:
        message = row.detail.get("reason") if isinstance(row.detail, dict) else None
        return Notification("warning", row.at, actor=row.iri, detail={"message": str(message or "")})

    return await _scan(session, "warning", query, make, after=after, want=want)


async def _association_deletions(
    session: AsyncSession, me: Actor, after: Key | None, want: int
) -> list[Notification]:
    """The deletion of an association the member belonged to (``member.association_deleted`` in
    the audit log, one entry per local member, ``actors/dissolution.py``), with its former name (the
    tombstone keeps only the handle) and the operator's reason."""
    query = _audited_for(me, ("member.association_deleted",))

    async def make(row: Any) -> Notification | None:
        detail = row.detail if isinstance(row.detail, dict) else {}
        told = {"name": str(detail.get("name") or ""), "message": str(detail.get("reason") or "")}
        return Notification("association_deleted", row.at, actor=row.iri, detail=told)

    return await _scan(session, "association_deleted", query, make, after=after, want=want)


def _taking_part(me: Actor, states: tuple[str, ...]) -> Select[*tuple[Any, ...]]:
    """The events ``me`` takes part in (participation in ``states``), ours or a peer's, with the
    organiser; the caller adds the ``at`` and ``iri`` columns and its conditions."""
    return (
        select(RemoteObject.id.label("object_id"), Actor.iri.label("author"))
        .join(Event, Event.object_id == RemoteObject.id)
        .join(EventParticipant, EventParticipant.event_id == Event.id)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            EventParticipant.actor_id == me.id,
            EventParticipant.state.in_(states),
            RemoteObject.kind == "event",
            RemoteObject.deleted_at.is_(None),
        )
    )


async def _event_changes(
    session: AsyncSession, viewer: Viewer, me: Actor, kind: str, after: Key | None, want: int
) -> list[Notification]:
    """The last change of an event the member takes part in (accepted or pending), made after they
    asked to join: ``event_cancelled`` when it is cancelled now, else ``event_changed``. One per
    event: its ``sequence`` says it changed (raised on our edits and on each peer's ``Update``,
    server/services/events/remote.py), the object's ``updated`` says when."""
    at = func.coalesce(RemoteObject.updated, RemoteObject.received_at, type_=UtcDateTime())
    cancelled = Event.status == "cancelled"
    query = (
        _taking_part(me, ("accepted", "pending"))
        .add_columns(at.label("at"), RemoteObject.iri.label("iri"))
        .where(Event.sequence > 0, at > EventParticipant.at)
        .where(cancelled if kind == "event_cancelled" else ~cancelled)
    )

    async def make(row: Any) -> Notification | None:
        if not await _readable(session, viewer, row.object_id):
            return None
        return Notification(kind, row.at, object=row.iri, actor=row.author)

    return await _scan(session, kind, query, make, after=after, want=want)


async def _reminders(
    session: AsyncSession,
    viewer: Viewer,
    me: Actor,
    after: Key | None,
    want: int,
    now: datetime,
    delay: timedelta,
) -> list[Notification]:
    """Events the member's participation was accepted in that start within ``delay`` (and are not
    cancelled): a reminder dated ``start - delay``. Nothing is stored; the keyset runs on the
    start, shifted by ``delay`` (``at < cursor`` is ``start < cursor + delay``)."""
    if delay <= timedelta(0):
        return []
    query = (
        _taking_part(me, ("accepted",))
        .add_columns(Event.start_at.label("at"), RemoteObject.iri.label("iri"))
        .where(Event.status != "cancelled", Event.start_at > now, Event.start_at <= now + delay)
    )
    shifted = Key(after.at + delay, after.type, after.iri) if after is not None else None

    async def make(row: Any) -> Notification | None:
        if not await _readable(session, viewer, row.object_id):
            return None
        return Notification("event_reminder", row.at - delay, object=row.iri, actor=row.author)

    return await _scan(session, "event_reminder", query, make, after=shifted, want=want)


async def _readable(session: AsyncSession, viewer: Viewer, object_id: int) -> bool:
    """The member may still read the event (a members-only one, once they left, notifies nothing)."""
    found = await session.get(RemoteObject, object_id)
    return found is not None and await visibility.can_read_object(session, viewer, found)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Notification]
    next_before: Key | None
    """Where the next (older) page starts, None on the last one."""
    read_at: datetime | None
    """Notifications up to this instant are read."""


async def _suspensions(session: AsyncSession, me: Actor, after: Key | None, want: int) -> list[Notification]:
    """The member's suspensions in an association and their lifting, by a moderator or at their
    end (``member.suspend`` and ``member.unsuspend`` in the audit log, ``membership/suspension.py``),
    with the end and the reason the moderator gave."""
    query = _audited_for(me, ("member.suspend", "member.unsuspend"))

    async def make(row: Any) -> Notification | None:
        detail = row.detail if isinstance(row.detail, dict) else {}
        if row.action == "member.unsuspend":
            return Notification("suspension", row.at, actor=row.iri, detail={"state": "lifted"})
        told = {
            "state": "suspended",
            "until": detail.get("until"),
            "message": str(detail.get("reason") or ""),
        }
        return Notification("suspension", row.at, actor=row.iri, detail=told)

    return await _scan(session, "suspension", query, make, after=after, want=want)


async def _joined(session: AsyncSession, me: Actor, after: Key | None, want: int) -> list[Notification]:
    """For an association's admins: someone joined it with an invitation link
    (``invitation.accept`` in the audit log, ``membership/invitations.py``)."""
    administered = select(Membership.group_id).where(
        Membership.member_id == me.id, Membership.state == "active", Membership.role == "admin"
    )
    group = aliased(Actor)
    query = (
        select(AuditEntry.created_at.label("at"), AuditEntry.target.label("iri"), group.iri.label("group"))
        .join(group, group.id == AuditEntry.group_id)
        .where(
            AuditEntry.action == "invitation.accept",
            AuditEntry.group_id.in_(administered),
            AuditEntry.target.is_not(None),
        )
    )

    async def make(row: Any) -> Notification | None:
        return Notification("member_joined", row.at, actor=row.iri, detail={"association": row.group})

    return await _scan(session, "member_joined", query, make, after=after, want=want)


async def _follow_requests(
    session: AsyncSession, me: Actor, after: Key | None, want: int
) -> list[Notification]:
    """Follows waiting for an answer (decision 88): of the member (who approves followers by
    hand, or a follower on a silenced domain), and of the associations they are an admin of. It
    lasts while the follow waits: answered or withdrawn, the notification is gone."""
    administered = select(Membership.group_id).where(
        Membership.member_id == me.id, Membership.state == "active", Membership.role == "admin"
    )
    follower, followed = aliased(Actor), aliased(Actor)
    query = (
        select(
            Follow.created_at.label("at"),
            follower.iri.label("iri"),
            followed.iri.label("followed"),
            followed.type.label("followed_type"),
        )
        .join(follower, follower.id == Follow.follower_id)
        .join(followed, followed.id == Follow.followed_id)
        .where(
            Follow.state == "pending",
            or_(Follow.followed_id == me.id, Follow.followed_id.in_(administered)),
        )
    )

    async def make(row: Any) -> Notification | None:
        detail = {"association": row.followed} if row.followed_type == "Group" else None
        return Notification("follow_request", row.at, actor=row.iri, detail=detail)

    return await _scan(session, "follow_request", query, make, after=after, want=want)


def _merged(lists: Sequence[list[Notification]], count: int) -> list[Notification]:
    """The first ``count`` of the sources' lists, newest first. Each source has its own type, so
    ``(at, type)`` orders them; within one source, its own (database) order is kept."""
    merged = heapq.merge(*lists, key=lambda n: (n.at, n.type), reverse=True)
    return [n for n, _ in zip(merged, range(count), strict=False)]


async def notifications(
    session: AsyncSession,
    viewer: Viewer,
    *,
    before: Key | None,
    limit: int,
    now: datetime,
    reminder_before: timedelta = DEFAULT_REMINDER,
) -> Page:
    """A page of the member's notifications, newest first, after the cursor ``before``;
    ``reminder_before`` is ``events.reminder_before_s`` (server/config.py)."""
    me = await session.get(Actor, viewer.actor_id)
    account = await session.get(Account, viewer.actor_id)
    assert me is not None
    want = limit + 1
    lists = [
        await _replies(session, viewer, me, before, want),
        await _mentions(session, viewer, me, before, want),
        await _closed_votes(session, viewer, me, before, want, now),
        await _memberships(session, me, before, want),
        await _alerts(session, viewer, me, before, want),
        await _warnings(session, me, before, want),
        await _suspensions(session, me, before, want),
        await _association_deletions(session, me, before, want),
        await _joined(session, me, before, want),
        await _follow_requests(session, me, before, want),
        await _event_changes(session, viewer, me, "event_changed", before, want),
        await _event_changes(session, viewer, me, "event_cancelled", before, want),
        await _reminders(session, viewer, me, before, want, now, reminder_before),
    ]
    found = _merged(lists, want)
    page = found[:limit]
    read_at = account.notifications_read_at if account is not None else None
    return Page(page, page[-1].key if len(found) > limit else None, read_at)


async def mark_read(session: AsyncSession, viewer: Viewer, *, now: datetime) -> None:
    """Everything notified up to ``now`` is read."""
    account = await session.get(Account, viewer.actor_id)
    if account is not None:
        account.notifications_read_at = now


UNREAD_LIMIT = 99
"""The navigation counts unread notifications up to this many (it shows "99+" beyond)."""


async def unread_count(
    session: AsyncSession, viewer: Viewer, *, now: datetime, reminder_before: timedelta = DEFAULT_REMINDER
) -> int:
    """How many notifications are newer than the member's last "mark all as read" (at most
    :data:`UNREAD_LIMIT` + 1: the navigation only needs to know there are many)."""
    page = await notifications(
        session, viewer, before=None, limit=UNREAD_LIMIT + 1, now=now, reminder_before=reminder_before
    )
    return sum(1 for n in page.items if page.read_at is None or n.at > page.read_at)
