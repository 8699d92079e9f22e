"""``INSERT … ON CONFLICT`` on both engines, from one place.

PostgreSQL and SQLite both have ``ON CONFLICT DO NOTHING`` and ``DO UPDATE`` with the same
meaning, but SQLAlchemy builds them from each dialect's own ``insert``: :func:`insert_for` picks
it from the session's engine, so no other module branches on the engine to insert.
:func:`insert_ignoring_conflict` is the common create-if-missing case: the caller then reads
(and usually locks) the row, which is there whichever racing transaction created it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["EngineInsert", "insert_for", "insert_for_dialect", "insert_ignoring_conflict"]

EngineInsert = postgresql.Insert | sqlite.Insert
"""An ``INSERT`` with the engine's ``on_conflict_do_nothing``/``on_conflict_do_update``."""


def insert_for_dialect(dialect: str, table: Any) -> EngineInsert:
    """``INSERT`` into ``table`` (a model or a ``Table``) for the engine named ``dialect``.

    Raises:
        NotImplementedError: an engine other than ``postgresql`` or ``sqlite``.
    """
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"Entraide supports sqlite and postgresql, not {dialect}")


def insert_for(session: AsyncSession, table: Any) -> EngineInsert:
    """``INSERT`` into ``table`` for the session's engine (see :func:`insert_for_dialect`)."""
    return insert_for_dialect(session.get_bind().dialect.name, table)


async def insert_ignoring_conflict(
    session: AsyncSession, model: Any, values: dict[str, Any], *, conflict_on: Sequence[str]
) -> None:
    """Insert ``values`` into ``model``'s table unless a row with the same ``conflict_on`` key exists."""
    await session.execute(
        insert_for(session, model).values(**values).on_conflict_do_nothing(index_elements=list(conflict_on))
    )
