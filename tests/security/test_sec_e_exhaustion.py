"""Resource exhaustion (security.md §E, cases 27-34).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`): the database is the oracle.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from federation.errors import ResponseTooLarge
from federation.transport import Timeouts
from federation.types import JsonObject, utc_now
from server.db import queue
from server.db.models import InboxActivity, Job
from server.services.actors.key_resolver import FetchBudget, RemoteKeyResolver
from server.services.media import uploads as media_service
from server.services.membership import following
from tests.security.test_sec_b_origin import _follows
from tests.support.fake_peers import actor_document, peer_transport
from tests.support.hostile_peer import (
    HOSTILE_HOST,
    HostilePeer,
    Traffic,
    hostile_transport,
    start_hostile,
)
from tests.support.nodes import Node, wait_until
from tests.support.signed_inbox import (
    AS_CONTEXT,
    AS_PUBLIC,
    RemoteAccount,
    StallingPeers,
    changed,
    encode,
    fixed_key,
    gets_to,
    process_jobs,
    processed,
    read_reply,
    remote_account,
    settle,
)
from tests.support.world import (
    GROUP_INBOX,
    MIB,
    SHARED,
    NodeStarter,
    World,
    activity,
    assert_refused,
    create,
    given_world,
    note,
    object_row,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


def _page(world: World, n: int, items: list[Any], next_iri: str | None) -> JsonObject:
    outbox = f"{world.alice.iri}/outbox"
    page: JsonObject = {
        "@context": AS_CONTEXT,
        "id": f"{outbox}?page={n}",
        "type": "OrderedCollectionPage",
        "partOf": outbox,
        "orderedItems": items,
    }
    if next_iri:
        page["next"] = next_iri
    return page


def _create_item(world: World, author: RemoteAccount, n: int) -> JsonObject:
    obj = note(author, to=[AS_PUBLIC], content=f"<p>n{n}</p>")
    return activity("Create", author, obj, to=[AS_PUBLIC])


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b'{"type": "Create", "actor": ',
        b"\xff\xfe{}",
        b'[{"type": "Create"}]',
        b'"just a string"',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
    ids=["html", "truncated", "not_utf8", "array", "string", "deep_array", "deep_object"],
)
async def test_sec_28_body_that_is_not_a_json_object_or_too_deep_is_400(world: World, body: bytes) -> None:
    """Not JSON, a JSON array, or 10,000 levels of nesting: a signed POST is refused 400."""
    signed = world.sender.sign(GROUP_INBOX, body, world.alice.key)
    before = await world.counts()
    reply = await world.sender.post(signed)
    assert_refused(reply, 400, "malformed_payload")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_27_body_over_one_mebibyte_is_413(world: World) -> None:
    """A 1 MiB + 1 byte body is refused 413 before parsing, signed or not."""
    padding = "x" * (
        MIB + 1 - len(encode(create(world.alice, note(world.alice, to=[world.group], content=""))))
    )
    big = create(world.alice, note(world.alice, to=[world.group], content=padding))
    body = encode(big)
    assert len(body) == MIB + 1
    before = await world.counts()
    reply = await world.sender.post(world.sender.sign(GROUP_INBOX, body, world.alice.key))
    assert_refused(reply, 413)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_27_chunked_body_without_length_over_one_mebibyte_is_413(world: World) -> None:
    """A chunked body with no Content-Length that goes past 1 MiB is cut off with 413."""
    signed = world.sender.sign(GROUP_INBOX, b"{}", world.alice.key)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(40):  # 2.5 MiB at most
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    before = await world.counts()
    headers = [(k, v) for k, v in signed.headers if k.lower() != "content-length"]
    response = await world.node.client.post(GROUP_INBOX, data=chunks(), headers=headers)
    reply = await read_reply(response)
    assert_refused(reply, 413)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_34_a_host_over_its_rate_gets_429_with_retry_after(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """A peer sending faster than its budget is told to come back later; nothing over it is stored."""
    async with start_node(federation={"inbox_rate_per_host": 0.01, "inbox_burst_per_host": 2}) as node:
        world = await given_world(node, peers)
        replies = []
        for n in range(3):
            activity = {
                "@context": AS_CONTEXT,
                "id": world.alice.new_id(),
                "type": "Like",
                "actor": world.alice.iri,
                "object": f"{world.group}#liked-{n}",
            }
            replies.append(await world.send(GROUP_INBOX, activity, world.alice))
        assert [r.status for r in replies] == [202, 202, 429]
        assert replies[2].code == "rate_limited"
        assert int(replies[2].headers["Retry-After"]) >= 1
        async with node.sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(InboxActivity))
        assert stored == 2
        # Another host has its own budget: mallory is not throttled by alice's traffic
        other = {
            "@context": AS_CONTEXT,
            "id": world.mallory.new_id(),
            "type": "Like",
            "actor": world.mallory.iri,
            "object": f"{world.group}#liked",
        }
        assert (await world.send(GROUP_INBOX, other, world.mallory)).status == 202


async def test_sec_30_hostile_outbox_pages_are_bounded_loop_safe_and_same_origin(world: World) -> None:
    """A followed outbox that loops, points to another host, smuggles foreign items and never
    ends: the sync reads a bounded number of pages, once each, from the actor's host only."""
    outbox = f"{world.alice.iri}/outbox"
    evil_page = world.peers.iri("evil.example", "/outbox?page=2")
    world.peers.serve_json(
        outbox,
        {
            "@context": AS_CONTEXT,
            "id": outbox,
            "type": "OrderedCollection",
            "totalItems": 10**9,
            "first": f"{outbox}?page=1",
        },
    )
    honest = _create_item(world, world.alice, 1)
    smuggled = _create_item(world, world.mallory, 2)  # an item from another host
    world.peers.serve_json(f"{outbox}?page=1", _page(world, 1, [honest, smuggled], f"{outbox}?page=2"))
    world.peers.serve_json(f"{outbox}?page=2", _page(world, 2, [], f"{outbox}?page=1"))  # loops back
    remote = await world.node.fed.actor(world.alice.iri)
    read = await following.sync_outbox(world.node.fed, remote.id)
    assert read == 1
    assert await object_row(world.node, honest["object"]["id"]) is not None
    assert await object_row(world.node, smuggled["object"]["id"]) is None
    assert world.peers.count(f"{outbox}?page=1") == 1 and world.peers.count(f"{outbox}?page=2") == 1
    # A next link to another host is not followed
    world.peers.serve_json(
        f"{outbox}?page=1", _page(world, 1, [_create_item(world, world.alice, 3)], evil_page)
    )
    await following.sync_outbox(world.node.fed, remote.id)
    assert world.peers.hits_on("evil.example") == []


