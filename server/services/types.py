"""The names the HTTP layer uses for what services take and return (decision 71).

``server/http`` never imports ``server.db`` or SQLAlchemy (an import-linter contract): it opens a
session with ``NodeContext.sessions`` and hands it, unopened, to the services. When a handler's
signature must name the session or a stored row it uses these aliases, for annotations only; the
queries themselves are the services' (``tests/test_architecture.py`` checks that no handler calls a
session's query methods).
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Account, Activity, Actor, Media, RemoteObject
from server.db.queries.bare import Source

Session: TypeAlias = AsyncSession
"""A unit of work opened by the caller (``async with node.sessions() as session``), passed as is."""

__all__ = ["Account", "Activity", "Actor", "Media", "RemoteObject", "Session", "Source"]
