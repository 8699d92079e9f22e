"""What each activity does once verified and stored: the handlers registered on the InboxRouter.

Every authorisation compares the *stored* owner with the verified actor, never a payload's
claims (security case 18): Accept/Reject only from the Follow's target and for its exact id,
Undo only from the original actor, Update/Delete only from the object's stored author.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from federation.audience import PUBLICLY_READABLE
from federation.compat import lemmy
from federation.errors import FederationError
from federation.fetch import FetchTemporaryFailure
from federation.inbox import InboundActivity, InboxRouter
from federation.types import AS_PUBLIC, Iri
from federation.vocab import events as event_wire
from federation.vocab.activities import (
    Accept,
    Activity,
    Announce,
    Block,
    Create,
    Delete,
    Flag,
    Follow,
    Join,
    Leave,
    Like,
    Move,
    Reject,
    Remove,
    Undo,
    Update,
)
from federation.vocab.entraide import Kind, kind_of
from federation.vocab.objects import RemoteActor
from server.db.models import Activity as ActivityRow
from server.db.models import Actor, Reaction, Relay, RemoteObject, Report
from server.db.models import Block as BlockRow
from server.db.models import Follow as FollowRow
from server.db.models import Membership as MembershipRow
from server.db.queries import actors as actor_queries
from server.services.accounts import erasure as accounts
from server.services.actors.remote import fetch_and_store_actor
from server.services.content import endorsements, polls
from server.services.content import local as content_service
from server.services.content import remote as objects
from server.services.content.sanitize import plain_text
from server.services.events import participation
from server.services.events import remote as events_remote
from server.services.federation import Federation
from server.services.inbox.process import add_inbox_items, file_in_inboxes
from server.services.membership import following
from server.services.membership import members as membership
from server.services.membership.standing import is_suspended
from server.services.moderation import blocks, reports
from server.services.reading import visibility

log = logging.getLogger(__name__)

router: InboxRouter[Federation] = InboxRouter()


def _embedded_raw(inbound: InboundActivity) -> Any:
    return inbound.document.get("object")


async def _local_recipients(fed: Federation, activity: Activity, author: Actor) -> set[int]:
    """Local actors an activity concerns: those addressed, and local followers of its author
    when it is addressed to the public or to the author's followers."""
    async with fed.node.sessions() as session:
        return await _recipients_in(session, fed, activity, author)


async def _file_for_recipients(fed: Federation, activity: Activity, author: Actor) -> None:
    """File an accepted activity in the inboxes of its local recipients: found and filed in one
    transaction, usually two statements (decision 89)."""
    async with fed.node.sessions.begin() as session:
        await file_in_inboxes(session, activity.id, await _recipients_in(session, fed, activity, author))


async def _recipients_in(session: Any, fed: Federation, activity: Activity, author: Actor) -> set[int]:
    """:func:`_local_recipients` in the caller's session."""
    ids: set[int] = set()
    addressing = activity.addressing.recipients
    for iri in addressing:
        ref = fed.node.uris.local_actor_ref(iri)
        if ref is not None and ref.part is None:
            local = await actor_queries.local_by_handle(
                session, "Group" if ref.kind == "group" else "Person", ref.handle
            )
            if local is not None:
                ids.add(local.id)
    members = objects.members_of(author)
    if members is not None and members in addressing:  # an association to its members
        rows = await session.execute(
            select(MembershipRow.member_id)
            .join(Actor, Actor.id == MembershipRow.member_id)
            .where(
                MembershipRow.group_id == author.id,
                MembershipRow.state == "active",
                Actor.local.is_(True),
            )
        )
        ids.update(r[0] for r in rows)
    if AS_PUBLIC in addressing or (author.followers_iri and author.followers_iri in addressing):
        rows = await session.execute(
            select(FollowRow.follower_id)
            .join(Actor, Actor.id == FollowRow.follower_id)
            .where(FollowRow.followed_id == author.id, FollowRow.state == "accepted", Actor.local.is_(True))
        )
        ids.update(r[0] for r in rows)
    return ids


# --- follows -----------------------------------------------------------------------------------


@router.on(Follow)
async def on_follow(fed: Federation, follow: Follow, inbound: InboundActivity) -> None:
    if follow.object_id is None:
        return
    await following.receive_follow(fed, follow, follower=await fed.actor(follow.actor))


