"""The inbox's stored activities: the worker's view (runnable, queued, marked) and the C2S view."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import InboxActivity, InboxItem
from server.db.queries import bare


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A stored activity still ``queued``: what processing needs."""

    id: int
    signer_key_iri: str
    actor_iri: str
    document: Any
    received_at: datetime


async def queued_activities(session: AsyncSession, ids: Sequence[int]) -> list[QueuedRow]:
    """The rows among ``ids`` still ``queued``, in one statement through the bare driver
    (decision 95: the inbox lane reads one batch per claim)."""
    if not ids:
        return []
    among, params = bare.any_of(session, "id", sorted(set(ids)))
    sql = (
        "SELECT id, signer_key_iri, actor_iri, document, received_at FROM inbox_activities"
        f" WHERE {among} AND state = 'queued'"
    )
    rows = await bare.fetch(session, sql, params)
    return [
        QueuedRow(int(row_id), signer, actor, _decoded(document), bare.utc(received))
        for row_id, signer, actor, document, received in rows
    ]


async def still_queued(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """The ids among ``ids`` whose rows are still ``queued``, in one statement through the bare
    driver (the inbox lane's activities handed over in memory: decision 102)."""
    if not ids:
        return []
    among, params = bare.any_of(session, "id", sorted(set(ids)))
    sql = f"SELECT id FROM inbox_activities WHERE {among} AND state = 'queued'"
    return sorted(int(row_id) for (row_id,) in await bare.fetch(session, sql, params))


def _decoded(document: Any) -> Any:
    """A stored activity as the ORM's JSON type decodes it (``json.loads``): ``orjson`` would turn
    an integer beyond 64 bits, which the inbox accepts, into a float."""
    return json.loads(document) if isinstance(document, str | bytes) else document


async def mark_processed(session: AsyncSession, marks: Sequence[tuple[int, str]], *, now: datetime) -> None:
    """Record each ``(id, state)``: one statement per final state through the bare driver, queued
    rows only (a row another run marked meanwhile keeps its state)."""
    for sql, params in _marking(session, marks, now):
        await bare.write(session, sql, params)


def mark_processed_later(session: AsyncSession, marks: Sequence[tuple[int, str]], *, now: datetime) -> None:
    """:func:`mark_processed` sent with the session's next bare write (``bare.later``): the inbox
    lane's marks travel with the completion of their jobs (decision 104)."""
    for sql, params in _marking(session, marks, now):
        bare.later(session, sql, params)


def _marking(
    session: AsyncSession, marks: Sequence[tuple[int, str]], now: datetime
) -> list[tuple[str, list[Any]]]:
    by_state: defaultdict[str, list[int]] = defaultdict(list)
    for activity_id, state in marks:
        by_state[state].append(activity_id)
    statements: list[tuple[str, list[Any]]] = []
    for state, ids in sorted(by_state.items()):
        among, params = bare.any_of(session, "id", sorted(ids))
        sql = (
            "UPDATE inbox_activities SET state = ?, processed_at = ?, error = NULL"
            f" WHERE {among} AND state = 'queued'"
        )
        statements.append((sql, [state, now, *params]))
    return statements


async def inbox_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, InboxActivity]]]:
    """Activities that processing accepted into ``actor_id``'s inbox: total and one page of
    (cursor, stored activity), newest first. The raw body is not what is listed (case 50)."""
    cond = (InboxItem.actor_id == actor_id, InboxItem.accepted.is_(True))
    counted = await session.execute(select(func.count()).select_from(InboxItem).where(*cond))
    total = int(counted.scalar_one())
    stmt = (
        select(InboxItem.id, InboxActivity)
        .join(InboxActivity, InboxActivity.id == InboxItem.inbox_activity_id)
        .where(*cond)
    )
    if before is not None:
        stmt = stmt.where(InboxItem.id < before)
    rows = (await session.execute(stmt.order_by(InboxItem.id.desc()).limit(limit))).all()
    return total, [(r[0], r[1]) for r in rows]


@dataclass(frozen=True, slots=True)
class Received:
    """One verified activity to store as ``queued`` (``document`` already encoded as JSON text)."""

    iri: str
    actor_iri: str
    type: str
    object_iri: str | None
    signer_key_iri: str
    document: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ProcessingJob:
    """What every stored activity's processing job is: its kind, urgency and attempts. The job's
    payload is ``{"inbox_activity_id": id}`` and its ``dedup_key`` ``inbox:{id}``."""

    kind: str
    priority: int
    max_attempts: int


