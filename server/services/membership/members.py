"""Membership of associations across nodes: ``Join``, approval, ``Leave`` and removal.

A person on another node joins one of our associations with ``Join{object: group}``. The
association's ``join_policy`` decides: ``open`` accepts at once, ``approval`` (the default)
waits for an admin, ``closed`` refuses. The answer is ``Accept{Join}`` or ``Reject{Join}`` to
the joiner. ``Leave{object: group}`` ends a membership, only the member's own. Moderators and
admins remove members (audited); the member gets ``Remove{object: member, target: members}``.

Our own members join remote associations the same way (:func:`join`); the group's answer is
matched by the ``Join`` id (:func:`join_answered`), never by what the answer claims.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, false, func, literal_column, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.uris import UriScheme
from server.db import queue
from server.db.models import ROLES, Actor, Block, InboxActivity, InboxItem, Membership
from server.db.models import Activity as OutboxActivity
from server.db.types import UtcDateTime
from server.services import audit
from server.services.content.sanitize import text_paragraph
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.membership.standing import check_acting
from server.services.reading import timeline

log = logging.getLogger(__name__)

MANAGING_ROLES = ("admin", "moderator")


def _join_document(join_iri: str, member: str, group: str) -> dict[str, Any]:
    return {"id": join_iri, "type": "Join", "actor": member, "object": group}


async def _answer(
    fed: Federation,
    session: Any,
    group: Actor,
    member: Actor,
    join_iri: str,
    kind: str,
    *,
    now: datetime,
    reason: str | None = None,
) -> None:
    activity: dict[str, Any] = {
        "id": new_activity_iri(fed.node.uris),
        "type": kind,
        "object": _join_document(join_iri, member.iri, group.iri),
        "to": [member.iri],
    }
    if reason:
        activity["content"] = text_paragraph(reason)
    await publish(session, group, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE)


async def receive_join(fed: Federation, *, join_iri: str, group_iri: str, member: Actor) -> str | None:
    """A remote actor asks to join one of our associations; returns the membership state."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        group = await session.scalar(
            select(Actor).where(Actor.iri == group_iri, Actor.local.is_(True), Actor.type == "Group")
        )
        if group is None or member.local or member.type not in ("Person", "Service"):
            return None
        blocked = await session.scalar(
            select(Block.id).where(Block.blocker_id == group.id, Block.blocked_id == member.id)
        )
        row = await session.scalar(
            select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
        )
        if blocked is not None or group.join_policy == "closed":
            await _answer(fed, session, group, member, join_iri, "Reject", now=now)
            log.info("join refused", extra={"group": group.iri, "member": member.iri})
            return None
        if row is None:
            state = "active" if group.join_policy == "open" else "pending"
            row = Membership(
                group_id=group.id,
                member_id=member.id,
                role="member",
                state=state,
                join_iri=join_iri,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
        else:
            row.join_iri, row.updated_at = join_iri, now
            if row.state == "invited":
                row.state = "active"  # accepting an invitation
        if row.state == "active":
            await _answer(fed, session, group, member, join_iri, "Accept", now=now)
        state = row.state
    fed.notify_worker()
    log.info("join received", extra={"group": group_iri, "member": member.iri, "state": state})
    return state


async def manager(session: Any, group: Actor, by: Actor, *, now: datetime) -> str:
    """``by``'s role when it manages the association's members: an active admin or moderator who
    is not suspended (``standing.py``).

    Raises:
        Forbidden: anyone else (``Suspended`` for a suspended admin or moderator).
    """
    row = await session.scalar(
        select(Membership).where(
            Membership.group_id == group.id, Membership.member_id == by.id, Membership.state == "active"
        )
    )
    if row is None or row.role not in MANAGING_ROLES:
        raise Forbidden("only the association's admins and moderators manage its members")
    await check_acting(session, group, [by], now=now)
    return str(row.role)


MAX_REASON_CHARS = 1000


def refusal_reason(value: str | None) -> str | None:
    """The reason given with a refusal: plain text, told to the person and kept in the audit log."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
    if "\x00" in value:
        raise InvalidInput("reason must not contain NUL characters", field="reason")
    return value.strip()


async def decide(
    fed: Federation, group: Actor, member_iri: str, *, by: Actor, approve: bool, reason: str | None = None
) -> None:
    """An admin or moderator approves or refuses a pending request to join; a refusal may give a
    reason (sent with the ``Reject`` as its ``content``, and audited)."""
    reason = refusal_reason(reason)
    if approve and reason is not None:
        raise InvalidInput("a reason is given with a refusal only", field="reason")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        await manager(session, group, by, now=now)
        member = await session.scalar(select(Actor).where(Actor.iri == member_iri))
        row = (
            await session.scalar(
                select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
            )
            if member is not None
            else None
        )
        if member is None or row is None or row.state != "pending":
            raise NotFound("no pending request from this actor")
        if approve:
            row.state, row.updated_at = "active", now
        else:
            await session.delete(row)
        if not member.local and row.join_iri:
            await _answer(
                fed,
                session,
                group,
                member,
                row.join_iri,
                "Accept" if approve else "Reject",
                now=now,
                reason=reason,
            )
        audit.record(
            session,
            "member.approve" if approve else "member.refuse",
            now=now,
            group=group,
            by=by,
            target=member.iri,
            detail={"member": member.iri, **({"reason": reason} if reason else {})},
        )
    fed.notify_worker()


async def remove(fed: Federation, group: Actor, member_iri: str, *, by: Actor) -> None:
    """A moderator or admin removes a member (moderators cannot remove admins)."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        role = await manager(session, group, by, now=now)
        member = await session.scalar(select(Actor).where(Actor.iri == member_iri))
        row = (
            await session.scalar(
                select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
            )
            if member is not None
            else None
        )
        if member is None or row is None:
            raise NotFound("not a member")
        if row.role == "admin" and role != "admin":
            raise Forbidden("only an admin removes an admin")
        await session.delete(row)
        if not member.local:
            activity = {
                "id": new_activity_iri(fed.node.uris),
                "type": "Remove",
                "object": member.iri,
                "target": fed.node.uris.members(Iri(group.iri)),
                "to": [member.iri],
            }
            await publish(
                session, group, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
            )
        audit.record(
            session,
            "member.remove",
            now=now,
            group=group,
            by=by,
            target=member.iri,
            detail={"member": member.iri, "role": row.role},
        )
    fed.notify_worker()


async def set_role(fed: Federation, group: Actor, member_iri: str, role: str, *, by: Actor) -> str:
    """An admin gives an active member another role (admin, moderator, member); audited.

    The last admin cannot step down (the association would have no one to manage it). Returns the
    previous role.
    """
    if role not in ROLES:
        raise InvalidInput(f"role must be one of: {', '.join(ROLES)}", field="role")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        if await manager(session, group, by, now=now) != "admin":
            raise Forbidden("only an admin changes roles")
        member = await session.scalar(select(Actor).where(Actor.iri == member_iri))
        row = (
            await session.scalar(
                select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
            )
            if member is not None
            else None
        )
        if member is None or row is None or row.state != "active":
            raise NotFound("not a member")
        previous = row.role
        if previous == role:
            return previous
        if previous == "admin":
            admins = await session.scalar(
                select(func.count()).where(
                    Membership.group_id == group.id, Membership.role == "admin", Membership.state == "active"
                )
            )
            if (admins or 0) <= 1:
                raise Conflict("the last admin keeps the role: make someone else admin first", field="role")
        row.role, row.updated_at = role, now
        audit.record(
            session,
            "member.role",
            now=now,
            group=group,
            by=by,
            target=member.iri,
            detail={"member": member.iri, "from": previous, "to": role},
        )
    return previous


async def resolve_member(session: AsyncSession, uris: UriScheme, who: str) -> Actor:
    """The actor named by ``who``: an actor IRI, a handle ``@user@host`` (or ``user@host``), or a
    local username. Only actors this node knows are found (nothing is fetched).

    Raises:
        InvalidInput: not one of these forms. NotFound: no such actor here.
    """
    who = who.strip()
    if not who or len(who) > 2048 or "\x00" in who:
        raise InvalidInput("give a username, a handle @user@host or an actor IRI", field="member")
    if who.startswith(("https://", "http://")):
        actor = await session.scalar(select(Actor).where(Actor.iri == who, Actor.deleted_at.is_(None)))
        if actor is None:
            raise NotFound(f"no actor {who} is known here", field="member")
        return actor
    user, at, host = who.removeprefix("@").partition("@")
    if not user or (at and not host) or "@" in host or "/" in who:
        raise InvalidInput(
            f"{who!r} is neither a username, a handle @user@host nor an actor IRI", field="member"
        )
    host = host.lower() if at else uris.host
    query = select(Actor).where(
        Actor.handle == user,
        Actor.host == host,
        Actor.type.in_(("Person", "Service")),
        Actor.deleted_at.is_(None),
    )
    actor = await session.scalar(query.order_by(Actor.id).limit(1))
    if actor is None:
        where = "on this node" if host == uris.host else f"known here on {host}"
        raise NotFound(f"no person {user!r} {where}", field="member")
    return actor


async def receive_leave(fed: Federation, *, group_iri: str, member: Actor) -> bool:
    """``Leave`` ends the sender's own membership (a Leave names no one else)."""
    async with fed.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri, Actor.local.is_(True)))
        if group is None:
            return False
        row = await session.scalar(
            select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
        )
        if row is None:
            return False
        await session.delete(row)
    log.info("member left", extra={"group": group_iri, "member": member.iri})
    return True