async def _answered(fed: Federation, answer: Accept | Reject, *, accepted: bool) -> None:
    """An answer to one of our Follows or Joins, matched by its id and the answering actor; filed
    in the inbox of the local actor who asked (Mastodon's ``Accept`` addresses nobody)."""
    asked = answer.object_id
    if asked is None:
        return
    async with fed.node.sessions() as session:
        askers = set(
            await session.scalars(
                select(FollowRow.follower_id)
                .where(FollowRow.follow_iri == asked)
                .union(select(MembershipRow.member_id).where(MembershipRow.join_iri == asked))
            )
        )
    matched = await following.follow_answered(
        fed, follow_iri=asked, target_iri=answer.actor, accepted=accepted
    ) or await membership.join_answered(fed, join_iri=asked, group_iri=answer.actor, accepted=accepted)
    if matched:
        await add_inbox_items(fed, answer.id, askers)
        return
    participants = await participation.join_answered(
        fed, join_iri=asked, answerer_iri=answer.actor, accepted=accepted
    )
    if participants:
        await add_inbox_items(fed, answer.id, participants)


@router.on(Accept)
async def on_accept(fed: Federation, accept: Accept, inbound: InboundActivity) -> None:
    await _answered(fed, accept, accepted=True)


@router.on(Reject)
async def on_reject(fed: Federation, reject: Reject, inbound: InboundActivity) -> None:
    await _answered(fed, reject, accepted=False)


# --- membership --------------------------------------------------------------------------------


@router.on(Join)
async def on_join(fed: Federation, join: Join, inbound: InboundActivity) -> None:
    """A request to join one of our associations, or to take part in one of our events (the
    joiner is the verified actor; Mobilizon's message is ``participationMessage``)."""
    if join.object_id is None or not fed.node.uris.is_local(join.object_id):
        return
    if await _is_event(fed, join.object_id):
        await participation.receive_join(
            fed,
            join_iri=join.id,
            event_iri=join.object_id,
            person=await fed.actor(join.actor),
            message=event_wire.participation_message(inbound.document),
        )
        return
    await membership.receive_join(
        fed, join_iri=join.id, group_iri=join.object_id, member=await fed.actor(join.actor)
    )


async def _is_event(fed: Federation, object_iri: str) -> bool:
    async with fed.node.sessions() as session:
        return await events_remote.is_event(session, object_iri)


@router.on(Leave)
async def on_leave(fed: Federation, leave: Leave, inbound: InboundActivity) -> None:
    if leave.object_id is None or not fed.node.uris.is_local(leave.object_id):
        return
    if await _is_event(fed, leave.object_id):
        await participation.receive_leave(fed, event_iri=leave.object_id, person=await fed.actor(leave.actor))
        return
    await membership.receive_leave(fed, group_iri=leave.object_id, member=await fed.actor(leave.actor))


@router.on(Remove)
async def on_remove(fed: Federation, remove: Remove, inbound: InboundActivity) -> None:
    """A remote association removed one of our people: forget that membership (only the group
    itself may say so: the verified actor must be the group)."""
    if remove.object_id is None or fed.node.uris.local_actor_ref(remove.object_id) is None:
        return
    async with fed.node.sessions.begin() as session:
        group = await actor_queries.by_iri(session, remove.actor)
        person = await actor_queries.by_iri(session, remove.object_id)
        if group is None or person is None or group.local or group.type != "Group":
            return
        await session.execute(
            delete(MembershipRow).where(
                MembershipRow.group_id == group.id, MembershipRow.member_id == person.id
            )
        )


@router.on(Undo)
async def on_undo(fed: Federation, undo: Undo, inbound: InboundActivity) -> None:
    """Undo a Follow, Like or Announce — only the original activity's own actor may."""
    target = undo.object_id
    if target is None:
        return
    actor = await fed.actor(undo.actor)
    async with fed.node.sessions.begin() as session:
        removed = await session.execute(
            delete(FollowRow).where(FollowRow.follow_iri == target, FollowRow.follower_id == actor.id)
        )
        reactions = await session.execute(
            delete(Reaction).where(Reaction.activity_iri == target, Reaction.actor_id == actor.id)
        )
        await session.execute(delete(Relay).where(Relay.announce_iri == target, Relay.relayer_id == actor.id))
    log.info(
        "undo applied",
        extra={
            "activity": target,
            "follows": getattr(removed, "rowcount", None),
            "reactions": getattr(reactions, "rowcount", None),
        },
    )


# --- content -----------------------------------------------------------------------------------


