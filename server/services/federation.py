"""The per-process federation runtime: transport, peer policy, key resolver, actor fetches.

One :class:`Federation` lives as long as a server or worker process. Its caches and
single-flight tables only help when shared, so it is built once (``open_federation``) and passed
to the inbox, the jobs and the commands that talk to peers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from federation.errors import FederationError, InvalidDocument
from federation.fetch import fetch_document
from federation.policy import LivePolicy, PeerPolicy
from federation.ports import Transport
from server import __version__
from server.config import FederationSettings
from server.db.models import Actor
from server.services.actors.key_resolver import RemoteKeyResolver
from server.services.actors.remote import ActorFlights, SingleFlight, get_or_fetch_actor
from server.services.actors.signing import instance_key_pair
from server.services.context import NodeContext
from server.services.errors import ServiceError
from server.services.inbox.verified import VerifiedActivities
from server.services.wakeup import WakeChannel

log = logging.getLogger(__name__)


def peer_policy(settings: FederationSettings) -> PeerPolicy:
    """The configured network: open minus blocked domains, or a closed allowlist."""
    if settings.network == "allowlist":
        return PeerPolicy.closed_network(settings.allowed_domains, settings.blocked_domains)
    return PeerPolicy.open_network(settings.blocked_domains)


@dataclass
class Federation:
    """Everything that talks to peers, shared by every request and job of one process."""

    node: NodeContext
    transport: Transport
    policy: LivePolicy
    keys: RemoteKeyResolver
    actor_flights: ActorFlights = field(default_factory=SingleFlight)
    wakeups: list[Callable[[Collection[str] | None], None]] = field(default_factory=list)
    wake_channel: WakeChannel | None = None
    """Reaches the workers of this node's other processes (decision 100); ``None`` in tests
    that build the runtime around a transport of their own."""
    verified: VerifiedActivities = field(default_factory=VerifiedActivities)
    """Verified activities from this process's inbox writer to its inbox lane (decision 102)."""

    async def actor(self, iri: str) -> Actor:
        """The actor ``iri``, from the database or fetched from its origin (signed)."""
        return await get_or_fetch_actor(
            self.node, self.transport, iri, flights=self.actor_flights, policy=self.policy
        )

    async def resolves(self, iri: str) -> bool | None:
        """Whether ``iri`` is an actor, fetched (signed, address guard, peer policy) and stored
        when never seen. ``None``: it was fetched but is no actor one can deliver to (a
        collection, say); ``False``: it could not be fetched or was refused (logged)."""
        try:
            await self.actor(iri)
        except InvalidDocument:
            return None
        except (FederationError, ServiceError) as exc:
            log.info("actor not resolved", extra={"actor": iri, "error": type(exc).__name__})
            return False
        return True

    async def fetch(self, iri: str) -> dict[str, Any]:
        """Fetch an ActivityStreams document from its origin, signed as the node's Application
        actor, under the peer policy (every check of :func:`federation.fetch.fetch_document`)."""
        signer = await instance_key_pair(self.node)
        fetched = await fetch_document(
            iri,
            transport=self.transport,
            signer=signer,
            now=self.node.clock(),
            uris=self.node.uris,
            policy=self.policy,
        )
        return fetched.document

    def notify_worker(self, kinds: Collection[str] | None = None) -> None:
        """Wake the workers right after enqueuing (they poll otherwise): the in-process one,
        and those of the node's other processes through :attr:`wake_channel`; ``kinds``: only
        what runs jobs of those kinds (``None``: everything)."""
        for wake in self.wakeups:
            wake(kinds)


def build_federation(node: NodeContext, transport: Transport, policy: LivePolicy | None = None) -> Federation:
    """The runtime around ``transport``; ``policy`` starts as the configuration's until the
    database's blocks are loaded (:func:`server.services.moderation.blocks.policy_sync`)."""
    if policy is None:
        policy = LivePolicy(peer_policy(node.settings.federation))
    return Federation(
        node=node, transport=transport, policy=policy, keys=RemoteKeyResolver(node, transport, policy=policy)
    )


@asynccontextmanager
async def open_federation(node: NodeContext) -> AsyncIterator[Federation]:
    """Start the outbound HTTP transport (SSRF guard, limits) and the runtime around it."""
    # Imported here: the transport is the one aiohttp-backed object services receive (by port).
    from federation.transport import AiohttpTransport, build_user_agent
    from server.services.inbox.process import PROCESS_INBOX
    from server.services.moderation.blocks import policy_sync

    policy = LivePolicy(peer_policy(node.settings.federation))
    transport = AiohttpTransport(
        user_agent=build_user_agent(__version__, node.uris.origin),
        policy=policy,
        allow_private_addresses=node.settings.federation.allow_private_addresses,
    )
    async with transport:
        fed = build_federation(node, transport, policy)
        # Inbox activities are best processed where they were verified (decision 102).
        fed.wake_channel = WakeChannel(node.settings.storage.data_dir / "wake", local_kinds={PROCESS_INBOX})
        fed.wakeups.append(fed.wake_channel.send)
        try:
            async with policy_sync(fed):
                yield fed
        finally:
            fed.wake_channel.close()
