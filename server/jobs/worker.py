"""The worker loop: claim runnable jobs, run their handlers with bounded concurrency, record outcomes.

The same :class:`Worker` runs inside ``serve`` (``worker.in_process``) and in standalone
``entraide worker`` processes (:mod:`server.jobs.runner`); any number of them may share one
PostgreSQL database (docs/architecture.md, "Worker lanes"). The shape follows microblog.pub's small
``Worker`` loop, with takahe-style leases and one retry policy for every kind.

Guarantees and limits:
    * at most ``concurrency`` handlers run at once in one worker;
    * every outcome is recorded in its own transaction; if recording fails (database down) the
      lease expires and the job runs again. Handlers are therefore idempotent (docs/architecture.md R9);
    * leases are not extended: a handler that runs longer than ``lease`` may be claimed and
      run by another worker meanwhile. The fence in :mod:`server.db.queue` then refuses the
      slower run's outcome, so only one result is recorded. Keep handlers well under the lease
      (a delivery is bounded by the transport's timeouts);
    * on stop the worker claims nothing more, waits up to ``shutdown_timeout_s`` for running
      handlers, then cancels the rest without recording anything: their leases expire and
      another worker (or this one after a restart) runs them again (security.md §3.4 item 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from federation import retry
from federation.ports import Transport
from federation.retry import RetryPolicy
from server.db import queue
from server.db.queries import bare
from server.db.queue import ClaimedJob
from server.eventloop import running_loop_name
from server.jobs.registry import (
    DeferJob,
    JobContext,
    JobHandler,
    JobRegistry,
    PermanentJobFailure,
    RetryJob,
)
from server.services.context import NodeContext

__all__ = ["BatchKind", "JobOutcome", "KeyedBatchKind", "LaneRegistry", "Worker", "default_worker_id"]

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_PURGE_AFTER = timedelta(days=7)
DEFAULT_PURGE_INTERVAL_S = 600.0
# Cancelled handlers get this long to unwind (close connections, roll back) before run() returns.
_CANCEL_GRACE_S = 2.0
# After consecutive claim failures (database unreachable) the poll interval doubles up to this.
_MAX_ERROR_BACKOFF_S = 30.0

OutcomeName = Literal["done", "retry", "defer", "failed", "lost", "unrecorded"]


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What happened to one run of a job; passed to the worker's ``on_outcome`` hook.

    ``outcome`` is ``done``, ``retry`` or ``failed`` when recorded; ``lost`` when the queue
    refused it (the lease had passed to another run); ``unrecorded`` when the database write
    failed (the lease will expire and the job run again).
    """

    job_id: int
    kind: str
    attempt: int
    outcome: OutcomeName
    duration_s: float
    error: str | None = None
    run_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Decision:
    outcome: Literal["done", "retry", "defer", "failed"]
    error: str | None = None
    run_at: datetime | None = None


async def _record_unfinished(
    session: AsyncSession, job: ClaimedJob, decision: _Decision, *, worker_id: str, now: datetime
) -> bool:
    """Record a retry, a deferral (its attempt refunded) or a failure; False when the lease was lost."""
    if decision.outcome in ("retry", "defer") and decision.run_at is not None:
        return await queue.retry(
            session,
            job.id,
            worker_id=worker_id,
            run_at=decision.run_at,
            error=decision.error or "",
            now=now,
            attempt=job.attempt,
            refund_attempt=decision.outcome == "defer",
        )
    return await queue.fail(
        session, job.id, worker_id=worker_id, error=decision.error or "", now=now, attempt=job.attempt
    )