# --- our members joining associations elsewhere --------------------------------------------------


async def join(fed: Federation, member: Actor, group_iri: str) -> str | None:
    """One of our people asks to join an association; returns the ``Join`` id sent to a remote
    one, or None for one of ours (decided here at once: :func:`join_here`)."""
    if not member.local or member.type != "Person":
        raise InvalidInput("only a local member joins an association", field="actor")
    async with fed.node.sessions() as session:
        here = await session.scalar(select(Actor).where(Actor.iri == group_iri, Actor.local.is_(True)))
    if here is not None:
        await join_here(fed, member, here)
        return None
    group = await fed.actor(group_iri)
    if group.type != "Group" or group.local:
        raise InvalidInput("object must be a remote association", field="object")
    now = fed.node.clock()
    join_iri = new_activity_iri(fed.node.uris)
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
        )
        if row is not None and row.state == "active":
            raise Conflict("already a member")
        if row is None:
            row = Membership(
                group_id=group.id, member_id=member.id, role="member", created_at=now, updated_at=now
            )
            session.add(row)
        row.state, row.join_iri, row.updated_at = "pending", join_iri, now
        activity = {"id": join_iri, "type": "Join", "object": group.iri, "to": [group.iri]}
        await publish(
            session, member, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
        )
    fed.notify_worker()
    return join_iri


