"""The node's :class:`federation.ports.KeyResolver`: keys from the database, fetched when missing.

``verify_request`` asks it for the key named by a signature's ``keyId``. The rules
(security.md cases 6, 7, 8, 9, 17, 31, 33):

* Our own keyIds are read from the database, never fetched over HTTP (case 17).
* Remote keys come from ``actor_keys`` (stored only from documents fetched at their origin);
  on a miss the key is fetched with :func:`federation.fetch.fetch_key` (signed as the
  Application actor, bidirectional owner check), and its owner actor is stored.
* One fetch per keyId at a time (single-flight); failures are remembered for
  ``negative_ttl`` so a flood of requests with a dead or hostile keyId costs one fetch
  (cases 6, 7); ``refresh=True`` (key rotation, case 8c) refetches at most once per
  ``refresh_min_interval`` per keyId; and a per-host token bucket answers a flood of random
  keyIds on one host with :class:`KeyFetchBudgetExceeded` without any request (case 7).
* Every in-memory table is an LRU with a size cap, and entries expire (case 33).
* Keys read from the database are kept in memory for ``key_ttl`` (a session, a SELECT and a
  ROLLBACK per inbox POST otherwise: docs/performance.md). The memory never outlives what the
  database says in this process: a ``refresh`` (a signature that did not verify) bypasses and
  drops it, and every change to an ``actor_keys`` row or to an actor's ``deleted_at`` made
  through the ORM here (a refetch after ``Update``, a rotation, a ``Delete`` of the actor) drops
  the affected entries when it is flushed and again when it commits. Other processes (a
  separate ``entraide worker``) cannot reach this memory: their changes apply here within
  ``key_ttl`` at most.

Errors follow the port: :class:`~federation.errors.KeyUnavailable` (HTTP 401) when the key does
not exist or is unusable, :class:`~federation.errors.KeyFetchTemporaryFailure` (HTTP 503, so
the sender retries) when its origin is temporarily unreachable.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import event, select
from sqlalchemy.orm import Session, attributes, object_session

from federation.domains import registrable_domain
from federation.errors import FederationError, KeyFetchTemporaryFailure, KeyUnavailable
from federation.fetch import DocumentGone, FetchTemporaryFailure, fetch_key
from federation.keys import PublicKey, public_key_from_pem
from federation.netguard import canonical_host
from federation.policy import HostPolicy
from federation.ports import Transport
from federation.signatures import SignatureSpec
from federation.types import Iri
from server.db.models import Actor, ActorKey
from server.services.actors.remote import SingleFlight, store_fetched_actor
from server.services.actors.signing import instance_key_pair
from server.services.context import NodeContext

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES: Final = 10_000
DEFAULT_MAX_HOSTS: Final = 4096
DEFAULT_KEY_TTL: Final = timedelta(minutes=5)

K = TypeVar("K")
V = TypeVar("V")


class KeyFetchBudgetExceeded(KeyUnavailable):
    """Too many key fetches for this host recently; refused without a request (case 7)."""

    code = "key_fetch_budget"


# ---------------------------------------------------------------------------------------------
# Bounded in-memory tables
# ---------------------------------------------------------------------------------------------


class TtlLru(Generic[K, V]):
    """A mapping with a size cap (least recently used out first) and per-entry expiry.

    Time is passed in, so tests control it and the node's injected clock rules (docs/architecture.md R3).
    """

    def __init__(self, max_entries: int, ttl: timedelta) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._ttl = ttl
        self._entries: OrderedDict[K, tuple[V, datetime]] = OrderedDict()

    def __len__(self) -> int:
        """Entries held, expired ones included until they are next touched or evicted."""
        return len(self._entries)

    def get(self, key: K, now: datetime) -> V | None:
        """The live value for ``key``, or None (expired entries are dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, now: datetime) -> None:
        """Store ``value`` until ``now + ttl``, evicting the least recently used beyond the cap."""
        self._entries[key] = (value, now + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def pop_where(self, predicate: Callable[[K, V], bool]) -> None:
        """Forget every entry for which ``predicate(key, value)`` is true (a linear scan)."""
        for key in [k for k, (v, _) in self._entries.items() if predicate(k, v)]:
            del self._entries[key]


@dataclass(frozen=True, slots=True)
class FetchBudget:
    """A token bucket per host: ``capacity`` fetches at once, refilled at ``refill_per_minute``."""

    capacity: int = 20
    refill_per_minute: float = 20.0
    max_hosts: int = DEFAULT_MAX_HOSTS

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.refill_per_minute <= 0 or self.max_hosts < 1:
            raise ValueError("capacity and max_hosts must be >= 1, refill_per_minute > 0")


class _HostBuckets:
    """Token buckets keyed by canonical host, in an LRU of at most ``max_hosts`` (case 33).

    An evicted host starts again with a full bucket, which is what a new host gets anyway.
    """

    def __init__(self, budget: FetchBudget) -> None:
        self._budget = budget
        self._buckets: OrderedDict[str, tuple[float, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str, now: datetime) -> bool:
        """Spend one token of ``host``; False when its bucket is empty."""
        budget = self._budget
        tokens, last = self._buckets.get(host, (float(budget.capacity), now))
        elapsed = max(0.0, (now - last).total_seconds())
        tokens = min(float(budget.capacity), tokens + elapsed * budget.refill_per_minute / 60.0)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now)
        self._buckets.move_to_end(host)
        while len(self._buckets) > budget.max_hosts:
            self._buckets.popitem(last=False)
        return allowed


# ---------------------------------------------------------------------------------------------
# The resolver
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    temporary: bool
    detail: str

    def error(self, key_id: Iri) -> FederationError:
        if self.temporary:
            return KeyFetchTemporaryFailure(self.detail, key_id=key_id)
        return KeyUnavailable(self.detail, key_id=key_id)


def _checked_key_id(key_id: str) -> str:
    """The key's canonical host; refuses keyIds that name nothing fetchable (case 9)."""
    try:
        parts = urlsplit(key_id)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) IRI")
        return canonical_host(parts.netloc, parts.scheme.lower())
    except ValueError as exc:
        raise KeyUnavailable(
            "keyId must be an http(s) IRI (acct: keyIds are refused)", key_id=key_id[:300]
        ) from exc


