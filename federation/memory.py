"""In-memory implementations of the ports in :mod:`federation.ports`.

For tests and for library users who keep everything in one process (like fedify's
``MemoryKvStore``). Nothing here touches the network or a database.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import KeyUnavailable
from .keys import PublicKey
from .types import Iri


class MemoryKeyResolver:
    """A :class:`~federation.ports.KeyResolver` over keys held in memory.

    It models a cache in front of the keys' origins: :meth:`add` puts a key in both;
    :meth:`rotate` changes only the origin, like an actor that rotated its key after we cached
    the old one. ``resolve(key_id)`` answers from the cache; ``resolve(key_id, refresh=True)``
    copies the origin's key into the cache first and answers that.

    Every call is recorded in :attr:`calls` as ``(key_id, refresh)``, and :attr:`refresh_count`
    counts the refreshes, so tests can assert that verification refreshed exactly once (or
    never, e.g. for a tampered body).
    """

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        """Start with ``keys`` both cached and at their origin."""
        self._cached: dict[Iri, PublicKey] = {}
        self._origin: dict[Iri, PublicKey] = {}
        self.calls: list[tuple[Iri, bool]] = []
        for key in keys:
            self.add(key)

    @property
    def refresh_count(self) -> int:
        """How many ``resolve(..., refresh=True)`` calls were made."""
        return sum(1 for _, refresh in self.calls if refresh)

    def add(self, key: PublicKey) -> None:
        """Make ``key`` known under its ``key_id``, both cached and at its origin."""
        self._cached[key.key_id] = key
        self._origin[key.key_id] = key

    def rotate(self, key: PublicKey) -> None:
        """Replace the key at its origin only; the cache keeps the old one until a refresh."""
        self._origin[key.key_id] = key

    def forget(self, key_id: Iri) -> None:
        """Remove a key everywhere, as if the actor were deleted."""
        self._cached.pop(key_id, None)
        self._origin.pop(key_id, None)

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
        """Return the key named ``key_id`` (refreshed from its origin when asked).

        Raises:
            KeyUnavailable: no key with this id is known.
        """
        self.calls.append((key_id, refresh))
        if refresh:
            if key_id not in self._origin:
                raise KeyUnavailable("no such key", key_id=key_id)
            self._cached[key_id] = self._origin[key_id]
        try:
            return self._cached[key_id]
        except KeyError:
            raise KeyUnavailable("no such key", key_id=key_id) from None


class MemoryReplayGuard:
    """An in-memory :class:`~federation.ports.ReplayGuard`: activity ids marked seen by ``remember``."""

    def __init__(self, seen: Iterable[str] = ()) -> None:
        self._seen: set[str] = set(seen)

    def remember(self, activity_id: str) -> None:
        self._seen.add(activity_id)

    async def seen(self, activity_id: Iri) -> bool:
        return activity_id in self._seen
