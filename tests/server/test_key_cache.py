"""RemoteKeyResolver keeps keys in memory, and drops them whenever the database says otherwise.

The inbox resolves the sender's key on every POST; reading it from the database each time cost
a session, a SELECT and a ROLLBACK per request (docs/performance.md). These tests pin what the
memory may never do: outlive a deletion of the actor, a rotation stored by a refetch, a removed
key, or a failed verification (security cases 6 and 8). Fake peers count every request; the
database is read through a counting wrapper, so each test says what a scenario costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import delete, select

from federation.errors import KeyUnavailable
from federation.keys import KeyPair, PublicKey, private_key_from_pem
from federation.transport import AiohttpTransport
from federation.types import Iri, utc_now
from server.appkeys import NODE
from server.db.models import Actor, ActorKey
from server.services.actors.key_resolver import RemoteKeyResolver
from server.services.actors.remote import fetch_and_store_actor
from server.services.actors.signing import instance_key_pair
from server.services.context import NodeContext
from tests.support.fake_peers import FakeClock, FakePeers, actor_document, peer_transport
from tests.support.nodes import Node

ServerFactory = Callable[..., Awaitable[TestServer]]
KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"


class CountingResolver(RemoteKeyResolver):
    """Counts the database reads of remote keys."""

    reads = 0

    async def _stored_key(self, key_id: str) -> PublicKey | None:
        self.reads += 1
        return await super()._stored_key(key_id)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc_now().replace(microsecond=0))


@pytest.fixture
def ctx(node: Node, clock: FakeClock) -> NodeContext:
    return dataclasses.replace(node.client.server.app[NODE], clock=clock)


@pytest.fixture
async def peers(aiohttp_server: ServerFactory, ctx: NodeContext, clock: FakeClock) -> FakePeers:
    fake = FakePeers(clock=clock, require_signature=True)
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.trust(await instance_key_pair(ctx))
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as t:
        yield t


@pytest.fixture
def resolver(ctx: NodeContext, transport: AiohttpTransport) -> CountingResolver:
    return CountingResolver(ctx, transport)


def serve_alice(peers: FakePeers, key_file: str = "rsa-alice.pem") -> KeyPair:
    actor = peers.iri("peer.example", "/users/alice")
    key = KeyPair(Iri(f"{actor}#main-key"), Iri(actor), private_key_from_pem((KEYS / key_file).read_bytes()))
    peers.serve_json(actor, actor_document(actor, username="alice", keys=(key.public,)))
    return key


async def stored_alice(ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers) -> KeyPair:
    key = serve_alice(peers)
    await fetch_and_store_actor(ctx, transport, key.owner)
    peers.hits.clear()
    return key


async def test_a_stored_key_is_read_once_then_answered_from_memory(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, resolver: CountingResolver
) -> None:
    # Given alice's key in the database
    key = await stored_alice(ctx, transport, peers)
    # When it is resolved for many requests
    for _ in range(5):
        resolved = await resolver.resolve(key.key_id)
        assert resolved.to_pem() == key.public.to_pem() and resolved.owner == key.owner
    # Then the database is read once, and nothing is fetched
    assert resolver.reads == 1
    assert peers.hits == []


async def test_memory_expires_after_key_ttl(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, clock: FakeClock
) -> None:
    resolver = CountingResolver(ctx, transport, key_ttl=timedelta(minutes=5))
    key = await stored_alice(ctx, transport, peers)
    await resolver.resolve(key.key_id)
    clock.advance(timedelta(minutes=5))
    await resolver.resolve(key.key_id)
    assert resolver.reads == 2


async def test_a_deleted_actors_remembered_key_is_refused(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, resolver: CountingResolver
) -> None:
    # Given alice's key remembered
    key = await stored_alice(ctx, transport, peers)
    await resolver.resolve(key.key_id)
    # When the worker processes her self-Delete (the ORM marks the row, as on_delete does)
    async with ctx.sessions.begin() as session:
        row = (await session.execute(select(Actor).where(Actor.iri == key.owner))).scalar_one()
        row.deleted_at = ctx.clock()
    # Then her key verifies nothing any more, without a fetch (case 6)
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(key.key_id)
    assert peers.hits == []


async def test_a_removed_key_row_is_not_answered_from_memory(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, resolver: CountingResolver
) -> None:
    key = await stored_alice(ctx, transport, peers)
    await resolver.resolve(key.key_id)
    async with ctx.sessions.begin() as session:
        row = (await session.execute(select(ActorKey).where(ActorKey.key_iri == key.key_id))).scalar_one()
        await session.delete(row)
    reads = resolver.reads
    await resolver.resolve(key.key_id)  # a miss again: the database is asked (then the origin)
    assert resolver.reads == reads + 1


async def test_a_rotation_stored_by_a_refetch_replaces_the_remembered_key(
    ctx: NodeContext,
    transport: AiohttpTransport,
    peers: FakePeers,
    resolver: CountingResolver,
    clock: FakeClock,
) -> None:
    # Given alice's old key remembered
    old = await stored_alice(ctx, transport, peers)
    assert (await resolver.resolve(old.key_id)).to_pem() == old.public.to_pem()
    # When alice rotates and something else (an Update{Person}) refetches and stores her
    new = serve_alice(peers, "rsa-bob.pem")
    clock.advance(timedelta(minutes=2))
    await fetch_and_store_actor(ctx, transport, old.owner)
    # Then the next resolve answers the new key, with no refresh needed (case 8c)
    assert (await resolver.resolve(old.key_id)).to_pem() == new.public.to_pem()


async def test_refresh_never_answers_from_memory(
    ctx: NodeContext,
    transport: AiohttpTransport,
    peers: FakePeers,
    resolver: CountingResolver,
    clock: FakeClock,
) -> None:
    # Given alice's key remembered, then changed in the database behind the ORM's back
    old = await stored_alice(ctx, transport, peers)
    await resolver.resolve(old.key_id)
    new = serve_alice(peers, "rsa-bob.pem")
    async with ctx.sessions.begin() as session:
        await session.execute(delete(ActorKey).where(ActorKey.key_iri == old.key_id))
    # When a signature fails to verify and the key is refreshed
    clock.advance(timedelta(minutes=2))
    refreshed = await resolver.resolve(old.key_id, refresh=True)
    # Then memory is bypassed: the origin is asked, and what it says is kept
    assert refreshed.to_pem() == new.public.to_pem()
    assert peers.count(old.owner) == 1
    assert (await resolver.resolve(old.key_id)).to_pem() == new.public.to_pem()


async def test_forget_drops_keys_by_id_and_by_owner(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, resolver: CountingResolver
) -> None:
    key = await stored_alice(ctx, transport, peers)
    await resolver.resolve(key.key_id)
    resolver.forget(owners=[key.owner])
    await resolver.resolve(key.key_id)
    resolver.forget(key_ids=[key.key_id])
    await resolver.resolve(key.key_id)
    assert resolver.reads == 3
