"""Invitation links: an admin lets people of this node join an association without waiting for
approval (decision 58).

A link carries a random token; only its SHA-256 is stored, so a database leak opens no
association. It expires (``expires_at``), may be used ``max_uses`` times, and can be revoked at
once. Using it is a single conditional ``UPDATE`` (``uses < max_uses``, not revoked, not
expired), so two people racing for the last use cannot both get in. Only a signed-in local member
uses a link: a person of another node joins with ``Join`` and the association's policy.

Creating, revoking and using a link are audited (``invitation.create``, ``invitation.revoke``,
``invitation.accept``); the token itself is never written to the log (security case 72).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from server.db.models import Actor, Block, Invitation, Membership
from server.db.queries import actors as q
from server.services import audit
from server.services.context import NodeContext
from server.services.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from server.services.membership.standing import check_acting

log = logging.getLogger(__name__)

TOKEN_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 128
DEFAULT_DAYS: Final = 7
MAX_DAYS: Final = 90
DEFAULT_USES: Final = 1
MAX_USES: Final = 1000
LIST_LIMIT: Final = 200
PATH: Final = "/invite/"


class InvitationExpired(Gone):
    """The invitation's time is over."""

    code = "invitation_expired"


class InvitationExhausted(Gone):
    """The invitation was used as many times as it allows."""

    code = "invitation_exhausted"


class InvitationRevoked(Gone):
    """An admin revoked the invitation."""

    code = "invitation_revoked"


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation as admins see it (never its token)."""

    id: int
    created_at: datetime
    expires_at: datetime
    max_uses: int
    uses: int
    revoked_at: datetime | None
    created_by: str | None  # the author's handle, None once the account is gone
    state: str  # active, expired, exhausted, revoked

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "createdAt": _iso(self.created_at),
            "expiresAt": _iso(self.expires_at),
            "maxUses": self.max_uses,
            "uses": self.uses,
            "revokedAt": _iso(self.revoked_at) if self.revoked_at is not None else None,
            "createdBy": self.created_by,
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class Created:
    """A new invitation and its link: the token is shown this once and never stored."""

    invitation: InvitationView
    token: str
    url: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What an invitation's page shows before it is used."""

    group: Actor
    state: str
    membership: str | None  # the reader's current state in the association


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def state_of(row: Invitation, now: datetime) -> str:
    """Revoked first, then used up, then expired: the reason given is the one an admin acted on."""
    if row.revoked_at is not None:
        return "revoked"
    if row.uses >= row.max_uses:
        return "exhausted"
    if row.expires_at <= now:
        return "expired"
    return "active"


REFUSALS: Final[dict[str, type[Gone]]] = {
    "revoked": InvitationRevoked,
    "exhausted": InvitationExhausted,
    "expired": InvitationExpired,
}
DETAILS: Final = {
    "revoked": "this invitation was revoked",
    "exhausted": "this invitation was used as many times as it allows",
    "expired": "this invitation has expired",
}


def _view(row: Invitation, author: str | None, now: datetime) -> InvitationView:
    return InvitationView(
        id=row.id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_uses=row.max_uses,
        uses=row.uses,
        revoked_at=row.revoked_at,
        created_by=author,
        state=state_of(row, now),
    )


def check_limits(expires_in_days: int | None, max_uses: int | None) -> tuple[int, int]:
    """The validity in days (1 to 90, default 7) and the number of uses (1 to 1000, default 1).

    Raises:
        InvalidInput: a value out of range (``field`` names it).
    """
    days = DEFAULT_DAYS if expires_in_days is None else expires_in_days
    uses = DEFAULT_USES if max_uses is None else max_uses
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"expiresInDays must be a whole number from 1 to {MAX_DAYS}", field="expiresInDays"
        )
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise InvalidInput(f"maxUses must be a whole number from 1 to {MAX_USES}", field="maxUses")
    return days, uses


async def _admin(session: Any, group: Actor, by: Actor) -> None:
    row = await q.membership(session, group.id, by.id)
    if (
        group.type != "Group"
        or not group.local
        or row is None
        or row.state != "active"
        or row.role != "admin"
    ):
        raise Forbidden("only the association's admins manage its invitations")


async def create(
    node: NodeContext,
    group: Actor,
    *,
    by: Actor,
    expires_in_days: int | None = None,
    max_uses: int | None = None,
) -> Created:
    """An admin creates an invitation link (audited without its token)."""
    days, uses = check_limits(expires_in_days, max_uses)
    now = node.clock()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    async with node.sessions.begin() as session:
        await _admin(session, group, by)
        await check_acting(session, group, [by], now=now)
        row = Invitation(
            token_hash=token_hash(token),
            group_id=group.id,
            created_by_id=by.id,
            created_at=now,
            expires_at=now + timedelta(days=days),
            max_uses=uses,
            uses=0,
        )
        session.add(row)
        await session.flush()
        audit.record(
            session,
            "invitation.create",
            now=now,
            group=group,
            by=by,
            target=str(row.id),
            detail={"invitation": row.id, "expiresAt": _iso(row.expires_at), "maxUses": uses},
        )
        view = _view(row, by.handle, now)
    return Created(view, token, node.uris.iri(PATH + token))


