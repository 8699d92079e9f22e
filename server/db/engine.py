"""Engine and session factory for SQLite (WAL, foreign keys on) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from server.config import DatabaseSettings
from server.files import make_private_file

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened; the message is one clear line."""


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Create the async engine; SQLite connections get WAL, foreign keys and a busy timeout."""
    # Both engines keep ``pool_size`` connections open (SQLite used SQLAlchemy's default of 5:
    # above that, every session opened a connection, its thread and its PRAGMAs, and closed it).
    kwargs: dict[str, Any] = {
        "echo": settings.echo,
        "pool_size": settings.pool_size,
        "max_overflow": settings.pool_size,
    }
    if settings.dialect == "postgresql":
        kwargs.update(pool_pre_ping=True)
    if settings.dialect == "sqlite":
        _private_sqlite_file(settings.url)
    engine = create_async_engine(settings.url, **kwargs)
    if settings.dialect == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


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
