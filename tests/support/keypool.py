"""RSA keys for the actors tests create: generated once per process, handed out again in every test.

Generating an RSA-2048 key costs 50-100 ms, and the suite creates thousands of actors (each node's
application actor, every association and member). Within one test every actor still gets a key of
its own, distinct from the others; a test that needs more keys than any before it generates them.
Ed25519 keys cost microseconds and are always fresh.
"""

from __future__ import annotations

from typing import Literal

from federation.keys import PrivateKeyType
from federation.keys import generate_private_key as fresh_private_key
from server.services.actors import keys as actor_keys


class KeyPool:
    """Hands out the process's RSA keys in order; :meth:`rewind` starts again for the next test."""

    def __init__(self) -> None:
        self._rsa: list[PrivateKeyType] = []
        self._next = 0

    def rewind(self) -> None:
        self._next = 0

    def generate(self, kind: Literal["rsa", "ed25519"]) -> PrivateKeyType:
        if kind != "rsa":
            return fresh_private_key(kind)
        if self._next == len(self._rsa):
            self._rsa.append(fresh_private_key("rsa"))
        key = self._rsa[self._next]
        self._next += 1
        return key


POOL = KeyPool()


def install() -> None:
    """Make the server's key generation (:func:`server.services.actors.keys.add_actor_keys`) draw from
    the pool, in this process only: nodes started as separate processes generate their keys."""
    actor_keys.generate_private_key = POOL.generate  # type: ignore[assignment]
