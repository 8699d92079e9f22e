"""Our signing keys as :class:`~federation.keys.KeyPair` values, for signed fetches and delivery.

Signed fetches (docs/interop.md "Signed fetch") are made as the node's ``Application`` actor,
whose own document is served unsigned so peers can verify us without a loop
(mastodon/mastodon#14800). Decrypted keys are cached per process by
:class:`server.services.actors.keys.LocalKeyCache` (``node.local_keys``); only a one-row, indexed
lookup of the key's row remains per call. Key material is never logged (docs/architecture.md R10).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select

from federation.keys import KeyPair
from federation.types import Iri
from server.db.models import Actor, ActorKey
from server.services.context import NodeContext
from server.services.errors import ServiceError


class SigningKeyUnavailable(ServiceError):
    """One of our actors has no usable private key (node not initialised, or a remote actor)."""

    code = "signing_key_unavailable"


async def instance_key_pair(node: NodeContext) -> KeyPair:
    """The RSA key pair of the node's Application actor (``<origin>/actor#main-key``).

    Raises:
        SigningKeyUnavailable: the Application actor or its key does not exist yet.
        SecretKeyError: the node secret does not decrypt the key.
    """
    actor_iri = node.uris.application_actor()
    key_iri = node.uris.main_key(actor_iri)
    async with node.sessions() as session:
        stmt = (
            select(ActorKey)
            .join(Actor, Actor.id == ActorKey.actor_id)
            .where(
                ActorKey.key_iri == key_iri,
                Actor.iri == actor_iri,
                Actor.local.is_(True),
                Actor.type == "Application",
            )
        )
        row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None or row.private_key_encrypted is None:
        raise SigningKeyUnavailable("the node's Application actor has no signing key", key_id=key_iri)
    return node.local_keys.key_pair(row, actor_iri)


async def actor_key_pair(
    node: NodeContext, actor: Actor, *, kind: Literal["rsa", "ed25519"] = "rsa"
) -> KeyPair:
    """The ``kind`` key pair of one of our actors (RSA ``#main-key`` by default).

    Raises:
        SigningKeyUnavailable: ``actor`` is remote, or has no such key with a private half.
        SecretKeyError: the node secret does not decrypt the key.
    """
    if not actor.local:
        raise SigningKeyUnavailable("remote actors have no private keys here", actor=actor.iri)
    async with node.sessions() as session:
        stmt = select(ActorKey).where(ActorKey.actor_id == actor.id, ActorKey.kind == kind)
        row = (await session.execute(stmt)).scalars().first()
    if row is None or row.private_key_encrypted is None:
        raise SigningKeyUnavailable(f"{actor.iri} has no {kind} signing key", actor=actor.iri)
    return node.local_keys.key_pair(row, Iri(actor.iri))


__all__ = ["SigningKeyUnavailable", "actor_key_pair", "instance_key_pair"]
