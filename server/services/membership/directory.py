"""Who is in an association, for whom (decision 59).

Three listings read the same memberships with different rules:

- the **member directory** (:func:`directory`): the association's active members, read only by its
  own active members (and only where the association lists its members to members at all:
  ``members_list`` ``hidden`` keeps it to admins). A local member who opted out
  (``accounts.directory_opt_out``, a setting on their account page) is not in it;
- the **members list of the API** (:func:`members_page`, ``GET /api/associations/{slug}/members``):
  as the association's ``members_list`` says, and without the members who opted out, except for
  its admins and moderators (they manage them);
- the **roster** of admins and moderators (:func:`roster`): pending requests and every active
  member with role and whether they opted out, for the members page.

Strangers, followers and institutions never read the directory: the page answers 403 to a
signed-in stranger, the API 403 (security case 73).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import ROLES as ROLES_OF_MODEL
from server.db.models import Account, Actor, Membership
from server.db.queries import actors as q
from server.db.queries import memberships as keyset
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.membership.members import MANAGING_ROLES
from server.services.membership.standing import is_suspended
from server.services.reading import visibility
from server.services.reading.visibility import Viewer

STATES: Final = ("active", "pending")
ROLES: Final = ROLES_OF_MODEL
INT32_MAX: Final = 2**31 - 1


async def local_association(session: AsyncSession, handle: str) -> Actor:
    """One of this node's associations, by its handle.

    Raises:
        NotFound: none has this handle.
    """
    group = await q.local_by_handle(session, "Group", handle)
    if group is None or group.deleted_at is not None:
        raise NotFound("no such association")
    return group


@dataclass(frozen=True, slots=True)
class Entry:
    """One membership as a listing shows it."""

    cursor: int
    iri: str
    handle: str
    host: str
    name: str
    url: str
    local: bool
    role: str
    state: str
    since: datetime
    opted_out: bool
    suspended: bool = False
    suspended_until: datetime | None = None
    suspension_reason: str | None = None

    def as_json(self, *, reasons: bool = False) -> dict[str, Any]:
        """The API's item; ``reasons``: with the suspension's reason (for admins and moderators)."""
        item = {
            "member": self.iri,
            "handle": f"{self.handle}@{self.host}",
            "name": self.name,
            "role": self.role,
            "state": self.state,
            "since": _iso(self.since),
            "suspended": self.suspended,
            "suspendedUntil": _iso(self.suspended_until) if self.suspended_until is not None else None,
        }
        if reasons:
            item["suspensionReason"] = self.suspension_reason
        return item


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _query(group: Actor, state: str, *, with_opted_out: bool) -> Any:
    query = (
        select(Membership, Actor, Account.directory_opt_out)
        .join(Actor, Actor.id == Membership.member_id)
        .outerjoin(Account, Account.actor_id == Actor.id)
        .where(Membership.group_id == group.id, Membership.state == state, Actor.deleted_at.is_(None))
    )
    if not with_opted_out:
        query = query.where((Account.directory_opt_out.is_(None)) | (Account.directory_opt_out == false()))
    return query


def _entry(row: Membership, actor: Actor, opted_out: Any, now: datetime | None) -> Entry:
    """One listing line; ``now`` given: with the member's suspension (for admins and moderators)."""
    suspended = now is not None and is_suspended(row, now)
    return Entry(
        cursor=row.id,
        iri=actor.iri,
        handle=actor.handle,
        host=actor.host,
        name=actor.name or actor.handle,
        url=actor.url or actor.iri,
        local=actor.local,
        role=row.role,
        state=row.state,
        since=row.updated_at,
        opted_out=bool(opted_out),
        suspended=suspended,
        suspended_until=row.suspended_until if suspended else None,
        suspension_reason=row.suspension_reason if suspended else None,
    )


@dataclass(frozen=True, slots=True)
class MembersPage:
    """A page of the API's members list: its entries, the cursor of the next (older) page, and
    whether the reader manages the association (then the items say why a member is suspended)."""

    entries: list[Entry]
    cursor: int | None
    reasons: bool

    def items(self) -> list[dict[str, Any]]:
        return [entry.as_json(reasons=self.reasons) for entry in self.entries]


async def _entries(
    session: AsyncSession, query: Any, *, before: int | None, limit: int, now: datetime
) -> tuple[list[Entry], int | None]:
    if before is not None:  # memberships.id is a 32-bit integer: a larger cursor means "from the top"
        query = query.where(Membership.id < min(before, INT32_MAX))
    rows = (await session.execute(query.order_by(Membership.id.desc()).limit(limit + 1))).all()
    entries = [_entry(row, actor, opted_out, now) for row, actor, opted_out in rows[:limit]]
    return entries, entries[-1].cursor if len(rows) > limit else None


@dataclass(frozen=True, slots=True)
class Listing:
    """A page of members, newest first, and the cursors of the older and newer pages."""

    entries: list[Entry]
    older: int | None
    newer: int | None


async def _listing(
    session: AsyncSession,
    query: Any,
    *,
    before: int | None,
    after: int | None,
    limit: int,
    now: datetime | None = None,
) -> Listing:
    found = await keyset.page(session, query, before=before, after=after, limit=limit)
    entries = [_entry(row, actor, opted_out, now) for row, actor, opted_out in found.rows]
    return Listing(entries, found.older, found.newer)