async def test_sec_30_an_endless_outbox_costs_a_bounded_number_of_fetches(world: World) -> None:
    """A run reads max_pages, then hands over to at most BACKFILL_MAX_CONTINUATIONS follow-up jobs.

    The worker runs the follow-ups as soon as they are queued, so the bound is checked on the
    whole chain once the worker is idle, not on the first run alone (which raced the worker).
    """
    outbox = f"{world.alice.iri}/outbox"
    world.peers.serve_json(
        outbox,
        {"@context": AS_CONTEXT, "id": outbox, "type": "OrderedCollection", "first": f"{outbox}?page=1"},
    )
    bound = 5 + following.BACKFILL_MAX_CONTINUATIONS * following.BACKFILL_MAX_PAGES
    served = bound + 40  # the outbox goes on well past the bound
    for n in range(1, served):
        world.peers.serve_json(f"{outbox}?page={n}", _page(world, n, [], f"{outbox}?page={n + 1}"))
    remote = await world.node.fed.actor(world.alice.iri)
    await following.sync_outbox(world.node.fed, remote.id, max_pages=5)

    async def chain_done() -> bool:
        return world.peers.count(f"{outbox}?page={bound}") > 0

    await wait_until(chain_done, timeout_s=60.0, what="the follow-up sync jobs")
    await settle(world.node, timeout_s=30.0)
    fetched = [n for n in range(1, served) if world.peers.count(f"{outbox}?page={n}")]
    assert fetched == list(range(1, bound + 1))
    assert all(world.peers.count(f"{outbox}?page={n}") == 1 for n in fetched)


