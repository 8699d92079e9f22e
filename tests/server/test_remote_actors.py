"""Remote actors in the database: fetched on demand, stored only from their origin (case 8).

Runs on SQLite and PostgreSQL (the ``node`` fixture). Peers are fake aiohttp servers on
127.0.0.1 that answer as ``peer.example``/``evil.example`` and require our signed fetch
(Mastodon's authorized fetch), verified for real with the node's Application key.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.actors_remote import read_actor
from federation.errors import WrongOrigin
from federation.fetch import DocumentGone, FetchedActor, fetch_actor
from federation.keys import KeyPair, private_key_from_pem
from federation.transport import AiohttpTransport
from federation.types import Iri, utc_now
from federation.uris import UriScheme
from server.appkeys import NODE
from server.db.models import Actor, ActorKey
from server.services.actors.remote import (
    MAX_PROOF_AGE,
    ActorFlights,
    LocalActorConflict,
    SingleFlight,
    StaleFetch,
    get_or_fetch_actor,
    placeholder_handle,
    store_fetched_actor,
    upsert_remote_actor,
)
from server.services.actors.signing import actor_key_pair, instance_key_pair
from server.services.context import NodeContext
from server.services.errors import NotFound
from tests.support.fake_peers import FakeClock, FakePeers, actor_document, peer_transport
from tests.support.nodes import Node

ServerFactory = Callable[..., Awaitable[TestServer]]
KEYS = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "keys"


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


def serve_alice(peers: FakePeers, key_file: str = "rsa-alice.pem", **extra: object) -> KeyPair:
    actor = peers.iri("peer.example", "/users/alice")
    key = pair(key_file, f"{actor}#main-key", actor)
    peers.serve_json(actor, actor_document(actor, username="alice", keys=(key.public,), **extra))
    return key


async def fetched(ctx: NodeContext, transport: AiohttpTransport, iri: str) -> FetchedActor:
    return await fetch_actor(
        iri, transport=transport, signer=await instance_key_pair(ctx), now=ctx.clock(), uris=ctx.uris
    )


async def keys_of(session: AsyncSession, iri: str) -> dict[str, ActorKey]:
    stmt = select(ActorKey).join(Actor, Actor.id == ActorKey.actor_id).where(Actor.iri == iri)
    return {row.key_iri: row for row in (await session.execute(stmt)).scalars()}


# --- get_or_fetch_actor --------------------------------------------------------------------


async def test_unknown_actor_is_fetched_signed_and_stored(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport
) -> None:
    key = serve_alice(peers)
    actor = await get_or_fetch_actor(ctx, transport, key.owner)
    assert actor.iri == key.owner and actor.local is False
    assert actor.host == peers.authority("peer.example")
    assert actor.handle == "alice" and actor.type == "Person"
    assert actor.inbox_iri == f"{key.owner}/inbox"
    assert actor.fetched_at == ctx.clock()
    [hit] = peers.hits
    assert hit.key_id == ctx.uris.main_key(ctx.uris.application_actor())  # signed as the node
    async with ctx.sessions() as session:
        [row] = (await keys_of(session, key.owner)).values()
    assert row.key_iri == key.key_id and row.kind == "rsa"
    assert row.public_pem == key.public.to_pem()
    assert row.private_key_encrypted is None


async def test_fresh_row_is_served_without_a_request(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    key = serve_alice(peers)
    await get_or_fetch_actor(ctx, transport, key.owner)
    clock.advance(timedelta(hours=23))
    await get_or_fetch_actor(ctx, transport, key.owner)
    assert peers.count(key.owner) == 1
    clock.advance(timedelta(hours=2))  # now older than a day: refetched
    await get_or_fetch_actor(ctx, transport, key.owner)
    assert peers.count(key.owner) == 2


async def test_concurrent_lookups_share_one_fetch(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport
) -> None:
    key = serve_alice(peers)
    flights: ActorFlights = SingleFlight()
    actors = await asyncio.wait_for(
        asyncio.gather(*(get_or_fetch_actor(ctx, transport, key.owner, flights=flights) for _ in range(20))),
        timeout=20,
    )
    assert {a.iri for a in actors} == {key.owner}
    assert peers.count(key.owner) == 1
    assert len(flights) == 0  # nothing kept once done


async def test_local_iris_come_from_the_database_only(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport
) -> None:
    app = await get_or_fetch_actor(ctx, transport, ctx.uris.application_actor())
    assert app.local is True
    with pytest.raises(NotFound):
        await get_or_fetch_actor(ctx, transport, ctx.uris.group("does-not-exist"))
    assert peers.hits == []


async def test_stale_row_is_served_while_the_origin_is_down(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    key = serve_alice(peers)
    await get_or_fetch_actor(ctx, transport, key.owner)
    peers.status(key.owner, 503)
    clock.advance(timedelta(days=2))
    actor = await get_or_fetch_actor(ctx, transport, key.owner)
    assert actor.iri == key.owner and peers.count(key.owner) == 2


async def test_gone_actor_is_an_error_not_a_row(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, node: Node
) -> None:
    iri = peers.iri("peer.example", "/users/gone")
    peers.status(iri, 410)
    before = await node.row_counts()
    with pytest.raises(DocumentGone):
        await get_or_fetch_actor(ctx, transport, iri)
    assert await node.row_counts() == before


async def test_actor_served_under_another_id_is_not_stored(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, node: Node
) -> None:
    # Case 11: evil.example serves alice's identity.
    url = peers.iri("evil.example", "/users/alice")
    key = serve_alice(peers)
    peers.serve_json(url, actor_document(key.owner, username="alice", keys=(key.public,)))
    before = await node.row_counts()
    with pytest.raises(WrongOrigin):
        await get_or_fetch_actor(ctx, transport, url)
    assert await node.row_counts() == before


# --- upsert_remote_actor: what may change, and only from the origin ----------------------------


async def test_upsert_never_turns_a_local_actor_remote(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, node: Node, clock: FakeClock
) -> None:
    # Given a fetched document whose id is (somehow) one of our local actors' IRIs
    key = serve_alice(peers)
    signer = await instance_key_pair(ctx)
    elsewhere = UriScheme("https://elsewhere.test")  # so that the fetch itself is allowed
    doc = await fetch_actor(key.owner, transport=transport, signer=signer, now=clock(), uris=elsewhere)
    async with ctx.sessions.begin() as session:
        session.add(
            Actor(
                iri=key.owner,
                local=True,
                type="Person",
                handle="alice",
                host=ctx.uris.host,
                created_at=clock(),
                updated_at=clock(),
            )
        )
    # When it is upserted, Then it is refused and the row stays local
    with pytest.raises(LocalActorConflict):
        async with ctx.sessions.begin() as session:
            await upsert_remote_actor(session, doc, now=clock())
    async with ctx.sessions() as session:
        row = (await session.execute(select(Actor).where(Actor.iri == key.owner))).scalar_one()
        assert row.local is True and row.host == ctx.uris.host
        assert await keys_of(session, key.owner) == {}


async def test_upsert_needs_a_fetch_not_a_parsed_payload(ctx: NodeContext, clock: FakeClock) -> None:
    # An inbound Update{Person} payload read with read_actor is not proof of anything (case 8a).
    doc = read_actor(actor_document("https://peer.example/users/alice", username="alice"))
    async with ctx.sessions.begin() as session:
        with pytest.raises(TypeError):
            await upsert_remote_actor(session, doc, now=clock())  # type: ignore[arg-type]


async def test_keys_change_only_from_a_fresh_fetch(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    # Given alice stored with her key
    old_key = serve_alice(peers)
    await get_or_fetch_actor(ctx, transport, old_key.owner)
    # And a fetch of a rotated document that is then kept for too long
    serve_alice(peers, "rsa-bob.pem")
    late = await fetched(ctx, transport, old_key.owner)
    clock.advance(MAX_PROOF_AGE + timedelta(seconds=1))
    # When it is stored, Then it is refused as stale and the key is unchanged
    with pytest.raises(StaleFetch):
        async with ctx.sessions.begin() as session:
            await upsert_remote_actor(session, late, now=clock())
    async with ctx.sessions() as session:
        [row] = (await keys_of(session, old_key.owner)).values()
    assert row.public_pem == old_key.public.to_pem()


async def test_an_older_fetch_never_rolls_back_a_newer_one(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    old_key = serve_alice(peers)
    older = await fetched(ctx, transport, old_key.owner)
    clock.advance(timedelta(seconds=30))
    new_key = serve_alice(peers, "rsa-bob.pem")
    newer = await fetched(ctx, transport, old_key.owner)
    await store_fetched_actor(ctx, newer)
    await store_fetched_actor(ctx, older)  # arrives late
    async with ctx.sessions() as session:
        [row] = (await keys_of(session, old_key.owner)).values()
    assert row.public_pem == new_key.public.to_pem()


async def test_rotation_replaces_material_and_vanished_keys_are_removed(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    actor = peers.iri("peer.example", "/users/alice")
    main = pair("rsa-alice.pem", f"{actor}#main-key", actor)
    extra = pair("rsa-mallory.pem", f"{actor}#extra-key", actor)
    peers.serve_json(actor, actor_document(actor, username="alice", keys=(main.public, extra.public)))
    await store_fetched_actor(ctx, await fetched(ctx, transport, actor))
    rotated = pair("rsa-bob.pem", f"{actor}#main-key", actor)
    peers.serve_json(actor, actor_document(actor, username="alice", keys=(rotated.public,)))
    clock.advance(timedelta(minutes=1))
    await store_fetched_actor(ctx, await fetched(ctx, transport, actor))
    async with ctx.sessions() as session:
        rows = await keys_of(session, actor)
    assert set(rows) == {main.key_id}
    assert rows[main.key_id].public_pem == rotated.public.to_pem()
    assert rows[main.key_id].fetched_at == clock()


async def test_a_name_taken_over_on_the_same_host_does_not_collide(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    # Two actors of one host claim preferredUsername "alice" (an account re-created under a
    # new IRI): the (host, type, handle) constraint must not break the store on either engine.
    first, second = peers.iri("peer.example", "/users/alice"), peers.iri("peer.example", "/users/alice2")
    peers.serve_json(first, actor_document(first, username="alice"))
    peers.serve_json(second, actor_document(second, username="alice"))
    await get_or_fetch_actor(ctx, transport, first)
    await get_or_fetch_actor(ctx, transport, second)
    async with ctx.sessions() as session:
        handles = dict(
            (await session.execute(select(Actor.iri, Actor.handle).where(Actor.local.is_(False)))).all()
        )
    assert handles == {second: "alice", first: placeholder_handle(first)}


async def test_actor_without_preferred_username_gets_a_placeholder(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport
) -> None:
    iri = peers.iri("peer.example", "/actors/svc")
    doc = actor_document(iri, username="x", actor_type="Service")
    del doc["preferredUsername"]
    peers.serve_json(iri, doc)
    actor = await get_or_fetch_actor(ctx, transport, iri)
    assert actor.handle == placeholder_handle(iri)


async def test_a_key_id_held_by_another_actor_is_not_moved(
    ctx: NodeContext, peers: FakePeers, transport: AiohttpTransport, clock: FakeClock
) -> None:
    # Case 8 (nextcloud/social#2225): bob's document on the same host lists carol's key id.
    carol, bob = peers.iri("peer.example", "/users/carol"), peers.iri("peer.example", "/users/bob")
    shared_id = peers.iri("peer.example", "/keys/k1")
    carol_key = pair("rsa-alice.pem", shared_id, carol)
    bob_key = pair("rsa-bob.pem", shared_id, bob)
    peers.serve_json(carol, actor_document(carol, username="carol", keys=(carol_key.public,)))
    peers.serve_json(bob, actor_document(bob, username="bob", keys=(bob_key.public,)))
    await get_or_fetch_actor(ctx, transport, carol)
    await get_or_fetch_actor(ctx, transport, bob)
    async with ctx.sessions() as session:
        assert set(await keys_of(session, carol)) == {shared_id}
        assert await keys_of(session, bob) == {}
        count = (await session.execute(select(func.count()).select_from(ActorKey))).scalar_one()
    assert count >= 1


# --- signing keys -------------------------------------------------------------------------


async def test_instance_and_actor_key_pairs(ctx: NodeContext, node: Node) -> None:
    app_pair = await instance_key_pair(ctx)
    assert app_pair.key_id == ctx.uris.main_key(ctx.uris.application_actor())
    assert app_pair is await instance_key_pair(ctx)  # decrypted once, then cached
    await node.create_association("asso")
    async with ctx.sessions() as session:
        group = (await session.execute(select(Actor).where(Actor.handle == "asso"))).scalar_one()
    rsa_pair = await actor_key_pair(ctx, group)
    ed_pair = await actor_key_pair(ctx, group, kind="ed25519")
    assert rsa_pair.key_id == f"{group.iri}#main-key"
    assert ed_pair.key_id == f"{group.iri}#ed25519-key"
