"""Read statements sent through the bare driver (aiosqlite or asyncpg) in one call (decision 84).

Through SQLAlchemy, one ``SELECT`` on SQLite is four hand-offs to aiosqlite's thread (cursor,
execute, fetch, close) plus the ORM's compilation and result processing; a page built on every
request (a crawler walking many associations' outboxes never hits the page cache) spent most of
its time there (docs/performance.md, "Reads"). :func:`fetch` runs one parameterised statement on
the session's own connection, inside its transaction: one asyncpg ``fetch`` on PostgreSQL and, on
SQLite, no hand-off at all (decision 96): the statement runs on the connection's ``sqlite3`` object
in the event loop's thread. Statements are written with ``?`` placeholders and renumbered ``$1…``
for PostgreSQL; only columns of plain types and JSON documents are read.

Why SQLite's statements run inline: each is a small read bounded by an index (an actor by handle,
20 activities of an outbox by its (actor, id) index, the objects of a page by IRI, a feed's marks,
the facts of one incoming object), 10 to 40 µs in SQLite, while a hand-off to aiosqlite's thread cost
≈ 80 µs of CPU and, under load, waited for the GIL behind the event loop (a page built every time
paid three). A reader in WAL mode takes no lock that a writer holds, so these statements do not
wait on ``busy_timeout``. A statement that may scan, sort or wait belongs in the ORM path (through
aiosqlite's thread), not here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


class Reader:
    """A SQLite connection of its own for public reads that need no session (decision 99).

    An anonymous reader's outbox page or feed state is one to three bounded statements of this
    module; through a session each request also paid the ``AsyncSession``, its transaction and a
    pool checkout (≈ 75 µs), and left about forty objects in reference cycles behind it, which the
    cyclic collector then traced, a full collection of the node's heap every few hundred pages:
    a third of a page's CPU at concurrency 32 (docs/performance.md, "Reads built every time: no
    session, no cyclic garbage"). The connection is used only from the event loop's thread, one
    statement at a time, in autocommit mode: each statement reads the latest commit and no read
    transaction stays open between requests (WAL: it never holds back a checkpoint).
    ``query_only`` refuses any write.
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA query_only=ON")

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._db.execute(sql, _sqlite_params(params)).fetchall()]

    def close(self) -> None:
        self._db.close()


T = TypeVar("T")


class Returned:
    """The rows of a statement :func:`later` left with ``RETURNING``, once a :func:`write` sent it."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] | None = None

    def sent(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            raise RuntimeError("a statement left by bare.later was not sent yet")
        return self._rows


Source: TypeAlias = AsyncSession | Reader
"""Where a statement of this module runs: a session's transaction, or the :class:`Reader`."""


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2…`` (the statements here contain no literal ``?``)."""
    parts = sql.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, start=1))


async def fetch(session: Source, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders) run on ``session``'s connection, as tuples.

    Pending ORM changes are flushed first, as SQLAlchemy's autoflush does before its own queries,
    so a read in the same transaction sees what the caller just wrote.
    """
    if not sql.startswith("SELECT"):  # on SQLite a write could wait on busy_timeout in the event loop
        raise ValueError("bare.fetch runs reads only")
    if isinstance(session, Reader):
        return session.rows(sql, params)
    if session.info.get(_LATER):  # it would not see them
        raise ValueError("bare.fetch after a write left by bare.later")
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    driver, postgresql = await _driver(session)
    if postgresql:
        return [tuple(record) for record in await driver.fetch(_numbered(sql), *params)]
    sqlite = driver._connection  # aiosqlite's sqlite3 connection; None once closed
    if sqlite is None:  # let aiosqlite raise its own error
        return [tuple(row) for row in await driver.execute_fetchall(sql, tuple(params))]
    # Inline: nothing else uses this checked-out connection meanwhile (every earlier call on it
    # was awaited), and the engine opens it with check_same_thread off (server/db/engine.py).
    return [tuple(row) for row in sqlite.execute(sql, _sqlite_params(params)).fetchall()]


