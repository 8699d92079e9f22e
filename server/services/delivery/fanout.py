"""Fan-out and delivery: the two jobs that carry an outbox activity to every inbox that must get it.

``fanout`` pages through the audience and, per page and in one transaction, inserts the
delivery rows and their ``deliver`` jobs. ``deliver`` signs and POSTs one activity to one inbox
and records the outcome, the host's health and the signature spec that worked.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, func, select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession

from federation import circuit
from federation.audience import PUBLICLY_READABLE, Visibility
from federation.delivery import (
    Delivered,
    DeliveryOutcome,
    Gone,
    Recipient,
    Rejected,
    RetryLater,
    deliver,
    inbox_request,
    plan_delivery,
)
from federation.http import OutgoingRequest
from federation.iri import host_of, is_http_iri
from federation.keys import KeyPair
from federation.policy import HostPolicy
from federation.ports import Transport
from federation.signatures import SignatureSpec, cavage
from federation.types import PUBLIC_ALIASES, Clock, Iri
from server.db import queue
from server.db.models import Activity, Actor, Delivery, PeerHost
from server.db.queries import actors as actor_queries
from server.db.queries import bare
from server.db.queries import delivery as q
from server.db.upsert import insert_for
from server.services.content.current import current_documents
from server.services.context import NodeContext
from server.services.delivery import outbox

log = logging.getLogger(__name__)

DELIVER = "deliver"
FANOUT = outbox.FANOUT
FANOUT_PAGE = 500
SHARED_INBOX_VISIBILITIES = PUBLICLY_READABLE | {Visibility.FOLLOWERS}
UNRESOLVABLE = "recipient_unresolvable"


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        found = (v if isinstance(v, str) else v.get("id") for v in value if isinstance(v, str | dict))
        return [iri for iri in found if isinstance(iri, str)]
    return []


SEVERING_TYPES = frozenset({"Reject", "Undo", "Block"})
"""Sent to an actor the node just blocked (``server/services/moderation/blocks.py``): the actor
policy does not hold them back, the host policy still does."""


@dataclass(frozen=True, slots=True)
class FanoutResult:
    deliveries: int
    recipients: int


class _Planner:
    """Queues the deliveries of one fan-out run, page by page, each page in one transaction.

    Keeps the inboxes this run already planned (with shared inboxes most pages only repeat
    them) and the totals :class:`FanoutResult` reports.
    """

    def __init__(
        self,
        node: NodeContext,
        activity_id: int,
        *,
        shared: bool,
        priority: int,
        policy: HostPolicy | None,
        on_queued: Callable[[], None] | None,
        severing: bool = False,
    ) -> None:
        self.node = node
        self.activity_id = activity_id
        self.shared = shared
        self.priority = priority
        self.policy = policy
        self.on_queued = on_queued
        self.severing = severing
        self.own_origin = frozenset({node.uris.origin})
        self.planned: set[str] = set()
        self.deliveries = 0
        self.recipients = 0

    async def queue_page(self, recipients: list[Recipient]) -> None:
        self.recipients += len(recipients)
        if self.policy is not None and not self.severing:
            # A node-blocked actor gets nothing but what ends our relations with it.
            recipients = [r for r in recipients if self.policy.allows_actor(r.actor)]
        targets = plan_delivery(recipients, prefer_shared_inbox=self.shared, exclude_origins=self.own_origin)
        targets = [t for t in targets if t.inbox not in self.planned]
        self.planned.update(t.inbox for t in targets)
        if self.policy is not None:
            targets = [t for t in targets if self.policy.allows(host_of(t.inbox))]
        if not targets:
            return
        async with self.node.sessions.begin() as session:
            ids = await q.plan_deliveries(
                session,
                self.activity_id,
                [(t.inbox, t.host) for t in targets],
                kind=DELIVER,
                priority=self.priority,
                max_attempts=queue.DEFAULT_MAX_ATTEMPTS,
                now=self.node.clock(),
            )
        self.deliveries += len(ids)
        if ids and self.on_queued is not None:
            self.on_queued()

    async def queue_shared_inboxes(self, sender_id: int) -> None:
        """Followers with a shared inbox, from one grouped read: one row per shared inbox (a
        host, in practice) with how many followers it serves, so the node handles O(hosts)
        rows, not a row and an object per follower."""
        async with self.node.sessions() as session:
            inboxes = await q.remote_follower_shared_inboxes(session, sender_id)
        for offset in range(0, len(inboxes), FANOUT_PAGE):
            chunk = inboxes[offset : offset + FANOUT_PAGE]
            # Each row stands for every follower behind that inbox: the inbox is the recipient.
            await self.queue_page([Recipient(Iri(inbox), Iri(inbox), Iri(inbox)) for inbox, _ in chunk])
            self.recipients += sum(n for _, n in chunk) - len(chunk)

    async def queue_paged(self, pager: _Pager, owner_id: int) -> None:
        """Every recipient ``pager`` lists, :data:`FANOUT_PAGE` at a time (keyset on the row id)."""
        after = 0
        while True:
            async with self.node.sessions() as session:
                rows = await pager(session, owner_id, after_id=after, limit=FANOUT_PAGE)
            if not rows:
                return
            after = rows[-1][0]
            await self.queue_page(_recipients((iri, inbox, si) for _, iri, inbox, si in rows))


def _recipients(rows: Iterable[tuple[str, str | None, str | None]]) -> list[Recipient]:
    """(actor IRI, inbox, shared inbox) rows as recipients; actors without an inbox are left out."""
    return [Recipient(Iri(iri), Iri(inbox), Iri(si) if si else None) for iri, inbox, si in rows if inbox]


_Pager = Callable[..., Awaitable[Sequence[tuple[int, str, str | None, str | None]]]]


def _explicit_addressees(node: NodeContext, doc: dict[str, Any], also: list[str] | None) -> list[str]:
    """The remote IRIs the activity names (``to``, ``cc``, ``audience``) plus ``also``, once each."""
    addressed = [iri for field in ("to", "cc", "audience") for iri in _as_list(doc.get(field))]
    return [
        iri
        for iri in dict.fromkeys([*addressed, *(also or [])])
        if iri and iri not in PUBLIC_ALIASES and not node.uris.is_local(iri)
    ]


async def fanout(
    node: NodeContext,
    activity_id: int,
    *,
    priority: int = queue.Priority.NORMAL,
    policy: HostPolicy | None = None,
    also: list[str] | None = None,
    on_queued: Callable[[], None] | None = None,
    resolve: Callable[[str], Awaitable[bool | None]] | None = None,
) -> FanoutResult:
    """Plan and queue one delivery per inbox for an outbox activity. Safe to run again.

    ``also``: actors to deliver to beyond the addressing (``bto``/``bcc``, a poll's voters).
    ``resolve``: fetches and stores an addressed remote actor the node has never seen (signed,
    through the address guard) and says whether it could (``None``: not an actor, such as a
    collection: nothing to deliver); without it, such an addressee is skipped. One that cannot
    be resolved is recorded as a failed delivery to its IRI (``recipient_unresolvable``), so
    ``entraide deliveries status`` shows the drop.
    ``on_queued``: called after each page's deliveries are committed (wake the worker, so the
    first inboxes are reached while later pages are still being planned).

    Inboxes on hosts the peer ``policy`` refuses (blocked, or outside a closed network) are
    not planned at all.
    """
    async with node.sessions() as session:
        activity = await session.get(Activity, activity_id)
        if activity is None:
            return FanoutResult(0, 0)
        sender = await session.get(Actor, activity.actor_id)
    assert sender is not None
    shared = activity.visibility in SHARED_INBOX_VISIBILITIES
    planner = _Planner(
        node,
        activity_id,
        shared=shared,
        priority=priority,
        policy=policy,
        on_queued=on_queued,
        severing=activity.type in SEVERING_TYPES,
    )
    explicit = _explicit_addressees(node, activity.document, also)
    if resolve is not None:
        await _resolve_unknown(node, activity_id, explicit, resolve)
    async with node.sessions() as session:
        explicit_rows = await q.remote_actors_by_iri(session, explicit, sender_id=sender.id)
    # Explicitly addressed actors go to their personal inbox unless the activity is shareable.
    explicit_recipients = _recipients(explicit_rows)
    if explicit_recipients:
        await planner.queue_page(explicit_recipients)
    if shared:
        await planner.queue_shared_inboxes(sender.id)
        # The followers without a shared inbox, paged, get their own inbox.
        await planner.queue_paged(q.remote_followers_without_shared_inbox, sender.id)
    elif activity.visibility == "members" and sender.type == "Group":
        await planner.queue_paged(q.remote_members, sender.id)
    log.info(
        "fanout planned",
        extra={
            "activity": activity.iri,
            "deliveries": planner.deliveries,
            "recipients": planner.recipients,
            "visibility": activity.visibility,
        },
    )
    return FanoutResult(planner.deliveries, planner.recipients)


async def _resolve_unknown(
    node: NodeContext, activity_id: int, iris: list[str], resolve: Callable[[str], Awaitable[bool | None]]
) -> None:
    """Fetch the addressees no row knows (neither an actor nor a known actor's followers), one
    at a time; record each that cannot be resolved as a failed delivery to its IRI."""
    async with node.sessions() as session:
        known = await q.known_addressees(session, iris)
    # An IRI without a usable host can be neither fetched nor recorded (input checks refuse them).
    unresolved = [
        iri for iri in iris if iri not in known and is_http_iri(iri) and await resolve(iri) is False
    ]
    if not unresolved:
        return
    async with node.sessions.begin() as session:
        ids = await q.insert_deliveries(
            session, activity_id, [(iri, host_of(iri)) for iri in unresolved], now=node.clock()
        )
        if ids:
            await session.execute(
                sa_update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(state="failed", last_error=UNRESOLVABLE)
            )
    log.info("addressees not resolved", extra={"activity_id": activity_id, "addressees": unresolved})


@dataclass(frozen=True, slots=True)
class DeliveryDone:
    state: str


@dataclass(frozen=True, slots=True)
class DeliveryRetry:
    """Try again: after ``after`` if the peer or the breaker said so, else under the retry policy."""

    after: timedelta | None
    reason: str


DeliveryStep = DeliveryDone | DeliveryRetry


def _health(row: Any) -> circuit.HostHealth:
    """The health stored in a ``peer_hosts`` row (an ORM object or a Core row), or the default."""
    if row is None:
        return circuit.HostHealth()
    return circuit.HostHealth(
        breaker=circuit.BreakerState(row.breaker),
        recent_failures=row.recent_failures,
        window_started_at=row.window_started_at,
        open_until=row.open_until,
        failing_days=row.failing_days,
        last_failure_day=row.last_failure_day,
        unavailable=row.unavailable,
    )


_PEER_HOSTS = cast(Table, PeerHost.__table__)

HOLD_LIMIT = timedelta(days=7)
"""How long a delivery may be held behind an open breaker before it is dropped (Fedify's TTL)."""

SENDER_CACHE_SIZE = 256
"""Activities whose serialised body and signing key a :class:`DeliveryBatcher` keeps."""


async def _locked_hosts(
    session: AsyncSession, hosts: Collection[str], *, now: datetime
) -> dict[str, PeerHost]:
    """The hosts' health rows, created if missing, locked for this transaction.

    Two workers delivering to a new host may race to create its row: the insert ignores a
    conflict (``ON CONFLICT DO NOTHING`` on both engines) instead of failing one of them. The
    insert is also this transaction's first write, so on SQLite it takes the write lock before
    the rows are read.
    """
    ordered = sorted(hosts)
    await session.execute(
        insert_for(session, _PEER_HOSTS).on_conflict_do_nothing(index_elements=["host"]),
        [{"host": host, "updated_at": now} for host in ordered],
    )
    rows = await session.scalars(select(PeerHost).where(PeerHost.host.in_(ordered)).with_for_update())
    return {row.host: row for row in rows}


def _write_health(row: PeerHost, health: circuit.HostHealth, *, now: datetime) -> None:
    row.breaker = health.breaker.value
    row.recent_failures = health.recent_failures
    row.window_started_at = health.window_started_at
    row.open_until = health.open_until
    row.failing_days = health.failing_days
    row.last_failure_day = health.last_failure_day
    row.unavailable = health.unavailable
    row.updated_at = now


@dataclass(frozen=True, slots=True)
class DeliveryWork:
    """One delivery to attempt: its row, and the attempt its job is on."""

    delivery_id: int
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class _Sender:
    """What every delivery of one activity shares: the body, serialised once, and the signer."""

    body: bytes
    signer: KeyPair
    sender_id: int


@dataclass(frozen=True, slots=True)
class _Skip:
    """The delivery is not pending any more (done by an earlier run, or deleted)."""

    state: str


@dataclass(frozen=True, slots=True)
class _Held:
    """The host's breaker is open (or another delivery is its probe): wait, spend no attempt."""

    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Dropped:
    """Never to be sent: the host is unavailable, or the delivery was held too long."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """A delivery cleared to go: :meth:`send` signs and POSTs it and classifies the answer."""

    work: DeliveryWork
    row: q.DeliveryRow
    sender: _Sender
    spec: SignatureSpec
    first_knock: bool = False
    """The host's scheme is not known yet: any error answer to RFC 9421 falls back at once."""

    async def send(
        self, transport: Transport, clock: Clock, *, presigned: OutgoingRequest | None = None
    ) -> DeliveryOutcome:
        """``presigned``: :meth:`unsigned`'s request signed elsewhere (a signing pool)."""
        return await deliver(
            Iri(self.row.inbox_iri),
            self.sender.body,
            signer=self.sender.signer,
            transport=transport,
            now=clock(),
            spec=self.spec,
            first_knock=self.first_knock,
            presigned=presigned,
        )

    def unsigned(self, now: datetime) -> cavage.UnsignedRequest | None:
        """The first attempt's request up to its draft-cavage signature, or ``None`` when this
        attempt signs with RFC 9421 (signed in :meth:`send`, as before)."""
        if self.spec != "cavage":
            return None
        return cavage.prepare(
            inbox_request(Iri(self.row.inbox_iri), self.sender.body), self.sender.signer, now=now
        )


DeliveryResult = DeliveryOutcome | _Skip | _Held | _Dropped
"""What happened to one :class:`DeliveryWork`: the peer's answer, or why nothing was sent."""


@dataclass(frozen=True, slots=True)
class PreparedDelivery:
    """:meth:`DeliveryBatcher.prepare`'s answer for one work item: either ``attempt`` is set
    (send it, then record its outcome) or ``result`` is (record it as it is)."""

    work: DeliveryWork
    row: q.DeliveryRow | None
    attempt: DeliveryAttempt | None = None
    result: DeliveryResult | None = None


class _HostGate:
    """The breaker, consulted once per host and batch (:meth:`DeliveryBatcher.prepare`)."""

    def __init__(self, health: dict[str, Any], probing: set[str], now: datetime) -> None:
        self.health = health
        self.probing = probing
        self.now = now
        self._states: dict[str, circuit.HostHealth] = {}
        self._probe_taken: set[str] = set()

    def blocked(self, row: q.DeliveryRow) -> _Held | _Dropped | None:
        """Why ``row`` may not be sent now, or ``None``: it may."""
        state = self._states.get(row.host)
        if state is None:
            state = self._states[row.host] = _health(self.health.get(row.host))
        if state.unavailable:
            return _Dropped("host_unavailable")
        if row.host in self.probing:
            # The probe is the first delivery of the host in the batch; the others wait.
            allowed, retry_at = row.host not in self._probe_taken, state.open_until
            self._probe_taken.add(row.host)
        else:
            allowed, retry_at = circuit.may_deliver(state, self.now)
        if allowed:
            return None
        if self.now - row.created_at > HOLD_LIMIT:
            return _Dropped("held_too_long")
        return _Held(retry_at)


class DeliveryBatcher:
    """Delivers many pending deliveries with a few statements per batch, not ~20 per delivery.

    A batch goes through three steps, and the caller (the worker's delivery lane, or
    :func:`deliver_one`) runs the sends concurrently between the second and the third:

    1. :meth:`prepare`: one read of the delivery rows, the activities not yet cached (each
       body is serialised once and kept with its signing key), and the hosts' health. The
       breaker is consulted once per host and batch: an open breaker holds every delivery
       of the host, an expired one lets exactly one probe through (taken under a row lock so
       two workers never both probe), an unavailable host drops them;
    2. :meth:`DeliveryAttempt.send`: sign (one signature per activity and inbox) and POST;
    3. :meth:`record`: every outcome in the caller's transaction: the delivery rows in one
       executemany, the hosts' health once per host, followers of a gone inbox deactivated.
    """

    def __init__(self, node: NodeContext, *, prefer_rfc9421: bool = False) -> None:
        self.node = node
        self.prefer_rfc9421 = prefer_rfc9421
        self._senders: OrderedDict[int, _Sender] = OrderedDict()

    async def prepare(self, works: Sequence[DeliveryWork]) -> list[PreparedDelivery]:
        """Load what the batch needs and decide, per delivery, whether it may be sent now."""
        if not works:
            return []
        now = self.node.clock()
        rows, health = await self._load(works)
        probing = await self._take_probes(health, now)
        gate = _HostGate(health, probing, now)
        return [self._decide(work, rows.get(work.delivery_id), gate) for work in works]

    async def _load(self, works: Sequence[DeliveryWork]) -> tuple[dict[int, q.DeliveryRow], dict[str, Any]]:
        """The batch's delivery rows, its senders (cached), and its hosts' health rows: two or
        three statements through the bare driver, no hand-off to aiosqlite's thread on SQLite
        (decision 106); the signing keys of a sender not cached yet through the ORM."""
        async with self.node.sessions() as session:
            rows, health = await q.batch_rows(session, [w.delivery_id for w in works])
            pending = [r for r in rows.values() if r.state == "pending"]
            await self._load_senders(session, {r.activity_id for r in pending})
            return rows, health

    async def _take_probes(self, health: dict[str, Any], now: datetime) -> set[str]:
        """Hosts whose open period has ended: one delivery each is the probe, taken under the
        row lock (two workers never both probe). ``health`` gets the locked rows."""
        probing = {
            host
            for host, row in health.items()
            if row.breaker != circuit.BreakerState.CLOSED and circuit.may_deliver(_health(row), now)[0]
        }
        if not probing:
            return probing
        async with self.node.sessions.begin() as session:
            for host, locked in (await _locked_hosts(session, probing, now=now)).items():
                current = _health(locked)
                allowed, _ = circuit.may_deliver(current, now)
                if allowed and current.breaker != circuit.BreakerState.CLOSED:
                    _write_health(locked, circuit.start_probe(current, now), now=now)
                else:
                    probing.discard(host)
                health[host] = locked
        return probing

    def _decide(self, work: DeliveryWork, row: q.DeliveryRow | None, gate: _HostGate) -> PreparedDelivery:
        """Send ``work`` now, or why not (done already, host unavailable, breaker open)."""
        if row is None or row.state != "pending":
            return PreparedDelivery(work, row, result=_Skip(row.state if row else "missing"))
        blocked = gate.blocked(row)
        if blocked is not None:
            return PreparedDelivery(work, row, result=blocked)
        host_row = gate.health.get(row.host)
        known = host_row.signature_spec if host_row is not None else None
        spec: SignatureSpec = (
            "rfc9421" if known == "rfc9421" or (known is None and self.prefer_rfc9421) else "cavage"
        )
        attempt = DeliveryAttempt(work, row, self._senders[row.activity_id], spec, first_knock=known is None)
        return PreparedDelivery(work, row, attempt=attempt)

    async def _load_senders(self, session: AsyncSession, activity_ids: set[int]) -> None:
        for activity_id in activity_ids:
            if activity_id in self._senders:
                self._senders.move_to_end(activity_id)
        if not activity_ids:
            return
        # Every batch reads the documents again (only the signers are kept from one batch to the
        # next): a retry sends the object as it is now, never the content of an object deleted
        # since an earlier attempt of the same activity.
        rows = await q.activities_with_senders(session, activity_ids)
        documents = await current_documents(session, [row[1] for row in rows])
        for (activity_id, _, sender_id, sender_iri), document in zip(rows, documents, strict=True):
            known = self._senders.get(activity_id)
            if known is not None:
                signer = known.signer
            else:
                keys = await actor_queries.keys_of(session, sender_id)
                signer = self.node.local_keys.key_pair(keys["rsa"], sender_iri)
            self._senders[activity_id] = _Sender(orjson.dumps(document), signer, sender_id)
        while len(self._senders) > max(SENDER_CACHE_SIZE, len(activity_ids)):
            self._senders.popitem(last=False)

    async def record(
        self, session: AsyncSession, done: Sequence[tuple[PreparedDelivery, DeliveryResult]]
    ) -> list[DeliveryStep]:
        """Record every result in ``session`` (the caller's transaction) and say what follows.

        The delivery rows and the hosts reset are left with ``bare.later`` for the caller's next
        bare write (the lane's completion of the jobs, ``queue.complete_many``) or
        ``bare.send_later``; the session refuses to commit before they are sent."""
        now = self.node.clock()
        batch = _Recording(now)
        steps = [batch.add(item, result) for item, result in done]
        # The delivery rows and the hosts that answered well go with the completion of the jobs
        # (bare.later, decision 106): one hand-off to aiosqlite's thread or one PostgreSQL statement.
        q.record_deliveries_later(session, batch.updates)
        for sender_id, inbox in batch.gone:
            await q.deactivate_followers_at_inbox(session, sender_id, inbox)
        await _record_host_events(session, batch.host_events, now=now)
        delivered = sum(isinstance(r, Delivered) for _, r in done)
        if delivered:
            log.debug("deliveries recorded", extra={"delivered": delivered, "results": len(done)})
        return steps


class _Recording:
    """What :meth:`DeliveryBatcher.record` writes for a batch, gathered one result at a time."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.updates: list[dict[str, object]] = []
        self.host_events: dict[str, list[tuple[bool, str | None]]] = {}
        self.gone: list[tuple[int, str]] = []

    def add(self, item: PreparedDelivery, result: DeliveryResult) -> DeliveryStep:
        """Note ``result``'s row update, host event and gone inbox; return the job's next step."""
        work, row = item.work, item.row
        if row is None or isinstance(result, _Skip):
            return DeliveryDone(result.state if isinstance(result, _Skip) else "missing")
        if isinstance(result, _Held):
            after = (result.retry_at - self.now) if result.retry_at else None
            return DeliveryRetry(after=after, reason="circuit_open")
        values: dict[str, object] = {
            "b_id": row.id,
            "state": row.state,
            "attempts": work.attempt,
            "last_status": row.last_status,
            "last_error": row.last_error,
            "delivered_at": None,
        }
        step = self._apply(item, row, result, values)
        self.updates.append(values)
        if not isinstance(result, Delivered):
            log.info(
                "delivery attempt",
                extra={
                    "delivery_id": row.id,
                    "inbox": row.inbox_iri,
                    "outcome": type(result).__name__,
                    "attempt": work.attempt,
                },
            )
        return step

    def _apply(
        self, item: PreparedDelivery, row: q.DeliveryRow, result: DeliveryResult, values: dict[str, object]
    ) -> DeliveryStep:
        work = item.work
        match result:
            case _Dropped(reason=reason):
                values.update(state="failed", attempts=row.attempts, last_error=reason)
                return DeliveryDone("failed")
            case Delivered(status=status, spec=used):
                values.update(state="delivered", last_status=status, delivered_at=self.now, last_error=None)
                self.host_events.setdefault(row.host, []).append((True, used))
                return DeliveryDone("delivered")
            case Gone(status=status):
                values.update(state="gone", last_status=status)
                assert item.attempt is not None
                self.gone.append((item.attempt.sender.sender_id, row.inbox_iri))
                return DeliveryDone("gone")
            case Rejected(status=status, excerpt=excerpt):
                values.update(state="rejected", last_status=status, last_error=excerpt[:1024])
                return DeliveryDone("rejected")
            case RetryLater(reason=reason, status=status, after=after):
                values.update(last_status=status, last_error=reason)
                if status != 429:  # a rate limit is the peer working as intended, not failing
                    self.host_events.setdefault(row.host, []).append((False, None))
                if work.attempt >= work.max_attempts:
                    values["state"] = "failed"
                    return DeliveryDone("failed")
                return DeliveryRetry(after=after, reason=reason)
        raise AssertionError(f"unexpected delivery result {result!r}")  # _Skip and _Held end in add()


async def _record_host_events(
    session: AsyncSession, host_events: dict[str, list[tuple[bool, str | None]]], *, now: datetime
) -> None:
    """The hosts' health after the batch's successes and failures, once per host."""
    # A success resets a host's health whatever it was (circuit.record_success), so a host
    # whose last outcome in the batch is a success needs no read: one upsert for them all.
    reset = {host: events for host, events in host_events.items() if events[-1][0]}
    learnt: dict[str, str | None] = {}
    for host, events in reset.items():
        specs = [spec for ok, spec in events if ok and spec is not None]
        learnt[host] = specs[-1] if specs else None  # None: the spec stored is kept
    q.reset_hosts_later(session, learnt, now=now)
    counted = {host: events for host, events in host_events.items() if host not in reset}
    if not counted:
        return
    locked = await _locked_hosts(session, counted.keys(), now=now)
    for host, events in counted.items():
        row = locked[host]
        health = _health(row)
        for success, spec in events:
            if success:
                health = circuit.record_success(health)
                row.last_success_at = now
                if spec is not None:
                    row.signature_spec = spec
            else:
                health = circuit.record_failure(health, now)
        _write_health(row, health, now=now)


async def deliver_one(
    node: NodeContext,
    transport: Transport,
    delivery_id: int,
    *,
    attempt: int,
    max_attempts: int,
    prefer_rfc9421: bool = False,
) -> DeliveryStep:
    """Deliver one pending delivery and record what happened (a batch of one).

    Hosts whose breaker is open hold the delivery (for at most :data:`HOLD_LIMIT`); hosts
    marked unavailable (failing on 7 distinct days) are skipped until they contact us again.
    """
    batcher = DeliveryBatcher(node, prefer_rfc9421=prefer_rfc9421)
    (item,) = await batcher.prepare([DeliveryWork(delivery_id, attempt, max_attempts)])
    result: DeliveryResult
    if item.attempt is not None:
        result = await item.attempt.send(transport, node.clock)
    else:
        assert item.result is not None
        result = item.result
    async with node.sessions.begin() as session:
        (step,) = await batcher.record(session, [(item, result)])
        await bare.send_later(session)  # what record left for a lane's completion of its jobs
    return step


async def delivery_status(session: AsyncSession, *, limit: int = 20) -> list[dict[str, Any]]:
    """Per recent activity: how many deliveries are pending, delivered, failed, gone, rejected."""
    recent = select(Activity.id).order_by(Activity.id.desc()).limit(limit).scalar_subquery()
    stmt = (
        select(Activity.iri, Activity.type, Delivery.state, func.count())
        .join(Delivery, Delivery.activity_id == Activity.id)
        .where(Activity.id.in_(recent))
        .group_by(Activity.id, Activity.iri, Activity.type, Delivery.state)
        .order_by(Activity.id.desc())
    )
    summary: dict[str, dict[str, Any]] = {}
    for iri, kind, state, count in (await session.execute(stmt)).all():
        entry = summary.setdefault(iri, {"activity": iri, "type": kind})
        entry[state] = int(count)
    return list(summary.values())
