"""A member's rights over their account: deleting it (GDPR art. 17), and the deletion of a
remote person whose ``Delete`` we receive.

Deleting a local account, in one transaction (decision 40):

- every object the member wrote (posts, alerts, resources, proposals, replies) becomes a
  tombstone (410), and a ``Delete{Tombstone}`` of each goes to its audience and to every remote
  actor known to hold a copy (:func:`server.services.content.local.holders`), plus the remote members
  and followers of the local association it was posted into (they got it through the
  association's relay, not from the member);
- votes: a vote on a question still open is withdrawn (its rows go and the question's tally is
  recounted); a vote on a closed question stays counted, attached to the tombstone actor, so a
  decided result never changes after the fact. Only counts are ever published (no voter list), so
  nothing of the member's choice shows either way. Each vote's ``Note`` becomes a tombstone, and
  the ``Delete`` of a withdrawn vote goes to the question's author;
- memberships (here and pending or active on other nodes) and follows, both ways, end;
- tokens and web sessions are revoked at once, the account is disabled and its password
  unusable;
- the actor keeps a row as a tombstone (``deleted_at``): its IRI answers 410 Gone and its
  username can never be taken again, so nobody can impersonate the member later. Its keys stay
  to sign the ``Delete`` deliveries;
- one ``Delete`` of the Person actor goes to every remote actor that holds something of the
  member: followers, actors they follow, associations they belong to, the holders above.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import AS_PUBLIC
from federation.vocab.actors import render_actor
from federation.vocab.entraide import Kind
from server.db import queue
from server.db.models import (
    Account,
    Actor,
    AuditEntry,
    Follow,
    Media,
    Membership,
    Reaction,
    RemoteObject,
    Token,
    Vote,
    WebSession,
)
from server.services.actors.local import verify_password
from server.services.actors.profiles import local_actor_value
from server.services.content import polls
from server.services.content.local import holders
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import InvalidInput, NotFound
from server.services.federation import Federation
from server.services.media import uploads as media_service
from server.services.membership import following

log = logging.getLogger(__name__)

MAX_RECIPIENTS: Final = 20_000
"""Remote actors the ``Delete`` of an account goes to, at most (shared inboxes collapse them)."""
MAX_RELAYED_CHANGES: Final = 200
"""Objects of a deleted remote person whose deletion our associations relay on, at most."""
UNUSABLE_PASSWORD: Final = "!deleted"
"""Never the output of :func:`server.services.actors.local.hash_password`: nothing verifies against it."""


@dataclass(frozen=True, slots=True)
class AccountDeleted:
    actor_iri: str
    delete_iri: str
    objects: int
    votes_withdrawn: int
    recipients: int


async def check_password(session: AsyncSession, actor_id: int, password: str) -> None:
    """Raises InvalidInput (``field="password"``) unless ``password`` is the account's."""
    account = await session.get(Account, actor_id)
    if account is None or not verify_password(password[:1024], account.password_hash):
        raise InvalidInput("wrong password", field="password")


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


async def remote_iris(session: AsyncSession, ids: Iterable[int]) -> list[str]:
    """The IRIs of the live remote actors among ``ids``."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = await session.scalars(
        select(Actor.iri).where(Actor.id.in_(wanted), Actor.local.is_(False), Actor.deleted_at.is_(None))
    )
    return list(rows)


async def _group_audience(session: AsyncSession, group_id: int, visibility: str) -> list[int]:
    """Remote actors that got a member's object through a local association's relay."""
    group = await session.get(Actor, group_id)
    if group is None or not group.local or group.type != "Group":
        return []
    members = select(Membership.member_id).where(
        Membership.group_id == group_id, Membership.state == "active"
    )
    ids = list(await session.scalars(members))
    if visibility in ("public", "unlisted", "followers"):
        ids += list(
            await session.scalars(
                select(Follow.follower_id).where(Follow.followed_id == group_id, Follow.state == "accepted")
            )
        )
    return ids


async def delete_object(
    session: AsyncSession, fed: Federation, person: Actor, row: RemoteObject, *, now: datetime
) -> set[str]:
    """Tombstone one of the actor's objects (a member's, or an association's being deleted:
    ``actors/dissolution.py``) and publish its ``Delete``; returns the remote actors it went to
    beyond its addressing (they also get the actor's ``Delete``)."""
    also = set(await holders(session, row))
    if row.audience_id is not None:
        relayed = await _group_audience(session, row.audience_id, row.visibility)
        also.update(await remote_iris(session, relayed))
    to, cc = row.document.get("to", []), row.document.get("cc", [])
    row.deleted_at = now
    row.document = {"id": row.iri, "type": "Tombstone", "formerType": row.type, "deleted": _iso(now)}
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Delete",
        "object": {"id": row.iri, "type": "Tombstone"},
        "to": to,
        "cc": cc,
    }
    await publish(session, person, activity, visibility=row.visibility, now=now, also=sorted(also) or None)
    return also