async def write(
    session: AsyncSession, sql: str, params: Sequence[Any], *, commit: bool = False
) -> list[tuple[Any, ...]]:
    """:func:`fetch` for an ``UPDATE`` (its ``RETURNING`` rows, if any) in ``session``'s transaction,
    sent together with the writes :func:`later` left for it.

    On SQLite it goes through aiosqlite's thread (one hand-off for all of them), never inline: a
    write may wait on ``busy_timeout`` for another process's writer, and the event loop must not.
    The ``sqlite3`` module opens the transaction before the first write; the session's commit ends
    it (decision 95: the inbox lane's claim, record and completion). On PostgreSQL the writes left
    for it are the data-modifying ``WITH`` of ``sql``: one statement, so they commit together
    (asyncpg's connection runs outside SQLAlchemy's transaction, each statement its own).

    ``commit``: on SQLite, the transaction also commits in that hand-off (decision 108). SQLite has
    one writer at a time, and a transaction holds the write lock from its first write to its
    commit: committed by the session afterwards, the lock stayed held while the event loop ran
    whatever was ready before the commit's turn (a lane's new deliveries sign for ~1 ms each),
    and another process's writer waited on ``busy_timeout`` meanwhile. The session's own commit
    then has nothing to do (no hand-off, decision 91). Nothing may be written in the session
    after it (:func:`later` and :func:`write` refuse). On PostgreSQL the session commits as usual.
    """
    if _committed(session):
        raise ValueError("bare.write after a write that committed the transaction")
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    driver, postgresql = await _driver(session)
    pending: list[tuple[str, Sequence[Any], Returned | None]] = session.info.pop(_LATER, [])
    if postgresql:
        if pending:
            ahead = ", ".join(f"w{i} AS ({text})" for i, (text, _, _) in enumerate(pending))
            sql = f"WITH {ahead} {sql}"
            params = [*(p for _, given, _ in pending for p in given), *params]
        return [tuple(record) for record in await driver.fetch(_numbered(sql), *params)]
    if not pending and not commit:
        return [tuple(row) for row in await driver.execute_fetchall(sql, _sqlite_params(params))]
    statements = [(text, _sqlite_params(given)) for text, given, _ in [*pending, (sql, params, None)]]
    if commit:
        session.info[_COMMITTED] = sync.get_transaction()
    results: list[list[tuple[Any, ...]]] = await driver._execute(  # one hand-off
        _sqlite_all, driver._conn, statements, commit
    )
    for (_, _, into), rows in zip(pending, results, strict=False):
        if into is not None:
            into.sent(rows)
    return results[-1]


@asynccontextmanager
async def advisory_turn(session: AsyncSession, key: int) -> AsyncIterator[None]:
    """On PostgreSQL, take turns with every other holder of advisory lock ``key`` for the
    statements run inside, so that each sees what the ones before it committed (decision 110).

    The lock is always ``pg_advisory_xact_lock``, released when its transaction ends, as the
    transaction's writes become visible. Inside the session's transaction it is held until that
    commits. Outside one (asyncpg's connection runs outside SQLAlchemy's transaction until that
    begins, and each bare statement would commit by itself), the block runs in a transaction of
    its own on the driver's connection, committed when the block ends and rolled back if it
    raises. A session-level lock could outlive a failed unlock and stay with the pooled
    connection, stopping every later claim. On SQLite nothing is taken: a write statement runs
    under the database's single write lock.
    """
    driver, postgresql = await _driver(session)
    if not postgresql:
        yield
        return
    if driver.is_in_transaction():
        await driver.execute("SELECT pg_advisory_xact_lock($1)", key)
        yield
        return
    async with driver.transaction():
        await driver.execute("SELECT pg_advisory_xact_lock($1)", key)
        yield