async def join_here(fed: Federation, member: Actor, group: Actor) -> str:
    """One of our people asks to join one of our associations: its join policy applies as for a
    remote ``Join`` (open: active; approval: pending; closed or blocked: refused). Returns the state."""
    if group.type != "Group":
        raise InvalidInput("object must be an association", field="object")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        blocked = await session.scalar(
            select(Block.id).where(Block.blocker_id == group.id, Block.blocked_id == member.id)
        )
        if blocked is not None or group.join_policy == "closed":
            raise Forbidden("this association does not take requests to join")
        row = await session.scalar(
            select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
        )
        if row is not None and row.state in ("active", "pending"):
            raise Conflict("already a member" if row.state == "active" else "already asked to join")
        state = "active" if group.join_policy == "open" or (row and row.state == "invited") else "pending"
        if row is None:
            row = Membership(group_id=group.id, member_id=member.id, role="member", created_at=now)
            session.add(row)
        row.state, row.updated_at = state, now
    log.info("join here", extra={"group": group.iri, "member": member.iri, "state": state})
    return state


async def state_of(session: Any, group_id: int, actor_id: int) -> str | None:
    """The actor's membership state in the association (active, pending, invited), or None."""
    found = await session.scalar(
        select(Membership.state).where(Membership.group_id == group_id, Membership.member_id == actor_id)
    )
    return str(found) if found is not None else None


async def leave(fed: Federation, member: Actor, group_iri: str) -> str:
    group = await fed.actor(group_iri)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(Membership).where(Membership.group_id == group.id, Membership.member_id == member.id)
        )
        if row is None:
            raise NotFound("not a member")
        await session.delete(row)
        activity = {
            "id": new_activity_iri(fed.node.uris),
            "type": "Leave",
            "object": group.iri,
            "to": [group.iri],
        }
        published = await publish(session, member, activity, visibility="direct", now=now)
    fed.notify_worker()
    return published.iri


async def join_answered(fed: Federation, *, join_iri: str, group_iri: str, accepted: bool) -> bool:
    """Apply the group's Accept/Reject of one of our Joins; True when it matched."""
    async with fed.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        row = (
            await session.scalar(
                select(Membership).where(Membership.join_iri == join_iri, Membership.group_id == group.id)
            )
            if group is not None
            else None
        )
        if row is None:
            return False
        if accepted:
            row.state, row.updated_at = "active", fed.node.clock()
        else:
            await session.delete(row)
    log.info("join answered", extra={"group": group_iri, "accepted": accepted})
    return True


async def is_active_member(session: Any, group_id: int, actor_id: int) -> bool:
    found = await session.scalar(
        select(Membership.id).where(
            Membership.group_id == group_id, Membership.member_id == actor_id, Membership.state == "active"
        )
    )
    return found is not None


INT32_MAX = 2**31 - 1


