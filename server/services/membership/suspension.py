"""Suspended members (issue 17, decision 76): still members, who act in nothing for a while.

An admin or moderator suspends an active member of one of our associations (a moderator never
suspends an admin, nobody suspends themselves), for a time (``until``) or until lifted, with a reason
the member is told. A suspended member keeps reading what the association's members read (the read
filter, ``reading/visibility.py``, does not look at suspensions), but neither publishes nor replies
in the association, nor votes on its proposals, nor likes its objects, nor takes part in its events,
nor co-signs, proposes drafts, invites or manages members in its name.

``standing.check_acting`` (``membership/standing.py``) is the one place that decides it: every
service through which someone acts in an association calls it, so the web pages, the JSON API,
the C2S outbox and the CLI refuse alike, with ``Suspended`` (403, ``member_suspended``). The
suspension ends by itself when ``until`` passes (checked at each action); a job queued for that
instant (:data:`LIFT_SUSPENSION`) clears it and records the lifting, which notifies the member as a
lifting by a moderator does. Both are audited (``member.suspend``,
``member.unsuspend``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import select

from server.db import queue
from server.db.models import Actor, Membership
from server.db.queries import actors as q
from server.services import audit
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.membership import members
from server.services.membership.standing import is_suspended

LIFT_SUSPENSION: Final = "membership.lift_suspension"
MAX_SUSPENSION: Final = timedelta(days=3650)


def parse_until(value: Any, *, now: datetime) -> datetime | None:
    """The end of a suspension: an ISO 8601 date (its end of day, UTC) or date and time (UTC when
    no offset is given), in the future and within ten years; empty: until lifted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput("until must be a date (YYYY-MM-DD) or a date and time", field="until")
    text = value.strip()
    try:
        found = (
            datetime.combine(date.fromisoformat(text), time(23, 59, 59), tzinfo=UTC)
            if len(text) == 10
            else datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
        found = found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 9999 moved to UTC
        raise InvalidInput("until must be a date (YYYY-MM-DD) or a date and time", field="until") from None
    if found <= now:
        raise InvalidInput("until must be in the future", field="until")
    if found > now + MAX_SUSPENSION:
        raise InvalidInput("a suspension lasts ten years at most", field="until")
    return found


@dataclass(frozen=True, slots=True)
class Suspension:
    """A suspension as the API and the CLI answer it."""

    member: str
    since: datetime
    until: datetime | None
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "state": "suspended",
            "suspended": _iso(self.since),
            "until": _iso(self.until),
            "reason": self.reason,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else None


async def _target(
    session: Any, group: Actor, member_iri: str, by: Actor, now: datetime
) -> tuple[Actor, Membership]:
    """The active member ``by`` may suspend (or lift): not themselves, an admin by an admin only."""
    role = await members.manager(session, group, by, now=now)
    member = await session.scalar(select(Actor).where(Actor.iri == member_iri))
    row = await q.membership(session, group.id, member.id) if member is not None else None
    if member is None or row is None or row.state != "active":
        raise NotFound("not a member", field="member")
    if member.id == by.id:
        raise InvalidInput("you do not suspend yourself", field="member")
    if row.role == "admin" and role != "admin":
        raise Forbidden("only an admin suspends an admin")
    return member, row


async def suspend(
    fed: Federation,
    group: Actor,
    member_iri: str,
    *,
    by: Actor,
    until: datetime | None = None,
    reason: str | None = None,
) -> Suspension:
    """Suspend an active member (again: a new end and reason replace the old ones); audited, and
    the member is notified. A job lifts it at ``until``."""
    reason = members.refusal_reason(reason)
    now = fed.node.clock()
    if until is not None and until <= now:
        raise InvalidInput("until must be in the future", field="until")
    async with fed.node.sessions.begin() as session:
        member, row = await _target(session, group, member_iri, by, now)
        row.suspended_at, row.suspended_until, row.suspension_reason = now, until, reason
        await session.flush()
        if until is not None:
            await queue.enqueue(
                session,
                LIFT_SUSPENSION,
                {"membership_id": row.id, "since": _iso(now)},
                dedup_key=f"lift-suspension:{row.id}:{now.timestamp()}",
                run_at=until,
                now=now,
            )
        audit.record(
            session,
            "member.suspend",
            now=now,
            group=group,
            by=by,
            target=member.iri,
            detail={"member": member.iri, "until": _iso(until), **({"reason": reason} if reason else {})},
        )
    fed.notify_worker()
    return Suspension(member.iri, now, until, reason)


async def unsuspend(fed: Federation, group: Actor, member_iri: str, *, by: Actor) -> None:
    """Lift a member's suspension before its end; audited, and the member is notified.

    Raises:
        Conflict: the member is not suspended.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        member, row = await _target(session, group, member_iri, by, now)
        if not is_suspended(row, now):
            raise Conflict("this member is not suspended", field="member")
        _clear(row, now)
        audit.record(
            session, "member.unsuspend", now=now, group=group, by=by, target=member.iri,
            detail={"member": member.iri},
        )  # fmt: skip


def _clear(row: Membership, now: datetime) -> None:
    row.suspended_at = row.suspended_until = row.suspension_reason = None


async def lift_expired(fed: Federation, membership_id: int, since: Any) -> timedelta | None:
    """The job at a suspension's end: clear it and record its lifting (the member is notified).
    Returns how long to wait when its end is still ahead; nothing when it was lifted or replaced."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.get(Membership, membership_id)
        if row is None or row.suspended_at is None or _iso(row.suspended_at) != since:
            return None
        if row.suspended_until is None:
            return None
        if row.suspended_until > now:
            return row.suspended_until - now
        group = await session.get(Actor, row.group_id)
        member = await session.get(Actor, row.member_id)
        _clear(row, now)
        if group is not None and member is not None:
            audit.record(
                session, "member.unsuspend", now=now, group=group, target=member.iri,
                detail={"member": member.iri, "expired": True},
            )  # fmt: skip
    return None


__all__ = [
    "LIFT_SUSPENSION",
    "Suspension",
    "lift_expired",
    "parse_until",
    "suspend",
    "unsuspend",
]