class RemoteKeyResolver:
    """A :class:`federation.ports.KeyResolver` over ``actor_keys``, fetching misses from origin.

    Keep one per node (its tables are the point): the caches, the single-flight table and the
    host budgets live in it.

    Args:
        node: the node context (database, URIs, clock, our keys).
        transport: the outbound transport (SSRF guard, timeouts, size caps).
        negative_ttl: how long a failed fetch is remembered (answered without a request).
        refresh_min_interval: the least time between two fetches of one keyId, so
            ``refresh=True`` after a failed verification refetches at most this often.
        per_host_budget: the token bucket applied to fetches per key host.
        policy: the peer policy, checked on every fetch hop (the transport checks its own too).
        max_entries: cap of each per-keyId table (keys, negative cache, last-fetch times,
            flights).
        signature_spec: how our signed fetches are signed.
        key_ttl: how long a key read from the database is answered from memory (see the
            module docstring for what drops it sooner).
    """

    def __init__(
        self,
        node: NodeContext,
        transport: Transport,
        *,
        negative_ttl: timedelta = timedelta(minutes=10),
        refresh_min_interval: timedelta = timedelta(minutes=1),
        per_host_budget: FetchBudget | None = None,
        policy: HostPolicy | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        signature_spec: SignatureSpec = "cavage",
        key_ttl: timedelta = DEFAULT_KEY_TTL,
    ) -> None:
        self._node = node
        self._transport = transport
        self._policy = policy
        self._spec: SignatureSpec = signature_spec
        self._failures: TtlLru[str, _Failure] = TtlLru(max_entries, negative_ttl)
        self._last_fetch: TtlLru[str, datetime] = TtlLru(max_entries, refresh_min_interval)
        self._budgets = _HostBuckets(per_host_budget or FetchBudget())
        self._flights: SingleFlight[str, PublicKey] = SingleFlight(max_entries)
        self._keys: TtlLru[str, PublicKey] = TtlLru(max_entries, key_ttl)
        # Bumped by every invalidation: a database read that overlapped one is not kept.
        self._epoch = 0
        _watch_key_changes(self)

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
        """Return the key named ``key_id``; see the module docstring for the rules.

        Raises:
            KeyUnavailable: non-http(s) keyId; unknown local key; the key is gone, unusable,
                not listed by its owner, or refused by policy; a recent fetch of it failed;
                :class:`KeyFetchBudgetExceeded` when the host's budget is spent.
            KeyFetchTemporaryFailure: the origin is unreachable (now, or at the last attempt
                within ``negative_ttl``).
        """
        host = _checked_key_id(key_id)
        if self._node.uris.is_local(key_id):
            return await self._local_key(key_id)
        now = self._node.clock()
        if refresh:
            # A signature did not verify with what we hold: memory is not trusted for this key
            # any more; the database (and, at most once a refresh_min_interval, the origin) is.
            self._keys.pop(key_id)
        else:
            remembered = self._keys.get(key_id, now)
            if remembered is not None:
                return remembered
        if refresh and self._last_fetch.get(key_id, now) is not None:
            # Fetched less than refresh_min_interval ago: what we hold is as fresh as allowed.
            refresh = False
        epoch = self._epoch
        cached = await self._stored_key(key_id)  # KeyUnavailable for a deleted actor's key
        if cached is not None and not refresh:
            if epoch == self._epoch:  # no change to keys or actors committed during the read
                self._keys.put(key_id, cached, now)
            return cached
        failure = self._failures.get(key_id, now)
        if failure is not None:
            raise failure.error(key_id)
        # Callers arriving while a fetch of this keyId runs share it (cases 6, 7).
        return await self._flights.run(key_id, lambda: self._fetch(key_id, host))

    async def _local_key(self, key_id: str) -> PublicKey:
        async with self._node.sessions() as session:
            stmt = (
                select(ActorKey.public_pem, Actor.iri)
                .join(Actor, Actor.id == ActorKey.actor_id)
                .where(ActorKey.key_iri == key_id, Actor.local.is_(True), Actor.deleted_at.is_(None))
            )
            row = (await session.execute(stmt)).one_or_none()
        if row is None:
            raise KeyUnavailable("no such local key", key_id=key_id)
        return PublicKey(Iri(key_id), Iri(row.iri), public_key_from_pem(row.public_pem))

    async def _stored_key(self, key_id: str) -> PublicKey | None:
        async with self._node.sessions() as session:
            stmt = (
                select(ActorKey.public_pem, Actor.iri, Actor.deleted_at)
                .join(Actor, Actor.id == ActorKey.actor_id)
                .where(ActorKey.key_iri == key_id, Actor.local.is_(False))
            )
            row = (await session.execute(stmt)).one_or_none()
        if row is None:
            return None
        if row.deleted_at is not None:
            # A deleted actor's key verifies nothing and is not worth a fetch (case 6).
            raise KeyUnavailable("the key's actor is deleted", key_id=key_id)
        return PublicKey(Iri(key_id), Iri(row.iri), public_key_from_pem(row.public_pem))

    async def _fetch(self, key_id: Iri, host: str) -> PublicKey:
        now = self._node.clock()
        if self._last_fetch.get(key_id, now) is not None:
            # A fetch of this keyId ended moments ago (refresh rate limit, case 8): what it
            # stored, or the failure it remembered, is the answer.
            stored = await self._stored_key(key_id)
            if stored is not None:
                return stored
            failure = self._failures.get(key_id, now)
            if failure is not None:
                raise failure.error(key_id)
            raise KeyUnavailable("the key was fetched moments ago and is not available", key_id=key_id)
        if not self._budgets.take(registrable_domain(host), now):  # not per host:port (case 57)
            # Not remembered as a failure: the key may be fine, we are just not asking now.
            raise KeyFetchBudgetExceeded("too many key fetches for this host; try again later", key_id=key_id)
        self._last_fetch.put(key_id, now, now)
        signer = await instance_key_pair(self._node)
        try:
            fetched = await fetch_key(
                key_id,
                transport=self._transport,
                signer=signer,
                now=now,
                uris=self._node.uris,
                policy=self._policy,
                spec=self._spec,
            )
        except FetchTemporaryFailure as exc:
            raise self._remember(
                key_id, now, temporary=True, detail=f"key origin unreachable: {exc.detail}"
            ) from exc
        except DocumentGone as exc:
            raise self._remember(key_id, now, temporary=False, detail=f"key gone ({exc.status})") from exc
        except FederationError as exc:
            raise self._remember(key_id, now, temporary=False, detail=f"key refused: {exc.code}") from exc
        await store_fetched_actor(self._node, fetched.owner)
        self._failures.pop(key_id)
        return fetched.key

    def forget(self, *, key_ids: Iterable[str] = (), owners: Iterable[str] = ()) -> None:
        """Drop the keys remembered under ``key_ids`` and those owned by ``owners``.

        Called for every ORM change to ``actor_keys`` rows and actors' ``deleted_at`` (see
        :func:`_watch_key_changes`); callers that change them another way call it themselves.
        """
        self._epoch += 1
        for key_id in key_ids:
            self._keys.pop(key_id)
        gone = frozenset(owners)
        if gone:
            self._keys.pop_where(lambda _key_id, key: key.owner in gone)

    def _remember(self, key_id: Iri, now: datetime, *, temporary: bool, detail: str) -> FederationError:
        failure = _Failure(temporary=temporary, detail=detail)
        self._failures.put(key_id, failure, now)
        log.info("key fetch failed", extra={"key_id": key_id, "temporary": temporary, "reason": detail})
        return failure.error(key_id)