async def lists_everyone(session: AsyncSession, viewer: Viewer, group: Actor) -> bool:
    """Whether the viewer's member lists include the members who opted out of the directory: the
    association's admins and moderators only (they manage them)."""
    return await visibility.role_in(session, viewer, group) in MANAGING_ROLES


async def can_read_directory(session: AsyncSession, viewer: Viewer, group: Actor) -> bool:
    """An active member of the association, where it lists its members to that member."""
    if group.type != "Group" or not group.local:
        return False
    role = await visibility.role_in(session, viewer, group)
    return role is not None and await visibility.can_list_members(session, viewer, group)


async def directory(
    session: AsyncSession,
    viewer: Viewer,
    group: Actor,
    *,
    before: int | None,
    limit: int,
    after: int | None = None,
    now: datetime | None = None,
) -> Listing:
    """A page of the member directory, newest member first (older than ``before``, or newer than
    ``after``), with the cursors of the pages beside it.

    Raises:
        Forbidden: the viewer is not an active member allowed to read it.
    """
    if not await can_read_directory(session, viewer, group):
        raise Forbidden("the member directory is read by the association's members only")
    query = _query(group, "active", with_opted_out=False)
    return await _listing(session, query, before=before, after=after, limit=limit, now=now)


async def members_page(
    session: AsyncSession,
    viewer: Viewer,
    group: Actor,
    *,
    state: str,
    before: int | None,
    limit: int,
    now: datetime,
) -> MembersPage:
    """``GET /api/associations/{slug}/members``: active members as the association lists them
    (members who opted out of the directory only to its admins and moderators), or the pending
    requests (admins and moderators only), each saying whether the member is suspended at ``now``
    and until when (why: to admins and moderators only).

    Raises:
        InvalidInput: an unknown state. Forbidden: the viewer may not read this list.
    """
    if state not in STATES:
        raise InvalidInput(f"state must be one of: {', '.join(STATES)}", field="state")
    managing = await lists_everyone(session, viewer, group)
    if state == "pending" and not managing:
        raise Forbidden("only the association's admins and moderators see requests to join")
    if state == "active" and not await visibility.can_list_members(session, viewer, group):
        raise Forbidden("this association does not list its members to you")
    query = _query(group, state, with_opted_out=managing)
    entries, cursor = await _entries(session, query, before=before, limit=limit, now=now)
    return MembersPage(entries, cursor, managing)


@dataclass(frozen=True, slots=True)
class Roster:
    """What the members page shows its admins and moderators."""

    role: str  # the reader's: admin or moderator
    pending: Listing  # a page of the requests to join
    pending_count: int  # requests in all
    active: Listing  # a page of the members, with their suspensions
    count: int  # active members in all


@dataclass(frozen=True, slots=True)
class Cursors:
    """Where a keyset listing starts: older than ``before``, or newer than ``after`` (neither: the
    newest)."""

    before: int | None = None
    after: int | None = None


async def _count(session: AsyncSession, group: Actor, state: str) -> int:
    found = await session.scalar(
        select(func.count(Membership.id)).where(Membership.group_id == group.id, Membership.state == state)
    )
    return int(found or 0)


async def roster(
    session: AsyncSession,
    viewer: Viewer,
    group: Actor,
    *,
    now: datetime,
    members: Cursors = Cursors(),
    requests: Cursors = Cursors(),
    limit: int = 50,
) -> Roster:
    """A page of the pending requests and a page of the active members, each where its cursors
    say (both newest first, ``limit`` a page), for the association's admins and moderators.

    Raises:
        Forbidden: the viewer is neither.
    """
    role = await visibility.role_in(session, viewer, group)
    if role not in MANAGING_ROLES:
        raise Forbidden("only the association's admins and moderators manage its members")
    pending = await _listing(
        session,
        _query(group, "pending", with_opted_out=True),
        before=requests.before,
        after=requests.after,
        limit=limit,
    )
    query = _query(group, "active", with_opted_out=True)
    active = await _listing(session, query, before=members.before, after=members.after, limit=limit, now=now)
    pending_count, count = await _count(session, group, "pending"), await _count(session, group, "active")
    return Roster(str(role), pending, pending_count, active, count)


async def managed_member(
    session: AsyncSession, viewer: Viewer, group: Actor, member_iri: str, *, now: datetime
) -> Entry:
    """One active member, as the members page shows it to the association's admins and moderators
    (the page that confirms a removal or a suspension).

    Raises:
        Forbidden: the viewer is neither, or a moderator and the member an admin.
        NotFound: no active member has this IRI.
    """
    role = await visibility.role_in(session, viewer, group)
    if role not in MANAGING_ROLES:
        raise Forbidden("only the association's admins and moderators manage its members")
    found = (
        await session.execute(
            _query(group, "active", with_opted_out=True).where(Actor.iri == member_iri).limit(1)
        )
    ).first()
    if found is None:
        raise NotFound("not a member", field="member")
    row, actor, opted_out = found
    if row.role == "admin" and role != "admin":
        raise Forbidden("only an admin removes or suspends an admin")
    return _entry(row, actor, opted_out, now)


async def set_opt_out(session: AsyncSession, actor_id: int, opt_out: bool) -> None:
    """A member leaves (or comes back to) the directories of their associations."""
    account = await session.get(Account, actor_id)
    if account is None:
        raise Forbidden("only a member of this node has this setting")
    account.directory_opt_out = opt_out