async def _withdraw_votes(
    session: AsyncSession, fed: Federation, person: Actor, *, now: datetime
) -> tuple[int, set[str]]:
    """Votes on open questions go (and are recounted); votes on closed ones stay counted.
    Returns the withdrawn votes and the remote question authors told."""
    rows = (
        await session.execute(
            select(Vote, RemoteObject)
            .join(RemoteObject, RemoteObject.id == Vote.question_id)
            .where(Vote.voter_id == person.id)
        )
    ).all()
    withdrawn = 0
    told: set[str] = set()
    notes = {
        note.iri: note
        for note in await session.scalars(
            select(RemoteObject).where(
                RemoteObject.attributed_to_id == person.id,
                RemoteObject.kind == Kind.VOTE.value,
                RemoteObject.deleted_at.is_(None),
            )
        )
    }
    for vote, question in rows:
        if question.deleted_at is not None or polls.is_closed(question.document, now):
            continue
        await session.delete(vote)
        withdrawn += 1
        if question.local:
            await polls.schedule_tally(session, question.id, now=now)
            continue
        note = notes.pop(vote.note_iri, None) if vote.note_iri else None
        if note is not None:
            author = await session.get(Actor, question.attributed_to_id)
            await delete_object(session, fed, person, note, now=now)
            if author is not None and not author.local:
                told.add(author.iri)
    for note in notes.values():  # votes kept in a closed tally: their notes go quietly
        note.deleted_at = now
        note.document = {"id": note.iri, "type": "Tombstone", "formerType": note.type, "deleted": _iso(now)}
    return withdrawn, told


async def tombstone_actor(
    session: AsyncSession, fed: Federation, actor: Actor, recipients: Iterable[str], *, now: datetime
) -> tuple[Any, list[str]]:
    """The last step of deleting one of our actors (a member's account, or an association:
    ``actors/dissolution.py``): its row stays as a tombstone (410; the name can never be taken
    again; the keys stay to sign what follows), its profile is emptied, its avatar unlinked, and a
    ``Delete`` of the actor goes to ``recipients`` (capped at :data:`MAX_RECIPIENTS`), listed
    because its follows are gone by the time the fan-out runs. Returns the ``Delete`` and who it
    went to."""
    actor.deleted_at = now
    actor.updated_at = now
    actor.name = ""
    actor.summary = ""
    actor.discoverable = False
    actor.document = None
    # The avatar is no longer shown: the unused-uploads cleanup removes it.
    await session.execute(update(Media).where(Media.avatar_of_id == actor.id).values(avatar_of_id=None))
    listed = sorted(set(recipients))
    if len(listed) > MAX_RECIPIENTS:
        log.warning("actor delete: recipients capped", extra={"actor": actor.iri, "count": len(listed)})
        listed = listed[:MAX_RECIPIENTS]
    activity: dict[str, Any] = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Delete",
        "object": actor.iri,
        "to": [AS_PUBLIC],
        "cc": [actor.followers_iri] if actor.followers_iri else [],
    }
    published = await publish(
        session, actor, activity, visibility="public", now=now, priority=queue.Priority.NORMAL, also=listed
    )
    return published, listed


