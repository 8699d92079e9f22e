"""The job queue and the worker: a conformance suite run on SQLite and on PostgreSQL.

Like fedify's ``testMessageQueue``, every behaviour the rest of the server relies on is
checked against both engines: claims are exclusive and ordered, leases expire, outcomes are
fenced, retries follow the policy, and the worker runs and stops within bounded time.
Time is injected (:class:`FakeClock`) wherever the behaviour depends on it; every loop is
bounded and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from federation.ports import Transport
from federation.retry import FAST, RetryPolicy
from federation.types import utc_now
from server.config import DatabaseSettings, Settings
from server.db import queue
from server.db.engine import create_engine, create_sessionmaker
from server.db.models import Job
from server.db.queries import bare
from server.db.queue import ClaimedJob, NewJob, Priority
from server.jobs.registry import DeferJob, JobContext, JobRegistry, PermanentJobFailure, RetryJob
from server.jobs.runner import build_node_context, run_worker_process
from server.jobs.tasks import default_registry
from server.jobs.worker import JobOutcome, LaneRegistry, Worker
from server.services.context import NodeContext
from tests.support.nodes import node_settings

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
WAIT_S = 10.0  # the upper bound on any single wait in this file


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _engine(url: str) -> AsyncEngine:
    # server.db.engine.create_engine: SQLite connections get WAL and the busy timeout, as in production.
    return create_engine(DatabaseSettings(url=url, pool_size=5, echo=False))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = _engine(database_url)
    yield created
    await created.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return node_settings(tmp_path / "node", database_url, port=8080)


@pytest.fixture
def node(settings: Settings, engine: AsyncEngine, clock: FakeClock) -> NodeContext:
    return build_node_context(settings, engine, clock=clock)


async def _enqueue(sessions: async_sessionmaker[AsyncSession], kind: str = "noop", **kwargs: Any) -> int:
    kwargs.setdefault("now", T0)
    payload = kwargs.pop("payload", {"n": 1})
    async with sessions.begin() as session:
        job_id = await queue.enqueue(session, kind, payload, **kwargs)
    assert job_id is not None
    return job_id


async def _job(sessions: async_sessionmaker[AsyncSession], job_id: int) -> Job:
    async with sessions() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    *,
    worker_id: str = "w1",
    limit: int = 10,
    now: datetime = T0,
    **kwargs: Any,
) -> list[ClaimedJob]:
    return await queue.claim(sessions, worker_id=worker_id, limit=limit, lease=LEASE, now=now, **kwargs)


async def _eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` until it holds; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - the state lives in the database, not in an Event
            await asyncio.sleep(0.02)


def _registry(kind: str, handler: Callable[[JobContext], Awaitable[None]]) -> JobRegistry:
    registry = JobRegistry()
    registry.add(kind, handler)
    return registry


# --- enqueue -------------------------------------------------------------------------------------


async def test_enqueue_claim_complete(sessions: async_sessionmaker[AsyncSession]) -> None:
    # Given a queued job
    job_id = await _enqueue(sessions, "deliver", payload={"delivery_id": 42, "tags": ["é", None]})
    queued = await _job(sessions, job_id)
    assert (queued.state, queued.attempts, queued.run_at, queued.created_at) == ("queued", 0, T0, T0)

    # When a worker claims it
    claimed = await _claim(sessions, worker_id="w1")

    # Then it is leased to that worker, with its payload intact and the attempt counted
    assert claimed == [
        ClaimedJob(
            id=job_id,
            kind="deliver",
            payload={"delivery_id": 42, "tags": ["é", None]},
            attempt=1,
            max_attempts=16,
            priority=Priority.NORMAL,
        )
    ]
    running = await _job(sessions, job_id)
    assert (running.state, running.locked_by, running.locked_until) == ("running", "w1", T0 + LEASE)
    assert await _claim(sessions, worker_id="w2") == []

    # And completing it marks it done
    async with sessions.begin() as session:
        assert await queue.complete(session, job_id, worker_id="w1", now=T0 + timedelta(seconds=3))
    done = await _job(sessions, job_id)
    assert (done.state, done.finished_at, done.locked_until) == ("done", T0 + timedelta(seconds=3), None)
    assert await _claim(sessions, now=T0 + timedelta(days=1)) == []


async def test_enqueue_is_part_of_the_callers_transaction(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The transactional outbox: a rolled-back state change leaves no job behind (docs/architecture.md R9)."""
    async with sessions() as session:
        async with session.begin():
            assert await queue.enqueue(session, "noop", {}, now=T0) is not None
            await session.rollback()
    assert await _claim(sessions) == []