# ---------------------------------------------------------------------------------------------
# A hostile peer (tests/support/hostile_peer.py): outbound fetches under attack (27, 29, 31-33)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def hostile(aiohttp_server: ServerFactory) -> HostilePeer:
    return await start_hostile(aiohttp_server)


def _hank(hostile: HostilePeer) -> RemoteAccount:
    """An honest actor on the hostile host (its key document is served normally)."""
    return remote_account(hostile, HOSTILE_HOST, "hank", "rsa-mallory.pem")


async def _healthy(node: Node) -> None:
    response = await node.client.get("/healthz")
    assert response.status == 200, await response.text()


async def _create_by_reference(world: World, author: RemoteAccount, object_iri: str) -> JsonObject:
    """``Create{object: <iri>}`` to the group: the worker fetches the object from its origin."""
    create_ = activity("Create", author, object_iri, to=[world.group])
    assert (await world.send(GROUP_INBOX, create_, author)).status == 202
    return create_


def _note_at(author: RemoteAccount, path: str) -> JsonObject:
    iri = author.iri_on_host(path)
    return {"@context": AS_CONTEXT, **note(author, to=[AS_PUBLIC]), "id": iri}


async def test_sec_27_hostile_object_documents_are_cut_at_the_limit_and_nothing_is_stored(
    world: World, hostile: HostilePeer
) -> None:
    """20 MB objects (with and without Content-Length), gzip bombs, 10,000-deep JSON, HTML labelled
    as activity+json and the reverse, a wrong id: each fetch gives up, the job ends once, nothing
    is stored, and the node stays healthy."""
    hank = _hank(hostile)
    doc = note(hank, to=[world.group])
    paths = {
        "huge_declared": lambda iri: hostile.huge(iri, 20 * MIB),
        "huge_chunked": lambda iri: hostile.huge(iri, 20 * MIB, declare_length=False),
        "bomb_declared": lambda iri: hostile.gzip_bomb(iri),
        "bomb_chunked": lambda iri: hostile.gzip_bomb(iri, declare_length=False),
        "nested": lambda iri: hostile.nested(iri, 10_000),
        "html_as_activity": lambda iri: hostile.lying(iri, "html_as_activity"),
        "activity_as_html": lambda iri: hostile.lying(iri, "activity_as_html", {**doc, "id": iri}),
        "wrong_id": lambda iri: hostile.wrong_id(iri, doc, world.alice.iri_on_host("/notes/1")),
    }
    creates = {}
    for name, install in paths.items():
        iri = hank.iri_on_host(f"/objects/{name}")
        install(iri)
        creates[name] = (iri, await _create_by_reference(world, hank, iri))
    for name, (iri, create_) in creates.items():
        assert await processed(world.node, create_["id"]) == "processed", name
        assert await process_jobs(world.node, create_["id"]) == [("done", 1)], name
        assert await object_row(world.node, iri) is None, name
        assert hostile.count(iri) == 1, name
    for name in ("huge_declared", "huge_chunked"):
        traffic = hostile.traffic_on(creates[name][0])
        # the node hung up long before the end (socket buffers hold a few MB at most)
        await _abandoned(traffic)
        assert traffic.bytes_sent < 20 * MIB, (name, traffic)
    await _healthy(world.node)


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
async def test_sec_27_an_actor_document_over_the_limit_is_not_a_key(
    world: World, hostile: HostilePeer, declare_length: bool
) -> None:
    """A signature whose key's actor serves 20 MB: 401 (not 5xx), cut short, nothing stored."""
    hank = remote_account(hostile, HOSTILE_HOST, "hank", "rsa-mallory.pem", serve=False)
    hostile.huge(hank.iri, 20 * MIB, declare_length=declare_length)
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, create(hank, note(hank, to=[world.group])), hank)
    assert_refused(reply, 401)
    traffic = hostile.traffic_on(hank.iri)
    assert traffic.requests == 1
    await _abandoned(traffic)
    assert changed(before, await world.counts()) == {}
    await _healthy(world.node)


