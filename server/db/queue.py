"""The durable job queue: a ``jobs`` table that any number of workers share.

Jobs are rows (as in takahe's stator and microblog.pub's queues), so they survive
restarts, can be inspected with SQL and commit atomically with the state change that caused
them (the transactional outbox, docs/architecture.md R9: call :func:`enqueue` inside the caller's
transaction).

Life of a job::

    queued --claim--> running --complete--> done      (purged after a while)
                        |  \\--retry-----> queued     (run_at in the future)
                        |   \\--fail-----> failed     (kept for inspection)
                        \\--lease expires--> claimable again (a crashed worker's job)

Guarantees:
    * at-least-once: a claimed job that is neither completed, retried nor failed before its
      lease ends is claimed again, so handlers must be idempotent;
    * exclusive claims: two workers never hold the same job at the same time (PostgreSQL
      ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers);
    * fencing: :func:`complete`, :func:`retry` and :func:`fail` only act on a job still leased
      to the calling worker (and attempt), so a worker whose lease expired cannot overwrite
      the outcome of the worker that took the job over;
    * order: runnable jobs are claimed by ``priority`` (lower first), then ``run_at``, then id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Table,
    Update,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from server.db.models import Job
from server.db.queries import bare
from server.db.upsert import insert_for

_JOBS = cast(Table, Job.__table__)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_DEDUP_KEY_LENGTH",
    "MAX_ERROR_BYTES",
    "MAX_KIND_LENGTH",
    "ClaimedJob",
    "KeyOf",
    "NewJob",
    "Priority",
    "QueueStats",
    "claim",
    "claim_ids",
    "claim_keyed",
    "claim_kind",
    "complete",
    "complete_many",
    "enqueue",
    "enqueue_many",
    "fail",
    "purge_done",
    "retry",
    "runnable",
    "stats",
    "truncate_error",
]

DEFAULT_MAX_ATTEMPTS = 16
"""Matches :class:`federation.retry.RetryPolicy`'s default (about 2 to 3 days of retries)."""

MAX_ERROR_BYTES = 1024
"""``last_error`` keeps at most 1 KiB (fedify-dev/fedify#569: peers' error pages can be huge)."""

MAX_KIND_LENGTH = 32
MAX_DEDUP_KEY_LENGTH = 512
# Rows per INSERT in enqueue_many: 12 bound values a row stays far below both engines' limit
# on parameters per statement (32766 for SQLite ≥ 3.32, 32767 for PostgreSQL).
_BATCH_ROWS = 500

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class Priority(IntEnum):
    """Claim order: lower values run first; alerts go before everything else.

    See docs/architecture.md, "The job queue".
    """

    ALERT = 0
    INTERACTIVE = 5
    NORMAL = 10
    BACKGROUND = 20


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to insert with :func:`enqueue_many` (the arguments of :func:`enqueue`)."""

    kind: str
    payload: Mapping[str, Any]
    dedup_key: str | None = None
    priority: int = Priority.NORMAL
    run_at: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job leased to one worker. ``attempt`` counts this run (the first run is 1)."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempt: int
    max_attempts: int
    priority: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Job counts by ``(kind, state)`` and the age of the oldest runnable queued job.

    ``oldest_runnable_age`` measures backlog: how long the oldest job whose ``run_at`` has
    passed has been waiting. Jobs delayed for a later retry do not count as backlog.
    """

    counts: dict[tuple[str, str], int]
    oldest_runnable_age: timedelta | None


