"""Following, in both directions, and keeping in sync with the actors we follow.

* Incoming ``Follow``: recorded, answered with ``Accept`` unless the actor approves followers
  by hand or the follower is on a silenced domain (decision 88): then it stays pending until the
  followed member, or an admin of the followed association, answers it
  (:func:`answer_follow_request`: ``Accept`` or ``Reject``).
* Outgoing follow (``entraide follow``, C2S): a pending row and a ``Follow`` in our outbox.
* ``Accept``/``Reject`` of our Follow: only from its target, for its exact id (case 18, 46).
* Sync: on acceptance, backfill the followed actor's outbox (paged, bounded); afterwards a
  periodic catch-up reads it again from a cursor, so what was published while either side
  was down is not missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from federation.errors import FederationError
from federation.fetch import FetchTemporaryFailure
from federation.iri import host_of
from federation.types import Iri
from federation.vocab.activities import Follow
from federation.vocab.objects import Content, Tombstone
from federation.vocab.parse import parse_object
from server.db import queue
from server.db.models import Actor, SyncState
from server.db.models import Follow as FollowRow
from server.db.queries import actors as actor_queries
from server.db.upsert import insert_ignoring_conflict
from server.services.content.remote import refresh, store_object, tombstone, update_object
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import InvalidInput, NotFound
from server.services.federation import Federation
from server.services.moderation.blocks import is_silenced

log = logging.getLogger(__name__)

SYNC_OUTBOX = "sync_outbox"
SYNC_ALL = "sync_all"
SYNC_INTERVAL = timedelta(minutes=15)
BACKFILL_MAX_PAGES = 10
BACKFILL_MAX_ITEMS = 200
FOLLOW_REQUESTS_LIMIT = 200
"""Follow requests listed at once (the oldest: answering them brings the next)."""


def _follow_document(follow_iri: str, follower: str, target: str) -> dict[str, Any]:
    return {"id": follow_iri, "type": "Follow", "actor": follower, "object": target}


async def receive_follow(fed: Federation, follow: Follow, *, follower: Actor) -> None:
    """Record a remote Follow of a local Group or Person and answer it."""
    target_iri = follow.object_id
    assert target_iri is not None
    ref = fed.node.uris.local_actor_ref(target_iri)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        target = (
            await actor_queries.local_by_handle(
                session, "Group" if ref.kind == "group" else "Person", ref.handle
            )
            if ref is not None and ref.part is None
            else None
        )
        if target is None:
            log.info("follow of an unknown local actor ignored", extra={"object": target_iri})
            return
        row = await session.scalar(
            select(FollowRow).where(FollowRow.follower_id == follower.id, FollowRow.followed_id == target.id)
        )
        if row is None:
            held = target.manually_approves_followers or await is_silenced(session, follower.id)
            row = FollowRow(
                follower_id=follower.id,
                followed_id=target.id,
                follow_iri=follow.id,
                state="pending" if held else "accepted",
                created_at=now,
                accepted_at=None if held else now,
            )
            session.add(row)
        elif row.follow_iri == follow.id:
            # This very Follow again: its job re-run after a crash (its row not yet marked
            # processed). It was answered in the transaction that recorded it; answer once.
            return
        else:
            row.follow_iri = follow.id  # a repeated Follow gets a fresh Accept referencing it
        await session.flush()
        if row.state == "accepted":
            await _answer(fed, session, target, follower, follow.id, "Accept", now=now)
    fed.notify_worker()
    log.info("follow received", extra={"follower": follower.iri, "target": target_iri, "state": row.state})


async def _answer(
    fed: Federation, session: Any, target: Actor, follower: Actor, follow_iri: str, kind: str, *, now: Any
) -> None:
    """``Accept`` or ``Reject`` (``kind``) of ``follower``'s Follow of ``target``, from ``target``."""
    answer = {
        "id": new_activity_iri(fed.node.uris),
        "type": kind,
        "object": _follow_document(follow_iri, follower.iri, target.iri),
        "to": [follower.iri],
    }
    await publish(session, target, answer, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE)


