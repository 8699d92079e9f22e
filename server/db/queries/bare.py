"""Read statements sent through the bare driver (aiosqlite or asyncpg) in one call (decision 84).

Through SQLAlchemy, one ``SELECT`` on SQLite is four hand-offs to aiosqlite's thread (cursor,
execute, fetch, close) plus the ORM's compilation and result processing; a page built on every
request (a crawler walking many associations' outboxes never hits the page cache) spent most of
its time there (docs/performance.md, "Reads"). :func:`fetch` runs one parameterised statement on
the session's own connection, inside its transaction, with one hand-off (aiosqlite's
``execute_fetchall``) or one asyncpg ``fetch``. Statements are written with ``?`` placeholders and
renumbered ``$1…`` for PostgreSQL; only columns of plain types and JSON documents are read. Writes
(``UPDATE … RETURNING``) go through :func:`fetch` too: they join the session's transaction (on SQLite
the ``sqlite3`` module opens it before the first write, and the session's commit ends it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2…`` (the statements here contain no literal ``?``)."""
    parts = sql.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, start=1))


async def fetch(session: AsyncSession, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders) run on ``session``'s connection, as tuples.

    Pending ORM changes are flushed first, as SQLAlchemy's autoflush does before its own queries,
    so a read in the same transaction sees what the caller just wrote.
    """
    sync = session.sync_session
    if sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        return [tuple(record) for record in await driver.fetch(_numbered(sql), *params)]
    values = tuple(_sqlite_stamp(p) if isinstance(p, datetime) else p for p in params)
    return [tuple(row) for row in await driver.execute_fetchall(sql, values)]


def _sqlite_stamp(moment: datetime) -> str:
    """An aware datetime as SQLAlchemy stores a ``UtcDateTime`` in SQLite (naive UTC text, always
    with microseconds), so that comparisons with stored values are those the ORM makes."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def document(value: Any) -> Any:
    """A JSON column's value as read by the driver (text on SQLite and, with SQLAlchemy's codec,
    on PostgreSQL) decoded; ``None`` stays ``None``."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


def marks(count: int) -> str:
    """``?, ?, …`` for an ``IN`` list of ``count`` values (at least one)."""
    return ", ".join("?" * count)


def utc(value: datetime | str) -> datetime:
    """A timestamp column as read by the driver (text on SQLite, as SQLAlchemy stores it; an aware
    datetime on PostgreSQL) as an aware UTC datetime, like ``server.db.types.UtcDateTime``."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
