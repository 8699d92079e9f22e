"""RemoteKeyResolver: the inbox's KeyResolver, on SQLite and PostgreSQL (security cases 6 to 9, 17, 33).

Fake peers on 127.0.0.1 count every request, so each test can say exactly how many fetches a
scenario costs: a cache hit costs none, a miss costs one however many verifications wait for
it, a failure is remembered, a refresh is rate-limited, a flood of keyIds is cut off by the
per-host budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from federation.errors import KeyFetchTemporaryFailure, KeyUnavailable, SignatureError
from federation.http import Headers, IncomingRequest, OutgoingRequest
from federation.keys import KeyPair, private_key_from_pem
from federation.signatures import sign_request, verify_request
from federation.transport import AiohttpTransport
from federation.types import Iri, utc_now
from server.appkeys import NODE
from server.db.models import Actor, ActorKey
from server.services.actors.key_resolver import FetchBudget, KeyFetchBudgetExceeded, RemoteKeyResolver, TtlLru
from server.services.actors.remote import get_or_fetch_actor
from server.services.actors.signing import instance_key_pair
from server.services.context import NodeContext
from tests.support.fake_peers import FakeClock, FakePeers, actor_document, peer_transport
from tests.support.nodes import Node

ServerFactory = Callable[..., Awaitable[TestServer]]
KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"


def pair(file_name: str, key_id: str, owner: str) -> KeyPair:
    return KeyPair(Iri(key_id), Iri(owner), private_key_from_pem((KEYS / file_name).read_bytes()))


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
def resolver(ctx: NodeContext, transport: AiohttpTransport) -> RemoteKeyResolver:
    return RemoteKeyResolver(ctx, transport)


def serve_alice(peers: FakePeers, key_file: str = "rsa-alice.pem") -> KeyPair:
    actor = peers.iri("peer.example", "/users/alice")
    key = pair(key_file, f"{actor}#main-key", actor)
    peers.serve_json(actor, actor_document(actor, username="alice", keys=(key.public,)))
    return key


async def stored_keys(ctx: NodeContext) -> list[tuple[str, str]]:
    async with ctx.sessions() as session:
        stmt = select(ActorKey.key_iri, Actor.iri).join(Actor, Actor.id == ActorKey.actor_id)
        stmt = stmt.where(Actor.local.is_(False))
        return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


# --- hits and misses ---------------------------------------------------------------------


async def test_cache_hit_makes_no_request(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, resolver: RemoteKeyResolver
) -> None:
    # Given alice already stored (fetched from her origin)
    key = serve_alice(peers)
    await get_or_fetch_actor(ctx, transport, key.owner)
    peers.hits.clear()
    # When her key is resolved, Then it comes from the database
    resolved = await resolver.resolve(key.key_id)
    assert resolved.key_id == key.key_id and resolved.owner == key.owner
    assert resolved.to_pem() == key.public.to_pem()
    assert peers.hits == []


async def test_miss_fetches_once_for_twenty_concurrent_resolves(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver
) -> None:
    key = serve_alice(peers)
    results = await asyncio.wait_for(
        asyncio.gather(*(resolver.resolve(key.key_id) for _ in range(20))), timeout=20
    )
    assert {r.to_pem() for r in results} == {key.public.to_pem()}
    assert peers.count(key.owner) == 1  # single-flight (case 7)
    assert await stored_keys(ctx) == [(key.key_id, key.owner)]
    # And later resolves are cache hits
    await resolver.resolve(key.key_id)
    assert peers.count(key.owner) == 1


async def test_our_own_keys_never_go_over_http(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver
) -> None:
    # Case 17: local keyIds are answered from the database.
    ours = await instance_key_pair(ctx)
    resolved = await resolver.resolve(ours.key_id)
    assert resolved.to_pem() == ours.public.to_pem() and resolved.owner == ours.owner
    assert (await resolver.resolve(ours.key_id, refresh=True)).to_pem() == ours.public.to_pem()
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(Iri(f"{ctx.uris.group('nobody')}#main-key"))
    assert peers.hits == []


@pytest.mark.parametrize("key_id", ["acct:alice@peer.example", "did:key:z6Mk", "", "https://"])
async def test_unfetchable_key_ids_are_refused_without_a_request(
    peers: FakePeers, resolver: RemoteKeyResolver, key_id: str
) -> None:
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(Iri(key_id))
    assert peers.hits == []


async def test_key_document_under_another_id_is_refused_and_nothing_stored(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver, node: Node
) -> None:
    # Case 9: evil's keyId serves a key claiming to be alice's.
    alice = pair(
        "rsa-mallory.pem",
        peers.iri("peer.example", "/users/alice#main-key"),
        peers.iri("peer.example", "/users/alice"),
    )
    key_url = peers.iri("evil.example", "/keys/alice")
    peers.serve_json(
        key_url, {"id": alice.key_id, "owner": alice.owner, "publicKeyPem": alice.public.to_pem()}
    )
    before = await node.row_counts()
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(key_url)
    assert await node.row_counts() == before
    assert peers.hits_on("peer.example") == []


# --- failures are remembered (cases 6, 7, 33) ----------------------------------------------


async def test_gone_key_is_negative_cached(
    peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    actor = peers.iri("peer.example", "/users/deleted")
    peers.status(actor, 410)
    for _ in range(3):
        with pytest.raises(KeyUnavailable) as caught:
            await resolver.resolve(Iri(f"{actor}#main-key"))
        assert not isinstance(caught.value, KeyFetchTemporaryFailure)
    assert peers.count(actor) == 1
    clock.advance(timedelta(minutes=5))  # past the refresh interval, still remembered
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(Iri(f"{actor}#main-key"), refresh=True)
    assert peers.count(actor) == 1
    clock.advance(timedelta(minutes=5, seconds=1))  # negative_ttl elapsed: asked again
    with pytest.raises(KeyUnavailable):
        await resolver.resolve(Iri(f"{actor}#main-key"))
    assert peers.count(actor) == 2


async def test_deleted_actors_keys_are_refused_without_a_request(
    ctx: NodeContext,
    peers: FakePeers,
    transport: AiohttpTransport,
    resolver: RemoteKeyResolver,
    clock: FakeClock,
) -> None:
    key = serve_alice(peers)
    await get_or_fetch_actor(ctx, transport, key.owner)
    async with ctx.sessions.begin() as session:
        row = (await session.execute(select(Actor).where(Actor.iri == key.owner))).scalar_one()
        row.deleted_at = clock()
    clock.advance(timedelta(minutes=5))
    for refresh in (False, True):
        with pytest.raises(KeyUnavailable):
            await resolver.resolve(key.key_id, refresh=refresh)
    assert peers.count(key.owner) == 1


async def test_transient_failure_is_503_and_remembered(
    peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    actor = peers.iri("peer.example", "/users/busy")
    peers.status(actor, 503)
    for minutes in (0, 1, 5):
        clock.advance(timedelta(minutes=minutes))
        with pytest.raises(KeyFetchTemporaryFailure):
            await resolver.resolve(Iri(f"{actor}#main-key"))
    assert peers.count(actor) == 1


async def test_unreachable_host_is_temporary(resolver: RemoteKeyResolver) -> None:
    with pytest.raises(KeyFetchTemporaryFailure):
        await resolver.resolve(Iri("http://peer.example:9/users/x#main-key"))


async def test_negative_cache_is_bounded(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers
) -> None:
    small = RemoteKeyResolver(ctx, transport, max_entries=2, per_host_budget=FetchBudget(capacity=100))
    ids = [Iri(peers.iri("evil.example", f"/k/{n}#k")) for n in range(3)]
    for key_id in ids:
        with pytest.raises(KeyUnavailable):
            await small.resolve(key_id)
    assert len(small._failures) == 2  # the oldest failure was evicted
    with pytest.raises(KeyUnavailable):
        await small.resolve(ids[0])  # forgotten, so fetched again
    assert peers.count(peers.iri("evil.example", "/k/0")) == 2


async def test_flood_of_random_key_ids_is_cut_off_by_the_host_budget(
    ctx: NodeContext, transport: AiohttpTransport, peers: FakePeers, clock: FakeClock
) -> None:
    # Case 7: 1,000 POSTs with keyId=https://evil.example/k/<random> must not cost 1,000 fetches.
    budgeted = RemoteKeyResolver(ctx, transport, per_host_budget=FetchBudget(capacity=3, refill_per_minute=6))
    outcomes: list[type[Exception]] = []
    for n in range(10):
        with pytest.raises(KeyUnavailable) as caught:
            await budgeted.resolve(Iri(peers.iri("evil.example", f"/k/{n}#main-key")))
        outcomes.append(type(caught.value))
    assert len(peers.hits_on("evil.example")) == 3
    assert outcomes[3:] == [KeyFetchBudgetExceeded] * 7
    # Other hosts are unaffected
    key = serve_alice(peers)
    assert (await budgeted.resolve(key.key_id)).key_id == key.key_id
    # The bucket refills with time (6 a minute: one every 10 s)
    clock.advance(timedelta(seconds=10))
    with pytest.raises(KeyUnavailable) as caught:
        await budgeted.resolve(Iri(peers.iri("evil.example", "/k/new#main-key")))
    assert not isinstance(caught.value, KeyFetchBudgetExceeded)
    assert len(peers.hits_on("evil.example")) == 4


# --- refresh and rotation (case 8) ------------------------------------------------------------


async def test_refresh_is_rate_limited_per_key(
    peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    key = serve_alice(peers)
    await resolver.resolve(key.key_id)
    for _ in range(5):  # a burst of failed verifications
        await resolver.resolve(key.key_id, refresh=True)
    assert peers.count(key.owner) == 1
    clock.advance(timedelta(seconds=61))
    await resolver.resolve(key.key_id, refresh=True)
    await resolver.resolve(key.key_id, refresh=True)
    assert peers.count(key.owner) == 2


async def test_key_rotation_picks_the_new_key(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    old = serve_alice(peers)
    assert (await resolver.resolve(old.key_id)).to_pem() == old.public.to_pem()
    new = serve_alice(peers, "rsa-bob.pem")  # alice rotates at her origin
    clock.advance(timedelta(minutes=2))
    assert (await resolver.resolve(old.key_id)).to_pem() == old.public.to_pem()  # cached
    assert (await resolver.resolve(old.key_id, refresh=True)).to_pem() == new.public.to_pem()
    assert (await resolver.resolve(old.key_id)).to_pem() == new.public.to_pem()  # stored
    assert await stored_keys(ctx) == [(old.key_id, old.owner)]


async def test_verify_request_follows_a_rotation_end_to_end(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    # Given alice's old key cached, and alice now signing with her rotated key
    old = serve_alice(peers)
    await resolver.resolve(old.key_id)
    rotated = serve_alice(peers, "rsa-bob.pem")
    clock.advance(timedelta(minutes=2))
    inbox = f"{ctx.uris.origin}/inbox"
    signed = sign_request(
        OutgoingRequest("POST", inbox, Headers({"Content-Type": "application/activity+json"}), b"{}"),
        rotated,
        now=clock(),
    )
    incoming = IncomingRequest("POST", inbox, "/inbox", signed.headers, b"{}")
    # When the inbox verifies it, Then one refresh picks up the new key
    signer = await verify_request(incoming, resolve_key=resolver, now=clock())
    assert signer.owner == old.owner
    assert peers.count(old.owner) == 2


async def test_refresh_of_a_forged_signature_does_not_refetch_every_time(
    ctx: NodeContext, peers: FakePeers, resolver: RemoteKeyResolver, clock: FakeClock
) -> None:
    # Mallory signs as alice with her own key: every request triggers a refresh, rate-limited.
    alice = serve_alice(peers)
    await resolver.resolve(alice.key_id)
    forged_key = pair("rsa-mallory.pem", alice.key_id, alice.owner)
    inbox = f"{ctx.uris.origin}/inbox"
    for _ in range(5):
        signed = sign_request(OutgoingRequest("POST", inbox, Headers(), b"{}"), forged_key, now=clock())
        with pytest.raises(SignatureError) as caught:
            await verify_request(
                IncomingRequest("POST", inbox, "/inbox", signed.headers, b"{}"),
                resolve_key=resolver,
                now=clock(),
            )
        assert caught.type is SignatureError  # bad signature, not a key problem
    assert peers.count(alice.owner) == 1


# --- the bounded table itself --------------------------------------------------------------


def test_ttl_lru_expires_and_evicts() -> None:
    now = utc_now()
    table: TtlLru[str, int] = TtlLru(2, timedelta(seconds=10))
    table.put("a", 1, now)
    table.put("b", 2, now)
    assert table.get("a", now) == 1  # a is now the most recent
    table.put("c", 3, now)
    assert table.get("b", now) is None and len(table) == 2  # b was least recently used
    assert table.get("a", now + timedelta(seconds=10)) is None  # expired
    with pytest.raises(ValueError):
        TtlLru[str, Any](0, timedelta(seconds=1))
