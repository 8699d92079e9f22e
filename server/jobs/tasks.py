"""Which handler runs each job kind: the registry every worker process uses.

Keep this file a table of contents: the work lives in the services (``server/services/…``);
here each job kind is mapped to its service call and to the job outcomes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from federation.http import OutgoingRequest
from federation.inbox import InboundActivity
from federation.keys import KeyPair
from federation.signatures import cavage
from federation.signing_pool import SigningPool
from server.db import queue
from server.db.models import Actor
from server.db.queries import inbox as inbox_queries
from server.db.queries import objects as object_queries
from server.db.queue import ClaimedJob
from server.jobs.registry import DeferJob, JobContext, JobError, JobRegistry, PermanentJobFailure, RetryJob
from server.jobs.worker import LaneRegistry
from server.services.actors.remote import known_actor
from server.services.content import local as content
from server.services.content import polls
from server.services.content.remote import facts_read_together, facts_wanted
from server.services.delivery import fanout as delivery
from server.services.federation import Federation
from server.services.inbox import process as inbox_service
from server.services.inbox.handlers import router
from server.services.media import uploads as media_service
from server.services.membership import following, suspension
from server.services.moderation import blocklists

log = logging.getLogger(__name__)


async def noop(ctx: JobContext) -> None:
    """Do nothing and succeed (tests, and a smoke check that workers are consuming)."""


def _int(ctx: JobContext, key: str) -> int:
    value = ctx.job.payload.get(key)
    if not isinstance(value, int):
        raise PermanentJobFailure("bad_payload", f"{key} missing")
    return value


def _delivery_outcome(step: delivery.DeliveryStep) -> JobError | None:
    """What a delivery's step means for its ``deliver`` job (``None``: done)."""
    match step:
        case delivery.DeliveryRetry(reason="circuit_open", after=after):
            # Held behind an open breaker: not the job's failure, no attempt spent.
            return DeferJob("circuit_open", after=after or timedelta(minutes=5))
        case delivery.DeliveryRetry(reason=reason, after=after):
            return RetryJob(reason, after=after)
        case delivery.DeliveryDone():
            return None