@pytest.mark.parametrize("kind", ["huge_chunked", "bomb_chunked"])
async def test_sec_27_memory_stays_bounded_while_refusing_a_big_document(
    world: World, hostile: HostilePeer, kind: str
) -> None:
    """The node's own fetch of a 20 MB stream or a 10 MB gzip bomb allocates a few MB at most."""
    iri = hostile.at(f"/objects/{kind}")
    if kind == "huge_chunked":
        hostile.huge(iri, 20 * MIB, declare_length=False)
    else:
        hostile.gzip_bomb(iri, declare_length=False)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            await world.node.fed.fetch(iri)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, peak


async def test_sec_29_reply_chains_and_loops_cost_one_fetch_each(world: World, hostile: HostilePeer) -> None:
    """Alice boosts the head of a 1,000-note reply chain, and one note of a loop A→B→A: each head
    is fetched once and stored; no parent is ever fetched (no recursion, no budget to spend)."""
    hank = _hank(hostile)
    await _follows(world.node, world.group, world.alice.iri)
    chain = hostile.reply_chain(hank, 1000)
    loop = hostile.reply_chain(hank, 2, loop_to=0, prefix="/loop")
    boosts = [activity("Announce", world.alice, head, to=[AS_PUBLIC]) for head in (chain[0], loop[0])]
    for boost in boosts:
        assert (await world.send(SHARED, boost, world.alice)).status == 202
    for boost in boosts:
        assert await processed(world.node, boost["id"]) == "processed"
        assert await process_jobs(world.node, boost["id"]) == [("done", 1)]
    assert await object_row(world.node, chain[0]) is not None
    assert await object_row(world.node, loop[0]) is not None
    fetched = [h.target for h in gets_to(hostile, HOSTILE_HOST)]
    # each head once, and their author (once, or once per head when both boosts are processed
    # at the same moment, before either stored hank): never a parent
    heads = [target for target in fetched if target != "/users/hank"]
    assert sorted(heads) == ["/chain/0", "/loop/0"], fetched
    assert 1 <= fetched.count("/users/hank") <= len(boosts), fetched


async def test_sec_29_announce_of_an_announce_is_fetched_once_and_dropped(
    world: World, hostile: HostilePeer
) -> None:
    """Alice boosts a hostile Announce of an Announce of …: one fetch, nothing stored, no recursion."""
    hank = _hank(hostile)
    await _follows(world.node, world.group, world.alice.iri)
    iris = [hank.iri_on_host(f"/announces/{n}") for n in range(50)]
    for n, iri in enumerate(iris):
        inner = iris[n + 1] if n + 1 < len(iris) else iris[0]
        hostile.serve_json(iri, {**activity("Announce", hank, inner, to=[AS_PUBLIC]), "id": iri})
    boost = activity("Announce", world.alice, iris[0], to=[AS_PUBLIC])
    before = await world.counts()
    assert (await world.send(SHARED, boost, world.alice)).status == 202
    assert await processed(world.node, boost["id"]) == "processed"
    assert await process_jobs(world.node, boost["id"]) == [("done", 1)]
    assert [h.target for h in gets_to(hostile, HOSTILE_HOST)] == ["/announces/0"]
    assert changed(before, await world.counts()) == {"inbox_activities": 1, "jobs": 1}