_ACTIVITY_COLUMNS = "iri, actor_iri, type, object_iri, signer_key_iri, document, state, received_at"
_JOB_COLUMNS = "kind, payload, dedup_key, priority, state, attempts, max_attempts, run_at, created_at"
# A host that sent a verified request is alive: close its breaker and clear its unavailability
# (Mastodon resets its failure tracker on any signed request from the host).
_ANSWERED = (
    "UPDATE peer_hosts SET breaker = 'closed', recent_failures = 0, window_started_at = NULL, "
    "open_until = NULL, failing_days = 0, last_failure_day = NULL, unavailable = {false}, updated_at = {now} "
    "WHERE host {hosts} AND (breaker != 'closed' OR unavailable = {true} OR failing_days > 0)"
)
_PG_STORE = f"""
WITH new AS (
    INSERT INTO inbox_activities ({_ACTIVITY_COLUMNS})
    SELECT r.iri, r.actor_iri, r.type, r.object_iri, r.signer_key_iri, r.document::jsonb, 'queued',
        r.received_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
        WITH ORDINALITY AS r(iri, actor_iri, type, object_iri, signer_key_iri, document, received_at, n)
    ORDER BY r.n
    ON CONFLICT (iri) DO NOTHING
    RETURNING id, iri
), queued AS (
    INSERT INTO jobs ({_JOB_COLUMNS})
    SELECT $8, jsonb_build_object('inbox_activity_id', id), 'inbox:' || id, $9, 'queued', 0, $10, $11, $11
    FROM new ORDER BY id
    ON CONFLICT (dedup_key) DO NOTHING
), answered AS (
    {_ANSWERED.format(false="false", true="true", now="$11", hosts="= ANY($12::text[])")}
)
SELECT id, iri FROM new
"""