# ---------------------------------------------------------------------------------------------
# Dropping remembered keys when the database changes them
# ---------------------------------------------------------------------------------------------

_RESOLVERS: weakref.WeakSet[RemoteKeyResolver] = weakref.WeakSet()
_PENDING: Final = "entraide.key_resolver.pending"
"""``Session.info`` entry: the (key ids, owners) changed in the session's open transaction."""


def _watch_key_changes(resolver: RemoteKeyResolver) -> None:
    """Register ``resolver`` for invalidations; install the ORM listeners once per process.

    Listeners are process-wide (mapper events are): a change made for one node also drops the
    entries of other nodes in the same process (tests), which only costs them a database read.
    """
    _RESOLVERS.add(resolver)
    if not event.contains(ActorKey, "after_update", _key_row_changed):
        for name in ("after_insert", "after_update", "after_delete"):
            event.listen(ActorKey, name, _key_row_changed)
        event.listen(Actor, "after_update", _actor_changed)
        event.listen(Actor, "after_delete", _actor_changed)
        event.listen(Session, "after_commit", _session_ended)
        event.listen(Session, "after_rollback", _session_ended)


def _invalidate(target: object, key_ids: tuple[str, ...], owners: tuple[str, ...]) -> None:
    # Now (the flush), and again when the transaction ends: a concurrent read that started
    # before the commit saw the old row, and must not leave it in memory.
    for resolver in list(_RESOLVERS):
        resolver.forget(key_ids=key_ids, owners=owners)
    session = object_session(target)
    if session is not None:
        pending: list[tuple[tuple[str, ...], tuple[str, ...]]] = session.info.setdefault(_PENDING, [])
        pending.append((key_ids, owners))


def _key_row_changed(_mapper: Any, _connection: Any, target: ActorKey) -> None:
    _invalidate(target, (target.key_iri,), ())


def _actor_changed(_mapper: Any, _connection: Any, target: Actor) -> None:
    state = attributes.instance_state(target)
    if state.deleted or state.was_deleted or attributes.get_history(target, "deleted_at").has_changes():
        _invalidate(target, (), (target.iri,))


def _session_ended(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        for key_ids, owners in pending:
            for resolver in list(_RESOLVERS):
                resolver.forget(key_ids=key_ids, owners=owners)


__all__ = ["DEFAULT_KEY_TTL", "FetchBudget", "KeyFetchBudgetExceeded", "RemoteKeyResolver", "TtlLru"]