async def in_sqlite_thread(
    session: AsyncSession, work: Callable[[sqlite3.Connection], T], *, commit: bool
) -> T:
    """Run ``work`` on the session's ``sqlite3`` connection in aiosqlite's thread, in one hand-off,
    then commit there if ``commit`` (as :func:`write`: the write lock is held only while ``work``
    runs, decision 108). For writes whose later statements need the rows of the first (a fan-out
    page: its deliveries, then a job for each new one). SQLite only; nothing may be left by
    :func:`later`."""
    if _committed(session):
        raise ValueError("bare.in_sqlite_thread after a write that committed the transaction")
    if session.info.get(_LATER):
        raise ValueError("bare.in_sqlite_thread with writes left by bare.later")
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    driver, postgresql = await _driver(session)
    if postgresql:
        raise ValueError("bare.in_sqlite_thread runs on SQLite only")
    if commit:
        session.info[_COMMITTED] = sync.get_transaction()

    def run(db: sqlite3.Connection) -> T:
        result = work(db)
        if commit:
            db.commit()
        return result

    result: T = await driver._execute(run, driver._conn)
    return result


def later(session: AsyncSession, sql: str, params: Sequence[Any], *, into: Returned | None = None) -> None:
    """Leave a write without ``RETURNING`` (an ``UPDATE``, or an ``INSERT`` such as the delivery
    lane's upsert of the hosts' health, decision 106) for the next :func:`write` on ``session``.

    A batch's bookkeeping is several writes whose results are not needed (the inbox lane marks its
    rows, then completes their jobs, decision 104): sent with the next write they cost one hand-off
    to aiosqlite's thread instead of one each, one PostgreSQL round trip and no transaction of
    their own. The session refuses to commit while one is still left (:func:`_nothing_left`), and
    :func:`fetch` to read before they are sent. On PostgreSQL the statements of one ``WITH`` see the
    same snapshot and must not change the same rows (the lane's touch two tables).

    ``into``, on SQLite only: a statement with ``RETURNING`` whose rows ``into`` holds once the
    next :func:`write` has sent it (a lane's completion of its jobs, sent with the claim of
    its next ones and the commit, decision 108). On PostgreSQL the rows of a ``WITH`` cannot come
    back with the statement that carries it: there, write it at once.
    """
    if _committed(session):
        raise ValueError("bare.later after a write that committed the transaction")
    if not sql.startswith(("UPDATE", "INSERT")):
        raise ValueError("bare.later leaves writes only")
    if (" RETURNING " in sql) != (into is not None):
        raise ValueError("bare.later leaves writes without results, or RETURNING ones with a Returned (into)")
    if into is not None and on_postgresql(session):
        raise ValueError("bare.later with RETURNING is for SQLite: on PostgreSQL write it at once")
    session.info.setdefault(_LATER, []).append((sql, params, into))
    if not event.contains(session.sync_session, "before_commit", _nothing_left):
        event.listen(session.sync_session, "before_commit", _nothing_left)


async def send_later(session: AsyncSession, *, commit: bool = False) -> None:
    """Send the writes :func:`later` left, if any, when no :func:`write` of the caller carries them
    (a delivery batch whose jobs are all retried has nothing to complete): one hand-off to
    aiosqlite's thread, or one PostgreSQL statement (their ``WITH`` and a ``SELECT 1``).
    ``commit`` as for :func:`write`; with nothing left, SQLite's transaction is committed alone if
    one is open."""
    if session.info.get(_LATER):
        await write(session, "SELECT 1", [], commit=commit)
    elif commit and not on_postgresql(session) and not _committed(session):
        driver, _ = await _driver(session)
        sqlite = driver._connection
        if sqlite is not None and sqlite.in_transaction:
            session.info[_COMMITTED] = session.sync_session.get_transaction()
            await driver.commit()


def _nothing_left(sync: Session) -> None:
    """A write :func:`later` left and no :func:`write` sent must not be dropped silently: the
    commit fails and the transaction rolls back."""
    if sync.info.get(_LATER):
        sync.info.pop(_LATER)
        raise RuntimeError("a write left by bare.later was never sent")