@pytest.mark.parametrize("stall", ["drip", "never_finish"])
async def test_sec_31_slow_key_and_object_fetches_are_abandoned_at_the_deadline(
    start_node: NodeStarter, peers: StallingPeers, hostile: HostilePeer, stall: str
) -> None:
    """A key (actor) document, then an object, that drip one byte every 50 ms or never finish:
    the key case answers 503 and the object case 202 then a retry later; nothing is stored."""
    async with (
        peer_transport(timeouts=Timeouts(total_s=1.0, connect_s=1.0, sock_read_s=1.0)) as short,
        start_node(outbound=short) as node,
    ):
        world = await given_world(node, peers, warm=())
        slow = remote_account(hostile, HOSTILE_HOST, "slow", "rsa-bob.pem", serve=False)
        hank = _hank(hostile)
        obj = _note_at(hank, "/objects/slow")

        def slow_down(iri: str, doc: JsonObject) -> None:
            if stall == "drip":  # ~100 s to send the whole document: only a total deadline helps
                hostile.drip(iri, doc, every_s=0.05)
            else:
                hostile.never_finish(iri)

        slow_down(slow.iri, actor_document(slow.iri, username="slow", keys=(slow.key.public,)))
        slow_down(obj["id"], obj)
        before = await world.counts()
        # the key: 503, the sender retries later
        reply = await world.send(GROUP_INBOX, create(slow, note(slow, to=[world.group])), slow)
        assert_refused(reply, 503, "key_fetch_temporary")
        # the object: accepted, its fetch abandoned, the job retried later (not now)
        create_ = await _create_by_reference(world, hank, obj["id"])
        await wait_until(lambda: _job_attempted(node, create_["id"]), what="the first attempt of the job")
        assert await object_row(node, obj["id"]) is None
        for iri in (slow.iri, obj["id"]):
            traffic = hostile.traffic_on(iri)
            assert traffic.requests == 1, (iri, traffic)
            await _abandoned(traffic)
        diff = changed(before, await world.counts())
        assert set(diff) <= {"inbox_activities", "inbox_items", "jobs", "actors", "actor_keys"}, diff
        assert "objects" not in diff
        await _healthy(node)


async def _abandoned(traffic: Traffic) -> None:
    """The node hung up mid-body (the hostile peer notices it asynchronously: wait, bounded)."""

    async def cut() -> bool:
        return traffic.cut == 1

    await wait_until(cut, timeout_s=10, what="the node to abandon the response")
    assert traffic.finished == 0, traffic


async def _job_attempted(node: Node, activity_iri: str) -> bool:
    jobs = await process_jobs(node, activity_iri)
    return bool(jobs) and jobs[0] == ("queued", 1)


BACKTRACKING = "a" * 50_000 + "!"  # (a+)+$-shaped input
HOSTILE_CONTENT: dict[str, dict[str, Any]] = {
    "mathml": {"content": "<math><semantics><annotation>x</annotation></semantics></math>"},
    "nested_spans": {"content": "<span>" * 70_000 + "x" + "</span>" * 70_000},
    "huge_attribute": {"content": '<a href="https://x.example/' + "a" * 900_000 + '">x</a>'},
    "open_tags": {"content": "<" * 200_000, "summary": "<a " * 100_000},
    "backtracking": {
        "content": BACKTRACKING,
        "summary": "&" * 100_000 + ";",
        "name": "#" * 100_000,
        "tag": [{"type": "Hashtag", "name": "#" + "a" * 10_000 + "-" * 10_000}],
    },
    "unstorable_text": {
        "content": "a\u0000b\ud800c",
        "name": "\udfff",
        "attachment": [{"type": "Document", "mediaType": "image/png", "url": "https://x.example/\u0000.png"}],
    },
    "lying_media": {
        "attachment": [
            {
                "type": "Image",
                "mediaType": "image/png",
                "url": "https://x.example/../../x.png",
                "name": "\ud800",
            },
            {"type": "Document", "mediaType": "image/svg+xml", "url": "file:///etc/passwd"},
        ]
    },
}


