"""The narrow ports through which the protocol library reaches the outside world.

The server implements them over its database and aiohttp; :mod:`federation.memory` holds
in-memory versions for tests and library users.
"""

from __future__ import annotations

from typing import Protocol

from .http import OutgoingRequest, PeerResponse
from .keys import PublicKey
from .types import Iri


class Transport(Protocol):
    """Sends one HTTP request and returns the (size-capped) response.

    Implementations enforce the SSRF guard, timeouts, the response byte cap and the redirect
    limit. They never add or carry signatures: the caller signs each request (and each hop).
    """

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        """Send ``request``; raise :class:`~federation.errors.FetchError` subclasses on failure."""
        ...


class KeyResolver(Protocol):
    """Finds the public key named by a signature's ``keyId``.

    ``refresh=True`` asks for a fresh copy from the key's origin (used once after a failed
    verification, to follow key rotation; security case 8). Raises
    :class:`~federation.errors.KeyUnavailable` when the key does not exist or is unusable, and
    :class:`~federation.errors.KeyFetchTemporaryFailure` on transient network errors.
    """

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey: ...


class ReplayGuard(Protocol):
    """Read-only duplicate check; the authoritative de-duplication is the server's unique row."""

    async def seen(self, activity_id: Iri) -> bool: ...
