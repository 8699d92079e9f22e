"""Engine and session factory for SQLite (WAL, foreign keys on) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from server.config import DatabaseSettings
from server.db.queries.bare import Reader
from server.files import make_private_file

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
PING_AFTER_IDLE_S = 5.0
_LAST_USE = "entraide_last_use"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened; the message is one clear line."""


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Create the async engine; SQLite connections get WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": settings.echo}
    # SQLite too: with SQLAlchemy's default for it (5 kept, 10 more opened on demand), a burst of
    # more than 5 requests opened and closed aiosqlite connections (a thread and four PRAGMAs each).
    if settings.dialect == "postgresql" or _sqlite_file(settings.url):
        kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size)
    if settings.dialect == "sqlite":
        _private_sqlite_file(settings.url)
        # The bare driver's reads run on a checked-out connection from the event loop's thread
        # rather than aiosqlite's (decision 96, server/db/queries/bare.py); one user at a time.
        kwargs.update(connect_args={"check_same_thread": False})
    engine = create_async_engine(settings.url, **kwargs)
    if settings.dialect == "postgresql":
        _ping_idle_connections(engine)
    if settings.dialect == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        _skip_idle_rollbacks(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a PostgreSQL connection at checkout only when it sat in the pool ``PING_AFTER_IDLE_S`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: three round trips to the server with
    asyncpg (``BEGIN``, the ping, ``ROLLBACK``) before each unit of work, every inbox batch and
    every worker transaction included (decision 94). A
    connection that was in use moments ago is alive unless the server went away in those
    seconds; one that waited longer (a quiet night) is pinged as before, and a dead one is
    replaced before anyone uses it. A connection whose socket the server closed (a restart, a
    terminated backend) is replaced at checkout without a ping, whenever it was last used: asyncpg
    knows it is closed. What remains unseen is a connection lost silently within that time of its
    last use (no packet from the server): its next unit of work fails, as the ping would have.
    """
    pool_events = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USE] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # asyncpg notices at once when the server closes the socket (a restart, a terminated
        # backend): no round trip needed to replace such a connection, however recently used.
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed the connection")
        if time.monotonic() - record.info.get(_LAST_USE, 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the connection did not answer a ping after sitting idle") from exc
        record.info[_LAST_USE] = time.monotonic()

    event.listen(pool_events, "connect", fresh)
    event.listen(pool_events, "checkin", fresh)
    event.listen(pool_events, "checkout", on_checkout)


def open_reader(settings: DatabaseSettings) -> Reader | None:
    """The :class:`~server.db.queries.bare.Reader` of a SQLite file database (decision 99), opened
    in the event loop's thread that will use it; None for PostgreSQL and in-memory SQLite, whose
    public reads keep their sessions."""
    if settings.dialect != "sqlite" or not _sqlite_file(settings.url):
        return None
    path = make_url(settings.url).database
    if path is None or path.startswith("file:"):  # a URI's options are aiosqlite's to apply
        return None
    return Reader(path)


def _skip_idle_rollbacks(engine: AsyncEngine) -> None:
    """No ``ROLLBACK`` or ``COMMIT`` hand-off for a SQLite connection with no transaction open
    (decision 91).

    Every session ends with a rollback (a read-only one, and the pool's reset on return) or a
    commit (a unit of work that only read, such as a claim that found nothing), and through
    aiosqlite each is a round trip to the connection's thread (docs/performance.md, "Reads").
    The sqlite3 module opens a transaction only before a write, and its own ``rollback()`` and
    ``commit()`` do nothing while ``in_transaction`` is false; that flag is read here, in the
    caller's thread, instead of after the hand-off. A connection that wrote, or is inside an
    explicit ``BEGIN``, is rolled back or committed as before.
    """
    dialect = engine.sync_engine.dialect
    rollback, commit = dialect.do_rollback, dialect.do_commit

    def idle(dbapi_connection: Any) -> bool:
        driver = getattr(dbapi_connection, "driver_connection", None)  # aiosqlite's Connection
        sqlite = getattr(driver, "_connection", None)  # its sqlite3 connection, None once closed
        return sqlite is not None and not sqlite.in_transaction

    def do_rollback(dbapi_connection: Any) -> None:
        if not idle(dbapi_connection):
            rollback(dbapi_connection)

    def do_commit(dbapi_connection: Any) -> None:
        if not idle(dbapi_connection):
            commit(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    dialect.do_commit = do_commit  # type: ignore[method-assign]


def _sqlite_file(url: str) -> bool:
    """A SQLite database in a file (an in-memory one has a single, static connection)."""
    database = make_url(url).database
    return bool(database) and database != ":memory:" and "mode=memory" not in url


def _private_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite does (it would follow the umask, often 0644),
    or tighten an existing one; SQLite gives its ``-wal`` and ``-shm`` files the same mode."""
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:") and Path(path).parent.is_dir():
        make_private_file(Path(path))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite;
    # synchronous=NORMAL is durable in WAL mode except for the last commits on power loss.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """One session per unit of work; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_connection(engine: AsyncEngine) -> None:
    """Open one connection and run ``SELECT 1``.

    Raises:
        DatabaseUnavailable: with a one-line reason (no traceback, no password).
    """
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot connect to the database: {reason}") from exc
