"""Our actors' keys: generation, encryption at rest, and a per-process cache of loaded keys.

Private keys are stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with a node secret kept
in a file outside the database, so a database dump or backup does not leak signing keys.
Key material is never logged (docs/architecture.md R10).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from federation.keys import (
    KeyPair,
    PublicKey,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
)
from federation.types import Iri
from server.db.models import Actor, ActorKey
from server.files import DIR_MODE, FILE_MODE, tighten


class SecretKeyError(Exception):
    """The node secret is missing, unreadable or does not decrypt the stored keys."""


class KeyVault:
    """Encrypts and decrypts private keys with the node secret."""

    def __init__(self, secret: bytes) -> None:
        self._fernet = Fernet(secret)

    def __repr__(self) -> str:
        return "KeyVault(<secret>)"

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SecretKeyError(
                "the node secret does not decrypt this key (wrong secret_key_file?)"
            ) from exc


def create_secret_file(path: Path) -> bool:
    """Create the node secret with mode 0600 (in a new directory, 0700) if it does not exist, else
    tighten it to 0600; True if it was created."""
    if path.exists():
        tighten(path, FILE_MODE)
        return False
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    return True


def load_vault(path: Path) -> KeyVault:
    """Read the node secret.

    Raises:
        SecretKeyError: the file is missing or does not hold a valid key.
    """
    try:
        secret = path.read_bytes().strip()
        return KeyVault(secret)
    except FileNotFoundError:
        raise SecretKeyError(f"{path}: node secret not found (run `entraide init`)") from None
    except (OSError, ValueError) as exc:
        raise SecretKeyError(f"{path}: not a valid node secret") from exc


async def add_actor_keys(session: AsyncSession, actor: Actor, vault: KeyVault, *, now: datetime) -> None:
    """Generate the RSA-2048 (``#main-key``) and Ed25519 (``#ed25519-key``) keys of a new local actor."""
    for kind, suffix in (("rsa", "#main-key"), ("ed25519", "#ed25519-key")):
        private = generate_private_key("rsa" if kind == "rsa" else "ed25519")
        session.add(
            ActorKey(
                actor_id=actor.id,
                key_iri=actor.iri + suffix,
                kind=kind,
                public_pem=public_key_to_pem(private.public_key()),
                private_key_encrypted=vault.encrypt(private_key_to_pem(private)),
                created_at=now,
            )
        )


def public_key_of(row: ActorKey, owner: str) -> PublicKey:
    return PublicKey(Iri(row.key_iri), Iri(owner), public_key_from_pem(row.public_pem))


class LocalKeyCache:
    """Decrypted key pairs of local actors, loaded once per process (decryption is not free)."""

    def __init__(self, vault: KeyVault) -> None:
        self._vault = vault
        self._pairs: dict[str, KeyPair] = {}

    def key_pair(self, row: ActorKey, owner: str) -> KeyPair:
        cached = self._pairs.get(row.key_iri)
        if cached is None:
            if row.private_key_encrypted is None:
                raise SecretKeyError(f"{row.key_iri} has no private key")
            private = private_key_from_pem(self._vault.decrypt(row.private_key_encrypted), trusted=True)
            cached = KeyPair(Iri(row.key_iri), Iri(owner), private)
            self._pairs[row.key_iri] = cached
        return cached