@pytest.mark.parametrize("path", ["inbox", "fetched"])
async def test_sec_32_content_that_could_crash_processing_is_handled_once_without_5xx(
    world: World, hostile: HostilePeer, path: str
) -> None:
    """Sanitiser, regex and media traps in every text field, delivered or fetched: never 5xx, each
    job runs once (no crash loop), and what is stored is complete and sanitised, or nothing."""
    hank = _hank(hostile)
    sent: list[tuple[str, JsonObject, str]] = []
    for name, fields in HOSTILE_CONTENT.items():
        if path == "inbox":
            obj = note(world.alice, to=[world.group], **fields)
            create_ = create(world.alice, obj)
            body = json.dumps(create_).encode()  # ASCII escapes, as a peer's serialiser sends them
            reply = await world.sender.post(world.sender.sign(GROUP_INBOX, body, world.alice.key))
            assert reply.status in (202, 400, 413), (name, reply)  # a verdict, never 5xx
            if reply.status != 202:
                continue
        else:
            obj = {**_note_at(hank, f"/objects/{name}"), "to": [world.group], **fields}
            hostile.serve(HOSTILE_HOST, f"/objects/{name}", json.dumps(obj).encode())
            create_ = await _create_by_reference(world, hank, obj["id"])
        sent.append((name, create_, obj["id"]))
    assert sent
    for name, create_, object_iri in sent:
        assert await processed(world.node, create_["id"]) == "processed", name
        assert await process_jobs(world.node, create_["id"]) == [("done", 1)], name
        row = await object_row(world.node, object_iri)
        if row is not None:  # complete and sanitised
            stored = json.dumps(row.document)
            assert "<math" not in stored and "\\u0000" not in stored, name
            assert len(row.document.get("content", "")) <= 200_000, name
    await _healthy(world.node)


async def test_sec_33_five_hundred_unknown_hosts_leave_bounded_state(
    start_node: NodeStarter, peers: StallingPeers, hostile: HostilePeer
) -> None:
    """500 random subdomains of evil.example sign with keys nobody serves: each is refused 401 and
    the per-host state (key cache, failures, budgets, transport slots) stays under its caps."""
    names = [f"h{secrets.token_hex(4)}.evil.example" for _ in range(500)]
    async with (
        hostile_transport(extra_trusted=names, max_tracked_hosts=64) as outbound,
        start_node(outbound=outbound) as node,
    ):
        world = await given_world(node, peers, warm=())
        fed = node.fed
        fed.keys = RemoteKeyResolver(
            fed.node,
            fed.transport,
            policy=fed.policy,
            max_entries=128,
            per_host_budget=FetchBudget(max_hosts=64),
        )
        before = await world.counts()

        async def one(name: str) -> int:
            actor = hostile.iri(name, "/users/x")
            key = fixed_key("rsa-mallory.pem", f"{actor}#main-key", actor)
            who = RemoteAccount(actor, key, hostile)
            like = activity("Like", who, world.group)
            return (await world.send(GROUP_INBOX, like, who)).status

        statuses: list[int] = []
        for start in range(0, len(names), 25):
            statuses += await asyncio.gather(*(one(name) for name in names[start : start + 25]))
        assert statuses == [401] * len(names)
        assert len({h.host for h in hostile.hits}) == len(names)  # each host was really asked
        assert changed(before, await world.counts()) == {}  # no actor, no key, no peer_hosts row
        keys = fed.keys
        assert len(keys._budgets) <= 64 and len(keys._failures) <= 128 and len(keys._last_fetch) <= 128
        assert len(keys._flights) == 0
        assert len(outbound._origin_limiter) <= 64 and len(outbound._host_limiter) <= 64
        await _healthy(node)


async def test_sec_33_the_row_count_oracle_ignores_a_periodic_round_that_runs_meanwhile(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """The flake of case 33 (``{'jobs': 1}``): a periodic round (catch-up every 15 minutes, media
    clean-up every hour) that comes due while a long test runs finishes and queues the next round.
    That is the wall clock, not the request under test, so the "nothing changed" oracle skips it."""
    async with start_node() as node:
        world = await given_world(node, peers, warm=())
        await settle(node)
        before = await world.counts()
        # Given a round of the media clean-up due now (as at the top of an hour)
        async with node.sessions.begin() as session:
            await queue.schedule_periodic(
                session, media_service.MEDIA_CLEANUP, every=timedelta(seconds=1), now=utc_now()
            )
        # When the worker runs it, and it queues the next hourly round
        await wait_until(
            lambda: _rounds_done(node, media_service.MEDIA_CLEANUP), timeout_s=20, what="the round to run"
        )
        # Then the oracle sees no change, though two job rows appeared
        assert changed(before, await world.counts()) == {}


async def _rounds_done(node: Node, kind: str) -> bool:
    async with node.sessions() as session:
        done = await session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == kind, Job.state == "done")
        )
    return bool(done)
