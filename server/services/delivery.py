"""Fan-out and delivery: the two jobs that carry an outbox activity to every inbox that must get it.

``fanout`` pages through the audience and, per page and in one transaction, inserts the
delivery rows and their ``deliver`` jobs. ``deliver`` signs and POSTs one activity to one inbox
and records the outcome, the host's health and the signature spec that worked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation import circuit
from federation.delivery import Delivered, Gone, Recipient, Rejected, RetryLater, deliver, plan_delivery
from federation.policy import PeerPolicy
from federation.ports import Transport
from federation.types import PUBLIC_ALIASES, Iri
from federation.vocab.parse import host_of
from server.db import queue
from server.db.models import Activity, Actor, Delivery, PeerHost
from server.db.queries import actors as actor_queries
from server.db.queries import delivery as q
from server.db.upsert import insert_ignoring_conflict
from server.services import outbox
from server.services.context import NodeContext

log = logging.getLogger(__name__)

DELIVER = "deliver"
FANOUT = outbox.FANOUT
FANOUT_PAGE = 500
SHARED_INBOX_VISIBILITIES = frozenset({"public", "unlisted", "followers"})


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else v.get("id") for v in value if isinstance(v, str | dict)]
    return []


@dataclass(frozen=True, slots=True)
class FanoutResult:
    deliveries: int
    recipients: int


async def fanout(
    node: NodeContext,
    activity_id: int,
    *,
    priority: int = queue.Priority.NORMAL,
    policy: PeerPolicy | None = None,
    also: list[str] | None = None,
) -> FanoutResult:
    """Plan and queue one delivery per inbox for an outbox activity. Safe to run again.

    ``also``: actors to deliver to beyond the addressing (known remote actors only).

    Inboxes on hosts the peer ``policy`` refuses (blocked, or outside a closed network) are
    not planned at all.
    """
    async with node.sessions() as session:
        activity = await session.get(Activity, activity_id)
        if activity is None:
            return FanoutResult(0, 0)
        sender = await session.get(Actor, activity.actor_id)
    assert sender is not None
    doc = activity.document
    own_origin = frozenset({node.uris.origin})
    shared = activity.visibility in SHARED_INBOX_VISIBILITIES
    addressed = [iri for field in ("to", "cc", "audience") for iri in _as_list(doc.get(field))]
    explicit = [
        iri
        for iri in dict.fromkeys([*addressed, *(also or [])])
        if iri and iri not in PUBLIC_ALIASES and not node.uris.is_local(iri)
    ]
    total_deliveries = total_recipients = 0

    async def queue_page(recipients: list[Recipient]) -> None:
        nonlocal total_deliveries, total_recipients
        targets = plan_delivery(recipients, prefer_shared_inbox=shared, exclude_origins=own_origin)
        if policy is not None:
            targets = [t for t in targets if policy.allows(host_of(t.inbox))]
        async with node.sessions.begin() as session:
            now = node.clock()
            ids = await q.insert_deliveries(
                session, activity_id, [(t.inbox, t.host) for t in targets], now=now
            )
            await queue.enqueue_many(
                session,
                [
                    queue.NewJob(DELIVER, {"delivery_id": i}, dedup_key=f"deliver:{i}", priority=priority)
                    for i in ids
                ],
                now=now,
            )
        total_deliveries += len(ids)
        total_recipients += len(recipients)

    async with node.sessions() as session:
        explicit_rows = await q.remote_actors_by_iri(session, explicit, sender_id=sender.id)
    explicit_recipients = [
        Recipient(Iri(iri), Iri(inbox), Iri(si) if si else None) for iri, inbox, si in explicit_rows if inbox
    ]
    # Explicitly addressed actors go to their personal inbox unless the activity is shareable.
    if explicit_recipients:
        await queue_page(explicit_recipients)

    if activity.visibility in SHARED_INBOX_VISIBILITIES:
        pager = q.remote_followers
        audience_owner = sender.id
    elif activity.visibility == "members" and sender.type == "Group":
        pager = q.remote_members
        audience_owner = sender.id
    else:
        pager = None
        audience_owner = 0
    after = 0
    while pager is not None:
        async with node.sessions() as session:
            rows = await pager(session, audience_owner, after_id=after, limit=FANOUT_PAGE)
        if not rows:
            break
        after = rows[-1][0]
        await queue_page(
            [Recipient(Iri(iri), Iri(inbox), Iri(si) if si else None) for _, iri, inbox, si in rows if inbox]
        )
    log.info(
        "fanout planned",
        extra={
            "activity": activity.iri,
            "deliveries": total_deliveries,
            "recipients": total_recipients,
            "visibility": activity.visibility,
        },
    )
    return FanoutResult(total_deliveries, total_recipients)


@dataclass(frozen=True, slots=True)
class DeliveryDone:
    state: str


@dataclass(frozen=True, slots=True)
class DeliveryRetry:
    """Try again: after ``after`` if the peer or the breaker said so, else under the retry policy."""

    after: timedelta | None
    reason: str


DeliveryStep = DeliveryDone | DeliveryRetry


def _health(row: PeerHost | None) -> circuit.HostHealth:
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


HOLD_LIMIT = timedelta(days=7)
"""How long a delivery may be held behind an open breaker before it is dropped (Fedify's TTL)."""


async def _locked_host(session: AsyncSession, host: str, *, now: datetime) -> PeerHost:
    """The host's health row, created if missing, locked for this transaction.

    Two deliveries to a new host may race to create its row: the insert ignores a conflict
    (``ON CONFLICT DO NOTHING`` on both engines) instead of failing one of them.
    """
    await insert_ignoring_conflict(session, PeerHost, {"host": host, "updated_at": now}, conflict_on=["host"])
    row = await session.scalar(select(PeerHost).where(PeerHost.host == host).with_for_update())
    assert row is not None
    return row


async def _claim_host(
    session: AsyncSession, host: str, *, now: datetime
) -> tuple[bool, datetime | None, PeerHost]:
    """Read the host's health under a row lock and, when its breaker allows it, take the probe.

    Done in the caller's transaction so two workers never both send the half-open probe.
    """
    row = await _locked_host(session, host, now=now)
    health = _health(row)
    allowed, retry_at = circuit.may_deliver(health, now)
    if allowed and health.breaker != circuit.BreakerState.CLOSED:
        _write_health(row, circuit.start_probe(health, now), now=now)
    return allowed, retry_at, row


def _write_health(row: PeerHost, health: circuit.HostHealth, *, now: datetime) -> None:
    row.breaker = health.breaker.value
    row.recent_failures = health.recent_failures
    row.window_started_at = health.window_started_at
    row.open_until = health.open_until
    row.failing_days = health.failing_days
    row.last_failure_day = health.last_failure_day
    row.unavailable = health.unavailable
    row.updated_at = now


async def _record_outcome(
    session: AsyncSession, host: str, *, now: datetime, success: bool, spec: str | None = None
) -> None:
    """Apply a success or a counted failure to the host's *current* state (re-read, locked)."""
    row = await _locked_host(session, host, now=now)
    health = _health(row)
    _write_health(
        row, circuit.record_success(health) if success else circuit.record_failure(health, now), now=now
    )
    if success:
        row.last_success_at = now
        if spec is not None:
            row.signature_spec = spec


async def deliver_one(
    node: NodeContext,
    transport: Transport,
    delivery_id: int,
    *,
    attempt: int,
    max_attempts: int,
    prefer_rfc9421: bool = False,
) -> DeliveryStep:
    """Deliver one pending delivery and record what happened.

    Hosts whose breaker is open hold the delivery (for at most :data:`HOLD_LIMIT`); hosts
    marked unavailable (failing on 7 distinct days) are skipped until they contact us again.
    """
    async with node.sessions() as session:
        delivery = await session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != "pending":
            return DeliveryDone(delivery.state if delivery else "missing")
        activity = await session.get(Activity, delivery.activity_id)
        assert activity is not None
        sender = await session.get(Actor, activity.actor_id)
        assert sender is not None
        keys = await actor_queries.keys_of(session, sender.id)
    now = node.clock()
    async with node.sessions.begin() as session:
        allowed, retry_at, host_row = await _claim_host(session, delivery.host, now=now)
        known_spec, unavailable = host_row.signature_spec, host_row.unavailable
        if unavailable or (not allowed and now - delivery.created_at > HOLD_LIMIT):
            row = await session.get(Delivery, delivery_id)
            assert row is not None
            row.state, row.last_error = "failed", "host_unavailable" if unavailable else "held_too_long"
            return DeliveryDone("failed")
    if not allowed:
        return DeliveryRetry(after=(retry_at - now) if retry_at else None, reason="circuit_open")
    signer = node.local_keys.key_pair(keys["rsa"], sender.iri)
    spec = "rfc9421" if (known_spec == "rfc9421" or (known_spec is None and prefer_rfc9421)) else "cavage"
    body = orjson.dumps(activity.document)
    outcome = await deliver(
        Iri(delivery.inbox_iri), body, signer=signer, transport=transport, now=now, spec=spec
    )
    now = node.clock()
    async with node.sessions.begin() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        row.attempts = attempt
        match outcome:
            case Delivered(status=status, spec=used):
                row.state, row.last_status, row.delivered_at, row.last_error = "delivered", status, now, None
                await _record_outcome(session, row.host, now=now, success=True, spec=used)
                step: DeliveryStep = DeliveryDone("delivered")
            case Gone(status=status):
                row.state, row.last_status = "gone", status
                await q.deactivate_followers_at_inbox(session, sender.id, row.inbox_iri)
                step = DeliveryDone("gone")
            case Rejected(status=status, excerpt=excerpt):
                row.state, row.last_status, row.last_error = "rejected", status, excerpt[:1024]
                step = DeliveryDone("rejected")
            case RetryLater(reason=reason, status=status, after=after):
                row.last_status, row.last_error = status, reason
                if status != 429:  # a rate limit is the peer working as intended, not failing
                    await _record_outcome(session, row.host, now=now, success=False)
                if attempt >= max_attempts:
                    row.state = "failed"
                    step = DeliveryDone("failed")
                else:
                    step = DeliveryRetry(after=after, reason=reason)
    log.info(
        "delivery attempt",
        extra={
            "delivery_id": delivery_id,
            "inbox": delivery.inbox_iri,
            "outcome": type(outcome).__name__,
            "attempt": attempt,
        },
    )
    return step


async def host_answered(session: AsyncSession, hosts: set[str], *, now: datetime) -> None:
    """A verified request came from these hosts: they are alive. Close their breakers and clear
    unavailability (Mastodon resets its failure tracker on any signed request from the host)."""
    if not hosts:
        return
    from sqlalchemy import update

    await session.execute(
        update(PeerHost)
        .where(
            PeerHost.host.in_(sorted(hosts)),
            (PeerHost.breaker != "closed") | PeerHost.unavailable.is_(True) | (PeerHost.failing_days > 0),
        )
        .values(
            breaker="closed",
            recent_failures=0,
            window_started_at=None,
            open_until=None,
            failing_days=0,
            last_failure_day=None,
            unavailable=False,
            updated_at=now,
        )
    )


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