@router.on(Create)
async def on_create(fed: Federation, create: Create, inbound: InboundActivity) -> None:
    if create.object is None:
        return
    author = await fed.actor(create.actor)
    content, raw = await objects.resolve_content(
        fed, create.object.id, create.object.value, _embedded_raw(inbound)
    )
    if content is None or raw is None:
        return
    if content.type == "Endorsement":
        await endorsements.receive(fed, author, raw)
        return
    in_reply_to = content.in_reply_to
    if kind_of(content) is Kind.VOTE and in_reply_to is not None and fed.node.uris.is_local(in_reply_to):
        # A vote is counted, not stored as a post (Mastodon's shape: Note{name, inReplyTo}).
        if content.author == author.iri and content.name is not None:
            await polls.receive(
                fed, author, in_reply_to, content.name, activity_iri=create.id, note_iri=content.id
            )
        return
    groups = await _group_gate(fed, content, author)
    if groups is None:
        return  # addressed to our associations by someone who may not post there
    if objects.dropped_early(fed, content, author):
        return  # on the facts the inbox lane read before this run: no session (decision 102)
    # Stored and filed for its recipients in one transaction (decision 89); run again after a
    # crash, the stored row is found and filed again (an upsert). Nothing to commit when dropped.
    async with fed.node.sessions() as session:
        row = await objects.store_object_in(session, fed, content, raw, author, now=fed.node.clock())
        if row is not None:
            await file_in_inboxes(session, create.id, await _recipients_in(session, fed, create, author))
            await session.commit()
    if row is not None:
        if content.type == "Event":
            await events_remote.record(fed, row.iri, raw, updated=content.updated)
        for group in groups:
            await content_service.relay_member_activity(fed, group, inbound.document, row)


async def _group_gate(fed: Federation, content: Any, author: Actor) -> list[Actor] | None:
    """FEP-1b12: which of our associations relay this object, or None when it is refused.

    A post *into* one of our associations names it as ``audience`` or addresses its members
    collection: only its active members post there, so read-only subscribers and everyone else
    are refused and nothing is stored. Merely addressing or mentioning an association (a
    Mastodon user thanking it) is not a post into it and is kept like any mention. Replies come
    from anyone unless the association takes them from members only (``replies_policy``). The
    association relays what its active members address to it (returned list).
    """
    into: set[str] = set()
    addressed: set[str] = set()
    for iri in (*content.audience, *content.to, *content.cc):
        ref = fed.node.uris.local_actor_ref(iri)
        if ref is None or ref.kind != "group":
            continue
        if ref.part == "members" or (ref.part is None and iri in content.audience):
            into.add(ref.handle)
        elif ref.part is None:
            addressed.add(ref.handle)
    if not into and not addressed:
        return []
    relaying: list[Actor] = []
    async with fed.node.sessions() as session:
        for handle in sorted(into | addressed):
            group = await actor_queries.local_by_handle(session, "Group", handle)
            if group is None:
                continue
            member = await membership.is_active_member(session, group.id, author.id)
            if member and is_suspended(
                await actor_queries.membership(session, group.id, author.id), fed.node.clock()
            ):
                log.info(
                    "post into an association refused: the member is suspended",
                    extra={"group": group.iri, "actor": author.iri},
                )
                return None
            if member:
                relaying.append(group)
                continue
            if handle in into and content.in_reply_to is None:
                log.info(
                    "post into an association refused: not a member",
                    extra={"group": group.iri, "actor": author.iri},
                )
                return None
            if content.in_reply_to is not None and group.replies_policy == "members":
                log.info(
                    "reply refused: the association takes replies from members only",
                    extra={"group": group.iri, "actor": author.iri},
                )
                return None
    return relaying


@router.on(Update)
async def on_update(fed: Federation, update: Update, inbound: InboundActivity) -> None:
    """An actor's own profile is refetched from its origin (embedded keys are never trusted,
    security case 8); an object is updated only by its stored author."""
    target = update.object_id
    if target is None:
        return
    if target == update.actor:
        await fetch_and_store_actor(fed.node, fed.transport, update.actor, policy=fed.policy)
        return
    if update.object is not None and isinstance(update.object.value, RemoteActor):
        return  # another actor's profile: ignored
    author = await fed.actor(update.actor)
    content, raw = await objects.resolve_content(
        fed, target, update.object.value if update.object else None, _embedded_raw(inbound)
    )
    if content is None or raw is None:
        return
    if not await objects.update_object(fed, content, raw, author, now=fed.node.clock()):
        # Mastodon treats an Update of an unknown object as a Create (when relevant).
        if await objects.store_object(fed, content, raw, author, now=fed.node.clock()) is not None:
            await _record_event(fed, content, raw)
            await _file_for_recipients(fed, update, author)
        return
    recipients = await _local_recipients(fed, update, author)
    if await _record_event(fed, content, raw):
        # Our people taking part hear of every change, a cancellation first of all.
        recipients |= await events_remote.participants_here(fed, target)
    await add_inbox_items(fed, update.id, recipients)
    await content_service.relay_change(fed, target)