@dataclass(frozen=True, slots=True)
class FollowRequest:
    """A Follow of a local actor waiting for its answer (``position``: where it stands in the
    list, oldest first, for the next page)."""

    follower: str
    handle: str
    since: Any
    name: str = ""
    position: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "follower": self.follower,
            "handle": self.handle,
            "since": self.since.isoformat().replace("+00:00", "Z"),
        }


async def follow_requests(
    session: Any, target: Actor, *, after: int | None = None, limit: int = FOLLOW_REQUESTS_LIMIT
) -> list[FollowRequest]:
    """The Follows of ``target`` (a local member or association) waiting for an answer, oldest
    first, from just after ``after`` (a :attr:`FollowRequest.position`); the caller has checked
    that the reader may answer them (the member, an admin)."""
    query = (
        select(FollowRow, Actor)
        .join(Actor, Actor.id == FollowRow.follower_id)
        .where(FollowRow.followed_id == target.id, FollowRow.state == "pending")
        .order_by(FollowRow.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(FollowRow.id > after)
    return [
        FollowRequest(actor.iri, f"{actor.handle}@{actor.host}", row.created_at, actor.name or "", row.id)
        for row, actor in await session.execute(query)
    ]


async def follow_request_count(session: Any, target: Actor) -> int:
    """How many Follows of ``target`` wait for an answer."""
    found = await session.scalar(
        select(func.count())
        .select_from(FollowRow)
        .where(FollowRow.followed_id == target.id, FollowRow.state == "pending")
    )
    return int(found or 0)


async def accept_held_follows(fed: Federation, session: Any, target: Actor, *, now: Any) -> int:
    """``target`` stopped approving followers by hand: accept the Follows it held for that reason,
    as Mastodon does when an account is unlocked. Those from silenced domains stay held (decision
    88): they wait for an answer whatever the setting. Returns how many were accepted."""
    rows = await session.execute(
        select(FollowRow, Actor)
        .join(Actor, Actor.id == FollowRow.follower_id)
        .where(FollowRow.followed_id == target.id, FollowRow.state == "pending")
        .order_by(FollowRow.id)
    )
    accepted = 0
    for row, follower in list(rows):
        if row.follow_iri is None or await is_silenced(session, follower.id):
            continue
        row.state, row.accepted_at = "accepted", now
        await _answer(fed, session, target, follower, str(row.follow_iri), "Accept", now=now)
        accepted += 1
    return accepted


async def answer_follow_request(fed: Federation, target: Actor, follower_iri: str, *, approve: bool) -> str:
    """Approve (``Accept``, the follower gets what ``target`` sends its followers) or refuse
    (``Reject``, the row removed) a pending Follow of ``target``; the caller has checked that the
    one answering may (the member themselves, an admin of the association). Returns the new state.

    Raises:
        NotFound: no Follow from ``follower_iri`` waits for an answer.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        found = (
            await session.execute(
                select(FollowRow, Actor)
                .join(Actor, Actor.id == FollowRow.follower_id)
                .where(
                    FollowRow.followed_id == target.id,
                    FollowRow.state == "pending",
                    Actor.iri == follower_iri,
                )
            )
        ).first()
        if found is None or found[0].follow_iri is None:
            raise NotFound("no follow request from this actor", field="follower")
        row, follower = found
        follow_iri = str(row.follow_iri)
        if approve:
            row.state, row.accepted_at = "accepted", now
        else:
            await session.delete(row)
        await _answer(fed, session, target, follower, follow_iri, "Accept" if approve else "Reject", now=now)
    fed.notify_worker()
    return "accepted" if approve else "refused"


async def follow_answered(fed: Federation, *, follow_iri: Iri, target_iri: Iri, accepted: bool) -> bool:
    """Apply an Accept/Reject of one of our Follows; True when it matched."""
    now = fed.node.clock()
    followed = aliased(Actor)
    follower = aliased(Actor)
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(FollowRow)
            .join(followed, followed.id == FollowRow.followed_id)
            .join(follower, follower.id == FollowRow.follower_id)
            .where(FollowRow.follow_iri == follow_iri, followed.iri == target_iri, follower.local.is_(True))
        )
        if row is None:
            log.info("follow answer matched nothing", extra={"follow": follow_iri, "actor": target_iri})
            return False
        if not accepted:
            await session.delete(row)
            return True
        newly = row.state != "accepted"
        row.state, row.accepted_at = "accepted", row.accepted_at or now
        if newly:
            await queue.enqueue(
                session,
                SYNC_OUTBOX,
                {"actor_id": row.followed_id},
                dedup_key=f"sync:{row.followed_id}:accept:{row.id}",
                priority=queue.Priority.BACKGROUND,
                now=now,
            )
    fed.notify_worker()
    return True


@dataclass(frozen=True, slots=True)
class FollowRequested:
    follow_iri: str
    target: str
    state: str


async def follow(
    fed: Federation, *, local_name: str, target_iri: str, as_actor: Actor | None = None
) -> FollowRequested:
    """A local association or member follows a remote actor (it is fetched first).

    Raises:
        NotFound: no local actor ``local_name``. InvalidInput: the target is local.
        FetchError/InvalidDocument: the target cannot be fetched.
    """
    if fed.node.uris.is_local(target_iri):
        raise InvalidInput("local actors are followed directly, not through federation", field="target")
    if as_actor is not None:
        local = as_actor
    else:
        async with fed.node.sessions() as session:
            candidates = await actor_queries.local_by_name(session, local_name)
        if not candidates:
            raise NotFound(f"no local association or member named {local_name!r}", field="as")
        local = next((a for a in candidates if a.type == "Group"), candidates[0])
    remote = await fed.actor(target_iri)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(FollowRow).where(FollowRow.follower_id == local.id, FollowRow.followed_id == remote.id)
        )
        if row is not None and row.state == "accepted":
            return FollowRequested(row.follow_iri or "", remote.iri, "accepted")
        follow_iri = new_activity_iri(fed.node.uris)
        if row is None:
            row = FollowRow(follower_id=local.id, followed_id=remote.id, state="pending", created_at=now)
            session.add(row)
        row.follow_iri, row.state = follow_iri, "pending"
        await session.flush()
        await publish(
            session,
            local,
            {**_follow_document(follow_iri, local.iri, remote.iri), "to": [remote.iri]},
            visibility="direct",
            now=now,
            priority=queue.Priority.INTERACTIVE,
        )
    fed.notify_worker()
    return FollowRequested(follow_iri, remote.iri, "pending")


async def unfollow(fed: Federation, *, follower: Actor, follow_iri: str) -> str:
    """Undo one of our Follows (by its IRI): the row goes, an ``Undo`` goes to the target.

    Raises:
        NotFound: no such follow by this actor.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(FollowRow).where(FollowRow.follow_iri == follow_iri, FollowRow.follower_id == follower.id)
        )
        if row is None:
            raise NotFound("no such follow")
        target = await session.get(Actor, row.followed_id)
        assert target is not None
        await session.delete(row)
        undo_iri = new_activity_iri(fed.node.uris)
        await publish(
            session,
            follower,
            {
                "id": undo_iri,
                "type": "Undo",
                "object": _follow_document(follow_iri, follower.iri, target.iri),
                "to": [target.iri],
            },
            visibility="direct",
            now=now,
            priority=queue.Priority.INTERACTIVE,
        )
    fed.notify_worker()
    return undo_iri


# --- sync --------------------------------------------------------------------------------------


def _items(page: dict[str, Any]) -> list[Any]:
    items = page.get("orderedItems", page.get("items", []))
    return items if isinstance(items, list) else []


def _ref(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, str) else None


BACKFILL_MAX_CONTINUATIONS = 10
"""A run that has not reached its cursor continues in a follow-up job, at most this many times
(2,000 items by default); after that the cursor moves on and the rest is left to deliveries."""


async def sync_outbox(
    fed: Federation,
    actor_id: int,
    *,
    max_pages: int = BACKFILL_MAX_PAGES,
    max_items: int = BACKFILL_MAX_ITEMS,
    resume: dict[str, Any] | None = None,
) -> int:
    """Read a followed actor's outbox, newest first, down to the last item seen; store new objects.

    Bounded (pages, items), loop-safe (visited pages), same-origin only (security case 30):
    every page and every item must be on the actor's host. When the bound is hit before the
    cursor is reached, a follow-up job continues from the next page (``resume``), and the
    cursor only moves to the newest item once the old one is reached, so nothing in between
    is skipped. Returns the number of items read by this run.
    """
    async with fed.node.sessions() as session:
        actor = await session.get(Actor, actor_id)
        state = await session.get(SyncState, actor_id)
    if actor is None or actor.local or actor.deleted_at is not None or not actor.outbox_iri:
        return 0
    resume = resume or {}
    walk = _Walk(
        origin=actor.host,
        stop_at=resume.get("stop_at") if resume else (state.newest_seen_iri if state else None),
        newest=resume.get("newest"),
    )
    continuation = int(resume.get("continuation", 0))
    try:
        page = await _first_page(fed, actor, resume.get("page"), walk.origin)
        await _walk_pages(fed, actor, page, walk, max_pages=max_pages, max_items=max_items)
    except FetchTemporaryFailure:
        raise
    except FederationError as exc:
        await _save_sync(fed, actor_id, newest=None, read=walk.read, error=f"{exc.code}: {exc.detail}"[:1024])
        log.info("outbox sync failed", extra={"actor": actor.iri, "code": exc.code})
        return walk.read
    if not walk.reached_end and walk.next_iri and continuation < BACKFILL_MAX_CONTINUATIONS:
        await _continue_later(fed, actor_id, walk, continuation + 1)
        await _save_sync(fed, actor_id, newest=None, read=walk.read, error=None)
        fed.notify_worker()
    else:
        await _save_sync(fed, actor_id, newest=walk.newest, read=walk.read, error=None)
    log.info("outbox synced", extra={"actor": actor.iri, "items": walk.read, "complete": walk.reached_end})
    return walk.read


@dataclass(slots=True)
class _Walk:
    """Where one sync run through an outbox's pages is: the items of ``origin`` read, down to
    ``stop_at`` (the cursor), the newest one seen, and the page to continue from."""

    origin: str
    stop_at: str | None
    newest: str | None
    read: int = 0
    next_iri: str | None = None
    reached_end: bool = False


async def _first_page(fed: Federation, actor: Actor, resumed: Any, origin: str) -> dict[str, Any] | None:
    """The page a run starts with: the one a follow-up job resumes from, else the outbox's
    first page (the collection itself when it lists items; its ``first``, on the same host)."""
    if resumed:
        page: dict[str, Any] = await fed.fetch(resumed)
        return page
    collection: dict[str, Any] = await fed.fetch(actor.outbox_iri or "")
    first = collection.get("first")
    if _items(collection) or first is None:
        return collection
    if isinstance(first, dict):
        return first
    if isinstance(first, str) and host_of(first) == origin:
        fetched: dict[str, Any] = await fed.fetch(first)
        return fetched
    return None


async def _walk_pages(
    fed: Federation,
    actor: Actor,
    page: dict[str, Any] | None,
    walk: _Walk,
    *,
    max_pages: int,
    max_items: int,
) -> None:
    """Read pages from ``page`` on, following ``next`` on the same host, never twice the same
    page, until the cursor, the end, or the bounds."""
    run = _Run()
    visited: set[str] = set()
    pages = 0
    while page is not None and pages < max_pages:
        pages += 1
        if isinstance(page.get("id"), str):
            visited.add(page["id"])
        await _read_page(fed, actor, page, walk, run)
        walk.next_iri = next_iri = _ref(page.get("next"))
        if walk.reached_end or next_iri is None or next_iri in visited or host_of(next_iri) != walk.origin:
            walk.reached_end = True
            return
        if walk.read >= max_items or pages >= max_pages:
            return  # bounded: a follow-up job continues from next_iri
        page = await fed.fetch(next_iri)
    walk.reached_end = page is None


async def _read_page(fed: Federation, actor: Actor, page: dict[str, Any], walk: _Walk, run: _Run) -> None:
    """Store the page's items of the actor's host, newest first, until the cursor."""
    for item in _items(page):
        item_id = _ref(item)
        if item_id is None or host_of(item_id) != walk.origin:
            continue
        if item_id == walk.stop_at:
            walk.reached_end = True
            return
        walk.newest = walk.newest or item_id
        walk.read += 1
        await _store_item(fed, actor, item, run)


async def _continue_later(fed: Federation, actor_id: int, walk: _Walk, continuation: int) -> None:
    """A follow-up job reads on from ``walk.next_iri``, towards the same cursor."""
    async with fed.node.sessions.begin() as session:
        await queue.enqueue(
            session,
            SYNC_OUTBOX,
            {
                "actor_id": actor_id,
                "resume": {
                    "page": walk.next_iri,
                    "stop_at": walk.stop_at,
                    "newest": walk.newest,
                    "continuation": continuation,
                },
            },
            dedup_key=f"sync:{actor_id}:resume:{continuation}:{walk.newest}"[:512],
            priority=queue.Priority.BACKGROUND,
            now=fed.node.clock(),
        )


STATEFUL_KINDS = frozenset({"alert", "proposal"})
"""Kinds whose state changes after publication (an alert's status, a poll's tally and closing):
the copy embedded in an outbox item is refetched from its origin, at most
:data:`REFRESH_MAX_PER_RUN` times per run, in case the peer serves the item as first published."""
REFRESH_MAX_PER_RUN = 20


@dataclass
class _Run:
    """What one sync run may still spend on refetching embedded copies."""

    refreshes_left: int = REFRESH_MAX_PER_RUN


async def _fetched(fed: Federation, value: Any) -> Any:
    """``value`` itself, or the document it names fetched (None when the origin refuses it)."""
    if not isinstance(value, str):
        return value
    try:
        return await fed.fetch(value)
    except FetchTemporaryFailure:
        raise
    except FederationError:
        return None


async def _store_item(fed: Federation, actor: Actor, item: Any, run: _Run | None = None) -> None:
    """Apply one outbox item so that we end with what the origin serves now (issue 13).

    A ``Create`` or ``Update`` stores its object, or brings the copy we hold up to a newer
    revision; a ``Delete``, or an object served as a ``Tombstone``, leaves a tombstone (the outbox
    is read newest first, so the deletion is met before the ``Create`` it undoes, and a tombstone
    is never resurrected). Only the actor's own activities about objects on its own origin count.
    """
    item = await _fetched(fed, item)
    if not isinstance(item, dict):
        return
    raw: Any = item
    if item.get("type") in ("Create", "Update", "Delete"):
        if item.get("actor") != actor.iri:
            return
        if item["type"] == "Delete":
            target = _ref(item.get("object"))
            if target is not None and host_of(target) == actor.host:
                await tombstone(fed, target, actor, now=fed.node.clock())
            return
        raw = item.get("object")
        if isinstance(raw, str) and host_of(raw) != actor.host:
            return
        raw = await _fetched(fed, raw)
    if not isinstance(raw, dict):
        return
    try:
        content = parse_object(raw)
    except FederationError:
        return
    if isinstance(content, Tombstone):
        if host_of(content.id) == actor.host:
            await tombstone(fed, content.id, actor, now=fed.node.clock())
        return
    if isinstance(content, Content):
        await _store_current(fed, actor, content, raw, run or _Run())


async def _store_current(
    fed: Federation, actor: Actor, content: Content, raw: dict[str, Any], run: _Run
) -> None:
    """Store ``content``, or apply it over an older copy; refetch a stateful object (bounded)."""
    now = fed.node.clock()
    row = await store_object(fed, content, raw, actor, now=now, require_relevance=False)
    if row is None:
        return
    if content.updated is not None and (row.updated is None or content.updated > row.updated):
        await update_object(fed, content, raw, actor, now=now)
    if row.kind in STATEFUL_KINDS and run.refreshes_left > 0:
        run.refreshes_left -= 1
        try:
            await refresh(fed, row, now=now)
        except FetchTemporaryFailure:
            log.info("object refresh postponed", extra={"object": row.iri})


async def _save_sync(
    fed: Federation, actor_id: int, *, newest: str | None, read: int, error: str | None
) -> None:
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        # Two local followers of the same actor may both finish a backfill at once.
        await insert_ignoring_conflict(
            session, SyncState, {"actor_id": actor_id, "items_fetched": 0}, conflict_on=["actor_id"]
        )
        state = await session.get(SyncState, actor_id, with_for_update=True)
        assert state is not None
        if newest is not None:
            state.newest_seen_iri = newest
        state.items_fetched = (state.items_fetched or 0) + read
        state.last_synced_at = now
        state.backfilled_at = state.backfilled_at or (now if error is None else None)
        state.last_error = error


async def sync_all(fed: Federation) -> int:
    """Queue a catch-up of every remote actor a local actor follows; schedule the next round."""
    now = fed.node.clock()
    bucket = int(now.timestamp() // SYNC_INTERVAL.total_seconds())
    follower = aliased(Actor)
    async with fed.node.sessions.begin() as session:
        rows = await session.execute(
            select(FollowRow.followed_id)
            .distinct()
            .join(follower, follower.id == FollowRow.follower_id)
            .join(Actor, Actor.id == FollowRow.followed_id)
            .where(FollowRow.state == "accepted", follower.local.is_(True), Actor.local.is_(False))
        )
        ids = [r[0] for r in rows]
        await queue.enqueue_many(
            session,
            [
                queue.NewJob(
                    SYNC_OUTBOX,
                    {"actor_id": i},
                    dedup_key=f"sync:{i}:{bucket}",
                    priority=queue.Priority.BACKGROUND,
                )
                for i in ids
            ],
            now=now,
        )
        await schedule_sync_all(session, now=now)
    return len(ids)


async def schedule_sync_all(session: Any, *, now: Any) -> None:
    """Make sure the next periodic catch-up round is queued (idempotent per interval)."""
    await queue.schedule_periodic(session, SYNC_ALL, every=SYNC_INTERVAL, now=now)


# --- what a member's pages show -------------------------------------------------------------------


async def follow_state(session: Any, follower_id: int, followed_id: int) -> str | None:
    """The state of ``follower_id``'s follow of ``followed_id`` (pending, accepted), or None."""
    found = await session.scalar(
        select(FollowRow.state).where(
            FollowRow.follower_id == follower_id, FollowRow.followed_id == followed_id
        )
    )
    return str(found) if found is not None else None


async def follows_of(session: Any, follower_id: int) -> list[tuple[FollowRow, Actor]]:
    """Everyone ``follower_id`` follows or asked to follow, with the follow, newest first."""
    rows = await session.execute(
        select(FollowRow, Actor)
        .join(Actor, Actor.id == FollowRow.followed_id)
        .where(FollowRow.follower_id == follower_id)
        .order_by(FollowRow.created_at.desc(), FollowRow.id.desc())
    )
    return [(row[0], row[1]) for row in rows.all()]
