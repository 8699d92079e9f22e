"""What every service call needs from the running node, passed explicitly (no globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.types import Clock
from federation.uris import UriScheme
from server.config import Settings
from server.db.queries.bare import Reader, Source
from server.services.actors.keys import KeyVault, LocalKeyCache
from server.services.media.store import MediaStore


@dataclass(frozen=True, slots=True)
class NodeContext:
    settings: Settings
    uris: UriScheme
    sessions: async_sessionmaker[AsyncSession]
    vault: KeyVault
    local_keys: LocalKeyCache
    clock: Clock
    media_store: MediaStore
    reader: Reader | None = None
    """``serve``'s SQLite connection for public reads outside any session (decision 99)."""

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Source]:
        """Where an anonymous public read runs: the :class:`Reader` when the node has one (SQLite),
        else a session of its own. Only the bare statements of ``server.db.queries.bare`` accept
        both."""
        if self.reader is not None:
            yield self.reader
            return
        async with self.sessions() as session:
            yield session