async def _record_event(fed: Federation, content: Any, raw: dict[str, Any]) -> bool:
    """A peer's ``Event`` stored or updated: its calendar facts follow (True when recorded)."""
    if content.type != "Event" or content.id is None:
        return False
    return await events_remote.record(fed, content.id, raw, updated=content.updated) is not None


@router.on(Delete)
async def on_delete(fed: Federation, delete_: Delete, inbound: InboundActivity) -> None:
    target = delete_.object_id
    if target is None:
        return
    now = fed.node.clock()
    async with fed.node.sessions() as session:
        actor = await actor_queries.by_iri(session, delete_.actor)
        other_actor = None if target == delete_.actor else await actor_queries.by_iri(session, target)
    if actor is None or actor.local:
        return
    if other_actor is not None:
        # Only an actor deletes itself (security case 18e): a Delete naming another actor is
        # dropped, leaving no tombstone under that actor's IRI either.
        log.info("delete refused: names another actor", extra={"actor": actor.iri, "object": target})
        return
    if target == delete_.actor:
        # The actor deletes itself (verified signature): its follows, memberships, reactions,
        # open votes and content go; a tombstone row stays (decision 40).
        gone = await accounts.forget_remote_person(fed, actor.id)
        for iri in gone[: accounts.MAX_RELAYED_CHANGES]:
            await content_service.relay_change(fed, iri)
        log.info("remote actor deleted", extra={"actor": actor.iri, "objects": len(gone)})
        return
    if await endorsements.withdraw(fed, actor, target):
        return
    if await objects.tombstone(fed, target, actor, now=now):
        await _file_for_recipients(fed, delete_, actor)
        await content_service.relay_change(fed, target)


@router.on(Announce)
async def on_announce(fed: Federation, announce: Announce, inbound: InboundActivity) -> None:
    """A boost of one of our objects is counted; a boost by an actor we follow brings the
    object, fetched from its origin (embedded copies of other actors' objects are never
    trusted: security case 16). A Group relaying the ``Create`` it received (FEP-1b12, Lemmy's
    ``Announce{Create{Page}}``) boosts the created object, not the activity."""
    target, wrapped = _announced(announce, inbound)
    if target is None:
        return
    announcer = await fed.actor(announce.actor)
    now = fed.node.clock()
    if fed.node.uris.is_local(target):
        await _boost_of_ours(fed, announce, announcer, target, wrapped, now)
    else:
        await _relay_of_theirs(fed, announce, announcer, target, wrapped, now)


def _announced(announce: Announce, inbound: InboundActivity) -> tuple[Iri | None, Iri | None]:
    """What an ``Announce`` boosts, and the ``Create`` it wraps when a group relays a member's
    activity from another host (FEP-1b12 across nodes: the embedded copy is not trusted, the
    activity and its object are fetched from their origin)."""
    relayed = lemmy.relayed_activity(announce)
    if isinstance(relayed, Create) and relayed.object_id is not None:
        return relayed.object_id, None
    if relayed is None and _wraps_create(inbound.document.get("object")):
        return announce.object_id, announce.object_id
    return announce.object_id, None


async def _boost_of_ours(
    fed: Federation, announce: Announce, announcer: Actor, target: Iri, wrapped: Iri | None, now: datetime
) -> None:
    """A peer boosts or relays one of our objects."""
    async with fed.node.sessions.begin() as session:
        if wrapped is not None:  # an association relaying one of our Creates: its object
            target = (
                await session.scalar(
                    select(ActivityRow.object_iri).where(
                        ActivityRow.iri == wrapped, ActivityRow.type == "Create"
                    )
                )
                or target
            )
        level = await session.scalar(
            select(RemoteObject.visibility).where(
                RemoteObject.iri == target,
                RemoteObject.local.is_(True),
                RemoteObject.deleted_at.is_(None),
            )
        )
        # Only public boosts count (case 42); an association relaying one of our members'
        # posts to its members (FEP-1b12) is filed for the local members it addresses.
        if level in PUBLICLY_READABLE:
            session.add(
                Reaction(
                    activity_iri=announce.id,
                    type="Announce",
                    actor_id=announcer.id,
                    object_iri=target,
                    created_at=now,
                )
            )
        filed = level in PUBLICLY_READABLE or (level == "members" and announcer.type == "Group")
        if filed:
            await _record_relay(session, announce.id, announcer.id, target, now)
    if filed:
        await _file_for_recipients(fed, announce, announcer)