async def roster_page(
    session: AsyncSession, group_id: int, state: str, *, before: int | None, limit: int
) -> list[tuple[Membership, Actor]]:
    """The association's memberships in ``state`` (active members, or pending requests) with their
    actors, newest first: up to ``limit + 1``, the last one telling that a next page exists. The
    cursor is a membership id (a 32-bit column: a larger cursor means "from the top")."""
    query = (
        select(Membership, Actor)
        .join(Actor, Actor.id == Membership.member_id)
        .where(Membership.group_id == group_id, Membership.state == state)
    )
    if before is not None:
        query = query.where(Membership.id < min(before, INT32_MAX))
    rows = (await session.execute(query.order_by(Membership.id.desc()).limit(limit + 1))).all()
    return [(row[0], row[1]) for row in rows]


MEMBERSHIP_STATES = {"active": "accepted", "pending": "pending", "invited": "invited"}


async def memberships_of(session: Any, member_id: int) -> list[tuple[str, str, bool, datetime]]:
    """(association, state, local, since) of an account's memberships here and elsewhere, newest
    first: ``accepted``, ``pending``, ``invited``, and ``refused`` for each ``Join`` an association
    answered with a ``Reject`` (the membership row is gone; the answer filed in the inbox stays)."""
    rows = await session.execute(
        select(Actor.iri, Membership.state, Actor.local, Membership.updated_at)
        .join(Actor, Actor.id == Membership.group_id)
        .where(Membership.member_id == member_id)
        .order_by(Membership.updated_at.desc(), Membership.id.desc())
    )
    found = [(iri, MEMBERSHIP_STATES[state], local, at) for iri, state, local, at in rows]
    held = {iri for iri, *_ in found}
    refused = await session.execute(
        select(InboxActivity.actor_iri, InboxActivity.received_at)
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .join(OutboxActivity, OutboxActivity.iri == InboxActivity.object_iri)
        .where(
            InboxItem.actor_id == member_id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Reject",
            OutboxActivity.type == "Join",
            OutboxActivity.actor_id == member_id,
        )
        .order_by(InboxItem.id.desc())
        .limit(200)
    )
    for iri, at in refused:
        if iri not in held:
            held.add(iri)
            found.append((iri, "refused", False, at))
    return found


@dataclass(frozen=True, slots=True)
class MembershipCursor:
    """Where a page of memberships stops: the last item's instant and association (opaque)."""

    since: datetime
    association: str

    def encode(self) -> str:
        raw = json.dumps([timeline.micros(self.since), self.association], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, value: str) -> MembershipCursor | None:
        """The cursor in ``value``, or None when it is not one of ours."""
        if not value or len(value) > 4096 or not value.isascii():
            return None
        try:
            decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(decoded, list) or len(decoded) != 2:
            return None
        micros, association = decoded
        if not isinstance(micros, int) or isinstance(micros, bool) or not 0 <= micros < 10**18:
            return None
        if not isinstance(association, str) or len(association) > 2048:
            return None
        return cls(timeline.EPOCH + timedelta(microseconds=micros), association)


async def memberships_page(
    session: AsyncSession, member_id: int, *, before: MembershipCursor | None, limit: int
) -> tuple[list[tuple[str, str, bool, datetime]], MembershipCursor | None]:
    """A page of :func:`memberships_of`, newest first, cut in SQL on ``(since, association)``: the
    memberships, and the newest refusal of each association the account is not in now."""
    held = select(Membership.group_id).where(Membership.member_id == member_id)
    rows = (
        select(
            Membership.updated_at.label("since"),
            Actor.iri.label("association"),
            Membership.state.label("state"),
            Actor.local.label("local"),
        )
        .join(Actor, Actor.id == Membership.group_id)
        .where(Membership.member_id == member_id)
    )
    held_iris = select(Actor.iri).where(Actor.id.in_(held))
    refused = (
        select(
            func.max(InboxActivity.received_at, type_=UtcDateTime()).label("since"),
            InboxActivity.actor_iri.label("association"),
            literal_column("'refused'", String).label("state"),
            false().label("local"),
        )
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .join(OutboxActivity, OutboxActivity.iri == InboxActivity.object_iri)
        .where(
            InboxItem.actor_id == member_id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Reject",
            OutboxActivity.type == "Join",
            OutboxActivity.actor_id == member_id,
            InboxActivity.actor_iri.not_in(held_iris),
        )
        .group_by(InboxActivity.actor_iri)
    )
    every = union_all(rows, refused).subquery()
    query = select(every)
    if before is not None:
        query = query.where(
            or_(
                every.c.since < before.since,
                and_(every.c.since == before.since, every.c.association < before.association),
            )
        )
    found = (
        await session.execute(
            query.order_by(every.c.since.desc(), every.c.association.desc()).limit(limit + 1)
        )
    ).all()
    items = [
        (row.association, MEMBERSHIP_STATES.get(row.state, row.state), bool(row.local), row.since)
        for row in found[:limit]
    ]
    more = MembershipCursor(items[-1][3], items[-1][0]) if len(found) > limit else None
    return items, more