async def test_dedup_key_makes_enqueue_a_no_op(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await _enqueue(sessions, "fanout", dedup_key="fanout:https://a.example/1")
    async with sessions.begin() as session:
        again = await queue.enqueue(
            session, "fanout", {"other": True}, dedup_key="fanout:https://a.example/1", now=T0
        )
        # Jobs without a key never collide with one another.
        assert await queue.enqueue(session, "fanout", {}, now=T0) is not None
        assert await queue.enqueue(session, "fanout", {}, now=T0) is not None
    assert again is None
    assert (await _job(sessions, first)).payload == {"n": 1}

    # Still a no-op once the first job has run.
    [job] = await _claim(sessions, limit=1)
    async with sessions.begin() as session:
        await queue.complete(session, job.id, worker_id="w1", now=T0)
        assert (
            await queue.enqueue(session, "fanout", {}, dedup_key="fanout:https://a.example/1", now=T0) is None
        )


async def test_enqueue_many_inserts_in_batches_and_skips_duplicates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _enqueue(sessions, "deliver", dedup_key="deliver:7")
    jobs = [NewJob("deliver", {"i": i}, dedup_key=f"deliver:{i}") for i in range(1200)]  # > 2 batches
    jobs.append(NewJob("deliver", {"i": "dup"}, dedup_key="deliver:3"))  # a duplicate within the call
    jobs.append(NewJob("deliver", {"i": "no key"}))
    async with sessions.begin() as session:
        inserted = await queue.enqueue_many(session, jobs, now=T0)
    assert inserted == 1200  # 1199 new keys (deliver:7 existed) + the keyless one
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 1201
        payload = await session.scalar(select(Job.payload).where(Job.dedup_key == "deliver:3"))
    assert payload == {"i": 3}
    async with sessions.begin() as session:
        assert await queue.enqueue_many(session, [], now=T0) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": ""},
        {"kind": "k" * 33},
        {"dedup_key": "x" * 513},
        {"dedup_key": ""},
        {"max_attempts": 0},
        {"run_at": datetime(2026, 1, 1)},
        {"now": datetime(2026, 1, 1)},
    ],
)
async def test_enqueue_refuses_invalid_jobs_on_both_engines(
    sessions: async_sessionmaker[AsyncSession], kwargs: dict[str, Any]
) -> None:
    args: dict[str, Any] = {"kind": "noop", "now": T0, **kwargs}
    kind = args.pop("kind")
    async with sessions.begin() as session:
        with pytest.raises(ValueError):
            await queue.enqueue(session, kind, {}, **args)


# --- claim ---------------------------------------------------------------------------------------


async def test_delayed_job_is_not_claimable_before_run_at(sessions: async_sessionmaker[AsyncSession]) -> None:
    job_id = await _enqueue(sessions, run_at=T0 + timedelta(minutes=10))
    assert await _claim(sessions, now=T0) == []
    assert await _claim(sessions, now=T0 + timedelta(minutes=10) - timedelta(microseconds=1)) == []
    [job] = await _claim(sessions, now=T0 + timedelta(minutes=10))
    assert job.id == job_id


async def test_claims_follow_priority_then_run_at_then_id(sessions: async_sessionmaker[AsyncSession]) -> None:
    # Given background and normal work queued first, and an alert queued last
    background = await _enqueue(sessions, priority=Priority.BACKGROUND, run_at=T0 - timedelta(hours=1))
    normal_late = await _enqueue(sessions, priority=Priority.NORMAL, run_at=T0 - timedelta(minutes=1))
    normal_early = await _enqueue(sessions, priority=Priority.NORMAL, run_at=T0 - timedelta(minutes=5))
    normal_early_2 = await _enqueue(sessions, priority=Priority.NORMAL, run_at=T0 - timedelta(minutes=5))
    interactive = await _enqueue(sessions, priority=Priority.INTERACTIVE)
    alert = await _enqueue(sessions, priority=Priority.ALERT)

    # When workers claim one at a time, the alert goes first even though it was enqueued last
    order = [job.id for _ in range(6) for job in await _claim(sessions, limit=1)]
    assert order == [alert, interactive, normal_early, normal_early_2, normal_late, background]

    # And a batch comes back in the same order
    async with sessions.begin() as session:
        ids = [await queue.enqueue(session, "noop", {}, priority=p, now=T0) for p in (20, 10, 0)]
    assert [job.id for job in await _claim(sessions, limit=3)] == ids[::-1]


async def test_claim_only_takes_the_requested_kinds(sessions: async_sessionmaker[AsyncSession]) -> None:
    deliver = await _enqueue(sessions, "deliver")
    await _enqueue(sessions, "from_a_newer_release")
    assert await _claim(sessions, kinds=set()) == []
    assert [j.id for j in await _claim(sessions, kinds={"deliver", "noop"})] == [deliver]
    assert await _claim(sessions, kinds={"deliver"}) == []


async def test_claim_respects_the_limit(sessions: async_sessionmaker[AsyncSession]) -> None:
    for _ in range(5):
        await _enqueue(sessions)
    assert len(await _claim(sessions, limit=3)) == 3
    assert len(await _claim(sessions, limit=3)) == 2
    assert await _claim(sessions, limit=0) == []