def _locks_claimed_rows(session: AsyncSession) -> bool:
    """The only place the queue branches on the database engine (docs/architecture.md R8); inserts go through
    :func:`server.db.upsert.insert_for`."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        # SKIP LOCKED lets concurrent workers (several processes, several machines) each take
        # different rows instead of queueing behind one another's row locks.
        return True
    if name == "sqlite":
        # SQLite has one writer at a time: UPDATE … WHERE id IN (SELECT … LIMIT n) takes the
        # write lock before it reads, so the selection and the update are atomic without locks.
        return False
    raise NotImplementedError(f"the job queue supports sqlite and postgresql, not {name}")


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime")


def _row(job: NewJob, now: datetime) -> dict[str, Any]:
    """Validate one job and turn it into column values (the same checks on both engines)."""
    if not job.kind or len(job.kind) > MAX_KIND_LENGTH:
        raise ValueError(f"job kind must be 1 to {MAX_KIND_LENGTH} characters: {job.kind!r}")
    if job.dedup_key is not None and not 0 < len(job.dedup_key) <= MAX_DEDUP_KEY_LENGTH:
        raise ValueError(f"dedup_key must be 1 to {MAX_DEDUP_KEY_LENGTH} characters")
    if job.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    run_at = job.run_at if job.run_at is not None else now
    _check_aware(run_at, "run_at")
    return {
        "kind": job.kind,
        "payload": dict(job.payload),
        "dedup_key": job.dedup_key,
        "priority": int(job.priority),
        "state": QUEUED,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_at": run_at,
        "locked_until": None,
        "locked_by": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: Mapping[str, Any],
    *,
    dedup_key: str | None = None,
    priority: int = Priority.NORMAL,
    run_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    now: datetime,
) -> int | None:
    """Queue one job in the caller's transaction; it becomes visible to workers on commit.

    Payloads carry ids, not copies of the data (docs/architecture.md R9). With a ``dedup_key`` that another
    job (in any state) already holds, nothing is inserted and ``None`` is returned, so
    re-running the code that enqueues is harmless.

    Args:
        run_at: the earliest time a worker may run the job (default: ``now``).
        max_attempts: how many times the job may be tried before it is marked failed.

    Returns:
        The new job's id, or ``None`` when ``dedup_key`` already exists.

    Raises:
        ValueError: an empty or over-long ``kind`` or ``dedup_key``, a naive datetime, or
            ``max_attempts`` below 1.
    """
    _check_aware(now, "now")
    values = _row(
        NewJob(
            kind, payload, dedup_key=dedup_key, priority=priority, run_at=run_at, max_attempts=max_attempts
        ),
        now,
    )
    stmt = insert_for(session, Job).values(values).on_conflict_do_nothing(index_elements=[Job.dedup_key])
    result = await session.execute(stmt.returning(Job.id))
    job_id: int | None = result.scalar_one_or_none()
    return job_id


async def enqueue_many(session: AsyncSession, jobs: Iterable[NewJob], *, now: datetime) -> int:
    """Queue many jobs in the caller's transaction, in multi-row INSERTs of bounded size.

    Fan-out creates thousands of delivery jobs at once; one statement per few hundred rows
    keeps that fast on both engines. Jobs whose ``dedup_key`` already exists, in the table or
    earlier in ``jobs``, are skipped.

    Returns:
        How many jobs were inserted.

    Raises:
        ValueError: as :func:`enqueue`, for the first invalid job (nothing is inserted then
            by this call, though earlier batches of the same call may have been; the caller's
            transaction rolls them back together).
    """
    _check_aware(now, "now")
    seen: set[str] = set()
    batch: list[dict[str, Any]] = []
    inserted = 0

    # One statement shape for every batch (SQLAlchemy's "insertmanyvalues"): it is compiled
    # once and cached, where ``.values(batch)`` compiled a new statement for every batch size.
    stmt = insert_for(session, _JOBS).on_conflict_do_nothing(index_elements=[Job.dedup_key]).returning(Job.id)

    async def flush() -> int:
        result = await session.execute(stmt, batch)
        return len(result.all())

    for job in jobs:
        row = _row(job, now)
        if job.dedup_key is not None:
            if job.dedup_key in seen:
                continue
            seen.add(job.dedup_key)
        batch.append(row)
        if len(batch) >= _BATCH_ROWS:
            inserted += await flush()
            batch = []
    if batch:
        inserted += await flush()
    return inserted


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    *,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    kinds: Iterable[str] | None = None,
    max_priority: int | None = None,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` runnable jobs to ``worker_id`` in a transaction of its own.

    Runnable means running with an expired lease (the worker holding it crashed or overran
    its lease), or queued with ``run_at <= now``. Expired leases are taken first: they are
    few (at most the crashed workers' slots) and have waited longest. Within each group jobs
    are taken by ``priority``, then ``run_at``, then id. Claimed jobs become ``running`` with
    ``locked_by = worker_id``, ``locked_until = now + lease`` and one more attempt counted.
    The claim commits before returning, so other workers see it at once.

    Args:
        kinds: only claim jobs of these kinds (the worker's registered handlers), so a worker
            of an older release never takes a job it cannot run. ``None`` claims any kind.
        max_priority: only claim jobs whose ``priority`` is at most this (more urgent).

    Returns:
        The claimed jobs in claim order (priority, then ``run_at``, then id); empty when
        nothing is runnable.
    """
    _check_aware(now, "now")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    kind_list = None if kinds is None else sorted(set(kinds))
    if limit < 1 or kind_list == []:
        return []
    # Two statements rather than one with an OR: each can then walk ix_jobs_claim
    # (state, priority, run_at) in order and stop after ``limit`` rows, instead of sorting the
    # whole backlog on every claim (measured: ~15 ms per claim at 20k queued rows on PostgreSQL).
    groups = runnable(now)
    rows: list[Any] = []
    async with sessions.begin() as session:
        lock = _locks_claimed_rows(session)
        for condition in groups:
            remaining = limit - len(rows)
            if remaining <= 0:
                break
            chosen = select(Job.id).where(condition)
            if kind_list is not None:
                chosen = chosen.where(Job.kind.in_(kind_list))
            if max_priority is not None:
                chosen = chosen.where(Job.priority <= max_priority)
            chosen = chosen.order_by(Job.priority, Job.run_at, Job.id).limit(remaining)
            if lock:
                chosen = chosen.with_for_update(skip_locked=True)
            stmt = (
                update(Job)
                .where(Job.id.in_(chosen.scalar_subquery()))
                .values(
                    state=RUNNING, locked_by=worker_id, locked_until=now + lease, attempts=Job.attempts + 1
                )
                .returning(
                    Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.priority, Job.run_at
                )
                .execution_options(synchronize_session=False)
            )
            rows.extend((await session.execute(stmt)).all())
    # RETURNING gives no order guarantee; hand jobs out in claim order.
    rows.sort(key=lambda r: (r.priority, r.run_at, r.id))
    return [
        ClaimedJob(
            id=r.id,
            kind=r.kind,
            payload=r.payload,
            attempt=r.attempts,
            max_attempts=r.max_attempts,
            priority=r.priority,
        )
        for r in rows
    ]


