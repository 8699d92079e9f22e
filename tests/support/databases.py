"""Test databases: a migrated SQLite template copied per test, and one PostgreSQL database per run.

Every storage-touching test runs on both engines. PostgreSQL is expected at
``ENTRAIDE_TEST_PG`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``, the admin
database used to create a unique database per run, dropped afterwards). When it is unreachable
the PostgreSQL half is skipped locally, but fails under CI (``CI=true``) or
``ENTRAIDE_REQUIRE_PG=1``, so a green CI always means both engines ran.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.db import migrate
from server.db.models import Base

PG_ADMIN_URL = os.environ.get("ENTRAIDE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def pg_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("ENTRAIDE_REQUIRE_PG") == "1"


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(statement: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


class PostgresRun:
    """One migrated PostgreSQL database for the whole test run; tables are emptied between tests."""

    def __init__(self) -> None:
        self.prefix = f"entraide_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.name = self.prefix
        self.url = _with_database(PG_ADMIN_URL, self.name)
        self.error: str | None = None
        self._extra: list[str] = []  # more migrated databases, for tests running several nodes

    def create(self) -> None:
        try:
            asyncio.run(self._create(self.name))
        except (OSError, Exception) as exc:
            self.error = f"PostgreSQL unavailable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"

    @staticmethod
    async def _create(name: str) -> None:
        await _pg_admin(f'CREATE DATABASE "{name}"')
        # A test database need not survive a crash: commits do not wait for the WAL to reach the disk.
        await _pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        engine = create_async_engine(_with_database(PG_ADMIN_URL, name))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    def drop(self) -> None:
        if self.error is None:
            for name in (self.name, *self._extra):
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def database(self, index: int) -> str:
        """The URL of the run's ``index``-th database (0 is :attr:`url`), emptied; created on first use."""
        if index == 0:
            await self.reset()
            return self.url
        while len(self._extra) < index:
            name = f"{self.prefix}_{len(self._extra) + 1}"
            await self._create(name)
            self._extra.append(name)
        url = _with_database(PG_ADMIN_URL, self._extra[index - 1])
        await self._truncate(url)
        return url

    async def reset(self) -> None:
        await self._truncate(self.url)

    @staticmethod
    async def _truncate(url: str) -> None:
        """Empty every table and restart every sequence, as ``TRUNCATE … RESTART IDENTITY`` would.

        ``DELETE`` with triggers and foreign keys switched off for the transaction (the run connects as a
        superuser) takes a few milliseconds on the small tables a test leaves, where ``TRUNCATE`` takes
        hundreds: it gives every table and index a new file. Without superuser rights, ``TRUNCATE``.
        """
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                if (await conn.execute(text("SELECT current_setting('is_superuser')"))).scalar() != "on":
                    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                    await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
                    return
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                for table in reversed(Base.metadata.sorted_tables):
                    await conn.execute(text(f'DELETE FROM "{table.name}"'))
                await conn.execute(
                    text("SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'")
                )
        finally:
            await engine.dispose()


class SqliteTemplate:
    """A migrated SQLite file made once per run; each test gets a copy (much faster than migrating)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.sqlite3"

    def create(self) -> None:
        async def run() -> None:
            engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}")
            try:
                await migrate.upgrade(engine)
                async with engine.connect() as conn:
                    await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            finally:
                await engine.dispose()

        asyncio.run(run())

    def copy_to(self, directory: Path) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "entraide.sqlite3"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"