@pytest.mark.parametrize("claimers", [2, 4])
async def test_concurrent_claimers_never_get_the_same_job(database_url: str, claimers: int) -> None:
    """Separate engines (separate connections, as separate processes would have) race for 200 jobs."""
    engines = [_engine(database_url) for _ in range(claimers)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        async with makers[0].begin() as session:
            await queue.enqueue_many(session, [NewJob("noop", {"i": i}) for i in range(200)], now=T0)
        start = asyncio.Event()

        async def claimer(index: int) -> list[int]:
            rng = random.Random(index)
            got: list[int] = []
            await start.wait()
            for _ in range(400):  # bounded: 200 jobs need far fewer rounds
                limit = rng.randint(1, 7)
                batch = await queue.claim(
                    makers[index], worker_id=f"w{index}", limit=limit, lease=timedelta(hours=1), now=T0
                )
                if not batch:
                    break
                assert len(batch) <= limit
                got.extend(job.id for job in batch)
            return got

        tasks = [asyncio.create_task(claimer(i)) for i in range(claimers)]
        start.set()
        async with asyncio.timeout(60):
            results = await asyncio.gather(*tasks)
    finally:
        for created in engines:
            await created.dispose()

    every = [job_id for got in results for job_id in got]
    assert len(every) == 200
    assert len(set(every)) == 200
    assert sum(1 for got in results if got) >= 1


async def test_expired_lease_is_reclaimed_and_the_stale_worker_is_fenced(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Given a job claimed by a worker that then went silent
    job_id = await _enqueue(sessions)
    await _claim(sessions, worker_id="crashed", now=T0)
    assert await _claim(sessions, worker_id="other", now=T0 + LEASE) == []  # the lease is still valid

    # When its lease expires, another worker takes it over, as a new attempt
    [second] = await _claim(sessions, worker_id="other", now=T0 + LEASE + timedelta(seconds=1))
    assert (second.id, second.attempt) == (job_id, 2)

    # Then the stale worker can no longer record an outcome
    later = T0 + LEASE + timedelta(seconds=2)
    async with sessions.begin() as session:
        assert not await queue.complete(session, job_id, worker_id="crashed", now=later)
        assert not await queue.fail(session, job_id, worker_id="crashed", error="late", now=later)
        assert not await queue.retry(
            session, job_id, worker_id="crashed", run_at=later, error="late", now=later
        )
    assert (await _job(sessions, job_id)).locked_by == "other"

    # But the current holder can
    async with sessions.begin() as session:
        assert await queue.complete(session, job_id, worker_id="other", now=later, attempt=second.attempt)
    assert (await _job(sessions, job_id)).state == "done"


async def test_one_claim_takes_expired_leases_and_due_jobs_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    abandoned = await _enqueue(sessions, priority=Priority.BACKGROUND)
    await _claim(sessions, worker_id="crashed", now=T0)
    alert = await _enqueue(sessions, priority=Priority.ALERT)
    await _enqueue(sessions, priority=Priority.NORMAL)
    later = T0 + LEASE + timedelta(seconds=1)
    claimed = await _claim(sessions, worker_id="w2", limit=2, now=later)
    # Claim order in the result; the abandoned job was taken although a normal job was due.
    assert [(j.id, j.attempt) for j in claimed] == [(alert, 1), (abandoned, 2)]


async def test_claim_kind_takes_expired_leases_then_due_jobs_of_its_kind_in_claim_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 95: the inbox lane's claim, one bare statement per condition, claims as claim() does."""
    abandoned = await _enqueue(sessions, "lane", priority=Priority.BACKGROUND, payload={"n": 0})
    await _claim(sessions, worker_id="crashed", now=T0, kinds=["lane"])
    normal = await _enqueue(sessions, "lane", priority=Priority.NORMAL)
    urgent = await _enqueue(sessions, "lane", priority=Priority.INTERACTIVE)
    await _enqueue(sessions, "other", priority=Priority.ALERT)
    await _enqueue(sessions, "lane", run_at=T0 + timedelta(hours=1))  # not due
    later = T0 + LEASE + timedelta(seconds=1)
    async with sessions.begin() as session:
        claimed = await queue.claim_kind(session, "lane", limit=2, worker_id="w2", lease=LEASE, now=later)
    # The abandoned job first (expired leases are taken before due jobs), then by priority.
    assert [(j.id, j.attempt, j.payload) for j in claimed] == [
        (urgent, 1, {"n": 1}),
        (abandoned, 2, {"n": 0}),
    ]
    async with sessions.begin() as session:
        rest = await queue.claim_kind(session, "lane", limit=10, worker_id="w2", lease=LEASE, now=later)
    assert [j.id for j in rest] == [normal]
    job = await _job(sessions, normal)
    assert (job.state, job.locked_by, job.locked_until) == ("running", "w2", later + LEASE)


async def test_claim_keyed_caps_each_key_counting_what_all_workers_run_and_takes_a_key_s_jobs_in_claim_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Decisions 106 and 110: the delivery lane's claim, one bare statement: expired leases first,
    at most ``cap`` jobs of a key counting those any worker runs under a live lease, a key's jobs
    in their claim order, a job whose row is gone with the key ``""``. Here the key of a job is the
    kind of the job its payload names (any table with an ``id`` will do)."""
    key = queue.KeyOf(table="jobs", column="kind", payload_id="row")
    far = T0 + timedelta(days=1)
    host = {name: await _enqueue(sessions, name, run_at=far) for name in ("host-a", "host-b", "host-c")}

    async def keyed(name: str, **kwargs: Any) -> int:
        return await _enqueue(sessions, "keyed", payload={"row": host.get(name, 10**9)}, **kwargs)

    abandoned = await keyed("host-c", priority=Priority.BACKGROUND)
    async with sessions.begin() as session:
        await queue.claim_kind(session, "keyed", limit=1, worker_id="crashed", lease=LEASE, now=T0)
    # Another worker runs one job of host-a and two of host-b.
    other = [await keyed(name) for name in ("host-a", "host-b", "host-b")]
    a1, a2, _a3, b1, _b2, c1, gone = [
        await keyed(name) for name in ("host-a", "host-a", "host-a", "host-b", "host-b", "host-c", "gone")
    ]
    later = T0 + LEASE + timedelta(seconds=1)
    async with sessions.begin() as session:
        await queue.claim_ids(session, other, worker_id="w1", lease=LEASE, now=later)

    async def claim(limit: int, cap: int) -> list[tuple[int, int, str]]:
        async with sessions.begin() as session:
            claimed = await queue.claim_keyed(
                session, "keyed", key, limit=limit, cap=cap, worker_id="w2", lease=LEASE, now=later
            )
        return [(job.id, job.attempt, found) for job, found in claimed]

    async def finish(ids: list[int]) -> None:
        async with sessions.begin() as session:
            await session.execute(update(Job).where(Job.id.in_(ids)).values(state="done"))

    # host-a has one slot left, host-b none; the abandoned job of host-c (its lease expired) does not
    # count, and is taken again with c1.
    assert await claim(4, 2) == [
        (a1, 1, "host-a"),
        (c1, 1, "host-c"),
        (gone, 1, ""),
        (abandoned, 2, "host-c"),
    ]
    # Every key is full at a cap of 1: w1's jobs count as much as w2's own.
    assert await claim(10, 1) == []
    await finish([*other, a1, c1, gone, abandoned])
    assert await claim(10, 1) == [(a2, 1, "host-a"), (b1, 1, "host-b")]
    assert await claim(10, 1) == []
    job = await _job(sessions, a2)
    assert (job.state, job.locked_by, job.locked_until, job.attempts) == ("running", "w2", later + LEASE, 1)


async def _keyed_jobs(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    row = await _enqueue(sessions, "host-a", run_at=T0 + timedelta(days=1))
    for _ in range(count):
        await _enqueue(sessions, "keyed", payload={"row": row})


async def _claim_keyed(sessions: async_sessionmaker[AsyncSession], worker_id: str, cap: int) -> list[int]:
    key = queue.KeyOf(table="jobs", column="kind", payload_id="row")
    async with sessions.begin() as session:
        taken = await queue.claim_keyed(
            session, "keyed", key, limit=10, cap=cap, worker_id=worker_id, lease=LEASE, now=T0
        )
    return [job.id for job, _ in taken]


async def test_claim_keyed_of_two_workers_at_once_keeps_the_cap(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Decision 110: two workers claiming at the same moment, with engines of their own as two
    processes have, never take more than ``cap`` jobs of a key together."""
    await _keyed_jobs(sessions, 10)
    engines = [_engine(database_url) for _ in range(2)]
    try:
        for cap in (3, 5):
            claims = [_claim_keyed(create_sessionmaker(e), f"w{i}", cap) for i, e in enumerate(engines)]
            taken = await asyncio.gather(*claims)
            assert sum(len(ids) for ids in taken) == cap - (3 if cap == 5 else 0)
            assert len({i for ids in taken for i in ids}) == sum(len(ids) for ids in taken)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_keyed_claim_waits_its_turn(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Decision 110: keyed claims take turns, so that each counts the running jobs the one before it
    committed: on SQLite the claim is one write statement, under the database's one write lock; on
    PostgreSQL, where two statements could each count before the other commits, the claim first
    takes its kind's advisory lock. Here another connection holds that lock (the write lock), and the
    claim waits for it."""
    await _keyed_jobs(sessions, 10)
    holder = _engine(database_url)
    try:
        async with holder.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            turn = queue._claim_turn_key("keyed")
            if connection.dialect.name == "postgresql":
                take, give_back = [f"SELECT {f}({turn})" for f in ("pg_advisory_lock", "pg_advisory_unlock")]
            else:
                take, give_back = "BEGIN IMMEDIATE", "ROLLBACK"
            await driver.execute(take)
            claim = asyncio.create_task(_claim_keyed(sessions, "w1", 3))
            done, _ = await asyncio.wait({claim}, timeout=0.5)
            assert not done  # it waits for its turn
            await driver.execute(give_back)
            assert len(await asyncio.wait_for(claim, WAIT_S)) == 3
    finally:
        await holder.dispose()


async def test_complete_many_is_fenced_per_job_and_attempt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, second, third = [await _enqueue(sessions) for _ in range(3)]
    await _claim(sessions, worker_id="w1", now=T0)
    later = T0 + LEASE + timedelta(seconds=1)
    # The third's lease expired and went to w1 again: attempt 2; the second's went to w2.
    async with sessions.begin() as session:
        await queue.claim_ids(session, [third], worker_id="w1", lease=LEASE, now=later)
        await queue.claim_ids(session, [second], worker_id="w2", lease=LEASE, now=later)
    async with sessions.begin() as session:
        accepted = await queue.complete_many(
            session, [(first, 1), (second, 1), (third, 1)], worker_id="w1", now=later
        )
    assert accepted == {first}  # the second is w2's, the third's attempt 1 is over
    async with sessions.begin() as session:
        assert await queue.complete_many(session, [(third, 2)], worker_id="w1", now=later) == {third}
    states = [(await _job(sessions, job_id)).state for job_id in (first, second, third)]
    assert states == ["done", "running", "done"]
    assert (await _job(sessions, first)).finished_at == later


async def test_the_attempt_fences_a_worker_from_its_own_older_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job_id = await _enqueue(sessions)
    [old] = await _claim(sessions, worker_id="w1", now=T0)
    [new] = await _claim(sessions, worker_id="w1", now=T0 + LEASE * 2)
    async with sessions.begin() as session:
        assert not await queue.complete(session, job_id, worker_id="w1", now=T0, attempt=old.attempt)
        assert await queue.complete(session, job_id, worker_id="w1", now=T0, attempt=new.attempt)


async def test_retry_requeues_with_run_at_and_counts_the_attempt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job_id = await _enqueue(sessions)
    await _claim(sessions)
    later = T0 + timedelta(minutes=2)
    # A peer's error page: long, multi-byte, with a NUL that PostgreSQL text would reject.
    error = "HTTP 503: " + "é\x00" * 2000
    async with sessions.begin() as session:
        assert await queue.retry(session, job_id, worker_id="w1", run_at=later, error=error, now=T0)

    row = await _job(sessions, job_id)
    assert (row.state, row.attempts, row.run_at, row.locked_by, row.locked_until) == (
        "queued",
        1,
        later,
        None,
        None,
    )
    assert row.last_error is not None and row.last_error.startswith("HTTP 503: é\ufffd")
    assert len(row.last_error.encode()) <= queue.MAX_ERROR_BYTES
    assert await _claim(sessions, now=later - timedelta(seconds=1)) == []
    [again] = await _claim(sessions, now=later)
    assert again.attempt == 2


async def test_fail_records_the_error(sessions: async_sessionmaker[AsyncSession]) -> None:
    job_id = await _enqueue(sessions)
    await _claim(sessions)
    async with sessions.begin() as session:
        assert await queue.fail(session, job_id, worker_id="w1", error="gone: 410", now=T0)
    row = await _job(sessions, job_id)
    assert (row.state, row.last_error, row.finished_at) == ("failed", "gone: 410", T0)
    assert await _claim(sessions, now=T0 + timedelta(days=30)) == []


async def test_purge_done_deletes_only_old_done_jobs(sessions: async_sessionmaker[AsyncSession]) -> None:
    old_done = await _enqueue(sessions, dedup_key="old")
    recent_done = await _enqueue(sessions)
    failed = await _enqueue(sessions)
    queued = await _enqueue(sessions, run_at=T0 + timedelta(days=30))
    await _claim(sessions, limit=3)
    async with sessions.begin() as session:
        await queue.complete(session, old_done, worker_id="w1", now=T0)
        await queue.complete(session, recent_done, worker_id="w1", now=T0 + timedelta(days=6))
        await queue.fail(session, failed, worker_id="w1", error="x", now=T0)

    async with sessions.begin() as session:
        purged = await queue.purge_done(session, older_than=timedelta(days=7), now=T0 + timedelta(days=8))
    assert purged == 1
    async with sessions() as session:
        left = set((await session.scalars(select(Job.id))).all())
    assert left == {recent_done, failed, queued}
    # A purged job's key is free again.
    await _enqueue(sessions, dedup_key="old")


async def test_stats_counts_by_kind_and_state_and_measures_backlog(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        empty = await queue.stats(session, now=T0)
    assert (empty.counts, empty.oldest_runnable_age) == ({}, None)

    await _enqueue(sessions, "deliver", run_at=T0 - timedelta(minutes=3))
    await _enqueue(sessions, "deliver", run_at=T0 - timedelta(minutes=1))
    await _enqueue(sessions, "deliver", run_at=T0 + timedelta(hours=1))  # a pending retry is not backlog
    await _enqueue(sessions, "fanout", priority=Priority.ALERT)
    await _claim(sessions, limit=1)  # takes the fan-out (alert priority)
    async with sessions() as session:
        result = await queue.stats(session, now=T0)
    assert result.counts == {("deliver", "queued"): 3, ("fanout", "running"): 1}
    assert result.oldest_runnable_age == timedelta(minutes=3)


# --- the worker ----------------------------------------------------------------------------------


async def test_worker_fails_the_job_after_max_attempts(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    calls: list[int] = []

    async def always_busy(ctx: JobContext) -> None:
        calls.append(ctx.job.attempt)
        raise RetryJob("peer busy")

    job_id = await _enqueue(sessions, "busy", max_attempts=3)
    worker = Worker(
        node, _registry("busy", always_busy), concurrency=2, poll_interval_s=0.05, rng=random.Random(0)
    )
    for _ in range(5):  # bounded: three attempts are expected
        await worker.run_batch()
        clock.advance(timedelta(days=1))
    row = await _job(sessions, job_id)
    assert calls == [1, 2, 3]
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error == "attempts_exhausted (3/3): retry: peer busy"


async def test_unexpected_exception_is_logged_and_retried_under_the_policy(
    node: NodeContext,
    sessions: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ctx: JobContext) -> None:
        raise KeyError("delivery_id")

    job_id = await _enqueue(sessions, "broken")
    policy = RetryPolicy()
    worker = Worker(
        node,
        _registry("broken", broken),
        concurrency=1,
        poll_interval_s=0.05,
        policy=policy,
        rng=random.Random(0),
    )
    with caplog.at_level(logging.ERROR, logger="server.jobs.worker"):
        assert await worker.run_batch() == 1

    row = await _job(sessions, job_id)
    assert (row.state, row.attempts, row.last_error) == ("queued", 1, "KeyError: 'delivery_id'")
    # Retry 1 waits 1⁴ + 15 s plus jitter below 0.5 s.
    assert T0 + timedelta(seconds=16) <= row.run_at < T0 + timedelta(seconds=16.5)
    [record] = [r for r in caplog.records if r.getMessage() == "job raised an unexpected exception"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert (record.job_id, record.kind, record.attempt) == (job_id, "broken", 1)  # type: ignore[attr-defined]


async def test_retry_job_after_is_honoured(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async def rate_limited(ctx: JobContext) -> None:
        raise RetryJob("429 from peer", after=timedelta(minutes=3))

    job_id = await _enqueue(sessions, "limited")
    worker = Worker(node, _registry("limited", rate_limited), concurrency=1, poll_interval_s=0.05)
    clock.advance(timedelta(seconds=10))
    await worker.run_batch()
    row = await _job(sessions, job_id)
    assert (row.state, row.run_at, row.last_error) == (
        "queued",
        clock.now + timedelta(minutes=3),
        "retry: 429 from peer",
    )


async def test_defer_job_waits_without_spending_an_attempt(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    """A delivery held behind an open circuit breaker must not exhaust its attempts."""

    async def held(ctx: JobContext) -> None:
        raise DeferJob("circuit_open", after=timedelta(minutes=30))

    job_id = await _enqueue(sessions, "held")
    worker = Worker(node, _registry("held", held), concurrency=1, poll_interval_s=0.05)
    for _ in range(3):
        await worker.run_batch()
        clock.advance(timedelta(minutes=31))
    row = await _job(sessions, job_id)
    assert (row.state, row.attempts, row.last_error) == ("queued", 0, "deferred: circuit_open")


async def test_permanent_failure_fails_at_once_with_its_code(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async def gone(ctx: JobContext) -> None:
        raise PermanentJobFailure("gone", "peer answered 410")

    job_id = await _enqueue(sessions, "gone")
    outcomes: list[JobOutcome] = []
    worker = Worker(
        node, _registry("gone", gone), concurrency=1, poll_interval_s=0.05, on_outcome=outcomes.append
    )
    await worker.run_batch()
    row = await _job(sessions, job_id)
    assert (row.state, row.attempts, row.last_error, row.finished_at) == (
        "failed",
        1,
        "gone: peer answered 410",
        T0,
    )
    assert [(o.job_id, o.outcome, o.error) for o in outcomes] == [
        (job_id, "failed", "gone: peer answered 410")
    ]


async def test_handler_receives_its_job_the_node_and_the_transport(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    seen: list[tuple[ClaimedJob, NodeContext, Transport | None, datetime]] = []
    transport = cast(Transport, object())  # handlers only pass it on; the worker never calls it

    async def inspect(ctx: JobContext) -> None:
        seen.append((ctx.job, ctx.node, ctx.transport, ctx.now()))
        async with ctx.sessions.begin() as session:  # handlers may enqueue follow-up work
            await queue.enqueue(session, "inspect", {"child": True}, dedup_key="child", now=ctx.now())

    job_id = await _enqueue(sessions, "inspect", payload={"activity_id": 9}, priority=Priority.ALERT)
    worker = Worker(
        node, _registry("inspect", inspect), concurrency=1, poll_interval_s=0.05, transport=transport
    )
    assert await worker.run_batch() == 1
    [(job, got_node, got_transport, now)] = seen
    assert (job.id, job.payload, job.priority, got_node, got_transport, now) == (
        job_id,
        {"activity_id": 9},
        Priority.ALERT,
        node,
        transport,
        T0,
    )
    assert (await _job(sessions, job_id)).state == "done"
    assert await worker.run_batch() == 1  # the child


async def test_a_job_whose_last_lease_expired_is_failed_without_running(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    calls: list[int] = []

    async def handler(ctx: JobContext) -> None:
        calls.append(ctx.job.attempt)

    job_id = await _enqueue(sessions, "crashy", max_attempts=1)
    await _claim(sessions, worker_id="crashed-worker", kinds={"crashy"})  # attempt 1, then the worker died
    clock.advance(LEASE + timedelta(seconds=1))
    worker = Worker(node, _registry("crashy", handler), concurrency=1, poll_interval_s=0.05)
    assert await worker.run_batch() == 1
    row = await _job(sessions, job_id)
    assert calls == []
    assert (row.state, row.last_error) == ("failed", "attempts_exhausted: lease expired on the last attempt")


async def test_a_stale_worker_outcome_is_reported_lost(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    """A handler that overruns its lease: another worker took the job over; the slow result is refused."""
    outcomes: list[JobOutcome] = []
    job_id = await _enqueue(sessions, "slow")

    async def slow(ctx: JobContext) -> None:
        clock.advance(LEASE + timedelta(seconds=1))  # time passes while the handler works
        await _claim(sessions, worker_id="faster", now=clock.now, kinds={"slow"})

    worker = Worker(
        node, _registry("slow", slow), concurrency=1, poll_interval_s=0.05, on_outcome=outcomes.append
    )
    await worker.run_batch()
    assert [o.outcome for o in outcomes] == ["lost"]
    row = await _job(sessions, job_id)
    assert (row.state, row.locked_by, row.attempts) == ("running", "faster", 2)


async def test_worker_processes_jobs_concurrently_and_stops_gracefully(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Given 60 jobs, a third of which fail once, and a worker with 4 slots on the real clock
    node = build_node_context(settings, engine)
    running = 0
    peak = 0
    ran: list[int] = []
    flaky_seen: set[int] = set()

    async def work(ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.01)
            n = ctx.job.payload["n"]
            if n % 3 == 0 and n not in flaky_seen:
                flaky_seen.add(n)
                raise RetryJob("flaky")
            ran.append(n)
        finally:
            running -= 1

    async with sessions.begin() as session:
        await queue.enqueue_many(session, [NewJob("work", {"n": n}) for n in range(60)], now=utc_now())
    worker = Worker(
        node, _registry("work", work), concurrency=4, poll_interval_s=0.05, policy=FAST, rng=random.Random(0)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def all_done() -> bool:
        async with sessions() as session:
            return await session.scalar(select(func.count()).where(Job.state == "done")) == 60

    try:
        # When it runs, every job is done, never more than 4 at once
        await _eventually(all_done, timeout_s=30)
    finally:
        # Then it stops promptly on the stop event
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task
    assert sorted(ran) == list(range(60))
    assert 1 < peak <= 4
    assert worker.active == 0


async def test_stop_waits_for_running_jobs_then_leaves_the_rest_to_lease_expiry(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession]
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await _enqueue(sessions, "stuck")
    worker = Worker(
        node,
        _registry("stuck", stuck),
        concurrency=2,
        poll_interval_s=0.05,
        shutdown_timeout_s=0.2,
        worker_id="leaving",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(WAIT_S):
        await started.wait()
    stop.set()
    async with asyncio.timeout(5):  # shutdown_timeout_s plus the cancellation grace, with room
        await task
    assert cancelled.is_set()
    row = await _job(sessions, job_id)
    # Nothing recorded: the lease will expire and the job will run again elsewhere.
    assert (row.state, row.locked_by, row.locked_until) == ("running", "leaving", T0 + timedelta(minutes=5))


async def test_notify_wakes_an_idle_worker(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    node = build_node_context(settings, engine)
    done = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        done.set()

    worker = Worker(node, _registry("ping", handler), concurrency=1, poll_interval_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.2)  # the worker found nothing and went to sleep for a minute
        await _enqueue(sessions, "ping", now=utc_now())
        worker.notify()
        async with asyncio.timeout(5):  # far less than the poll interval
            await done.wait()
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


class _IdleLane:
    """A lane kind that is never run here: only its wake-up is looked at."""

    kind = "batch"
    max_in_flight = 4
    max_per_key = 4
    keyed_by = queue.KeyOf(table="deliveries", column="host", payload_id="delivery_id")

    async def prepare(self, jobs: Any) -> list[Any]:
        return []

    async def record(self, session: AsyncSession, results: Any) -> list[BaseException | None]:
        return []


async def test_notify_wakes_only_what_runs_the_kinds_enqueued(
    settings: Settings, engine: AsyncEngine
) -> None:
    async def handler(ctx: JobContext) -> None:
        return None

    registry = LaneRegistry()
    registry.add("ping", handler)
    registry.add_lane(_IdleLane(), handler)
    worker = Worker(build_node_context(settings, engine), registry, concurrency=1, poll_interval_s=60.0)
    (lane,) = worker._lanes

    worker.notify({"batch"})  # what the inbox writer does after storing a batch
    assert (worker._wake.is_set(), lane.wake.is_set()) == (False, True)
    lane.wake.clear()
    worker.notify({"ping"})
    assert (worker._wake.is_set(), lane.wake.is_set()) == (True, False)
    worker._wake.clear()
    worker.notify()
    assert (worker._wake.is_set(), lane.wake.is_set()) == (True, True)


async def test_worker_purges_done_jobs_periodically(
    node: NodeContext, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    job_id = await _enqueue(sessions)
    await _claim(sessions)
    async with sessions.begin() as session:
        await queue.complete(session, job_id, worker_id="w1", now=T0)
    clock.advance(timedelta(days=8))
    worker = Worker(node, default_registry(), concurrency=1, poll_interval_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def purged() -> bool:
        async with sessions() as session:
            return await session.get(Job, job_id) is None

    try:
        await _eventually(purged)
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


async def test_run_worker_process_runs_the_default_registry_until_stopped(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    job_id = await _enqueue(sessions, "noop", now=utc_now())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker_process(settings, stop=stop))

    async def done() -> bool:
        return (await _job(sessions, job_id)).state == "done"

    try:
        await _eventually(done)
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


# --- the registry --------------------------------------------------------------------------------


def test_registry_maps_each_kind_to_one_handler() -> None:
    registry = JobRegistry()

    @registry.register("deliver")
    async def deliver(ctx: JobContext) -> None:
        return None

    assert registry.handler_for("deliver") is deliver
    assert registry.handler_for("fanout") is None
    assert "deliver" in registry and len(registry) == 1
    assert registry.kinds() == frozenset({"deliver"})
    with pytest.raises(ValueError, match="already"):
        registry.add("deliver", deliver)
    for bad in ("", "Deliver", "x" * 33, "with space", "1st"):
        with pytest.raises(ValueError):
            registry.add(bad, deliver)
    assert "noop" in default_registry()


def test_worker_refuses_nonsense_settings(node: NodeContext) -> None:
    for kwargs in ({"concurrency": 0}, {"poll_interval_s": 0.0}, {"lease": timedelta(0)}):
        args: dict[str, Any] = {"concurrency": 1, "poll_interval_s": 0.1, **kwargs}
        with pytest.raises(ValueError):
            Worker(node, JobRegistry(), **args)


class _InstantLane:
    """A lane kind without keys whose jobs finish as soon as they are prepared."""

    kind = "instant"
    max_in_flight = 4

    async def prepare(self, jobs: Any) -> list[Any]:
        return ["done" for _ in jobs]

    async def record(self, session: AsyncSession, results: Any) -> list[BaseException | None]:
        return [None for _ in results]


async def test_a_lane_leaving_room_makes_the_main_loop_ask_before_it_claims(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Decision 95: the main loop, woken after a lane commit, claims only when a job of its kinds
    is runnable (a read), not after every commit (a write transaction finding nothing)."""
    node = build_node_context(settings, engine)
    pinged = asyncio.Event()

    async def ping(ctx: JobContext) -> None:
        pinged.set()

    registry = LaneRegistry()
    registry.add("ping", ping)
    registry.add_lane(_InstantLane(), ping)
    worker = Worker(node, registry, concurrency=1, poll_interval_s=60.0)
    claims = 0
    claim = worker._claim

    async def counted(limit: int, *, max_priority: int | None = None) -> list[ClaimedJob]:
        nonlocal claims
        claims += 1
        return await claim(limit, max_priority=max_priority)

    worker._claim = counted  # type: ignore[method-assign]
    async with sessions.begin() as session:
        await queue.enqueue_many(
            session, [queue.NewJob("instant", {"n": n}) for n in range(24)], now=utc_now()
        )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def drained() -> bool:
        async with sessions() as session:
            left = await session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "instant", Job.state != "done")
            )
        return left == 0

    try:
        await _eventually(drained)
        # Six lane batches of four, each commit leaving room: the main loop claimed on its first
        # pass (and for more urgent jobs while the lane held slots), never after each commit.
        assert claims <= 3
        await _enqueue(sessions, "ping", now=utc_now())
        worker.notify({"ping"})
        async with asyncio.timeout(5):
            await pinged.wait()
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task


async def test_run_worker_process_applies_the_collector_policy_while_it_runs(
    tmp_path: Path, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = node_settings(tmp_path / "node", database_url, port=8080, server={"gc_threshold": 5000})
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    seen: list[tuple[int, int]] = []

    async def probe(ctx: JobContext) -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    job_id = await _enqueue(sessions, "probe", now=utc_now())
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker_process(settings, registry=_registry("probe", probe), stop=stop))

    async def done() -> bool:
        return (await _job(sessions, job_id)).state == "done"

    try:
        await _eventually(done)
    finally:
        stop.set()
        async with asyncio.timeout(WAIT_S):
            await task
    threshold, frozen = seen[0]
    assert threshold == 5000
    assert frozen > 0  # what was alive once the worker had started
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_a_lane_claims_its_next_jobs_in_the_transaction_that_records_the_last(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    """Decision 104: a lane without keys claims as its outcomes are recorded, in the same
    transaction, rather than in one of its own after each record; and a claim there that found
    fewer jobs than it asked for leaves the loop waiting instead of claiming again at once."""
    registry = LaneRegistry()
    registry.add_lane(_InstantLane(), _noop)
    worker = Worker(build_node_context(settings, engine), registry, concurrency=1, poll_interval_s=60.0)
    claims: list[bool] = []  # each claim: in a session that recorded outcomes?
    complete_many_later, claim_kind = queue.complete_many_later, queue.claim_kind

    async def completing(session: AsyncSession, *args: Any, **kwargs: Any) -> Callable[[], set[int]]:
        session.info["recorded"] = True
        return await complete_many_later(session, *args, **kwargs)

    async def claiming(session: AsyncSession, *args: Any, **kwargs: Any) -> list[ClaimedJob]:
        claims.append("recorded" in session.info)
        assert kwargs["commit"]  # the claim is its transaction's last write (decision 108)
        taken = await claim_kind(session, *args, **kwargs)
        if not bare.on_postgresql(session):  # committed with the claim: SQLite's write lock is free
            raw = await (await session.connection()).get_raw_connection()
            assert not raw.driver_connection._connection.in_transaction
        return taken

    monkeypatch.setattr(queue, "complete_many_later", completing)
    monkeypatch.setattr(queue, "claim_kind", claiming)
    async with sessions.begin() as session:
        jobs = [queue.NewJob("instant", {"n": n}) for n in range(24)]
        await queue.enqueue_many(session, jobs, now=utc_now())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def drained() -> bool:
        async with sessions() as session:
            left = await session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "instant", Job.state != "done")
            )
        return left == 0

    try:
        await _eventually(drained)
        await asyncio.sleep(0.1)  # a claim after the last record would come now
        assert claims.count(False) == 1  # the first; the others rode on records, the last finding none
        assert claims.count(True) >= 6
        async with sessions.begin() as session:  # a notify lets the loop claim again
            await queue.enqueue_many(session, [queue.NewJob("instant", {"n": 24})], now=utc_now())
        worker.notify({"instant"})
        await _eventually(drained)
        assert claims.count(False) == 2
    finally:
        stop.set()
        async with asyncio.timeout(1):  # the idle lane is woken by the stop, not by its poll
            await task


