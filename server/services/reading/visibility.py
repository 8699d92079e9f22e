"""The single read filter. Every read path asks this module what a viewer may see.

Visibility levels: ``public``, ``unlisted``, ``followers``, ``members``, ``direct``. Members-only
content is visible only to active members of the owning association (and the association's
own admins); nothing here ever widens an audience.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE, Visibility
from server.db.models import Actor, Follow, InboxActivity, InboxItem, Membership, RemoteObject
from server.db.queries import actors as q
from server.services.moderation import blocks

ACTING_ROLES = ("admin", "moderator")
"""Roles that act as the association (post, edit, answer joins) and so read all it sent."""


class ViewerKind(StrEnum):
    ANONYMOUS = "anonymous"
    LOCAL = "local"  # a local account, by bearer token
    REMOTE = "remote"  # a remote actor, by signed fetch


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is reading: nobody, a local account, or a remote actor that signed the request."""

    kind: ViewerKind
    actor_id: int | None = None
    actor_iri: str | None = None
    scope: str | None = None

    @classmethod
    def anonymous(cls) -> Viewer:
        return cls(ViewerKind.ANONYMOUS)


ANONYMOUS = Viewer.anonymous()

PUBLIC_OUTBOX: tuple[str, ...] = (Visibility.PUBLIC, Visibility.UNLISTED)
"""What anyone may list of an outbox, and all that a reader with no actor may: such a page needs
no session to decide it (decision 99)."""


async def role_in(session: AsyncSession, viewer: Viewer, group: Actor) -> str | None:
    """The viewer's active role in a local association, or None."""
    if viewer.actor_id is None:
        return None
    membership = await q.membership(session, group.id, viewer.actor_id)
    if membership is None or membership.state != "active":
        return None
    return membership.role


async def outbox_levels(session: AsyncSession, viewer: Viewer, owner: Actor) -> tuple[str, ...]:
    """Which visibility levels of ``owner``'s outbox the viewer may list."""
    levels = PUBLIC_OUTBOX
    if viewer.actor_id is None:
        return levels
    member = owner.type == "Group" and await role_in(session, viewer, owner) is not None
    if member or await follows(session, viewer, owner):
        levels += (Visibility.FOLLOWERS,)
    if member:
        levels += (Visibility.MEMBERS,)
    acting = owner.type == "Group" and await role_in(session, viewer, owner) in ACTING_ROLES
    if viewer.actor_id is not None and (viewer.actor_id == owner.id or acting):
        levels += (Visibility.FOLLOWERS, Visibility.MEMBERS, Visibility.DIRECT)
    return tuple(dict.fromkeys(levels))


async def follows(session: AsyncSession, viewer: Viewer, owner: Actor) -> bool:
    """Is the viewer an accepted follower of ``owner``?"""
    if viewer.actor_id is None:
        return False
    found = await session.scalar(
        select(Follow.id).where(
            Follow.follower_id == viewer.actor_id, Follow.followed_id == owner.id, Follow.state == "accepted"
        )
    )
    return found is not None


async def can_read(
    session: AsyncSession,
    viewer: Viewer,
    owner: Actor,
    level: str,
    *,
    addressed: tuple[str, ...] = (),
    audience: Actor | None = None,
) -> bool:
    """The single rule for reading one object or activity of ``owner`` at visibility ``level``.

    public/unlisted: anyone. followers: the owner, its accepted followers, and for an
    association its members. members: the owner and the active members of the association the
    content belongs to — ``owner`` itself, or the ``audience`` association a member posted into
    (FEP-1b12). direct: the owner and the actors it addressed. An association's admins and
    moderators read everything the association sent and everything posted into it, except
    direct messages between others (they act as it). Anything else: nobody.
    """
    if level in PUBLICLY_READABLE:
        return True
    if viewer.actor_id is None:
        return False
    if viewer.actor_id == owner.id:
        return True
    group = owner if owner.type == "Group" else audience if _is_group(audience) else None
    role = await role_in(session, viewer, group) if group is not None else None
    if role in ACTING_ROLES and (group is owner or level != "direct"):
        return True  # admins and moderators act as the association: they read all it sent
    member = role is not None
    if level == "followers":
        return member or await follows(session, viewer, owner)
    if level == "members":
        return member
    if level == "direct":
        return viewer.actor_iri is not None and viewer.actor_iri in addressed
    return False