def default_worker_id() -> str:
    """``host:pid:random``, unique per worker instance and at most 64 characters (the column)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"[:64]


class BatchKind(Protocol):
    """A job kind the worker runs in a *lane* rather than one handler call per job.

    Deliveries and inbox activities are the cases: thousands of small jobs whose cost was the
    database work around each one (claim, load, record, complete). A lane claims many at once,
    lets each job's own part run concurrently, and records the outcomes of every job that
    finished meanwhile in one transaction (group commit); at most :attr:`max_in_flight` are held
    at once. A kind without keys is claimed by :func:`server.db.queue.claim_kind` (one statement
    per claim condition); a :class:`KeyedBatchKind` caps the jobs held per key.

    The kind keeps a per-job handler in the registry too: :meth:`Worker.run_batch` uses it.
    Optionally, ``fed_by``: the kinds whose jobs queue this lane's jobs (a fan-out queues
    deliveries); their handlers running in the main loop do not narrow the lane (see
    :meth:`_Lane._free`), optionally ``close()``: resources to release when the lane stops.
    """

    @property
    def kind(self) -> str: ...

    @property
    def max_in_flight(self) -> int: ...

    async def prepare(self, jobs: Sequence[ClaimedJob]) -> list[Any]:
        """One item per job, in order: an awaitable to run (its value, or exception, is the
        job's result), or the result itself when nothing has to run."""
        ...

    async def record(
        self, session: AsyncSession, results: Sequence[tuple[ClaimedJob, Any]]
    ) -> list[BaseException | None]:
        """Record the results in ``session`` and return each job's outcome: ``None`` when done,
        a :class:`RetryJob`, :class:`DeferJob` or :class:`PermanentJobFailure`, or an
        unexpected exception (a result that was one is passed back as it is). Writes left with
        ``server.db.queries.bare.later`` go with the completion of the jobs done (decision 104)."""
        ...


@runtime_checkable
class KeyedBatchKind(BatchKind, Protocol):
    """A :class:`BatchKind` whose jobs carry a *key* (a delivery's peer host): at most
    :attr:`max_per_key` jobs of one key run at once in the whole node, whichever processes claimed
    them (decision 110), so one slow key cannot take every slot, and a peer gets no more. Its
    jobs are claimed by :func:`server.db.queue.claim_keyed`, their keys found where
    :attr:`keyed_by` says (decision 106)."""

    @property
    def max_per_key(self) -> int: ...

    @property
    def keyed_by(self) -> queue.KeyOf: ...


class LaneRegistry(JobRegistry):
    """A :class:`JobRegistry` whose some kinds also run in lanes (:class:`BatchKind`)."""

    def __init__(self) -> None:
        super().__init__()
        self.lanes: list[BatchKind] = []

    def add_lane(self, lane: BatchKind, handler: JobHandler) -> None:
        """Register ``lane`` for its kind, and ``handler`` for single runs (:meth:`Worker.run_batch`)."""
        self.add(lane.kind, handler)
        self.lanes.append(lane)


class Worker:
    """Claims jobs from the queue and runs their handlers until told to stop.

    Args:
        node: the node context handlers receive (its clock also dates claims and outcomes).
        registry: the handlers; only their kinds are claimed.
        concurrency: the most handlers running at once.
        poll_interval_s: how long to sleep when the queue has nothing runnable; :meth:`notify`
            cuts the sleep short.
        lease: how long a claimed job stays reserved for this worker.
        worker_id: recorded in ``locked_by``; default :func:`default_worker_id`.
        policy: the retry schedule; each job's own ``max_attempts`` overrides the policy's.
        transport: injected into every :class:`JobContext`.
        rng: the jitter source (seed it in tests).
        shutdown_timeout_s: how long :meth:`run` waits for running handlers once stopped.
        purge_after: done jobs older than this are deleted…
        purge_interval_s: …this often (and once at start).
        on_outcome: called after every run (metrics); exceptions from it are logged, not raised.
    """

    def __init__(
        self,
        node: NodeContext,
        registry: JobRegistry,
        *,
        concurrency: int,
        poll_interval_s: float,
        lease: timedelta = DEFAULT_LEASE,
        worker_id: str | None = None,
        policy: RetryPolicy = retry.DEFAULT,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        shutdown_timeout_s: float = 10.0,
        purge_after: timedelta = DEFAULT_PURGE_AFTER,
        purge_interval_s: float = DEFAULT_PURGE_INTERVAL_S,
        on_outcome: Callable[[JobOutcome], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not poll_interval_s > 0:
            raise ValueError("poll_interval_s must be positive")
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.node = node
        self.registry = registry
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.lease = lease
        self.policy = policy
        self.transport = transport
        self.shutdown_timeout_s = shutdown_timeout_s
        self.purge_after = purge_after
        self.purge_interval_s = purge_interval_s
        self._on_outcome = on_outcome
        self._rng = rng if rng is not None else random.Random()
        self._wake = asyncio.Event()
        # Set with _wake by everything that wakes the main loop except a lane leaving room, whose
        # wake-up asks runnable_now before claiming (decision 95).
        self._claim_now = False
        self._tasks: dict[asyncio.Task[None], ClaimedJob] = {}
        self._running = False
        self._claim_lock = asyncio.Lock()
        self._lanes_block = False
        self._lanes = [_Lane(self, lane) for lane in getattr(registry, "lanes", ())]
        lane_kinds = {lane.kind.kind for lane in self._lanes}
        # The main loop leaves the lanes' kinds to them (run_batch still runs every kind).
        self._loop_kinds = registry.kinds() - lane_kinds

    @property
    def active(self) -> int:
        """How many handlers are running now."""
        return len(self._tasks)

    def notify(self, kinds: Collection[str] | None = None) -> None:
        """Wake the loop now instead of at the next poll (call right after enqueuing a job).

        ``kinds``: the kinds just enqueued; only the lanes of those kinds, and the main loop
        only if one of them is its own, are woken (each wake-up costs a claim, i.e. a
        transaction: the inbox writer wakes the inbox lane after every batch it stores).
        ``None`` wakes everything. Call it from the worker's event loop; it is cheap and safe
        to call at any time, including before :meth:`run` starts or after it ended.
        """
        if kinds is None or not self._loop_kinds.isdisjoint(kinds):
            self._claim_now = True
            self._wake.set()
        for lane in self._lanes:
            if kinds is None or lane.kind.kind in kinds:
                lane.notices += 1
                lane.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set, then shut down gracefully (see module doc).

        Raises:
            RuntimeError: this worker is already running.
        """
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        relay = asyncio.create_task(self._relay_stop(stop), name=f"worker-stop-{self.worker_id}")
        lanes = [
            asyncio.create_task(lane.run(stop), name=f"worker-lane-{lane.kind.kind}-{self.worker_id}")
            for lane in self._lanes
        ]
        next_purge = loop.time()
        claim_failures = 0
        woken = True  # the first pass claims
        log.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "concurrency": self.concurrency,
                "kinds": sorted(self.registry.kinds()),
                "event_loop": running_loop_name(),
            },
        )
        try:
            while not stop.is_set():
                if loop.time() >= next_purge:
                    await self._purge()
                    next_purge = loop.time() + self.purge_interval_s
                # Cleared before claiming: a notify() or a finished handler during the claim
                # sets it again, so the sleep below returns at once and nothing is missed.
                self._wake.clear()
                self._claim_now = False
                free = self.concurrency - len(self._tasks)
                if free > 0 and (woken or await self.runnable_now(self._loop_kinds)):
                    try:
                        jobs = await self._claim_shared(free)
                        claim_failures = 0
                    except Exception:
                        claim_failures += 1
                        log.exception(
                            "job claim failed",
                            extra={"worker_id": self.worker_id, "consecutive_failures": claim_failures},
                        )
                        jobs = []
                    for job in jobs:
                        self._start(job)
                    if jobs and len(jobs) == free:
                        woken = True
                        continue  # a full batch: more may be runnable once a slot frees up
                delay = self.poll_interval_s
                if claim_failures:
                    backoff = self.poll_interval_s * 2 ** min(claim_failures, 16)
                    delay = max(self.poll_interval_s, min(backoff, _MAX_ERROR_BACKOFF_S))
                # Woken by a lane that left room, the loop asks first, like after a poll's timeout:
                # a claim is a write transaction, and the lanes leave room after every commit.
                woken = await self._sleep(delay) and self._claim_now
        finally:
            relay.cancel()
            await self._drain()
            if lanes:
                # Each lane drains itself once stop is set (bounded by shutdown_timeout_s).
                await asyncio.wait(lanes, timeout=self.shutdown_timeout_s + 2 * _CANCEL_GRACE_S)
                for task in lanes:
                    task.cancel()
            self._running = False
            log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def run_batch(self) -> int:
        """Claim up to ``concurrency`` runnable jobs, run them, and wait for their outcomes.

        A single step of :meth:`run` without the loop, the sleep or the purge: for tests that
        drive the clock by hand, and for one-shot maintenance commands. Returns how many jobs
        ran. Database errors while claiming propagate.
        """
        if self._running:
            raise RuntimeError("run_batch() cannot be used while run() is running")
        jobs = await self._claim(self.concurrency)
        if jobs:
            await asyncio.gather(*(self._execute(job) for job in jobs))
        return len(jobs)

    async def _claim(self, limit: int, *, max_priority: int | None = None) -> list[ClaimedJob]:
        return await queue.claim(
            self.node.sessions,
            worker_id=self.worker_id,
            limit=limit,
            lease=self.lease,
            now=self.node.clock(),
            kinds=self._loop_kinds if self._running else self.registry.kinds(),
            max_priority=max_priority,
        )

    async def _claim_shared(self, free: int) -> list[ClaimedJob]:
        """Claim for the main loop, sharing the ``concurrency`` slots with the lanes.

        Jobs held by a lane take slots from jobs of the same or a lower priority (claim order
        stays priority first, as with one handler per job); a more urgent job still takes
        any slot the main loop has free, so an alert's fan-out never waits for the
        deliveries of an ordinary one.
        """
        async with self._claim_lock:
            held, best = self._lane_load()
            shared = free - held
            # Woken again by the lanes only while they hold slots this loop could use and a job
            # may have been left out for them: a claim that took fewer jobs than it could left
            # none (what is enqueued later comes with notify() or the next poll).
            self._lanes_block = shared < free
            jobs = await self._claim(shared) if shared > 0 else []
            if len(jobs) < shared:
                self._lanes_block = False
            if held and len(jobs) < free and best > 0:
                jobs += await self._claim(free - len(jobs), max_priority=best - 1)
            return jobs

    def _wake_if_lanes_leave_room(self) -> None:
        """Wake the main loop after a lane commit if the lanes, which held slots it could use,
        now hold fewer jobs than it has free slots (decision 81).

        Only then can the main loop claim a job of any priority; while the lanes hold more (a
        fan-out of thousands keeps its lane full), a claim after every lane commit would find
        no shared slot and cost two queries for the rare more urgent job, which
        :meth:`notify` (in-process enqueuers) or the next poll picks up anyway.
        """
        held, _ = self._lane_load()
        if self._lanes_block and held < self.concurrency - len(self._tasks):
            self._wake.set()

    def _lane_load(self) -> tuple[int, int]:
        """Jobs the lanes hold, and the most urgent priority among them."""
        held = sum(len(lane.held) for lane in self._lanes)
        best = min((p for lane in self._lanes for _, p in lane.held.values()), default=0)
        return held, best

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._claim_now = True
        self._wake.set()
        for lane in self._lanes:  # an idle lane waits for its poll interval otherwise
            lane.wake.set()

    async def _sleep(self, timeout_s: float) -> bool:
        """Wait for a wake-up or ``timeout_s``; True when woken."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def runnable_now(self, kinds: Collection[str]) -> bool:
        """After a poll's timeout, is a job of ``kinds`` claimable (decision 91)?

        A loop woken by :meth:`notify` or a finished job claims at once; one woken by its poll
        interval asks this single read first, so an idle worker no longer runs a claim (a write
        transaction with two or three queries) per loop and per interval. Jobs enqueued by
        another process, and retries or periodic jobs coming due, are seen by this read as a
        claim would see them, at the same interval. An error answers True: the claim reports it.
        """
        try:
            return await queue.any_runnable(self.node.sessions, now=self.node.clock(), kinds=kinds)
        except Exception:
            return True

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}-{job.kind}")
        self._tasks[task] = job
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._tasks.pop(task, None)
        self._claim_now = True
        self._wake.set()
        for lane in self._lanes:
            lane.wake.set()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # _execute handles everything; this is a bug in the worker itself
            log.error(
                "job task crashed",
                exc_info=exc,
                extra={"job_id": job.id if job else None, "worker_id": self.worker_id},
            )

    async def _drain(self) -> None:
        if not self._tasks:
            return
        pending = set(self._tasks)
        _, still_running = await asyncio.wait(pending, timeout=self.shutdown_timeout_s)
        if not still_running:
            return
        ids = sorted(self._tasks[t].id for t in still_running if t in self._tasks)
        log.warning(
            "worker stopping with jobs still running; they will run again when their lease expires",
            extra={"worker_id": self.worker_id, "job_ids": ids},
        )
        for task in still_running:
            task.cancel()
        await asyncio.wait(still_running, timeout=_CANCEL_GRACE_S)

    async def _purge(self) -> None:
        try:
            async with self.node.sessions.begin() as session:
                purged = await queue.purge_done(session, older_than=self.purge_after, now=self.node.clock())
        except Exception:
            log.exception("purging done jobs failed", extra={"worker_id": self.worker_id})
            return
        if purged:
            log.info("purged done jobs", extra={"count": purged, "worker_id": self.worker_id})

    async def _execute(self, job: ClaimedJob) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        fields = {"job_id": job.id, "kind": job.kind, "attempt": job.attempt, "worker_id": self.worker_id}
        handler = self.registry.handler_for(job.kind)
        decision: _Decision
        if handler is None:  # claim() filters by kind, so only a registry changed mid-run gets here
            decision = _Decision("failed", error="unknown_kind: no handler registered")
        elif job.attempt > job.max_attempts:
            # The previous run's lease expired on its last attempt (a crash, or a handler that
            # overran the lease every time); running it again would exceed max_attempts.
            decision = _Decision("failed", error="attempts_exhausted: lease expired on the last attempt")
        else:
            try:
                await handler(JobContext(job=job, node=self.node, transport=self.transport))
            except Exception as exc:
                # The one broad except of the job system (docs/architecture.md R5): an unexpected exception is
                # logged with its traceback (in _decide) and recorded on the job, which is
                # retried under the policy, never swallowed.
                decision = self._decide(job, exc, fields)
            else:
                decision = _Decision("done")
        self._log_decision(decision, fields)
        outcome = await self._record(job, decision, fields)
        self._report(
            JobOutcome(
                job_id=job.id,
                kind=job.kind,
                attempt=job.attempt,
                outcome=outcome,
                duration_s=loop.time() - started,
                error=decision.error,
                run_at=decision.run_at,
            )
        )

    def _decide(self, job: ClaimedJob, error: BaseException | None, fields: dict[str, object]) -> _Decision:
        """The decision for a run that ended with ``error`` (``None``: done)."""
        match error:
            case None:
                return _Decision("done")
            case RetryJob(reason=reason, after=after):
                return self._retry_or_fail(job, f"retry: {reason}", after=after)
            case DeferJob(reason=reason, after=after):
                return _Decision("defer", error=f"deferred: {reason}", run_at=self.node.clock() + after)
            case PermanentJobFailure():
                return _Decision("failed", error=str(error))
            case _:
                log.error("job raised an unexpected exception", exc_info=error, extra=fields)
                return self._retry_or_fail(job, f"{type(error).__name__}: {error}", after=None)

    def _retry_or_fail(self, job: ClaimedJob, error: str, *, after: timedelta | None) -> _Decision:
        # The row's max_attempts is authoritative (set per kind at enqueue); the policy gives the shape.
        policy = replace(self.policy, max_attempts=max(1, job.max_attempts))
        delay = policy.delay(max(1, job.attempt), retry_after=after, rng=self._rng)
        if delay is None:
            return _Decision(
                "failed", error=f"attempts_exhausted ({job.attempt}/{job.max_attempts}): {error}"
            )
        return _Decision("retry", error=error, run_at=self.node.clock() + delay)

    def _log_decision(self, decision: _Decision, fields: dict[str, object]) -> None:
        if decision.outcome == "retry":
            log.info(
                "job will be retried", extra={**fields, "run_at": decision.run_at, "error": decision.error}
            )
        elif decision.outcome == "failed":
            level = (
                logging.ERROR if (decision.error or "").startswith("attempts_exhausted") else logging.WARNING
            )
            log.log(level, "job failed", extra={**fields, "error": decision.error})

    async def _record(self, job: ClaimedJob, decision: _Decision, fields: dict[str, object]) -> OutcomeName:
        now = self.node.clock()
        try:
            async with self.node.sessions.begin() as session:
                if decision.outcome == "done":
                    accepted = await queue.complete(
                        session, job.id, worker_id=self.worker_id, now=now, attempt=job.attempt
                    )
                else:
                    accepted = await _record_unfinished(
                        session, job, decision, worker_id=self.worker_id, now=now
                    )
        except Exception:
            log.exception("job outcome not recorded; it will run again when its lease expires", extra=fields)
            return "unrecorded"
        if not accepted:
            log.warning("job outcome refused: the lease passed to another run", extra=fields)
            return "lost"
        return decision.outcome

    def _report(self, outcome: JobOutcome) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(outcome)
        except Exception:
            log.exception("job outcome hook failed", extra={"job_id": outcome.job_id})


class _Lane:
    """Runs one :class:`BatchKind` for a :class:`Worker` (see :class:`BatchKind`).

    Slots: a job holds one from its claim until its outcome is committed, so the number of
    this lane's jobs in state ``running`` is never above :attr:`BatchKind.max_in_flight`
    (and the node's, all processes together, never above :attr:`KeyedBatchKind.max_per_key` per
    key: decision 110). The loop claims whenever enough slots are free;
    finished jobs queue for the recorder, which commits everything that finished since its
    last commit in one transaction, then frees their slots.
    """

    def __init__(self, worker: Worker, kind: BatchKind) -> None:
        self.worker = worker
        self.kind = kind
        self._keyed = kind if isinstance(kind, KeyedBatchKind) else None
        self.wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._fed_by: frozenset[str] = frozenset(getattr(kind, "fed_by", ()))
        # job id -> (key, priority), from the claim until the outcome is committed (key "": no keys)
        self.held: dict[int, tuple[str, int]] = {}
        self._results: list[tuple[ClaimedJob, Any, float]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._claimed_at: dict[int, float] = {}
        self._recording = False
        self._stopping = False
        # Claimed in a record's transaction (decision 104), for the loop to start in claim order.
        self._handed: list[ClaimedJob] = []
        # notify() calls for this lane; the count when a claim of a lane without keys last took
        # fewer jobs than it asked for (None: since then, a claim may find some).
        self.notices = 0
        self._empty_at: int | None = None
        self._batch = max(1, kind.max_in_flight // 4)  # see _worth

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        recorder = asyncio.create_task(self._recorder(), name=f"lane-recorder-{self.kind.kind}")
        failures = 0
        woken = True  # the first pass claims; later, a poll's timeout asks runnable_now first
        try:
            while not stop.is_set():
                self.wake.clear()
                jobs: list[ClaimedJob] = []
                if self._claims_now(self.kind.max_in_flight - len(self.held)) and (
                    woken or await self.worker.runnable_now((self.kind.kind,))
                ):
                    try:
                        jobs = await self._claim()
                        failures = 0
                    except Exception:
                        failures += 1
                        log.exception(
                            "job claim failed",
                            extra={"worker_id": self.worker.worker_id, "kind": self.kind.kind},
                        )
                if not jobs:
                    jobs, self._handed = self._handed, []
                if jobs:
                    await self._start(jobs, loop.time())
                    continue
                delay = self.worker.poll_interval_s
                if failures:
                    delay = max(delay, min(delay * 2 ** min(failures, 16), _MAX_ERROR_BACKOFF_S))
                woken = True
                try:
                    await asyncio.wait_for(self.wake.wait(), delay)
                except TimeoutError:
                    woken = False
                    self._empty_at = None  # jobs of other processes, retries come due
        finally:
            await self._drain(recorder)

    def _claims_now(self, free: int) -> bool:
        """Whether the loop claims for ``free`` slots: when they are worth a claim
        (:meth:`_worth`) and one may find jobs: not when the last claim of a lane without keys
        took fewer than it asked for and no notify came since (each such claim was a write
        transaction finding nothing, after every claim that found some, decision 104)."""
        return self._worth(free) and self._empty_at != self.notices

    def _worth(self, free: int) -> bool:
        """A quarter of the lane free, or any slot when none is held: claims stay batched."""
        return free >= self._batch or (free > 0 and not self.held)

    def _free(self) -> int:
        """Slots this lane may claim now.

        Up to :attr:`BatchKind.max_in_flight` while the worker runs no other handler; while it
        does, the lane and the main loop share ``concurrency`` slots (see
        :meth:`Worker._claim_shared`), as one handler per job did. A handler of a kind that
        feeds the lane (``fed_by``) does not count: a fan-out planning its pages would
        otherwise hold its own deliveries to ``concurrency - 1`` in this process until the
        last page (decision 100).
        """
        worker = self.worker
        free = self.kind.max_in_flight - len(self.held)
        others = sum(1 for job in worker._tasks.values() if job.kind not in self._fed_by)
        if others:
            held = sum(len(lane.held) for lane in worker._lanes)
            free = min(free, worker.concurrency - others - held)
        return free

    async def _claim(self) -> list[ClaimedJob]:
        """Claim for the free slots; the jobs a record claimed before (:meth:`_claim_next`) come
        first, taken under the same lock: the lane starts its jobs in claim order, which
        :class:`server.jobs.tasks.InboxLane` orders its runs by."""
        async with self.worker._claim_lock:
            free = self._free()
            jobs = await self._claim_up_to(free) if free > 0 else []
            handed, self._handed = self._handed, []
            return handed + jobs

    async def _claim_up_to(self, free: int) -> list[ClaimedJob]:
        worker = self.worker
        notices = self.notices
        async with worker.node.sessions.begin() as session:
            jobs, keys = await self._take(session, free, commit=True)
        self._hold(jobs, keys)
        self._empty_at = notices if len(jobs) < free else None
        return jobs

    async def _take(
        self, session: AsyncSession, free: int, *, commit: bool
    ) -> tuple[list[ClaimedJob], dict[int, str] | None]:
        """Claim up to ``free`` jobs in ``session``: :func:`server.db.queue.claim_kind`, or for a
        keyed lane :func:`server.db.queue.claim_keyed` (decision 106), whose cap per key counts the
        jobs every process runs (decision 110); the keys of the jobs taken, ``None`` without keys.
        ``commit``: the claim is the transaction's last write, and on SQLite commits it in the same
        hand-off (decision 108)."""
        worker = self.worker
        keyed = self._keyed
        if keyed is None:
            jobs = await queue.claim_kind(
                session,
                self.kind.kind,
                limit=free,
                worker_id=worker.worker_id,
                lease=worker.lease,
                now=worker.node.clock(),
                commit=commit,
            )
            return jobs, None
        claimed = await queue.claim_keyed(
            session,
            self.kind.kind,
            keyed.keyed_by,
            limit=free,
            cap=keyed.max_per_key,
            worker_id=worker.worker_id,
            lease=worker.lease,
            now=worker.node.clock(),
            commit=commit,
        )
        return [job for job, _ in claimed], {job.id: key for job, key in claimed}

    async def _start(self, jobs: list[ClaimedJob], started: float) -> None:
        for job in jobs:
            self._claimed_at[job.id] = started
        runnable = [job for job in jobs if job.attempt <= job.max_attempts]
        for job in jobs:
            if job.attempt > job.max_attempts:
                # The previous run's lease expired on its last attempt (see Worker._execute).
                self._done(job, _EXHAUSTED)
        try:
            items = await self.kind.prepare(runnable)
        except Exception as exc:
            for job in runnable:
                self._done(job, exc)
            return
        for job, item in zip(runnable, items, strict=True):
            if inspect.isawaitable(item):
                task = asyncio.create_task(self._send(job, item), name=f"job-{job.id}-{job.kind}")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            else:
                self._done(job, item)

    async def _send(self, job: ClaimedJob, work: Awaitable[Any]) -> None:
        try:
            result: Any = await work
        except Exception as exc:
            result = exc
        self._done(job, result)

    def _done(self, job: ClaimedJob, result: Any) -> None:
        self._results.append((job, result, asyncio.get_running_loop().time()))
        self._finished.set()

    async def _recorder(self) -> None:
        # Group commit: a transaction costs about the same for 1 outcome as for 50, so when
        # few outcomes wait and sends are still running, give them a short window to join.
        flush_at = max(1, self.kind.max_in_flight // 4)
        while True:
            await self._finished.wait()
            self._finished.clear()
            if len(self._results) < flush_at and self._sends and not self._stopping:
                await asyncio.sleep(_GROUP_COMMIT_WINDOW_S)
            results, self._results = self._results, []
            if results:
                self._recording = True
                try:
                    await self._record(results)
                finally:
                    self._recording = False

    async def _record(self, results: list[tuple[ClaimedJob, Any, float]]) -> None:
        worker = self.worker
        exhausted = [(job, r) for job, r, _ in results if r is _EXHAUSTED]
        ran = [(job, r) for job, r, _ in results if r is not _EXHAUSTED]
        decisions: list[tuple[ClaimedJob, _Decision, dict[str, object]]] = []
        outcomes: dict[int, OutcomeName] = {}
        # A lane claims its next jobs in the transaction that records these (decision 104; a
        # keyed lane too since decision 106), under the claim lock as any claim.
        fused = not self._stopping
        claimed: tuple[list[ClaimedJob], dict[int, str] | None, int] | None = None  # and how many asked
        notices = self.notices
        try:
            async with contextlib.AsyncExitStack() as held_lock:
                if fused:
                    await held_lock.enter_async_context(worker._claim_lock)
                async with worker.node.sessions.begin() as session:
                    finish = await self._outcomes(session, ran, exhausted, decisions)
                    if fused:
                        claimed = await self._claim_next(session, results)
                    # On SQLite the completion, the claim and the commit go in one hand-off, so
                    # the write lock is held only while they run (decision 108).
                    await bare.send_later(session, commit=True)
                    outcomes = finish()
                if claimed is not None:  # committed: for the loop to start
                    jobs, keys, asked = claimed
                    self._hold(jobs, keys)
                    self._handed += jobs
                    self._empty_at = notices if len(jobs) < asked else None
        except Exception:
            log.exception(
                "job outcomes not recorded; they will run again when their leases expire",
                extra={"worker_id": worker.worker_id, "kind": self.kind.kind, "jobs": len(results)},
            )
            outcomes = {job.id: "unrecorded" for job, _, _ in results}
            decisions = [(job, _Decision("failed"), self._fields(job)) for job, _, _ in results]
            claimed = None
        finally:
            self._release(results)
            self.wake.set()
            worker._wake_if_lanes_leave_room()
        self._report_all(results, decisions, outcomes)

    async def _outcomes(
        self,
        session: AsyncSession,
        ran: list[tuple[ClaimedJob, Any]],
        exhausted: list[tuple[ClaimedJob, Any]],
        decisions: list[tuple[ClaimedJob, _Decision, dict[str, object]]],
    ) -> Callable[[], dict[int, OutcomeName]]:
        """Record the results in ``session``; ``decisions`` gets each job's decision. Returns what
        gives each job's outcome once the session's last write is sent: on SQLite the completion
        of the jobs done waits for it (``queue.complete_many_later``, decision 108)."""
        worker = self.worker
        unfinished: dict[int, OutcomeName] = {}
        errors = await self.kind.record(session, ran) if ran else []
        for (job, _), error in zip(ran, errors, strict=True):
            fields = self._fields(job)
            decisions.append((job, worker._decide(job, error, fields), fields))
        for job, _ in exhausted:
            reason = "attempts_exhausted: lease expired on the last attempt"
            decisions.append((job, _Decision("failed", error=reason), self._fields(job)))
        now = worker.node.clock()
        done = [(job.id, job.attempt) for job, d, _ in decisions if d.outcome == "done"]
        accepted_of = await queue.complete_many_later(session, done, worker_id=worker.worker_id, now=now)
        for job, decision, _ in decisions:
            if decision.outcome != "done":
                ok = await _record_unfinished(session, job, decision, worker_id=worker.worker_id, now=now)
                unfinished[job.id] = decision.outcome if ok else "lost"

        def outcomes() -> dict[int, OutcomeName]:
            accepted = accepted_of()
            outcome: dict[int, OutcomeName] = {}
            for job, _, _ in decisions:
                outcome[job.id] = unfinished.get(job.id) or ("done" if job.id in accepted else "lost")
            return outcome

        return outcomes

    def _report_all(
        self,
        results: list[tuple[ClaimedJob, Any, float]],
        decisions: list[tuple[ClaimedJob, _Decision, dict[str, object]]],
        outcomes: dict[int, OutcomeName],
    ) -> None:
        worker = self.worker
        finished = {job.id: at for job, _, at in results}
        for job, decision, fields in decisions:
            outcome = outcomes[job.id]
            if outcome == "lost":
                log.warning("job outcome refused: the lease passed to another run", extra=fields)
            elif outcome != "unrecorded":
                worker._log_decision(decision, fields)
            started = self._claimed_at.pop(job.id, finished[job.id])
            worker._report(
                JobOutcome(
                    job_id=job.id,
                    kind=job.kind,
                    attempt=job.attempt,
                    outcome=outcome,
                    duration_s=finished[job.id] - started,
                    error=decision.error,
                    run_at=decision.run_at,
                )
            )

    async def _claim_next(
        self, session: AsyncSession, results: list[tuple[ClaimedJob, Any, float]]
    ) -> tuple[list[ClaimedJob], dict[int, str] | None, int] | None:
        """The jobs the loop would claim once ``results`` free their slots, claimed in the
        transaction that records them (decision 104), their keys, and how many it asked for;
        ``None`` when the loop would not claim. On SQLite a commit (a hand-off to aiosqlite's
        thread) fewer per batch, on PostgreSQL a transaction, and no claim of the loop after every
        record."""
        self._release(results)
        free = self._free()
        # Even after a claim that found fewer than it asked for: in a transaction that runs
        # anyway, it takes what a worker in another process (no notify) has to poll for.
        if not self._worth(free) or self._stopping:
            return None
        jobs, keys = await self._take(session, free, commit=True)
        return jobs, keys, free

    def _hold(self, jobs: list[ClaimedJob], keys: dict[int, str] | None = None) -> None:
        for job in jobs:
            key = keys[job.id] if keys is not None else ""
            self.held[job.id] = (key, job.priority)

    def _release(self, results: list[tuple[ClaimedJob, Any, float]]) -> None:
        """Free the slots of ``results`` (again: nothing)."""
        for job, _, _ in results:
            self.held.pop(job.id, None)

    def _fields(self, job: ClaimedJob) -> dict[str, object]:
        worker_id = self.worker.worker_id
        return {"job_id": job.id, "kind": job.kind, "attempt": job.attempt, "worker_id": worker_id}

    async def _drain(self, recorder: asyncio.Task[None]) -> None:
        """Stop claiming; give running jobs ``shutdown_timeout_s`` to finish and be recorded.

        Jobs still running then are cancelled without an outcome: their leases expire and they
        run again (at least once, as for :meth:`Worker._drain`).
        """
        timeout = self.worker.shutdown_timeout_s
        self._stopping = True
        if self._sends:
            _, still = await asyncio.wait(set(self._sends), timeout=timeout)
            if still:
                log.warning(
                    "worker stopping with jobs still running; they will run again when their lease expires",
                    extra={"worker_id": self.worker.worker_id, "kind": self.kind.kind, "jobs": len(still)},
                )
                for task in still:
                    task.cancel()
                await asyncio.wait(still, timeout=_CANCEL_GRACE_S)
        # A cancelled send records nothing (CancelledError is not caught). Let the recorder
        # commit what did finish, then stop it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CANCEL_GRACE_S + timeout
        while (self._results or self._recording) and loop.time() < deadline:
            self._finished.set()
            await asyncio.sleep(0.01)
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        close = getattr(self.kind, "close", None)  # optional: resources of the kind (a signing pool)
        if close is not None:
            close()


_GROUP_COMMIT_WINDOW_S = 0.02
"""How long a lane's recorder waits for more outcomes before committing a small batch."""

_EXHAUSTED = object()
"""The result of a lane job claimed after its last attempt's lease expired: not run, failed."""
