"""Remote actors in the ``actors`` table: storing fetched documents and fetching on demand.

The rules (security.md cases 8, 17, 33):

* A remote actor row, and above all its keys, changes only from a document fetched at the
  actor's own origin: :func:`upsert_remote_actor` takes a
  :class:`~federation.fetch.FetchedActor`, which only :mod:`federation.fetch` can produce.
  Key material in an inbound payload (an ``Update{Person}``) is never stored.
* A local actor is never overwritten or turned remote, and our own IRIs are never fetched.
* At most one fetch per IRI is in flight (:class:`SingleFlight`), and every in-memory
  structure is bounded.

This module uses only the :class:`federation.ports.Transport` protocol: the transport object is
passed in by the caller (import-linter: services never import aiohttp).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.fetch import FetchedActor, FetchTemporaryFailure, fetch_actor
from federation.keys import PublicKey, algorithm_of, public_key_to_pem
from federation.lookup import lookup_handle, verify_handle
from federation.netguard import canonical_host
from federation.policy import HostPolicy
from federation.ports import Transport
from server.db.models import Actor, ActorKey
from server.db.queries import actors as q
from server.services.actors.signing import instance_key_pair
from server.services.context import NodeContext
from server.services.errors import Conflict, NotFound
from server.services.moderation import blocks

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE: Final = timedelta(days=1)
"""A stored remote actor older than this is refetched by :func:`get_or_fetch_actor`."""

MAX_PROOF_AGE: Final = timedelta(minutes=5)
"""How recent a fetch must be for :func:`upsert_remote_actor` to store it (case 8: "fresh")."""

MAX_NAME_CHARS: Final = 255  # the actors.name column
DEFAULT_MAX_IN_FLIGHT: Final = 1024

K = TypeVar("K")
V = TypeVar("V")


class LocalActorConflict(Conflict):
    """A fetched document claims the IRI of one of our local actors; it is refused."""

    code = "local_actor_conflict"


class StaleFetch(ValueError):
    """The fetched document given as proof is too old to change stored key material."""


# ---------------------------------------------------------------------------------------------
# Single-flight
# ---------------------------------------------------------------------------------------------


class SingleFlight(Generic[K, V]):
    """At most one running task per key; concurrent callers with the same key share its result.

    The work runs in its own task, shielded from any one caller's cancellation, and is
    forgotten as soon as it ends (success or failure: nothing is cached here). At most
    ``max_keys`` keys are tracked (security case 33); beyond that the work runs unshared, so
    memory stays bounded and callers still get an answer.
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """Number of keys with work in flight."""
        return len(self._tasks)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Run ``work()`` for ``key`` unless it is already running; return its result.

        Raises whatever ``work`` raises, in every caller that shares the run.
        """
        task = self._tasks.get(key)
        if task is None:
            if len(self._tasks) >= self._max_keys:
                return await work()
            task = asyncio.create_task(work())
            self._tasks[key] = task
            task.add_done_callback(partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" when all callers left


# ---------------------------------------------------------------------------------------------
# Storing fetched actors
# ---------------------------------------------------------------------------------------------


def _host_of(iri: str) -> str:
    parts = urlsplit(iri)
    return canonical_host(parts.netloc, parts.scheme)


def placeholder_handle(iri: str) -> str:
    """A handle for a remote actor without ``preferredUsername``, or whose name was taken over.

    Unique per IRI (hash) and visibly not a name: handles are only ever *shown* after a
    WebFinger round trip (security case 36), this one merely keeps ``(host, type, handle)``
    unique.
    """
    return "~" + hashlib.sha256(iri.encode("utf-8")).hexdigest()[:32]


async def _release_handle(
    session: AsyncSession, *, host: str, actor_type: str, handle: str, iri: str
) -> None:
    """Free ``(host, type, handle)`` for ``iri``: the origin just said the name is now its.

    Another remote row holding the name gets a placeholder until it is refetched itself.
    """
    stmt = select(Actor).where(
        Actor.host == host, Actor.type == actor_type, Actor.handle == handle, Actor.iri != iri
    )
    for other in (await session.execute(stmt)).scalars():
        if other.local:
            raise LocalActorConflict("a fetched actor claims a local actor's name", iri=iri)
        other.handle = placeholder_handle(other.iri)
    await session.flush()


def _key_kind(key: PublicKey) -> str:
    return "rsa" if algorithm_of(key.key).value.startswith("rsa") else "ed25519"


async def _sync_keys(session: AsyncSession, actor: Actor, fetched: FetchedActor, *, now: datetime) -> None:
    """Make ``actor_keys`` match the fetched document: add, update, and drop vanished keys."""
    fetched_at = fetched.source.fetched_at
    wanted: dict[str, tuple[str, str]] = {
        key.key_id: (_key_kind(key), public_key_to_pem(key.key)) for key in fetched.doc.usable_keys()
    }
    rows = (await session.execute(select(ActorKey).where(ActorKey.actor_id == actor.id))).scalars().all()
    for row in rows:
        if row.key_iri not in wanted:
            await session.delete(row)  # the origin no longer lists it: it must stop verifying
            continue
        kind, pem = wanted.pop(row.key_iri)
        if row.public_pem != pem or row.kind != kind:
            # Key rotation, accepted because this document comes from the origin (case 8c).
            row.public_pem, row.kind = pem, kind
        row.private_key_encrypted = None
        row.fetched_at = fetched_at
    for key_iri, (kind, pem) in wanted.items():
        holder = (
            await session.execute(select(ActorKey.actor_id).where(ActorKey.key_iri == key_iri))
        ).scalar_one_or_none()
        if holder is not None:
            # Another actor already holds this key id; only that actor's own document may move
            # it (security case 8: nextcloud/social#2225). Keep it where it is.
            log.warning("remote key id already owned by another actor", extra={"key_id": key_iri})
            continue
        session.add(
            ActorKey(
                actor_id=actor.id,
                key_iri=key_iri,
                kind=kind,
                public_pem=pem,
                private_key_encrypted=None,
                created_at=now,
                fetched_at=fetched_at,
            )
        )
    await session.flush()


async def upsert_remote_actor(
    session: AsyncSession, fetched: FetchedActor, *, now: datetime, max_proof_age: timedelta = MAX_PROOF_AGE
) -> Actor:
    """Insert or update the remote actor read from ``fetched``, with its public keys.

    ``fetched`` is the proof that the document was just fetched from the actor's origin
    (security case 8: key material changes only that way); documents read from inbound
    payloads cannot be stored through this function. The row gets ``local=False``,
    ``host`` = the canonical host of the id, and ``actor_keys`` mirror the document's usable
    keys (private half NULL; keys that disappeared are deleted). A row fetched *later* than
    ``fetched`` is left untouched, so a slow fetch cannot roll back a newer one. A deleted
    actor (``deleted_at`` set) stays deleted.

    Raises:
        TypeError: ``fetched`` is not a :class:`~federation.fetch.FetchedActor`.
        StaleFetch: the fetch is older than ``max_proof_age`` (or in the future).
        LocalActorConflict: the id, or the ``(host, type, handle)``, is a local actor's.
        sqlalchemy.exc.IntegrityError: a concurrent writer inserted the same actor or key;
            retry in a new transaction (see :func:`store_fetched_actor`).
    """
    if not isinstance(fetched, FetchedActor):
        raise TypeError("upsert_remote_actor needs a FetchedActor from federation.fetch")
    source, doc = fetched.source, fetched.doc
    age = now - source.fetched_at
    if age > max_proof_age or age < -max_proof_age:
        raise StaleFetch(f"the document was fetched {age} ago; refetch it before storing it")
    actor = await q.by_iri(session, doc.id)
    if actor is not None and actor.local:
        raise LocalActorConflict("a fetched document claims a local actor's IRI", iri=doc.id)
    if actor is not None and actor.fetched_at is not None and actor.fetched_at > source.fetched_at:
        return actor
    host = _host_of(doc.id)
    handle = doc.preferred_username or placeholder_handle(doc.id)
    await _release_handle(session, host=host, actor_type=doc.type, handle=handle, iri=doc.id)
    if actor is None:
        actor = Actor(iri=doc.id, local=False, created_at=now)
        session.add(actor)
    actor.type = doc.type
    actor.handle = handle
    actor.host = host
    actor.name = doc.name[:MAX_NAME_CHARS]
    actor.summary = doc.summary
    actor.inbox_iri = doc.inbox
    actor.shared_inbox_iri = doc.shared_inbox
    actor.outbox_iri = doc.outbox
    actor.followers_iri = doc.followers
    actor.following_iri = doc.following
    actor.url = doc.url
    actor.manually_approves_followers = doc.manually_approves_followers
    actor.moved_to_iri = doc.moved_to
    actor.document = source.document
    actor.fetched_at = source.fetched_at
    actor.updated_at = now
    await session.flush()
    if isinstance(source.document, dict) and await blocks.rejects_media_from(session, host):
        actor.document = blocks.without_media(source.document)  # decision 79: not kept on a refetch
    await _sync_keys(session, actor, fetched, now=now)
    return actor


async def store_fetched_actor(node: NodeContext, fetched: FetchedActor) -> Actor:
    """:func:`upsert_remote_actor` in its own transaction, retried once after a write race.

    Two processes (server and worker) may store the same new actor at once; the loser of the
    unique-constraint race retries, finds the row, and updates it instead.
    """
    for attempt in range(2):
        try:
            async with node.sessions.begin() as session:
                return await upsert_remote_actor(session, fetched, now=node.clock())
        except IntegrityError:
            if attempt == 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Fetch on demand
# ---------------------------------------------------------------------------------------------


ActorFlights = SingleFlight[str, Actor]
"""The single-flight table of :func:`get_or_fetch_actor`; keep one per node."""


async def fetch_and_store_actor(
    node: NodeContext, transport: Transport, iri: str, *, policy: HostPolicy | None = None
) -> Actor:
    """Fetch ``iri`` (signed as the Application actor; its id must be ``iri``) and store it.

    Raises:
        FetchError subclasses, InvalidDocument: see :func:`federation.fetch.fetch_actor`.
        LocalActorConflict: see :func:`upsert_remote_actor`.
    """
    signer = await instance_key_pair(node)
    fetched = await fetch_actor(
        iri, transport=transport, signer=signer, now=node.clock(), uris=node.uris, policy=policy
    )
    return await store_fetched_actor(node, fetched)


_KNOWN_ACTOR: ContextVar[Actor | None] = ContextVar("entraide_known_actor", default=None)


@contextmanager
def known_actor(row: Actor | None) -> Iterator[None]:
    """Within the block (one task), :func:`get_or_fetch_actor` takes ``row`` for its IRI instead of
    reading it: the inbox lane reads the senders of a whole batch in one statement (decision 89).
    Everything else :func:`get_or_fetch_actor` decides (local actors, staleness, refetch) is
    unchanged; the row is only as old as the batch."""
    token = _KNOWN_ACTOR.set(row)
    try:
        yield
    finally:
        _KNOWN_ACTOR.reset(token)


async def get_or_fetch_actor(
    node: NodeContext,
    transport: Transport,
    iri: str,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    flights: ActorFlights | None = None,
    policy: HostPolicy | None = None,
) -> Actor:
    """The actor ``iri`` from the database, fetched from its origin when missing or stale.

    * Local IRIs come from the database only (security case 17); a missing one is NotFound.
    * A remote row fetched less than ``max_age`` ago, or marked deleted, is returned as is.
    * Otherwise the actor is fetched and stored. Pass the node's ``flights`` table so that
      concurrent calls for one IRI share a single fetch (without it, each call fetches).
    * When the origin is temporarily unreachable, a stale row is better than none and is
      returned; with no row, the error propagates.

    Raises:
        NotFound: a local IRI with no local actor.
        FetchTemporaryFailure: the origin is unreachable and nothing is stored.
        DocumentGone, WrongOrigin, FetchError, InvalidDocument, LocalActorConflict: the
            actor cannot be fetched or stored (see :func:`fetch_and_store_actor`).
    """
    known = _KNOWN_ACTOR.get()
    if known is not None and known.iri == iri:
        actor: Actor | None = known
    else:
        async with node.sessions() as session:
            actor = await q.by_iri(session, iri)
    if node.uris.is_local(iri):
        if actor is None or not actor.local:
            raise NotFound("no such local actor", iri=iri)
        return actor
    if actor is not None and actor.local:
        return actor
    now = node.clock()
    if actor is not None and (
        actor.deleted_at is not None or (actor.fetched_at is not None and now - actor.fetched_at < max_age)
    ):
        return actor

    async def work() -> Actor:
        return await fetch_and_store_actor(node, transport, iri, policy=policy)

    try:
        return await (flights.run(iri, work) if flights is not None else work())
    except FetchTemporaryFailure:
        if actor is not None:
            log.info("serving stale remote actor", extra={"actor": iri})
            return actor
        raise


__all__ = [
    "DEFAULT_MAX_AGE",
    "MAX_PROOF_AGE",
    "ActorFlights",
    "LocalActorConflict",
    "SingleFlight",
    "StaleFetch",
    "fetch_and_store_actor",
    "get_or_fetch_actor",
    "known_actor",
    "placeholder_handle",
    "store_fetched_actor",
    "upsert_remote_actor",
]


async def lookup_account(
    node: NodeContext,
    transport: Transport,
    handle: str,
    *,
    policy: HostPolicy | None = None,
    actor_type: str | None = None,
    scheme: str = "https",
    allow_http: bool = False,
) -> Actor:
    """The actor ``handle`` (``user@host``) names, confirmed both ways (security case 36).

    WebFinger on the handle's host names a candidate; the candidate is fetched from its own
    origin, and WebFinger on *its* host must answer that it is this very handle. A host that
    points its users' handles at actors elsewhere (or an actor claiming a handle on another
    host) is refused with :class:`~federation.lookup.HandleMismatch`; nothing is stored.
    """
    iri = await lookup_handle(
        handle,
        transport=transport,
        scheme=scheme,
        allow_http=allow_http,
        actor_type=actor_type,
        uris=node.uris,
    )
    signer = await instance_key_pair(node)
    fetched = await fetch_actor(
        iri, transport=transport, signer=signer, now=node.clock(), uris=node.uris, policy=policy
    )
    await verify_handle(
        fetched.doc, transport=transport, allow_http=allow_http, expected=handle.lstrip("@"), uris=node.uris
    )
    return await store_fetched_actor(node, fetched)