class _InstantKeyedLane(_InstantLane):
    """A keyed lane whose jobs finish as soon as they are prepared; a job's key is the kind of the
    job its payload names."""

    kind = "instant-keyed"
    max_per_key = 2
    keyed_by = queue.KeyOf(table="jobs", column="kind", payload_id="row")


async def test_a_keyed_lane_claims_its_next_jobs_in_the_transaction_that_records_the_last(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    """Decision 106: the delivery lane's claims ride on its records too, capped per key as the
    loop's, with the keys of the jobs held after the record freed its slots."""
    registry = LaneRegistry()
    registry.add_lane(_InstantKeyedLane(), _noop)
    worker = Worker(build_node_context(settings, engine), registry, concurrency=1, poll_interval_s=60.0)
    claims: list[tuple[bool, int]] = []  # each claim: in a session that recorded outcomes? how many taken
    complete_many_later, claim_keyed = queue.complete_many_later, queue.claim_keyed

    async def completing(session: AsyncSession, *args: Any, **kwargs: Any) -> Callable[[], set[int]]:
        session.info["recorded"] = True
        return await complete_many_later(session, *args, **kwargs)

    async def claiming(session: AsyncSession, *args: Any, **kwargs: Any) -> list[tuple[ClaimedJob, str]]:
        assert kwargs["commit"]  # the claim is its transaction's last write (decision 108)
        taken = await claim_keyed(session, *args, **kwargs)
        claims.append(("recorded" in session.info, len(taken)))
        return taken

    async def most_running_of_a_key() -> int:
        async with sessions() as session:
            rows = await session.execute(
                select(Job.payload).where(Job.kind == "instant-keyed", Job.state == "running")
            )
            per_key = Counter(payload["row"] for (payload,) in rows.all())
        return max(per_key.values(), default=0)

    monkeypatch.setattr(queue, "complete_many_later", completing)
    monkeypatch.setattr(queue, "claim_keyed", claiming)
    far = utc_now() + timedelta(days=1)
    keys = [await _enqueue(sessions, f"key-{k}", run_at=far) for k in range(4)]
    async with sessions.begin() as session:
        jobs = [queue.NewJob("instant-keyed", {"row": keys[n % 4]}) for n in range(24)]
        await queue.enqueue_many(session, jobs, now=utc_now())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def drained() -> bool:
        async with sessions() as session:
            left = await session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "instant-keyed", Job.state != "done")
            )
        return left == 0

    try:
        peak = 0
        async with asyncio.timeout(WAIT_S):
            while not await drained():  # the cap of 2 per key, all workers together (decision 110)
                peak = max(peak, await most_running_of_a_key())
                await asyncio.sleep(0.005)
        assert peak <= 2
        await asyncio.sleep(0.1)  # a claim after the last record would come now
        assert [recorded for recorded, _ in claims].count(False) == 1
        assert sum(1 for recorded, n in claims if recorded and n) >= 5
        assert sum(n for _, n in claims) == 24
    finally:
        stop.set()
        async with asyncio.timeout(1):
            await task


async def _noop(ctx: JobContext) -> None:
    return None
