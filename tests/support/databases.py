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
        self.name = f"entraide_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = _with_database(PG_ADMIN_URL, self.name)
        self.error: str | None = None

    def create(self) -> None:
        async def run() -> None:
            await _pg_admin(f'CREATE DATABASE "{self.name}"')
            engine = create_async_engine(self.url)
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()

        try:
            asyncio.run(run())
        except (OSError, Exception) as exc:
            self.error = f"PostgreSQL unavailable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"

    def drop(self) -> None:
        if self.error is None:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def reset(self) -> None:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
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
        target = directory / "entraide.sqlite3"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"