class DeliverLane:
    """``deliver`` jobs in the worker's lane (:class:`server.jobs.worker.BatchKind`), keyed by host.

    Claims, loads and records many deliveries at once through
    :class:`server.services.delivery.fanout.DeliveryBatcher`; each delivery's POST runs on its own.
    """

    kind = delivery.DELIVER
    # A fan-out running in the main loop does not narrow this lane while it plans (decision 100).
    fed_by = frozenset({delivery.FANOUT})
    # A delivery's key is its row's host (claimed by queue.claim_keyed, decision 106).
    keyed_by = queue.KeyOf(table="deliveries", column="host", payload_id="delivery_id")

    def __init__(self, fed: Federation) -> None:
        settings = fed.node.settings
        self.max_in_flight = settings.worker.deliveries_in_flight
        self.max_per_key = settings.worker.per_host
        self._fed = fed
        self._batcher = delivery.DeliveryBatcher(
            fed.node, prefer_rfc9421=settings.federation.rfc9421_first_knock
        )
        self._prepared: dict[int, delivery.PreparedDelivery] = {}
        processes = settings.worker.signing_processes
        self._signing = SigningPool(processes) if processes else None

    async def prepare(self, jobs: Sequence[ClaimedJob]) -> list[Any]:
        works: list[delivery.DeliveryWork] = []
        for job in jobs:
            delivery_id = job.payload.get("delivery_id")
            # A malformed payload is recorded as a missing delivery (the job ends done).
            works.append(
                delivery.DeliveryWork(
                    delivery_id if isinstance(delivery_id, int) else 0, job.attempt, job.max_attempts
                )
            )
        prepared = await self._batcher.prepare(works)
        presigned = await self._presign(prepared)
        items: list[Any] = []
        for job, item in zip(jobs, prepared, strict=True):
            self._prepared[job.id] = item
            if item.attempt is not None:
                signed = presigned.get(id(item))
                items.append(item.attempt.send(self._fed.transport, self._fed.node.clock, presigned=signed))
            else:
                items.append(item.result)
        return items

    async def _presign(self, prepared: Sequence[delivery.PreparedDelivery]) -> dict[int, OutgoingRequest]:
        """With ``worker.signing_processes``, the batch's draft-cavage signatures made at once in
        the signing pool, by ``id`` of their item (decision 90); else nothing (each send signs).

        Signed now rather than when each request leaves: the ``Date`` is then at most the time a
        delivery waits for its host's slot older, far inside the peers' one-hour window. If the
        pool fails, the sends sign for themselves.
        """
        if self._signing is None:
            return {}
        now = self._fed.node.clock()
        pending: list[tuple[int, cavage.UnsignedRequest, KeyPair]] = []
        for item in prepared:
            attempt = item.attempt
            if attempt is None:
                continue
            try:
                unsigned = attempt.unsigned(now)
            except ValueError:
                continue  # its send signs and fails alone, as without the pool
            if unsigned is not None:
                pending.append((id(item), unsigned, attempt.sender.signer))
        if len(pending) < 2:  # one call per signature costs a third of the signature itself
            return {}
        try:
            signatures = await self._signing.sign_many([(pair, u.message) for _, u, pair in pending])
        except Exception:
            log.exception("signing pool failed; the deliveries sign for themselves")
            return {}
        return {key: u.signed(sig) for (key, u, _), sig in zip(pending, signatures, strict=True)}

    def close(self) -> None:
        """Stop the signing pool's processes, if any."""
        if self._signing is not None:
            self._signing.close()

    async def record(
        self, session: AsyncSession, results: Sequence[tuple[ClaimedJob, Any]]
    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(results)
        sent: list[tuple[int, delivery.PreparedDelivery, Any]] = []
        for i, (job, result) in enumerate(results):
            item = self._prepared.pop(job.id, None)
            if isinstance(result, BaseException) or item is None:
                outcomes[i] = result if isinstance(result, BaseException) else RuntimeError("not prepared")
            else:
                sent.append((i, item, result))
        steps = await self._batcher.record(session, [(item, result) for _, item, result in sent])
        for (i, _, _), step in zip(sent, steps, strict=True):
            outcomes[i] = _delivery_outcome(step)
        return outcomes


class _RunOrder:
    """The order the inbox lane keeps between one actor's activities (decision 69).

    Per actor: the *barrier* (the run of its last claimed activity without an ordering key,
    :func:`server.services.inbox.process.ordering_key`) and, per object, the last claimed run
    keyed by that object since. A keyed run waits for the barrier and for the previous run on
    its object; a barrier waits for every run of the actor claimed before it. Runs on
    different objects of one actor therefore go alongside. Entries go when their run ends, so
    the state holds only what is in flight.
    """

    def __init__(self) -> None:
        self._barrier: dict[str, asyncio.Future[None]] = {}
        self._objects: dict[str, dict[str, asyncio.Future[None]]] = {}

    def claim(self, actor: str, key: str | None) -> tuple[list[asyncio.Future[None]], asyncio.Future[None]]:
        """What a run of ``actor`` keyed by ``key`` waits for, and the future it ends."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        objects = self._objects.setdefault(actor, {})
        barrier = self._barrier.get(actor)
        if key is None:
            before = list(objects.values())
            objects.clear()
            self._barrier[actor] = mine
        else:
            before = [objects[key]] if key in objects else []
            objects[key] = mine
        if barrier is not None:
            before.append(barrier)
        return before, mine

    def has_barrier(self, actor: str) -> bool:
        """Is a barrier of ``actor`` claimed and not ended?"""
        return actor in self._barrier

    def release(self, actor: str, key: str | None, mine: asyncio.Future[None]) -> None:
        """The run that ends ``mine`` is over: wake what waits for it, forget it."""
        mine.set_result(None)
        objects = self._objects.get(actor, {})
        if key is not None and objects.get(key) is mine:
            del objects[key]
        if self._barrier.get(actor) is mine:
            del self._barrier[actor]
        if not objects and actor not in self._barrier:
            self._objects.pop(actor, None)

    def __len__(self) -> int:
        """Actors with a run in flight (tests: the state does not outlive the runs)."""
        return len(set(self._barrier) | {a for a, objects in self._objects.items() if objects})


INBOX_LANE_WIDTH = 128
"""Activities the inbox lane holds at least (``worker.concurrency`` when larger). A handler
spends most of its time waiting on the database, so a wider lane costs little memory (loaded
documents) and shares each claim, load and recorded outcome among more activities: the lane
claims once a quarter of it is free. Measured in docs/performance.md (issue 20): 8 wide, a
backlog drained at 22 activities/s on the loaded machine, 32 wide at 31/s; on the quiet machine
(decision 98) 32 wide left the node's core two-thirds idle while a backlog drained (claims waited
for a quarter of the lane's outcomes to be recorded), 128 wide drained it in 0.5–1.0 s instead of
1.9–2.4 s. Of those held, at most ``database.pool_size // 2`` run at once (decision 89); the
others wait their turn, loaded."""


class InboxLane:
    """``process_inbox`` jobs in the worker's lane (:class:`server.jobs.worker.BatchKind`), claimed
    without keys (:func:`server.db.queue.claim_kind`): the order between one actor's activities
    is kept here, not by a cap on how many the lane holds.

    Many stored activities are claimed and loaded at once, and the rows finished meanwhile are
    marked in the transaction that completes their jobs. Activities run alongside, with one
    actor's ordered per object (:class:`_RunOrder`, decision 69): an ``Update`` or a ``Delete``
    never runs before the ``Create`` of its object claimed earlier, an ``Undo`` or a ``Follow``
    never before anything the actor sent earlier, while a burst of new posts from one actor (a
    relay, a Lemmy community) fills the lane. A job that failed runs again when its retry is
    due, after the ones behind it.
    """

    kind = inbox_service.PROCESS_INBOX

    def __init__(self, fed: Federation) -> None:
        self.max_in_flight = max(fed.node.settings.worker.concurrency, INBOX_LANE_WIDTH)
        self._fed = fed
        self._loaded: dict[int, int] = {}  # job id -> inbox activity id, while it runs
        self._order = _RunOrder()
        # Handlers running at once: half the connections the database pool keeps open, the rest
        # for requests, the inbox writer, claims and records (decision 89). Beyond the pool, every
        # session opened and closed a connection of its own.
        self._running = asyncio.Semaphore(max(1, fed.node.settings.database.pool_size // 2))
        # What the runs' store_object reads before writing, read for all of them at once (decision 95).
        self._facts = object_queries.FactsReader(fed.node.sessions)
        # Activities this process's inbox writer stores are handed over as verified (decision 102).
        fed.verified.open()

    async def prepare(self, jobs: Sequence[ClaimedJob]) -> list[Any]:
        wanted = {job.id: job.payload.get("inbox_activity_id") for job in jobs}
        loaded = await inbox_service.load(
            self._fed, [i for i in wanted.values() if isinstance(i, int)], senders=True
        )
        # A sender read now is handed to its runs (decision 89) unless a barrier of that actor
        # (an Update or a Delete of itself, a Move…) runs before them: it may change the row.
        barred = {q.actor_iri for q in loaded.values() if q.ordering is None}
        in_flight = {q.actor_iri for q in loaded.values()}
        barred.update(actor for actor in in_flight if self._order.has_barrier(actor))
        items: list[Any] = []
        for job in jobs:
            activity_id = wanted[job.id]
            if not isinstance(activity_id, int):
                items.append(PermanentJobFailure("bad_payload", "inbox_activity_id missing"))
            elif activity_id not in loaded:
                items.append(None)  # processed by an earlier run, or gone: the job is done
            else:
                self._loaded[job.id] = activity_id
                queued = loaded[activity_id]
                sender = None if queued.actor_iri in barred else queued.sender
                items.append(self._in_order(queued, sender))
        return items

    def _in_order(self, queued: inbox_service.Queued, sender: Actor | None) -> Awaitable[str]:
        """The run of ``queued``, started once the runs it must follow (:class:`_RunOrder`) ended;
        ``sender``: the actor's row read with the batch, taken by ``Federation.actor`` in that run."""
        actor, key = queued.actor_iri, queued.ordering
        before, mine = self._order.claim(actor, key)

        inbound = queued.activity
        wanted = facts_wanted(inbound, sender) if isinstance(inbound, InboundActivity) else None

        async def run() -> str:
            try:
                for previous in before:
                    await previous  # never raises: it only tells that a run ended
                # Read once the runs it follows ended, with those of every run started meanwhile
                # (a batch's at once), before waiting for a database slot (decision 102).
                early = (*wanted, await self._facts.facts(*wanted)) if wanted is not None else None
                async with self._running:
                    with known_actor(sender), facts_read_together(self._facts, early):
                        return await inbox_service.run(self._fed, router, inbound)
            finally:
                self._order.release(actor, key, mine)

        return run()

    async def record(
        self, session: AsyncSession, results: Sequence[tuple[ClaimedJob, Any]]
    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        marks: list[tuple[int, str]] = []
        for job, result in results:
            activity_id = self._loaded.pop(job.id, None)
            if isinstance(result, BaseException):
                outcomes.append(result)  # the row stays queued; the job is retried or fails
                continue
            if activity_id is not None and isinstance(result, str):
                marks.append((activity_id, result))
            outcomes.append(None)
        # Sent with the completion of the batch's jobs: one hand-off or statement (decision 104).
        inbox_queries.mark_processed_later(session, marks, now=self._fed.node.clock())
        return outcomes


def default_registry(fed: Federation | None = None) -> JobRegistry:
    """A fresh registry with every production job kind (and ``noop``).

    Without a :class:`Federation` only ``noop`` is registered (queue tests). ``deliver`` and
    ``process_inbox`` jobs run in the worker's lanes (:class:`DeliverLane`, :class:`InboxLane`);
    their per-job handlers serve :meth:`server.jobs.worker.Worker.run_batch`.
    """
    registry = LaneRegistry()
    registry.add("noop", noop)
    if fed is None:
        return registry

    async def process_inbox(ctx: JobContext) -> None:
        await inbox_service.process(fed, router, _int(ctx, "inbox_activity_id"))

    async def fanout(ctx: JobContext) -> None:
        also = ctx.job.payload.get("also")
        await delivery.fanout(
            fed.node,
            _int(ctx, "activity_id"),
            priority=ctx.job.priority,
            policy=fed.policy,
            also=[a for a in also if isinstance(a, str)] if isinstance(also, list) else None,
            # Only the delivery lanes: a page queues nothing else, and waking every loop (here
            # and, through the wake-up channel, in the other processes) cost a claim per page
            # that contended with the planner's next page for SQLite's write lock.
            on_queued=lambda: fed.notify_worker({delivery.DELIVER}),
            resolve=fed.resolves,
        )

    async def deliver(ctx: JobContext) -> None:
        step = await delivery.deliver_one(
            fed.node,
            fed.transport,
            _int(ctx, "delivery_id"),
            attempt=ctx.job.attempt,
            max_attempts=ctx.job.max_attempts,
            prefer_rfc9421=fed.node.settings.federation.rfc9421_first_knock,
        )
        outcome = _delivery_outcome(step)
        if outcome is not None:
            raise outcome

    async def sync_outbox(ctx: JobContext) -> None:
        resume = ctx.job.payload.get("resume")
        await following.sync_outbox(
            fed, _int(ctx, "actor_id"), resume=resume if isinstance(resume, dict) else None
        )

    async def sync_all(ctx: JobContext) -> None:
        await following.sync_all(fed)

    async def media_cleanup(ctx: JobContext) -> None:
        now = fed.node.clock()
        await media_service.remove_unattached(fed.node, now=now)
        async with fed.node.sessions.begin() as session:
            await queue.schedule_periodic(
                session, media_service.MEDIA_CLEANUP, every=media_service.CLEANUP_INTERVAL, now=now
            )

    async def refresh_blocklists(ctx: JobContext) -> None:
        await blocklists.refresh_due(fed)
        async with fed.node.sessions.begin() as session:
            await blocklists.schedule_refresh(session, now=fed.node.clock())

    async def poll_tally(ctx: JobContext) -> None:
        await polls.tally(fed, _int(ctx, "object_id"))

    async def poll_close(ctx: JobContext) -> None:
        wait = await polls.close(fed, _int(ctx, "object_id"))
        if wait is not None:
            raise DeferJob("poll_not_ended", after=wait)

    async def lift_suspension(ctx: JobContext) -> None:
        wait = await suspension.lift_expired(fed, _int(ctx, "membership_id"), ctx.job.payload.get("since"))
        if wait is not None:
            raise DeferJob("suspension_not_ended", after=wait)

    registry.add_lane(InboxLane(fed), process_inbox)
    registry.add(suspension.LIFT_SUSPENSION, lift_suspension)
    registry.add(polls.POLL_TALLY, poll_tally)
    registry.add(content.POLL_CLOSE, poll_close)
    registry.add(delivery.FANOUT, fanout)
    registry.add_lane(DeliverLane(fed), deliver)
    registry.add(following.SYNC_OUTBOX, sync_outbox)
    registry.add(following.SYNC_ALL, sync_all)
    registry.add(media_service.MEDIA_CLEANUP, media_cleanup)
    registry.add(blocklists.REFRESH_BLOCKLISTS, refresh_blocklists)
    return registry


async def schedule_periodic_jobs(session: Any, *, now: datetime) -> None:
    """Queue the next round of every periodic job (idempotent): the catch-up of followed actors
    (security.md §3.4 item 4), the removal of uploads no object uses, and the refresh of
    subscribed block lists."""
    await following.schedule_sync_all(session, now=now)
    await queue.schedule_periodic(
        session, media_service.MEDIA_CLEANUP, every=media_service.CLEANUP_INTERVAL, now=now
    )
    await blocklists.schedule_refresh(session, now=now)
