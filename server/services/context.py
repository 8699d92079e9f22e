"""What every service call needs from the running node, passed explicitly (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.types import Clock
from federation.uris import UriScheme
from server.config import Settings
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