async def delete_account(fed: Federation, person_id: int, *, reason: str = "self") -> AccountDeleted:
    """Delete a local member's account (see the module's docstring); ``reason`` is audited.

    Raises:
        NotFound: no such live local account.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        person = await session.get(Actor, person_id, with_for_update=True)
        account = await session.get(Account, person_id)
        if person is None or not person.local or person.type != "Person" or person.deleted_at is not None:
            raise NotFound("no such account")
        if account is None:
            raise NotFound("no such account")
        # Sign-in and API access end first, in this transaction.
        await session.execute(
            update(Token)
            .where(Token.account_id == person_id, Token.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await session.execute(
            update(WebSession)
            .where(WebSession.account_id == person_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        account.disabled_at = now
        account.password_hash = UNUSABLE_PASSWORD

        recipients: set[str] = set()
        # Who follows them, whom they follow, the associations they belong to (any state).
        recipients.update(
            await remote_iris(
                session,
                await session.scalars(select(Follow.follower_id).where(Follow.followed_id == person_id)),
            )
        )
        recipients.update(
            await remote_iris(
                session,
                await session.scalars(select(Follow.followed_id).where(Follow.follower_id == person_id)),
            )
        )
        memberships = list(await session.scalars(select(Membership).where(Membership.member_id == person_id)))
        recipients.update(await remote_iris(session, (m.group_id for m in memberships)))

        withdrawn, told = await _withdraw_votes(session, fed, person, now=now)
        recipients.update(told)
        objects = list(
            await session.scalars(
                select(RemoteObject)
                .where(
                    RemoteObject.attributed_to_id == person_id,
                    RemoteObject.deleted_at.is_(None),
                    RemoteObject.kind != Kind.VOTE.value,
                )
                .order_by(RemoteObject.id)
            )
        )
        for row in objects:
            recipients.update(await delete_object(session, fed, person, row, now=now))

        for membership in memberships:
            group = await session.get(Actor, membership.group_id)
            if group is not None and group.local:
                session.add(
                    AuditEntry(
                        group_id=group.id,
                        by_actor_id=person_id,
                        action="member.account_deleted",
                        detail={"member": person.iri, "role": membership.role, "state": membership.state},
                        created_at=now,
                    )
                )
        await session.execute(delete(Membership).where(Membership.member_id == person_id))
        await session.execute(
            delete(Follow).where((Follow.follower_id == person_id) | (Follow.followed_id == person_id))
        )

        published, listed = await tombstone_actor(session, fed, person, recipients, now=now)
    fed.notify_worker()
    log.info(
        "account deleted",
        extra={"actor": person.iri, "reason": reason, "objects": len(objects), "recipients": len(listed)},
    )
    return AccountDeleted(person.iri, published.iri, len(objects), withdrawn, len(listed))


# --- a remote person deleted itself -------------------------------------------------------------


async def forget_remote_person(fed: Federation, actor_id: int) -> list[str]:
    """A remote actor's verified ``Delete`` of itself (a person, or a peer's association): its
    follows (both ways), memberships in our associations (and our people's in it), reactions and
    votes on our open questions go (closed tallies stay, as for our own members), and every object
    of it we hold becomes a tombstone. Returns the IRIs of the
    objects tombstoned (so associations that relayed them can relay the change)."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.get(Actor, actor_id)
        if row is None or row.local:
            return []
        row.deleted_at = now
        await session.execute(
            delete(Follow).where((Follow.follower_id == actor_id) | (Follow.followed_id == actor_id))
        )
        # Its memberships in our associations, and ours in it when a peer's association is deleted.
        await session.execute(
            delete(Membership).where((Membership.member_id == actor_id) | (Membership.group_id == actor_id))
        )
        await session.execute(delete(Reaction).where(Reaction.actor_id == actor_id))
        votes = (
            await session.execute(
                select(Vote, RemoteObject)
                .join(RemoteObject, RemoteObject.id == Vote.question_id)
                .where(Vote.voter_id == actor_id, RemoteObject.local.is_(True))
            )
        ).all()
        for vote, question in votes:
            if question.deleted_at is None and not polls.is_closed(question.document, now):
                await session.delete(vote)
                await polls.schedule_tally(session, question.id, now=now)
        objects = list(
            await session.scalars(
                select(RemoteObject).where(
                    RemoteObject.attributed_to_id == actor_id, RemoteObject.deleted_at.is_(None)
                )
            )
        )
        for obj in objects:
            obj.deleted_at = now
            obj.document = {"id": obj.iri, "type": "Tombstone", "formerType": obj.type}
    return [obj.iri for obj in objects]


# --- the member's profile and settings -----------------------------------------------------------

MAX_PROFILE_NAME: Final = 100
MAX_PROFILE_SUMMARY: Final = 2000


def _profile_text(value: str, field: str, limit: int) -> str:
    if "\x00" in value:
        raise InvalidInput("must not contain a NUL character", field=field)
    value = value.replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise InvalidInput(f"at most {limit} characters", field=field)
    return value


def _media_key(fed: Federation, value: str) -> str:
    """The upload key of ``value``: a bare key, or this node's URL of the file."""
    value = value.strip()
    prefix = fed.node.uris.media("")
    if value.startswith(prefix):
        value = value.removeprefix(prefix)
    return value


async def _set_avatar(session: AsyncSession, fed: Federation, person: Actor, value: str) -> bool:
    """Link (or unlink, for ``""``) the person's avatar; whether it changed."""
    current = await media_service.avatar_of(session, person.id)
    if not value.strip():
        if current is None:
            return False
        current.avatar_of_id = None
        await session.flush()
        return True
    key = _media_key(fed, value)
    # Unknown keys and other people's uploads get the same answer.
    unknown = InvalidInput("no such upload of yours", field="icon")
    if not media_service.KEY_RE.fullmatch(key):
        raise unknown
    media = await session.scalar(select(Media).where(Media.key == key).with_for_update())
    if media is None or media.owner_id != person.id:
        raise unknown
    if current is not None and current.id == media.id:
        return False
    if media.object_id is not None:
        raise InvalidInput("this upload is attached to a post", field="icon")
    if media.content_type not in media_service.AVATAR_TYPES:
        raise InvalidInput(
            f"an avatar is a PNG, JPEG, WebP or GIF image, not {media.content_type}", field="icon"
        )
    if current is not None:
        current.avatar_of_id = None
        await session.flush()  # the unique avatar_of_id: unlink the old one first
    media.avatar_of_id = person.id
    await session.flush()
    return True


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    actor: Actor
    changed: bool
    update_iri: str | None


async def update_profile(
    fed: Federation,
    person_id: int,
    *,
    name: str | None = None,
    summary: str | None = None,
    discoverable: bool | None = None,
    avatar: str | None = None,
    manually_approves_followers: bool | None = None,
) -> ProfileChanged:
    """Change a member's name, summary (plain text: escaped and split into paragraphs when
    rendered), discoverability, avatar or whether they approve followers by hand (turned off,
    the follows it held are accepted, except those from silenced domains); ``None`` keeps a
    value. ``avatar`` is the key (or ``/media/`` URL) of an image the member uploaded and has not
    attached to anything, or ``""`` to remove the avatar; a replaced avatar is left to the
    unused-uploads cleanup. When something changed, an ``Update{Person}`` with the new actor
    document goes to the followers and to the remote associations the member belongs to, which
    refetch the profile from here.

    Raises:
        NotFound: no such live local account.
        InvalidInput: a name or summary too long or with a NUL, an avatar that is not one of
            the member's unused image uploads (``field`` names it: ``icon`` for the avatar).
    """
    new_name = _profile_text(name, "name", MAX_PROFILE_NAME) if name is not None else None
    new_summary = _profile_text(summary, "summary", MAX_PROFILE_SUMMARY) if summary is not None else None
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        person = await session.get(Actor, person_id, with_for_update=True)
        if person is None or not person.local or person.type != "Person" or person.deleted_at is not None:
            raise NotFound("no such account")
        changes = {
            key: value
            for key, value in (
                ("name", new_name),
                ("summary", new_summary),
                ("discoverable", discoverable),
                ("manually_approves_followers", manually_approves_followers),
            )
            if value is not None and getattr(person, key) != value
        }
        avatar_changed = avatar is not None and await _set_avatar(session, fed, person, avatar)
        if not changes and not avatar_changed:
            return ProfileChanged(person, False, None)
        for key, value in changes.items():
            setattr(person, key, value)
        changed = sorted([*changes, *(["icon"] if avatar_changed else [])])
        person.updated_at = now
        await session.flush()
        if changes.get("manually_approves_followers") is False:
            await following.accept_held_follows(fed, session, person, now=now)
        # The actor document keeps its own @context (security, toot: terms such as discoverable),
        # which JSON-LD readers apply to the embedded object.
        document = render_actor(await local_actor_value(session, fed.node.uris, person))
        groups = await remote_iris(
            session,
            await session.scalars(
                select(Membership.group_id).where(
                    Membership.member_id == person_id, Membership.state == "active"
                )
            ),
        )
        activity: dict[str, Any] = {
            "id": new_activity_iri(fed.node.uris),
            "type": "Update",
            "object": document,
            "to": [AS_PUBLIC],
            "cc": [person.followers_iri] if person.followers_iri else [],
        }
        published = await publish(
            session, person, activity, visibility="public", now=now, also=groups or None
        )
    fed.notify_worker()
    log.info("profile updated", extra={"actor": person.iri, "changed": changed})
    return ProfileChanged(person, True, published.iri)