def _sqlite_time(moment: datetime) -> str:
    """A timestamp as SQLAlchemy's ``UtcDateTime`` stores it on SQLite (compared as text there)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def store_received(
    session: AsyncSession,
    activities: Sequence[Received],
    *,
    filed: Sequence[tuple[str, int]],
    hosts: Sequence[str],
    job: ProcessingJob,
    now: datetime,
) -> dict[str, int]:
    """Store verified activities with their processing jobs and **commit**; the new rows' ids by IRI.

    The inbox's group commit (``server.services.inbox.writer``) on the bare driver: an activity
    whose IRI is already stored is skipped (the unique index is the last replay guard) and gets
    no job; ``filed`` pairs ``(iri, local actor id)`` are filed in those actors' inboxes whether
    the activity is new or not; the ``hosts`` that sent them are marked as answering (their
    breaker closed, their unavailability cleared). Everything commits together or not at all.
    On PostgreSQL this is one statement (data-modifying ``WITH``), plus a transaction when
    something is filed (decision 94); on SQLite one hand-off to aiosqlite's thread runs the
    statements and the commit (decision 101).
    """
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        return await _store_postgresql(driver, activities, filed, hosts, job, now)
    return await _store_sqlite(driver, activities, filed, hosts, job, now)


async def _store_postgresql(
    driver: Any,
    activities: Sequence[Received],
    filed: Sequence[tuple[str, int]],
    hosts: Sequence[str],
    job: ProcessingJob,
    now: datetime,
) -> dict[str, int]:
    columns = [
        [a.iri for a in activities],
        [a.actor_iri for a in activities],
        [a.type for a in activities],
        [a.object_iri for a in activities],
        [a.signer_key_iri for a in activities],
        [a.document for a in activities],
        [a.received_at for a in activities],
    ]
    params = [*columns, job.kind, job.priority, job.max_attempts, now, sorted(hosts)]
    if not filed:  # one statement is its own transaction: no BEGIN and COMMIT round trips
        return {iri: row_id for row_id, iri in await driver.fetch(_PG_STORE, *params)}
    async with driver.transaction():
        created = {iri: row_id for row_id, iri in await driver.fetch(_PG_STORE, *params)}
        ids = await _ids_for_filing(driver, created, filed)
        pairs = sorted({(actor_id, ids[iri]) for iri, actor_id in filed if iri in ids})
        if pairs:
            await driver.execute(
                "INSERT INTO inbox_items (actor_id, inbox_activity_id, accepted) "
                "SELECT a, i, false FROM unnest($1::bigint[], $2::bigint[]) AS p(a, i) "
                "ON CONFLICT (actor_id, inbox_activity_id) DO NOTHING",
                [a for a, _ in pairs],
                [i for _, i in pairs],
            )
    return created


async def _store_sqlite(
    driver: Any,
    activities: Sequence[Received],
    filed: Sequence[tuple[str, int]],
    hosts: Sequence[str],
    job: ProcessingJob,
    now: datetime,
) -> dict[str, int]:
    # The whole batch is one hand-off to aiosqlite's thread (decision 101): its statements and
    # the commit run there back to back. One per statement and one for the commit cost four or
    # five thread switches, futures and self-pipe wake-ups per batch (each ≈ 80 µs of CPU,
    # server/db/queries/bare.py). Writes stay in that thread: they may wait on busy_timeout.
    rows = [
        value
        for a in activities
        for value in (
            a.iri,
            a.actor_iri,
            a.type,
            a.object_iri,
            a.signer_key_iri,
            a.document,
            _sqlite_time(a.received_at),
        )
    ]
    stamp = _sqlite_time(now)
    created: dict[str, int] = await driver._execute(
        _store_sqlite_batch, driver, rows, filed, sorted(hosts), job, stamp
    )
    return created


def _store_sqlite_batch(
    driver: Any,
    rows: list[Any],
    filed: Sequence[tuple[str, int]],
    hosts: list[str],
    job: ProcessingJob,
    stamp: str,
) -> dict[str, int]:
    """:func:`_store_sqlite` in aiosqlite's thread, on its ``sqlite3`` connection."""
    sqlite = driver._conn
    try:
        # The sqlite3 module opens the transaction before the first write.
        created = {
            iri: row_id
            for row_id, iri in sqlite.execute(
                f"INSERT INTO inbox_activities ({_ACTIVITY_COLUMNS}) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, 'queued', ?)"] * (len(rows) // 7))
                + " ON CONFLICT (iri) DO NOTHING RETURNING id, iri",
                rows,
            ).fetchall()
        }
        if created:
            ordered = sorted(created.values())
            sqlite.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES "
                + ", ".join(["(?, ?, ?, ?, 'queued', 0, ?, ?, ?)"] * len(ordered))
                + " ON CONFLICT (dedup_key) DO NOTHING",
                [
                    value
                    for row_id in ordered
                    for value in (
                        job.kind,
                        json.dumps({"inbox_activity_id": row_id}),
                        f"inbox:{row_id}",
                        job.priority,
                        job.max_attempts,
                        stamp,
                        stamp,
                    )
                ],
            )
        if hosts:
            sqlite.execute(
                _ANSWERED.format(false="0", true="1", now="?", hosts=f"IN ({', '.join('?' * len(hosts))})"),
                [stamp, *hosts],
            )
        if filed:
            ids = created
            missing = sorted({iri for iri, _ in filed if iri not in created})
            if missing:  # stored earlier (a copy sent to a second inbox of ours)
                found = sqlite.execute(
                    f"SELECT iri, id FROM inbox_activities WHERE iri IN ({', '.join('?' * len(missing))})",
                    missing,
                ).fetchall()
                ids = {**created, **dict(found)}
            pairs = sorted({(actor_id, ids[iri]) for iri, actor_id in filed if iri in ids})
            if pairs:
                sqlite.execute(
                    "INSERT INTO inbox_items (actor_id, inbox_activity_id, accepted) VALUES "
                    + ", ".join(["(?, ?, 0)"] * len(pairs))
                    + " ON CONFLICT (actor_id, inbox_activity_id) DO NOTHING",
                    [value for pair in pairs for value in pair],
                )
        sqlite.commit()
    except BaseException:
        sqlite.rollback()
        raise
    return created


async def _ids_for_filing(
    driver: Any, created: dict[str, int], filed: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """Ids of the activities to file on PostgreSQL: those just created, and those stored earlier
    (a copy sent to a second inbox of ours), read in the same transaction."""
    missing = sorted({iri for iri, _ in filed if iri not in created})
    if not missing:
        return created
    found = await driver.fetch("SELECT iri, id FROM inbox_activities WHERE iri = ANY($1::text[])", missing)
    return {**created, **{iri: row_id for iri, row_id in found}}