async def _relay_of_theirs(
    fed: Federation, announce: Announce, announcer: Actor, target: Iri, wrapped: Iri | None, now: datetime
) -> None:
    """An actor heard here relays a peer's object: stored once, fetched from its origin."""
    async with fed.node.sessions() as session:
        heard = await _heard_here(session, announcer.id)
    if not heard:
        return
    if wrapped is not None:
        found = await objects.object_of_activity(fed, wrapped)
        if found is None:
            return
        target = Iri(found)
    async with fed.node.sessions() as session:
        known = await session.scalar(select(RemoteObject).where(RemoteObject.iri == target))
    if known is not None:
        # Relayed several times, an object is stored once. A relay of an object we hold is
        # also how edits and deletes reach nodes that got it through a relay: refresh it from
        # its origin (never from the relay's copy).
        if not known.local and known.deleted_at is None:
            await objects.refresh(fed, known, now=now)
            await _file_relay(fed, announce, announcer, target, now)
        return
    if await _store_relayed(fed, target, now):
        await _file_relay(fed, announce, announcer, target, now)


async def _store_relayed(fed: Federation, target: Iri, now: datetime) -> bool:
    """Store a relayed object fetched from its origin; whether it was stored."""
    content, raw = await objects.resolve_content(fed, target, None, None)
    if content is None or raw is None or content.author is None:
        return False
    try:
        author = await fed.actor(content.author)
    except FetchTemporaryFailure:
        raise
    except FederationError:
        return False
    stored = await objects.store_object(fed, content, raw, author, now=now, require_relevance=False)
    return stored is not None


async def _file_relay(
    fed: Federation, announce: Announce, announcer: Actor, target: str, now: datetime
) -> None:
    """Record who relayed the object and file the relay for our actors it reaches."""
    async with fed.node.sessions.begin() as session:
        await _record_relay(session, announce.id, announcer.id, target, now)
    await _file_for_recipients(fed, announce, announcer)


async def _heard_here(session: Any, announcer_id: int) -> bool:
    """Does one of our actors follow the announcer (accepted) or belong to it (an association
    they joined)? Only then is a peer's relay stored: it is on their timeline."""
    follower = (
        select(FollowRow.id)
        .join(Actor, Actor.id == FollowRow.follower_id)
        .where(FollowRow.followed_id == announcer_id, FollowRow.state == "accepted", Actor.local.is_(True))
    )
    member = (
        select(MembershipRow.id)
        .join(Actor, Actor.id == MembershipRow.member_id)
        .where(
            MembershipRow.group_id == announcer_id,
            MembershipRow.state == "active",
            Actor.local.is_(True),
        )
    )
    return await session.scalar(follower.union_all(member).limit(1)) is not None


async def _record_relay(session: Any, announce_iri: str, relayer_id: int, object_iri: str, now: Any) -> None:
    """Remember who relayed which object (once per ``Announce``: a handler run again after a crash
    finds it there)."""
    known = await session.scalar(select(Relay.id).where(Relay.announce_iri == announce_iri))
    if known is None:
        session.add(
            Relay(announce_iri=announce_iri, relayer_id=relayer_id, object_iri=object_iri, relayed_at=now)
        )


