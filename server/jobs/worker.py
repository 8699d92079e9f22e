"""The worker loop: claim runnable jobs, run their handlers with bounded concurrency, record outcomes.

The same :class:`Worker` runs inside ``serve`` (``worker.in_process``) and in standalone
``entraide worker`` processes (:mod:`server.jobs.runner`); any number of them may share one
PostgreSQL database (DESIGN §5). The shape follows microblog.pub's small ``Worker`` loop (STYLE
§3.3) with takahe-style leases (§3.1) and one retry policy for every kind (§3.6).

Guarantees and limits:
    * at most ``concurrency`` handlers run at once in one worker;
    * every outcome is recorded in its own transaction; if recording fails (database down) the
      lease expires and the job runs again. Handlers are therefore idempotent (STYLE R9);
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
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from federation import retry
from federation.ports import Transport
from federation.retry import RetryPolicy
from server.db import queue
from server.db.queue import ClaimedJob
from server.jobs.registry import DeferJob, JobContext, JobRegistry, PermanentJobFailure, RetryJob
from server.services.context import NodeContext

__all__ = ["JobOutcome", "Worker", "default_worker_id"]

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


def default_worker_id() -> str:
    """``host:pid:random``, unique per worker instance and at most 64 characters (the column)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"[:64]


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
        self._tasks: dict[asyncio.Task[None], ClaimedJob] = {}
        self._running = False

    @property
    def active(self) -> int:
        """How many handlers are running now."""
        return len(self._tasks)

    def notify(self) -> None:
        """Wake the loop now instead of at the next poll (call right after enqueuing a job).

        Call it from the worker's event loop; it is cheap and safe to call at any time,
        including before :meth:`run` starts or after it ended.
        """
        self._wake.set()

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
        next_purge = loop.time()
        claim_failures = 0
        log.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "concurrency": self.concurrency,
                "kinds": sorted(self.registry.kinds()),
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
                free = self.concurrency - len(self._tasks)
                if free > 0:
                    try:
                        jobs = await self._claim(free)
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
                        continue  # a full batch: more may be runnable once a slot frees up
                delay = self.poll_interval_s
                if claim_failures:
                    backoff = self.poll_interval_s * 2 ** min(claim_failures, 16)
                    delay = max(self.poll_interval_s, min(backoff, _MAX_ERROR_BACKOFF_S))
                await self._sleep(delay)
        finally:
            relay.cancel()
            await self._drain()
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

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        return await queue.claim(
            self.node.sessions,
            worker_id=self.worker_id,
            limit=limit,
            lease=self.lease,
            now=self.node.clock(),
            kinds=self.registry.kinds(),
        )

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _sleep(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            pass

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}-{job.kind}")
        self._tasks[task] = job
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._tasks.pop(task, None)
        self._wake.set()
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
            except RetryJob as exc:
                decision = self._retry_or_fail(job, f"retry: {exc.reason}", after=exc.after)
            except DeferJob as exc:
                decision = _Decision(
                    "defer", error=f"deferred: {exc.reason}", run_at=self.node.clock() + exc.after
                )
            except PermanentJobFailure as exc:
                decision = _Decision("failed", error=str(exc))
            except Exception as exc:
                # The one broad except of the job system (STYLE R5): logged with its traceback
                # and recorded on the job, which is retried under the policy, never swallowed.
                log.exception("job raised an unexpected exception", extra=fields)
                decision = self._retry_or_fail(job, f"{type(exc).__name__}: {exc}", after=None)
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
                elif decision.outcome in ("retry", "defer") and decision.run_at is not None:
                    accepted = await queue.retry(
                        session,
                        job.id,
                        worker_id=self.worker_id,
                        run_at=decision.run_at,
                        error=decision.error or "",
                        now=now,
                        attempt=job.attempt,
                        refund_attempt=decision.outcome == "defer",
                    )
                else:
                    accepted = await queue.fail(
                        session,
                        job.id,
                        worker_id=self.worker_id,
                        error=decision.error or "",
                        now=now,
                        attempt=job.attempt,
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