def runnable(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """What a claimable job is, as two conditions to query separately and in this order:
    running with an expired lease, then queued with ``run_at <= now`` (see :func:`claim`).

    For callers that choose jobs with a query of their own (a join, a per-host cap) and then
    take them with :func:`claim_ids`.
    """
    t = _JOBS.c  # plain columns: a Core statement using them stays Core
    return (
        and_(t.state == RUNNING, t.locked_until < now),
        and_(t.state == QUEUED, t.run_at <= now),
    )


_KIND_RUNNABLE = (  # runnable() in SQL, for the bare driver
    "state = 'running' AND locked_until < ?",  # an expired lease (runnable()'s first condition)
    "state = 'queued' AND run_at <= ?",  # queued and due (the second)
)


async def any_runnable(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, kinds: Collection[str]
) -> bool:
    """Is a job of one of ``kinds`` claimable now (either condition of :func:`runnable`)?

    One read outside any write transaction, for a worker woken by its poll (or by a lane that
    left room) rather than by a notification: while the queue is idle it costs one statement
    instead of a claim, a transaction per loop (decision 91). Each condition is its own
    ``EXISTS``, so each can use ``ix_jobs_claim`` as the claims do; the statement goes through the
    bare driver (decision 95).
    """
    if not kinds:
        return False
    listed = sorted(set(kinds))
    marks = bare.marks(len(listed))
    sql = " OR ".join(
        f"EXISTS (SELECT 1 FROM jobs WHERE {condition} AND kind IN ({marks}))" for condition in _KIND_RUNNABLE
    )
    async with sessions() as session:
        ((found,),) = await bare.fetch(session, f"SELECT {sql}", [now, *listed, now, *listed])
    return bool(found)


async def runnable_keyed(
    session: AsyncSession,
    *,
    kind: str,
    condition: ColumnElement[bool],
    limit: int,
    payload_id: str,
    row_id: InstrumentedAttribute[int],
    key: InstrumentedAttribute[str],
    exclude_keys: Collection[str],
) -> list[tuple[int, str]]:
    """Runnable ``kind`` jobs matching ``condition`` (one of :func:`runnable`), each with the
    ``key`` of the row its payload names (``payload[payload_id]`` = ``row_id``), in claim order
    (priority, then ``run_at``, then id), none of whose key is in ``exclude_keys``.

    A job whose row is gone comes with the key ``""`` (the caller finishes it). On PostgreSQL
    the jobs are locked (``SKIP LOCKED``) until :func:`claim_ids` takes them.
    """
    named = Job.payload[payload_id].as_integer()
    stmt = (
        select(Job.id, func.coalesce(key, ""))
        .select_from(Job)
        .outerjoin(row_id.class_, row_id == named)
        .where(Job.kind == kind, condition)
    )
    if exclude_keys:
        stmt = stmt.where(or_(key.is_(None), key.not_in(sorted(exclude_keys))))
    stmt = stmt.order_by(Job.priority, Job.run_at, Job.id).limit(limit)
    if _locks_claimed_rows(session):
        stmt = stmt.with_for_update(of=Job, skip_locked=True)
    return [(int(r[0]), str(r[1])) for r in (await session.execute(stmt)).all()]


async def claim_ids(
    session: AsyncSession,
    job_ids: Sequence[int],
    *,
    worker_id: str,
    lease: timedelta,
    now: datetime,
) -> list[ClaimedJob]:
    """Lease the jobs among ``job_ids`` that are still runnable, in the caller's transaction.

    The caller chose ``job_ids`` with a read of its own (:func:`runnable`); a job another
    worker claimed meanwhile no longer matches the runnable condition here and is left out, so
    claims stay exclusive (PostgreSQL re-checks the condition on the locked row; SQLite has a
    single writer). Returns the jobs actually claimed, in claim order.
    """
    _check_aware(now, "now")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    if not job_ids:
        return []
    expired, queued = runnable(now)
    t = _JOBS.c  # Core: no ORM bulk-update machinery (and no autoflush) per claim
    stmt = (
        update(_JOBS)
        .where(t.id.in_(sorted(set(job_ids))), or_(expired, queued))
        .values(state=RUNNING, locked_by=worker_id, locked_until=now + lease, attempts=t.attempts + 1)
        .returning(t.id, t.kind, t.payload, t.attempts, t.max_attempts, t.priority, t.run_at)
    )
    rows = list((await session.execute(stmt)).all())
    rows.sort(key=lambda r: (r.priority, r.run_at, r.id))
    return [
        ClaimedJob(
            id=r.id,
            kind=r.kind,
            payload=r.payload,
            attempt=r.attempts,
            max_attempts=r.max_attempts,
            priority=r.priority,
        )
        for r in rows
    ]


_CLAIM_KIND = """UPDATE jobs SET state = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1
 WHERE id IN (SELECT id FROM (SELECT id FROM jobs WHERE kind = ? AND {expired}
                              ORDER BY priority, run_at, id LIMIT ?{lock}) AS expired
              UNION ALL
              SELECT id FROM (SELECT id FROM jobs WHERE kind = ? AND {queued}
                              ORDER BY priority, run_at, id LIMIT ?{lock}) AS due
              LIMIT ?)
 RETURNING id, kind, payload, attempts, max_attempts, priority, run_at"""


def _in_claim_order(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A claim's ``RETURNING`` rows (id, kind, payload, attempts, max_attempts, priority, run_at, …)
    in claim order: ``RETURNING`` gives no order guarantee; run_at sorts alike as text (SQLite) and
    as a datetime."""
    return sorted(rows, key=lambda r: (r[5], r[6], r[0]))


def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
    job_id, job_kind, payload, attempts, max_attempts, priority = row[:6]
    return ClaimedJob(
        id=int(job_id),
        kind=str(job_kind),
        payload=bare.document(payload),
        attempt=int(attempts),
        max_attempts=int(max_attempts),
        priority=int(priority),
    )


async def claim_kind(
    session: AsyncSession,
    kind: str,
    *,
    limit: int,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    commit: bool = False,
) -> list[ClaimedJob]:
    """:func:`claim` for one kind in the caller's transaction, through the bare driver, in one
    ``UPDATE … RETURNING``: the jobs of each condition of :func:`runnable` (expired leases first),
    each read walking ``ix_jobs_claim`` in claim order, ``limit`` of them at most. For a lane
    whose jobs have no per-key cap (the inbox lane): no read of the keys first, no ORM statement
    to build (decision 95), one statement for both conditions (decision 102: it was one per
    condition, a hand-off to aiosqlite's thread or a PostgreSQL round trip each). Returns the
    claimed jobs in claim order. ``commit``: on SQLite, the transaction commits with the claim
    (``bare.write``, decision 108)."""
    _check_aware(now, "now")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    lock = " FOR UPDATE SKIP LOCKED" if _locks_claimed_rows(session) else ""
    expired, queued = _KIND_RUNNABLE
    sql = _CLAIM_KIND.format(expired=expired, queued=queued, lock=lock)
    params = [worker_id, now + lease, kind, now, limit, kind, now, limit, limit]
    rows = await bare.write(session, sql, params, commit=commit)
    return [_claimed(row) for row in _in_claim_order(rows)]


@dataclass(frozen=True, slots=True)
class KeyOf:
    """Where a keyed lane's job finds its key: the ``column`` of the ``table`` row whose ``id`` the
    job's ``payload[payload_id]`` names (a delivery's host). Names of the schema, never input."""

    table: str
    column: str
    payload_id: str


_CLAIM_KEYED = """UPDATE jobs SET state = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1
 WHERE id IN (
  SELECT ranked.id FROM (
   SELECT c.id, c.g, c.priority, c.run_at, c.k,
          row_number() OVER (PARTITION BY c.k ORDER BY c.g, c.priority, c.run_at, c.id) AS nth
     FROM (SELECT * FROM (SELECT 0 AS g, j.id, j.priority, j.run_at, COALESCE(r.{column}, '') AS k
                            FROM jobs AS j LEFT JOIN {table} AS r ON r.id = {named}
                           WHERE j.kind = ? AND j.{expired} AND {not_full}
                           ORDER BY j.priority, j.run_at, j.id LIMIT ?{lock}) AS expired
           UNION ALL
           SELECT * FROM (SELECT 1 AS g, j.id, j.priority, j.run_at, COALESCE(r.{column}, '') AS k
                            FROM jobs AS j LEFT JOIN {table} AS r ON r.id = {named}
                           WHERE j.kind = ? AND j.{queued} AND {not_full}
                           ORDER BY j.priority, j.run_at, j.id LIMIT ?{lock}) AS due) AS c) AS ranked
   LEFT JOIN {held} AS held ON held.k = ranked.k
  WHERE ranked.nth <= ? - COALESCE(held.n, 0)
  ORDER BY ranked.g, ranked.priority, ranked.run_at, ranked.id LIMIT ?)
 RETURNING id, kind, payload, attempts, max_attempts, priority, run_at,
           (SELECT r.{column} FROM {table} AS r WHERE r.id = {returned})"""
# No leading WITH: the sqlite3 module opens its transaction only before a statement that starts with
# UPDATE (a claim joins the record's transaction, decision 108), and on PostgreSQL bare.write puts the
# writes left for it in a WITH of its own ahead of the statement.

_HELD = """(SELECT COALESCE(hr.{column}, '') AS k, count(*) AS n
             FROM jobs AS hj LEFT JOIN {table} AS hr ON hr.id = {held_named}
            WHERE hj.kind = ? AND hj.state = 'running' AND hj.locked_until >= ?
            GROUP BY COALESCE(hr.{column}, ''))"""
"""The jobs of a kind that some worker runs under a live lease, counted per key (decision 110)."""

_NOT_FULL = "COALESCE(r.{column}, '') NOT IN (SELECT f.k FROM {held} AS f WHERE f.n >= ?)"


def _claim_turn_key(kind: str) -> int:
    """The PostgreSQL advisory lock that ``kind``'s keyed claims take turns on: a stable signed
    64-bit number."""
    digest = hashlib.sha256(f"entraide:claim_keyed:{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def claim_keyed(
    session: AsyncSession,
    kind: str,
    key: KeyOf,
    *,
    limit: int,
    cap: int,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    commit: bool = False,
) -> list[tuple[ClaimedJob, str]]:
    """Claim up to ``limit`` runnable ``kind`` jobs in the caller's transaction, at most ``cap``
    per key counting the jobs of that key that any worker runs, each with its key (``""`` when its
    row is gone: the caller finishes the job), in claim order.

    The cap is the node's, not a process's (decision 110): the jobs of ``kind`` in state
    ``running`` under a live lease are counted per key in the statement itself, whichever process
    holds them (a job whose lease expired is not counted: it is a candidate again). On SQLite the
    statement takes the write lock before it reads, so the count, the choice and the claim are
    atomic; on PostgreSQL the keyed claims of one kind first take turns on an advisory lock held
    until the transaction ends, so each counts the claims committed before it.

    One ``UPDATE … RETURNING`` through the bare driver (decision 106): each condition of
    :func:`runnable` (expired leases first) walks ``ix_jobs_claim`` in claim order for up to
    ``2 * limit`` candidates whose key is not full, joined to their key; the first ``cap - running``
    of each key in claim order are taken, ``limit`` at most, so one key's jobs are taken in their
    claim order. On PostgreSQL the candidates are locked ``SKIP LOCKED``.
    """
    _check_aware(now, "now")
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    if limit < 1:
        return []
    pid = key.payload_id
    if _locks_claimed_rows(session):
        named, held_named = (f"CAST({alias}.payload ->> '{pid}' AS BIGINT)" for alias in ("j", "hj"))
        returned = f"CAST(jobs.payload ->> '{pid}' AS BIGINT)"
        lock = " FOR UPDATE OF j SKIP LOCKED"
    else:
        named, held_named = (f"json_extract({alias}.payload, '$.{pid}')" for alias in ("j", "hj"))
        returned = f"json_extract(jobs.payload, '$.{pid}')"
        lock = ""
    held = _HELD.format(table=key.table, column=key.column, held_named=held_named)
    expired, queued = _KIND_RUNNABLE
    sql = _CLAIM_KEYED.format(
        table=key.table,
        column=key.column,
        named=named,
        returned=returned,
        expired=expired.replace(" AND ", " AND j."),
        queued=queued.replace(" AND ", " AND j."),
        not_full=_NOT_FULL.format(column=key.column, held=held),
        lock=lock,
        held=held,
    )
    window = 2 * limit  # some candidates may be over their key's cap
    running = [kind, now]  # the parameters of each copy of _HELD
    params = [
        worker_id,
        now + lease,
        *(kind, now, *running, cap, window),  # expired leases
        *(kind, now, *running, cap, window),  # queued and due
        *running,
        cap,
        limit,
    ]
    async with bare.advisory_turn(session, _claim_turn_key(kind)):
        rows = await bare.write(session, sql, params, commit=commit)
    return [(_claimed(row), "" if row[7] is None else str(row[7])) for row in _in_claim_order(rows)]


def _leased_to(job_id: int, worker_id: str, attempt: int | None) -> Sequence[Any]:
    """The fence: the job is still running and leased to this worker (for this attempt)."""
    conditions: list[Any] = [Job.id == job_id, Job.state == RUNNING, Job.locked_by == worker_id]
    if attempt is not None:
        # The same worker may re-claim its own expired job; the attempt number tells the two
        # leases apart, so only the latest run's outcome is recorded.
        conditions.append(Job.attempts == attempt)
    return conditions


def truncate_error(error: str) -> str:
    """At most :data:`MAX_ERROR_BYTES` of UTF-8, without NUL (PostgreSQL text rejects it)."""
    cleaned = error.replace("\x00", "\ufffd")
    encoded = cleaned.encode("utf-8")
    if len(encoded) <= MAX_ERROR_BYTES:
        return cleaned
    marker = "…".encode()
    return encoded[: MAX_ERROR_BYTES - len(marker)].decode("utf-8", "ignore") + "…"


async def _apply(session: AsyncSession, stmt: Update | Delete | Insert) -> int:
    result = await session.execute(stmt.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def complete(
    session: AsyncSession, job_id: int, *, worker_id: str, now: datetime, attempt: int | None = None
) -> bool:
    """Mark a job done. Refused (``False``) unless it is still leased to ``worker_id``.

    Args:
        attempt: the :attr:`ClaimedJob.attempt` being completed; when given, a later lease
            of the same job to the same worker is not mistaken for this one.
    """
    _check_aware(now, "now")
    stmt = (
        update(Job)
        .where(*_leased_to(job_id, worker_id, attempt))
        .values(state=DONE, finished_at=now, locked_until=None)
    )
    return await _apply(session, stmt) == 1


def _complete_sql(among: str) -> str:
    """Jobs done, fenced by their lease (:func:`complete`): ``among`` from ``bare.any_of``, then the
    parameters ``now``, the ids, ``worker_id``, the attempt."""
    return (
        "UPDATE jobs SET state = 'done', finished_at = ?, locked_until = NULL"
        f" WHERE {among} AND state = 'running' AND locked_by = ? AND attempts = ? RETURNING id"
    )


async def complete_many(
    session: AsyncSession, jobs: Iterable[tuple[int, int]], *, worker_id: str, now: datetime
) -> set[int]:
    """Mark many jobs done; each ``(job id, attempt)`` is fenced like :func:`complete`. Returns
    the ids that were accepted (the others had lost their lease).

    One ``UPDATE … RETURNING`` through the bare driver per attempt number among ``jobs`` (nearly
    always one: a lane's batch is mostly first attempts) and per 500 ids (decision 95); the first
    carries the writes left by ``bare.later`` (the inbox lane's marks, decision 104; the delivery
    lane's rows and hosts, decision 106), sent alone when no job is done.
    """
    _check_aware(now, "now")
    by_attempt: dict[int, set[int]] = {}
    for job_id, attempt in jobs:
        by_attempt.setdefault(attempt, set()).add(job_id)
    accepted: set[int] = set()
    for attempt, ids in sorted(by_attempt.items()):
        ordered = sorted(ids)
        for start in range(0, len(ordered), _BATCH_ROWS):
            among, chunk = bare.any_of(session, "id", ordered[start : start + _BATCH_ROWS])
            rows = await bare.write(session, _complete_sql(among), [now, *chunk, worker_id, attempt])
            accepted.update(int(row[0]) for row in rows)
    await bare.send_later(session)  # nothing done: the writes left are sent alone (decision 106)
    return accepted


async def complete_many_later(
    session: AsyncSession, jobs: Iterable[tuple[int, int]], *, worker_id: str, now: datetime
) -> Callable[[], set[int]]:
    """:func:`complete_many` for a caller whose transaction ends with one more write (a lane's claim
    of its next jobs, or ``bare.send_later``) that commits it (decision 108): on SQLite the
    completion is left with ``bare.later`` for that write, so the whole record is one hand-off to
    aiosqlite's thread and holds SQLite's write lock only while it runs; on PostgreSQL it is written
    at once, as :func:`complete_many` does. Returns what gives the ids accepted, once that write is
    sent (before: ``RuntimeError``)."""
    if bare.on_postgresql(session):
        accepted = await complete_many(session, jobs, worker_id=worker_id, now=now)
        return lambda: accepted
    _check_aware(now, "now")
    by_attempt: dict[int, set[int]] = {}
    for job_id, attempt in jobs:
        by_attempt.setdefault(attempt, set()).add(job_id)
    sent: list[bare.Returned] = []
    for attempt, ids in sorted(by_attempt.items()):
        ordered = sorted(ids)
        for start in range(0, len(ordered), _BATCH_ROWS):
            among, chunk = bare.any_of(session, "id", ordered[start : start + _BATCH_ROWS])
            returned = bare.Returned()
            bare.later(session, _complete_sql(among), [now, *chunk, worker_id, attempt], into=returned)
            sent.append(returned)
    return lambda: {int(row[0]) for returned in sent for row in returned.rows}


async def retry(
    session: AsyncSession,
    job_id: int,
    *,
    worker_id: str,
    run_at: datetime,
    error: str,
    now: datetime,
    attempt: int | None = None,
    refund_attempt: bool = False,
) -> bool:
    """Put a job back in the queue to run again at ``run_at``, recording ``error`` (≤ 1 KiB).

    The attempt already counted by :func:`claim` stays counted, unless ``refund_attempt``
    (a deferral decided by us, not a failure of the job). Refused (``False``) unless the job
    is still leased to ``worker_id`` (and ``attempt``, when given).
    """
    _check_aware(now, "now")
    _check_aware(run_at, "run_at")
    values: dict[str, object] = {
        "state": QUEUED,
        "run_at": run_at,
        "locked_by": None,
        "locked_until": None,
        "last_error": truncate_error(error),
    }
    if refund_attempt:
        values["attempts"] = Job.attempts - 1
    stmt = update(Job).where(*_leased_to(job_id, worker_id, attempt)).values(**values)
    return await _apply(session, stmt) == 1


async def fail(
    session: AsyncSession,
    job_id: int,
    *,
    worker_id: str,
    error: str,
    now: datetime,
    attempt: int | None = None,
) -> bool:
    """Mark a job failed for good, recording ``error`` (≤ 1 KiB). Fenced like :func:`complete`."""
    _check_aware(now, "now")
    stmt = (
        update(Job)
        .where(*_leased_to(job_id, worker_id, attempt))
        .values(state=FAILED, finished_at=now, locked_until=None, last_error=truncate_error(error))
    )
    return await _apply(session, stmt) == 1


async def purge_done(session: AsyncSession, *, older_than: timedelta, now: datetime) -> int:
    """Delete jobs that finished successfully more than ``older_than`` ago; return how many.

    Failed jobs are kept: they are what an operator inspects. Their ``dedup_key`` also keeps
    blocking re-enqueues, whereas a purged job's key is free again.
    """
    _check_aware(now, "now")
    stmt = delete(Job).where(Job.state == DONE, Job.finished_at < now - older_than)
    return await _apply(session, stmt)


async def stats(session: AsyncSession, *, now: datetime) -> QueueStats:
    """Counts by ``(kind, state)`` and the backlog age, for ``/metrics`` and the CLI."""
    _check_aware(now, "now")
    counted = await session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    counts = {(kind, state): int(n) for kind, state, n in counted.all()}
    oldest = await session.scalar(select(func.min(Job.run_at)).where(Job.state == QUEUED, Job.run_at <= now))
    if oldest is None:
        return QueueStats(counts=counts, oldest_runnable_age=None)
    return QueueStats(counts=counts, oldest_runnable_age=max(now - oldest, timedelta(0)))


async def schedule_periodic(session: AsyncSession, kind: str, *, every: timedelta, now: datetime) -> None:
    """Make sure the next round of a periodic job is queued, at the start of the next ``every``
    interval (idempotent per interval: the round's dedup key is its interval number)."""
    bucket = int(now.timestamp() // every.total_seconds()) + 1
    run_at = datetime.fromtimestamp(bucket * every.total_seconds(), now.tzinfo)
    await enqueue(
        session,
        kind,
        {},
        dedup_key=f"{kind}:{bucket}",
        run_at=run_at,
        priority=Priority.BACKGROUND,
        now=now,
    )
