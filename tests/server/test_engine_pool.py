"""PostgreSQL connections are pinged only after sitting idle; a closed one is replaced (decision 94)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server.config import DatabaseSettings
from server.db import engine as db_engine


@pytest.fixture
async def pg_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the idle ping is PostgreSQL's (SQLite has no server to lose)")
    engine = db_engine.create_engine(DatabaseSettings(url=database_url, pool_size=1, echo=False))
    try:
        yield engine
    finally:
        await engine.dispose()


def _count_pings(engine: AsyncEngine) -> list[int]:
    pings = [0]
    dialect = engine.sync_engine.dialect
    real_ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return bool(real_ping(dbapi_connection))

    dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_busy_connection_is_not_pinged_at_checkout(pg_engine: AsyncEngine) -> None:
    pings = _count_pings(pg_engine)
    pids = {await _backend_pid(pg_engine) for _ in range(5)}
    assert len(pids) == 1 and pings == [0]


async def test_a_connection_idle_for_a_while_is_pinged(
    pg_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend_pid(pg_engine)
    pings = _count_pings(pg_engine)
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_S", 0.0)  # as if it had waited that long
    assert await _backend_pid(pg_engine) == first
    assert pings == [1]


async def test_a_connection_the_server_closed_is_replaced_without_an_error(
    pg_engine: AsyncEngine, database_url: str
) -> None:
    first = await _backend_pid(pg_engine)
    admin = create_async_engine(database_url, poolclass=NullPool)  # another connection kills it
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    finally:
        await admin.dispose()
    await asyncio.sleep(0.2)  # the event loop reads the server's goodbye
    # Used a moment ago, so not pinged: replaced because asyncpg knows the socket is closed.
    assert await _backend_pid(pg_engine) != first
