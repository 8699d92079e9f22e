"""Create-if-missing rows that concurrent transactions may race to create.

``INSERT … ON CONFLICT DO NOTHING`` exists on both engines with the same meaning; the caller then
reads (and usually locks) the row, which is there whichever transaction created it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_ignoring_conflict(
    session: AsyncSession, model: Any, values: dict[str, Any], *, conflict_on: Sequence[str]
) -> None:
    """Insert ``values`` into ``model``'s table unless a row with the same ``conflict_on`` key exists."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(model).values(**values).on_conflict_do_nothing(index_elements=list(conflict_on))
    )
