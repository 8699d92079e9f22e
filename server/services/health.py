"""Whether the node can serve: the database answers (``/healthz``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import DatabaseUnavailable, check_connection


async def database_reachable(engine: AsyncEngine) -> bool:
    """True when one connection opens and runs ``SELECT 1``."""
    try:
        await check_connection(engine)
    except DatabaseUnavailable:
        return False
    return True