def _is_group(actor: Actor | None) -> bool:
    return actor is not None and actor.type == "Group"


def addressed_in(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The IRIs a document addresses in ``to`` and ``cc`` (a string or a list each)."""
    found: list[Any] = []
    for field in ("to", "cc"):
        value = document.get(field)
        found.extend([value] if isinstance(value, str) else value if isinstance(value, list) else [])
    return tuple(v for v in found if isinstance(v, str))


def _delivered(viewer_id: int) -> Any:
    """The objects whose ``Create`` by their author was filed in this actor's inbox (accepted)."""
    return (
        select(InboxActivity.object_iri)
        .join(InboxItem, InboxItem.inbox_activity_id == InboxActivity.id)
        .where(
            InboxItem.actor_id == viewer_id,
            InboxItem.accepted.is_(True),
            InboxActivity.type == "Create",
        )
    )


DELIVERED_KEY = "visibility.delivered"


async def preload_delivered(session: AsyncSession, viewer: Viewer, object_iris: list[str]) -> None:
    """Answer :func:`was_delivered` for these objects from one query, for the rest of the session
    (a listing checks many rows; one statement per page, not one per row: case 51)."""
    if viewer.actor_id is None or viewer.kind is not ViewerKind.LOCAL or not object_iris:
        return
    rows = await session.execute(
        _delivered(viewer.actor_id)
        .add_columns(InboxActivity.actor_iri)
        .where(InboxActivity.object_iri.in_(sorted(set(object_iris))))
    )
    known: dict[str, set[tuple[str, str]]] = session.info.setdefault(DELIVERED_KEY, {})
    found = {(iri, author) for iri, author in rows.all()}
    for iri in object_iris:
        known.setdefault(f"{viewer.actor_id} {iri}", set()).update(x for x in found if x[0] == iri)


async def was_delivered(session: AsyncSession, viewer: Viewer, owner: Actor, object_iri: str) -> bool:
    """Did ``owner`` address ``object_iri``'s ``Create`` to ``viewer`` (a local actor), blind
    (``bto``/``bcc``) or not? Its author sent it to them: they read it whatever its level."""
    if viewer.actor_id is None or viewer.kind is not ViewerKind.LOCAL:
        return False
    preloaded = session.info.get(DELIVERED_KEY, {}).get(f"{viewer.actor_id} {object_iri}")
    if preloaded is not None:
        return (object_iri, owner.iri) in preloaded
    found = await session.scalar(
        _delivered(viewer.actor_id)
        .where(InboxActivity.object_iri == object_iri, InboxActivity.actor_iri == owner.iri)
        .limit(1)
    )
    return found is not None


async def activity_filed_for(session: AsyncSession, viewer: Viewer, activity_iri: str) -> bool:
    """Was our activity ``activity_iri`` filed in ``viewer``'s inbox (it addressed them)?"""
    if viewer.actor_id is None or viewer.kind is not ViewerKind.LOCAL:
        return False
    found = await session.scalar(
        select(InboxItem.id)
        .join(InboxActivity, InboxItem.inbox_activity_id == InboxActivity.id)
        .where(
            InboxActivity.iri == activity_iri,
            InboxItem.actor_id == viewer.actor_id,
            InboxItem.accepted.is_(True),
        )
        .limit(1)
    )
    return found is not None


async def can_read_object(session: AsyncSession, viewer: Viewer, row: RemoteObject) -> bool:
    """May ``viewer`` read this stored object, ours or a peer's? :func:`can_read` with the
    object's author, level, addressees and the association it was posted into; and an actor its
    author addressed it to (its ``Create`` filed in their inbox, ``bto``/``bcc`` included) reads it."""
    if not row.local and await blocks.is_hidden(session, viewer.actor_id, row.attributed_to_id):
        return False  # a suspended domain, a node-blocked actor, a silenced one not followed
    if not row.local and await blocks.is_blocked_in_its_association(session, row):
        return False  # its association blocked its author (decision 78)
    if row.visibility in PUBLICLY_READABLE:
        return True
    owner = await session.get(Actor, row.attributed_to_id)
    if owner is None:
        return False
    audience = await session.get(Actor, row.audience_id) if row.audience_id is not None else None
    return await can_read(
        session, viewer, owner, row.visibility, addressed=addressed_in(row.document), audience=audience
    ) or await was_delivered(session, viewer, owner, row.iri)


def readable_by(viewer: Viewer) -> ColumnElement[bool]:
    """A SQL condition on ``objects`` that every row ``viewer`` may read satisfies (see
    :func:`_readable_by`, built once per viewer and kept: building it cost more than running it)."""
    return _readable_by(viewer.actor_id)


@functools.lru_cache(maxsize=1024)
def _readable_by(actor_id: int | None) -> ColumnElement[bool]:
    """A SQL condition on ``objects`` that every row the viewer ``actor_id`` (``None``: anonymous)
    may read satisfies.

    Content of hidden authors (``blocks.hidden_authors``: suspended domains, node-blocked actors,
    silenced domains the viewer does not follow) is left out for everyone, and so is content whose
    association blocked its author (``blocks.blocked_in_its_association``, decision 78).
    It lets a listing skip, in the database, the rows the viewer certainly may not read (case 51);
    :func:`can_read_object` still decides on each row left, so this only ever narrows. For an
    anonymous reader it is exact: public and unlisted rows. For an actor: those, plus its own, what
    was sent by or posted into an association where it is active, followers-only rows of actors it
    follows, and direct rows (whose addressees are checked per row).
    """
    shown = and_(
        RemoteObject.attributed_to_id.not_in(blocks.hidden_authors(actor_id)),
        ~blocks.blocked_in_its_association(),
    )
    public = RemoteObject.visibility.in_(sorted(level.value for level in PUBLICLY_READABLE))
    if actor_id is None:
        return and_(public, shown)
    groups = select(Membership.group_id).where(Membership.member_id == actor_id, Membership.state == "active")
    followed = select(Follow.followed_id).where(Follow.follower_id == actor_id, Follow.state == "accepted")
    readable = or_(
        public,
        RemoteObject.attributed_to_id == actor_id,
        RemoteObject.attributed_to_id.in_(groups),
        RemoteObject.audience_id.in_(groups),
        and_(RemoteObject.visibility == "followers", RemoteObject.attributed_to_id.in_(followed)),
        RemoteObject.visibility == "direct",
        RemoteObject.iri.in_(_delivered(actor_id)),
    )
    return and_(shown, readable)


async def can_list_members(session: AsyncSession, viewer: Viewer, group: Actor) -> bool:
    """The association chooses: ``public`` lists to anyone, ``members`` to members, ``hidden`` to admins."""
    if group.members_visibility == "public":
        return True
    role = await role_in(session, viewer, group)
    if group.members_visibility == "members":
        return role is not None
    return role == "admin"


async def can_list_followers(session: AsyncSession, viewer: Viewer, owner: Actor) -> bool:
    """Follower lists reveal who follows a patient association: only the owner and its admins see them.

    Everyone else gets ``totalItems`` only (as Lemmy does for communities). The same rule holds
    for ``following`` (security case 56): whom a member follows says as much about the member.
    """
    if viewer.actor_id is not None and viewer.actor_id == owner.id:
        return True
    return owner.type == "Group" and await role_in(session, viewer, owner) == "admin"


FEED_LEVELS: tuple[str, ...] = (Visibility.PUBLIC,)


def feed_levels() -> tuple[str, ...]:
    """The feeds channel's rule (Atom, RSS, JSON Feed): ``public`` objects only, for everyone.

    Feeds are read anonymously by institutions and kept by any cache or aggregator, so the
    request's credentials are never looked at and no viewer widens them. ``unlisted`` is left
    out too: it means "reachable, but not listed", and a feed is a listing.
    """
    return FEED_LEVELS
