"""Migrations upgrade in place and match the models, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from server.db import migrate
from server.db.models import Base


async def test_migrations_match_the_models_and_round_trip(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()

        def diff(conn):  # type: ignore[no-untyped-def]
            return compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        before, after = await migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head_revision())
    finally:
        await engine.dispose()
