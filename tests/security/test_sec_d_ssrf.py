"""SSRF in outbound fetches, at node level (security.md §D, cases 24-26).

tests/security/test_ssrf_table.py checks every address form against the transport itself; here
the same table enters through the inbox of a real node (SQLite and PostgreSQL), in the fields
an attacker controls: the object of an ``Announce`` or a ``Create``, an ``inReplyTo``, a
signature's ``keyId``, a redirect ``Location``, and names whose DNS answer is private. The node's
transport is the suite's guarded one (fake peer names trusted, nothing else), so the hostile
peer listening on 127.0.0.1 is the oracle: any form that slipped through would be a hit there
(any other address would trip the suite's socket guard). Nothing may be stored, and the inbox
keeps answering as for any unusable activity: 202 and drop, 401 for a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from federation.transport import AiohttpTransport
from federation.types import JsonObject
from tests.security.test_sec_b_origin import _follows
from tests.security.test_ssrf_table import DNS_ANSWERS, LITERAL_HOSTS
from tests.support.hostile_peer import LOOPBACK_NAME, HostilePeer, hostile_transport, start_hostile
from tests.support.signed_inbox import (
    AS_CONTEXT,
    AS_PUBLIC,
    RemoteAccount,
    changed,
    fixed_key,
    process_jobs,
    processed,
    remote_account,
    settle,
)
from tests.support.world import GROUP_INBOX, SHARED, World, activity, assert_refused, create, note, object_row

ServerFactory = Callable[..., Awaitable[TestServer]]

# Attacker names whose DNS answers are the private forms of case 25 (none of them trusted).
DNS_NAMES = {f"dns{n}.evil.example": answers for n, (answers, _) in enumerate(DNS_ANSWERS)}
UNTRUSTED = {LOOPBACK_NAME: ["127.0.0.1"], **DNS_NAMES}


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    """The node's transport: the fake peers' names trusted, attacker names resolving privately."""
    async with hostile_transport(untrusted=UNTRUSTED) as outbound:
        yield outbound


@pytest.fixture
async def hostile(aiohttp_server: ServerFactory) -> HostilePeer:
    return await start_hostile(aiohttp_server)


def private_urls(port: int, path: str = "/objects/1") -> list[str]:
    """Every literal of the table, plus every untrusted name, as an http URL to the hostile peer's
    port on that host (a form that reached 127.0.0.1 would be served by the hostile peer)."""
    hosts = [host for host, _ in LITERAL_HOSTS] + list(UNTRUSTED)
    return [f"http://{host}:{port}{path}" for host in hosts]


async def assert_healthy(world: World) -> None:
    response = await world.node.client.get("/healthz")
    assert response.status == 200, await response.text()


async def test_sec_24_announce_of_an_object_at_a_private_address_fetches_nothing(
    world: World, hostile: HostilePeer
) -> None:
    """Alice (followed) boosts objects at every private form: 202 each, no connection, nothing stored."""
    await _follows(world.node, world.group, world.alice.iri)
    before = await world.counts()
    sent = [activity("Announce", world.alice, url, to=[AS_PUBLIC]) for url in private_urls(hostile.port)]
    replies = await asyncio.gather(*(world.send(SHARED, a, world.alice) for a in sent))
    assert {r.status for r in replies} <= {202, 400}, replies  # 400: not an IRI at all (schema)
    announces: list[JsonObject] = [a for a, r in zip(sent, replies, strict=True) if r.status == 202]
    assert len(announces) >= len(LITERAL_HOSTS) // 2  # most forms are valid IRIs, and get this far
    await settle(world.node)
    for announce in announces:
        # processed once (a refused address is not worth a retry), nothing fetched or stored
        assert await processed(world.node, announce["id"]) == "processed", announce["object"]
        assert await process_jobs(world.node, announce["id"]) == [("done", 1)]
    assert hostile.hits == []
    assert world.peers.hits == []
    diff = changed(before, await world.counts())
    assert set(diff) <= {"inbox_activities", "jobs"}, diff
    await assert_healthy(world)


async def test_sec_24_create_of_an_object_by_reference_at_a_private_address_fetches_nothing(
    world: World, hostile: HostilePeer
) -> None:
    """A Create whose object is a bare IRI on a private address: 202, the object is never fetched."""
    urls = private_urls(hostile.port)[::3]  # a sample: the Announce test walks the whole table
    before = await world.counts()
    for url in urls:
        create_ = activity("Create", world.alice, url, to=[world.group])
        reply = await world.send(GROUP_INBOX, create_, world.alice)
        assert reply.status in (202, 400), (url, reply)
    await settle(world.node)
    # the activity is received (and filed in the group's inbox), its object never fetched or stored
    assert set(changed(before, await world.counts())) <= {"inbox_activities", "inbox_items", "jobs"}
    assert hostile.hits == []


async def test_sec_24_in_reply_to_a_private_address_is_never_dereferenced(
    world: World, hostile: HostilePeer
) -> None:
    """A note replying to private addresses is stored as a note; its parents are never fetched."""
    await world.node.configure("collectif", replies_policy="anyone")  # alice is no member
    parents = [url for url in private_urls(hostile.port, "/parent") if url.isascii()][::5]
    created: list[tuple[str, str, str]] = []
    for parent in parents:
        obj = note(world.alice, to=[world.group], inReplyTo=parent)
        create_ = create(world.alice, obj)
        reply = await world.send(GROUP_INBOX, create_, world.alice)
        assert reply.status in (202, 400), (parent, reply)  # 400: not an IRI at all (schema)
        if reply.status == 202:
            created.append((create_["id"], obj["id"], parent))
    assert len(created) >= len(parents) // 2
    for activity_iri, _, _ in created:
        assert await processed(world.node, activity_iri) == "processed"
    assert hostile.hits == []
    assert world.peers.hits_on("peer.example") == []  # not even the author's host was asked
    # and the reply is stored, its parent's address kept as text and never followed
    for _, object_iri, parent in created:
        stored = await object_row(world.node, object_iri)
        assert stored is not None and stored.in_reply_to_iri == parent


KEY_HOSTS = ["127.0.0.1", "2130706433", "0x7f.1", "[::ffff:7f00:1]", "localhost", *UNTRUSTED]


async def test_sec_24_key_id_at_a_private_address_is_401_without_a_connection(
    world: World, hostile: HostilePeer
) -> None:
    """Signatures whose keyId (and actor) is on a private address: 401, nothing fetched or stored."""
    before = await world.counts()
    for host in KEY_HOSTS:
        actor = f"http://{host}:{hostile.port}/users/eve"
        key = fixed_key("rsa-mallory.pem", f"{actor}#main-key", actor)
        eve = RemoteAccount(actor, key, hostile)
        create_ = {
            "@context": AS_CONTEXT,
            "id": f"{actor}/activities/1",
            "type": "Create",
            "actor": actor,
            "object": {"id": f"{actor}/notes/1", "type": "Note", "attributedTo": actor, "to": [world.group]},
            "to": [world.group],
        }
        assert_refused(await world.send(GROUP_INBOX, create_, eve), 401)
        # and again: still refused, still without a connection
        assert_refused(await world.send(GROUP_INBOX, create_, eve), 401)
    assert hostile.hits == []
    assert changed(before, await world.counts()) == {}
    await assert_healthy(world)


@pytest.mark.parametrize("via", ["object", "key"])
async def test_sec_26_redirect_to_a_private_address_is_refused_at_the_hop(
    world: World, hostile: HostilePeer, via: str
) -> None:
    """The hostile host answers 302 to private forms: the first hop is served, the second never."""
    hank = remote_account(hostile, "evil.example", "hank", "rsa-mallory.pem")
    await _follows(world.node, world.group, world.alice.iri)
    targets = [url for url in private_urls(hostile.port, "/ok") if url.isascii()][::4]
    if via == "key":
        targets = targets[:15]  # within the host's key-fetch budget (20), so every one is tried
    before = await world.counts()
    for n, target in enumerate(targets):
        start = hank.iri_on_host(f"/{via}/{n}")
        hostile.redirect(start, target)
        if via == "object":
            announce = activity("Announce", world.alice, start, to=[AS_PUBLIC])
            assert (await world.send(SHARED, announce, world.alice)).status == 202
        else:
            actor = hank.iri_on_host(f"/key/{n}")
            liar = RemoteAccount(actor, fixed_key("rsa-mallory.pem", f"{actor}#k", actor), hostile)
            like = activity("Like", liar, world.group)
            assert_refused(await world.send(GROUP_INBOX, like, liar), 401)
    await settle(world.node)
    served = sorted(h.target for h in hostile.hits)
    assert served == sorted(f"/{via}/{n}" for n in range(len(targets)))  # the hops, never their targets
    diff = changed(before, await world.counts())
    assert "objects" not in diff and "actors" not in diff and "actor_keys" not in diff, diff
    await assert_healthy(world)


@pytest.mark.parametrize(("hops", "loop"), [(20, False), (1, True)], ids=["chain_of_20", "loop"])
async def test_sec_26_redirect_chains_and_loops_are_cut_short(
    world: World, hostile: HostilePeer, hops: int, loop: bool
) -> None:
    """An object behind 20 redirects, or behind A→B→A: a bounded number of requests, nothing stored."""
    await _follows(world.node, world.group, world.alice.iri)
    start = hostile.at("/objects/far")
    if loop:
        hostile.redirect_loop(start, hostile.at("/objects/back"))
    else:
        hostile.redirect_chain(start, hops, to=hostile.at("/objects/end"))
    announce = activity("Announce", world.alice, start, to=[AS_PUBLIC])
    before = await world.counts()
    assert (await world.send(SHARED, announce, world.alice)).status == 202
    assert await processed(world.node, announce["id"]) == "processed"
    assert await process_jobs(world.node, announce["id"]) == [("done", 1)]
    # at most MAX_REDIRECTS (3) hops after the first request, each URL at most once
    assert len(hostile.hits) <= 4
    assert len({h.target for h in hostile.hits}) == len(hostile.hits)
    assert changed(before, await world.counts()) == {"inbox_activities": 1, "jobs": 1}


async def test_sec_26_signature_is_not_carried_across_a_redirect(world: World, hostile: HostilePeer) -> None:
    """The hostile host redirects our signed fetch to peer.example: the second hop is signed anew
    for its own host (never the first hop's signature replayed there)."""
    await _follows(world.node, world.group, world.alice.iri)
    genuine = note(world.bob, to=[AS_PUBLIC])
    world.peers.serve_json(genuine["id"], {"@context": AS_CONTEXT, **genuine})
    start = hostile.at("/objects/elsewhere")
    hostile.redirect(start, genuine["id"])
    announce = activity("Announce", world.alice, start, to=[AS_PUBLIC])
    assert (await world.send(SHARED, announce, world.alice)).status == 202
    assert await processed(world.node, announce["id"]) == "processed"
    hops = [
        h for h in world.peers.hits_on("peer.example") if h.target.endswith(genuine["id"].split("/", 3)[3])
    ]
    assert len(hops) == 1
    # verified by peer.example against the node's Application key, for peer.example's Host
    assert hops[0].key_id == world.node.uris.main_key(world.node.uris.application_actor())
    assert hops[0].signature_error is None
    assert hops[0].signed_host == world.peers.authority("peer.example")


async def test_sec_65_follow_by_address_never_reaches_a_private_address(
    world: World, hostile: HostilePeer
) -> None:
    """A signed-in member's "follow by handle or URL" makes the node fetch what they type: every
    private form, as a URL or as a handle's host, is refused next to the field without a
    connection (the hostile peer on 127.0.0.1 is the oracle), nothing is stored, and look-ups are
    rate-limited per account (429 once the burst is spent)."""
    from server.http.pages import member
    from tests.server.test_web_account import _csrf, _sign_in

    await world.node.add_member("ben", "collectif")
    client = world.node.client
    assert (await _sign_in(client, "ben")).status == 303
    csrf = _csrf(await (await client.get("/follow")).text())
    before = await world.counts()
    urls = private_urls(hostile.port, "/users/x")
    handles = [f"x@{url.split('/')[2]}" for url in urls if "[" not in url]
    addresses = [*urls, *handles]
    assert len(addresses) >= member.LOOKUP_BURST
    refused = 0
    for attempt in range(member.LOOKUP_BURST * 3):  # tokens come back slowly: the burst ends soon
        address = addresses[attempt % len(addresses)]
        response = await client.post("/follow", data={"csrf": csrf, "address": address})
        page = await response.text()
        assert 'id="address-error"' in page and "<html" in page, address
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
            break
        assert response.status == 400, (address, page[:500])
        refused += 1
    else:
        raise AssertionError("look-ups were never rate-limited")
    assert refused >= member.LOOKUP_BURST
    assert hostile.hits == []
    assert changed(before, await world.counts()) == {}
    await assert_healthy(world)