def _wraps_create(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("type") == "Create" and isinstance(raw.get("id"), str)


@router.on(Like)
async def on_like(fed: Federation, like: Like, inbound: InboundActivity) -> None:
    target = like.object_id
    if target is None or not fed.node.uris.is_local(target):
        return
    actor = await fed.actor(like.actor)
    async with fed.node.sessions.begin() as session:
        known = await session.scalar(
            select(RemoteObject).where(
                RemoteObject.iri == target, RemoteObject.local.is_(True), RemoteObject.deleted_at.is_(None)
            )
        )
        liker = visibility.Viewer(visibility.ViewerKind.REMOTE, actor_id=actor.id, actor_iri=actor.iri)
        # A Like of what the liker may not read is not counted (case 42): it would confirm it.
        # One Like per actor and object: a second Like (another id) is the same one.
        again = await session.scalar(
            select(Reaction.id).where(
                Reaction.type == "Like", Reaction.actor_id == actor.id, Reaction.object_iri == target
            )
        )
        if again is None and known is not None and await visibility.can_read_object(session, liker, known):
            session.add(
                Reaction(
                    activity_iri=like.id,
                    type="Like",
                    actor_id=actor.id,
                    object_iri=target,
                    created_at=fed.node.clock(),
                )
            )


# --- moderation and accounts -------------------------------------------------------------------


@router.on(Block)
async def on_block(fed: Federation, block: Block, inbound: InboundActivity) -> None:
    """A peer says its actor blocks one of ours: we stop delivering to it."""
    target = block.object_id
    if target is None or fed.node.uris.local_actor_ref(target) is None:
        return
    blocker = await fed.actor(block.actor)
    async with fed.node.sessions.begin() as session:
        blocked = await actor_queries.by_iri(session, target)
        if blocked is None or not blocked.local:
            return
        existing = await session.scalar(
            select(BlockRow.id).where(BlockRow.blocker_id == blocker.id, BlockRow.blocked_id == blocked.id)
        )
        if existing is None:
            session.add(
                BlockRow(
                    activity_iri=block.id,
                    blocker_id=blocker.id,
                    blocked_id=blocked.id,
                    created_at=fed.node.clock(),
                )
            )


MAX_REPORT_CHARS = 5_000
"""A report's text, as moderators read it (plain text)."""
MAX_REPORT_TARGETS = 20
"""Distinct local actors and objects one report names; more are left out."""
REPORTS_PER_ACTOR = 10
REPORT_WINDOW = timedelta(hours=1)
"""At most ``REPORTS_PER_ACTOR`` reports are kept from one actor per window; more are dropped."""


@router.on(Flag)
async def on_flag(fed: Federation, flag: Flag, inbound: InboundActivity) -> None:
    """A report about our actors or objects, kept for moderators: bounded in size (plain text,
    a few targets) and in number per reporter, so one actor cannot fill the moderators' queue
    or the database (security case 61)."""
    targets = list(
        dict.fromkeys(ref.id for ref in flag.objects if ref.id is not None and fed.node.uris.is_local(ref.id))
    )[:MAX_REPORT_TARGETS]
    if not targets:
        return
    reporter = await fed.actor(flag.actor)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        if await blocks.rejects_reports(session, reporter.host):
            log.info("report dropped: the reporter's domain is blocked", extra={"reporter": reporter.iri})
            return
        recent = await session.scalar(
            select(func.count(Report.id)).where(
                Report.reporter_id == reporter.id, Report.created_at > now - REPORT_WINDOW
            )
        )
        if (recent or 0) >= REPORTS_PER_ACTOR:
            log.info("report dropped: too many from this actor", extra={"reporter": reporter.iri})
            return
        session.add(
            Report(
                activity_iri=flag.id,
                reporter_id=reporter.id,
                target_iris=targets,
                content=plain_text(flag.content or flag.summary or "")[:MAX_REPORT_CHARS],
                created_at=now,
                group_id=await reports.concerned_group_id(session, targets),
            )
        )
    log.info("report received", extra={"reporter": reporter.iri, "targets": len(targets)})


@router.on(Move)
async def on_move(fed: Federation, move: Move, inbound: InboundActivity) -> None:
    """Recorded when the new account lists the old one in ``alsoKnownAs`` (fetched from its origin)."""
    if move.object_id != move.actor or move.target is None or move.target.id is None:
        return
    target_iri = move.target.id
    new_actor = await fetch_and_store_actor(fed.node, fed.transport, target_iri, policy=fed.policy)
    aliases = (new_actor.document or {}).get("alsoKnownAs") or []
    if isinstance(aliases, str):
        aliases = [aliases]
    if move.actor not in aliases:
        log.info("move refused: the target does not list the old account", extra={"actor": move.actor})
        return
    async with fed.node.sessions.begin() as session:
        old = await actor_queries.by_iri(session, move.actor)
        if old is not None and not old.local:
            old.moved_to_iri = target_iri
    log.info("move recorded", extra={"from": move.actor, "to": target_iri})
