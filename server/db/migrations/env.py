"""Alembic environment: runs on a connection handed over by ``server.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from server.db.models import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER TABLE needs batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `entraide migrate`, not the alembic command")
run_on(connection)