async def list_for(node: NodeContext, group: Actor, *, by: Actor) -> list[InvitationView]:
    """The association's invitations, newest first (admins only)."""
    now = node.clock()
    author = aliased(Actor)
    async with node.sessions() as session:
        await _admin(session, group, by)
        rows = (
            await session.execute(
                select(Invitation, author.handle)
                .outerjoin(author, author.id == Invitation.created_by_id)
                .where(Invitation.group_id == group.id)
                .order_by(Invitation.id.desc())
                .limit(LIST_LIMIT)
            )
        ).all()
    return [_view(row, handle, now) for row, handle in rows]


async def revoke(node: NodeContext, group: Actor, invitation_id: int, *, by: Actor) -> InvitationView:
    """An admin revokes an invitation of the association; it stops working at once (audited).
    Revoking a revoked invitation changes nothing."""
    now = node.clock()
    async with node.sessions.begin() as session:
        await _admin(session, group, by)
        await check_acting(session, group, [by], now=now)
        row = await session.scalar(
            select(Invitation).where(Invitation.id == invitation_id, Invitation.group_id == group.id)
        )
        if row is None:
            raise NotFound("no such invitation in this association")
        if row.revoked_at is None:
            row.revoked_at = now
            audit.record(
                session,
                "invitation.revoke",
                now=now,
                group=group,
                by=by,
                target=str(row.id),
                detail={"invitation": row.id, "uses": row.uses},
            )
        view = _view(row, by.handle, now)
    return view


def _well_formed(token: str) -> bool:
    return 20 <= len(token) <= MAX_TOKEN_CHARS and all(
        c.isascii() and (c.isalnum() or c in "-_") for c in token
    )


async def _find(session: Any, token: str) -> Invitation:
    row = await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash(token)))
    if not isinstance(row, Invitation) or not _well_formed(token):
        raise NotFound("no such invitation")
    return row


async def preview(node: NodeContext, token: str, *, reader: Actor | None) -> Preview:
    """The association an invitation is for and whether it can still be used.

    Raises:
        NotFound: no invitation has this token (or its association is gone).
    """
    now = node.clock()
    async with node.sessions() as session:
        row = await _find(session, token)
        group = await session.get(Actor, row.group_id)
        if group is None or group.deleted_at is not None:
            raise NotFound("no such invitation")
        joined = await q.membership(session, group.id, reader.id) if reader is not None else None
        session.expunge(group)
    return Preview(group, state_of(row, now), joined.state if joined is not None else None)


async def accept(node: NodeContext, token: str, *, member: Actor) -> Actor:
    """A signed-in local member uses an invitation: an active member at once, whatever the
    association's join policy (audited). Returns the association.

    Raises:
        NotFound: no such invitation. InvitationExpired, InvitationExhausted, InvitationRevoked: it
        cannot be used any more. Forbidden: not a local person, or blocked by the association.
        Conflict: already an active member (no use is spent).
    """
    if not member.local or member.type != "Person":
        raise Forbidden("only a member of this node uses an invitation")
    if not _well_formed(token):
        raise NotFound("no such invitation")
    now = node.clock()
    async with node.sessions.begin() as session:
        row = await _find(session, token)
        state = state_of(row, now)
        if state != "active":
            raise REFUSALS[state](DETAILS[state])
        group = await session.get(Actor, row.group_id)
        if group is None or group.deleted_at is not None:
            raise NotFound("no such invitation")
        blocked = await session.scalar(
            select(Block.id).where(Block.blocker_id == group.id, Block.blocked_id == member.id)
        )
        if blocked is not None:
            raise Forbidden("this association does not take you as a member")
        joined = await q.membership(session, group.id, member.id)
        if joined is not None and joined.state == "active":
            raise Conflict("already a member")
        await _spend(session, row, now)
        if joined is None:
            session.add(
                Membership(
                    group_id=group.id,
                    member_id=member.id,
                    role="member",
                    state="active",
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            joined.state, joined.updated_at = "active", now
        audit.record(
            session,
            "invitation.accept",
            now=now,
            group=group,
            by=member,
            target=member.iri,
            detail={"invitation": row.id, "member": member.iri},
        )
        session.expunge(group)
    log.info("invitation used", extra={"group": group.iri, "invitation": row.id})
    return group


async def _spend(session: Any, row: Invitation, now: datetime) -> None:
    """One use, taken only if one is left: the condition is checked by the database itself."""
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == row.id,
            Invitation.uses < Invitation.max_uses,
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(uses=Invitation.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise InvitationExhausted(DETAILS["exhausted"])


async def local_person(node: NodeContext, actor_id: int | None) -> Actor:
    """The caller's own actor, for the JSON API: a person of this node.

    Raises:
        Forbidden: anyone else (an association, a remote actor, nobody).
    """
    async with node.sessions() as session:
        actor = await session.get(Actor, actor_id) if actor_id is not None else None
    if actor is None or not actor.local or actor.type != "Person" or actor.deleted_at is not None:
        raise Forbidden("only a member of this node uses an invitation")
    return actor