def _sqlite_all(
    db: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]], commit: bool
) -> list[list[tuple[Any, ...]]]:
    """Run in aiosqlite's thread: every statement in order, then the commit if asked; the rows of
    each statement."""
    results = [[tuple(row) for row in db.execute(sql, params).fetchall()] for sql, params in statements]
    if commit:
        db.commit()
    return results


def _sqlite_params(params: Sequence[Any]) -> tuple[Any, ...]:
    """Aware datetimes as SQLAlchemy stores a ``UtcDateTime`` in SQLite (naive UTC text, always with
    microseconds), so that comparisons with stored values are those the ORM makes."""
    return tuple(sqlite_stamp(p) if isinstance(p, datetime) else p for p in params)


def sqlite_stamp(moment: datetime) -> str:
    """An aware datetime as SQLAlchemy stores a ``UtcDateTime`` in SQLite (for a value sent inside
    a JSON document, which :func:`_sqlite_params` does not see)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


_LATER = "bare.later"
"""``session.info`` key: the writes :func:`later` left for the next :func:`write`."""

_COMMITTED = "bare.committed"
"""``session.info`` key: the session's transaction that a :func:`write` committed on SQLite
(nothing may be written in it after that)."""


def _committed(session: AsyncSession) -> bool:
    transaction = session.sync_session.get_transaction()
    return transaction is not None and session.info.get(_COMMITTED) is transaction


_DRIVER = "bare.driver"
"""``session.info`` key: (transaction, driver connection, on PostgreSQL) of the session's last
:func:`fetch`."""


async def _driver(session: AsyncSession) -> tuple[Any, bool]:
    """The driver's connection under ``session``'s transaction, and whether it is asyncpg's.

    A session keeps one connection for the whole of its transaction, so the second and later
    statements of a transaction reuse the connection the first one asked for (``connection()``
    and ``get_raw_connection()`` cost ≈ 25 µs a statement, decision 96); after a commit or a
    rollback the next transaction is another object and the connection is asked for again.
    """
    transaction = session.sync_session.get_transaction()
    known = session.info.get(_DRIVER)
    if transaction is not None and known is not None and known[0] is transaction:
        return known[1], known[2]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    postgresql = connection.dialect.name == "postgresql"
    session.info[_DRIVER] = (session.sync_session.get_transaction(), driver, postgresql)
    return driver, postgresql


def document(value: Any) -> Any:
    """A JSON column's value as read by the driver (text on SQLite and, with SQLAlchemy's codec,
    on PostgreSQL) decoded; ``None`` stays ``None``."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


def marks(count: int) -> str:
    """``?, ?, …`` for an ``IN`` list of ``count`` values (at least one)."""
    return ", ".join("?" * count)


def on_postgresql(session: AsyncSession) -> bool:
    """Whether ``session`` runs on PostgreSQL (a statement written for each engine: :func:`any_of`)."""
    return bool(session.get_bind().dialect.name == "postgresql")


def any_of(session: AsyncSession, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """The condition that ``column`` is one of ``values`` (at least one), and its parameters.

    On PostgreSQL ``column = ANY(?)`` with the values as one array: the statement's text is then
    the same whatever their number, and asyncpg prepares it once. Written ``IN (?, …)``, each
    length was another statement to prepare (a round trip and the server's parse), and the
    connection's cache of 100 statements kept preparing them again: 20% of the inbox lane's
    samples (decision 102). On SQLite ``column IN (?, …)``.
    """
    if on_postgresql(session):
        return f"{column} = ANY(?)", [list(values)]
    return f"{column} IN ({marks(len(values))})", list(values)


def utc(value: datetime | str) -> datetime:
    """A timestamp column as read by the driver (text on SQLite, as SQLAlchemy stores it; an aware
    datetime on PostgreSQL) as an aware UTC datetime, like ``server.db.types.UtcDateTime``."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
