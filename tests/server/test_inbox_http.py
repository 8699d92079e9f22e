"""The inbox over HTTP, on a real node, on SQLite and PostgreSQL (security.md §0, cases 1-18, 27, 28, 47).

Remote actors are fake peers on 127.0.0.1 (``peer.example``: alice and bob; ``evil.example``:
mallory) that serve actor documents with the fixed keys of tests/fixtures/keys; the node fetches
and checks those keys itself. Requests are really signed (draft-cavage or RFC 9421). The
database is the oracle: after every refusal the row count of every table is unchanged (so no
inbox row, no job, no object, no follow), and an accepted activity is stored once and
processed once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from federation.ports import Transport
from federation.transport import AiohttpTransport, Timeouts
from federation.types import Iri, JsonObject, utc_now
from server.db.models import Actor, ActorKey, Follow, InboxActivity, RemoteObject
from server.services import following
from server.services.key_resolver import FetchBudget
from server.services.signing import actor_key_pair, instance_key_pair
from tests.support.fake_peers import peer_transport
from tests.support.nodes import Node, running_node
from tests.support.signed_inbox import (
    AS_CONTEXT,
    AS_PUBLIC,
    InboxSender,
    RemoteAccount,
    Reply,
    StallingPeers,
    accept_deliveries,
    changed,
    encode,
    fixed_key,
    gets_to,
    posts_to,
    process_jobs,
    processed,
    read_reply,
    remote_account,
    settle,
)

ServerFactory = Callable[..., Awaitable[TestServer]]
NodeStarter = Callable[..., AbstractAsyncContextManager[Node]]

SHARED = "/inbox"
GROUP_INBOX = "/groups/collectif/inbox"
OTHER_GROUP_INBOX = "/groups/voisins/inbox"
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Fixtures: fake peers, a node that reaches them by name, and the cast
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def peers(aiohttp_server: ServerFactory) -> StallingPeers:
    fake = StallingPeers()
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as outbound:
        yield outbound


@pytest.fixture
def start_node(tmp_path: Path, database_url: str, transport: AiohttpTransport) -> NodeStarter:
    """``async with start_node(**settings) as node``: a node whose transport reaches the fake peers."""

    def start(*, outbound: Transport | None = None, **overrides: Any) -> AbstractAsyncContextManager[Node]:
        return running_node(tmp_path / "node", database_url, transport=outbound or transport, **overrides)

    return start


@dataclass
class World:
    """A node with an association (collectif), and three remote actors."""

    node: Node
    peers: StallingPeers
    sender: InboxSender
    alice: RemoteAccount
    bob: RemoteAccount
    mallory: RemoteAccount
    group: Iri

    async def counts(self) -> dict[str, int]:
        return await self.node.row_counts()

    async def send(self, target: str, activity: JsonObject, who: RemoteAccount, **kwargs: Any) -> Reply:
        return await self.sender.send(target, activity, who.key, **kwargs)


async def given_world(
    node: Node, peers: StallingPeers, *, warm: tuple[str, ...] = ("alice", "bob", "mallory")
) -> World:
    """Set the scene; the keys of ``warm`` actors are fetched now, as for peers we already know,
    so that a later refusal must leave every table exactly as it was."""
    group = Iri(await node.create_association("collectif", "Collectif"))
    cast = {
        "alice": remote_account(peers, "peer.example", "alice", "rsa-alice.pem"),
        "bob": remote_account(peers, "peer.example", "bob", "rsa-bob.pem"),
        "mallory": remote_account(peers, "evil.example", "mallory", "rsa-mallory.pem"),
    }
    accept_deliveries(*cast.values())
    # The fake peers verify what the node signs: its Application actor (fetches), its groups (deliveries).
    peers.trust(await instance_key_pair(node.fed.node))
    async with node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == group))
    assert row is not None
    peers.trust(await actor_key_pair(node.fed.node, row))
    await asyncio.gather(*(node.fed.keys.resolve(cast[name].key_id) for name in warm))
    await settle(node)
    peers.hits.clear()
    return World(node, peers, InboxSender(node), cast["alice"], cast["bob"], cast["mallory"], group)


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        yield await given_world(node, peers)


# ---------------------------------------------------------------------------------------------
# Payloads (shaped like Mastodon's)
# ---------------------------------------------------------------------------------------------


def note(
    author: RemoteAccount, *, to: list[str], content: str = "<p>Réunion jeudi</p>", **extra: Any
) -> JsonObject:
    doc: JsonObject = {
        "id": author.new_id("notes"),
        "type": "Note",
        "attributedTo": author.iri,
        "content": content,
        "to": to,
        "published": "2025-03-01T12:00:00Z",
    }
    doc.update(extra)
    return doc


def activity(kind: str, actor: RemoteAccount, obj: Any, **extra: Any) -> JsonObject:
    doc: JsonObject = {
        "@context": AS_CONTEXT,
        "id": actor.new_id(),
        "type": kind,
        "actor": actor.iri,
        "object": obj,
    }
    doc.update(extra)
    return doc


def create(author: RemoteAccount, obj: JsonObject) -> JsonObject:
    return activity("Create", author, obj, to=obj.get("to", []))


async def object_row(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def inbox_rows(node: Node, iri: str) -> int:
    return int(
        await node.scalar(select(func.count()).select_from(InboxActivity).where(InboxActivity.iri == iri))
    )


async def follow_state(node: Node, follower: str, followed: str) -> str | None:
    async with node.sessions() as session:
        ids = dict(
            (r[0], r[1])
            for r in await session.execute(
                select(Actor.iri, Actor.id).where(Actor.iri.in_((follower, followed)))
            )
        )
        if len(ids) < 2:
            return None
        return await session.scalar(
            select(Follow.state).where(
                Follow.follower_id == ids[follower], Follow.followed_id == ids[followed]
            )
        )


def assert_refused(reply: Reply, status: int, code: str | None = None) -> None:
    """A problem+json answer with ``status`` (and the stable ``code`` when given)."""
    assert reply.status == status, reply
    assert reply.is_problem, reply
    if code is not None:
        assert reply.code == code, reply


async def assert_stored_and_processed_once(world: World, activity_iri: str) -> None:
    assert await processed(world.node, activity_iri) == "processed"
    assert await inbox_rows(world.node, activity_iri) == 1
    assert await process_jobs(world.node, activity_iri) == [("done", 1)]


# ---------------------------------------------------------------------------------------------
# Accepted activities: stored once, processed once
# ---------------------------------------------------------------------------------------------


async def test_follow_of_a_local_group_is_stored_processed_once_and_answered_with_a_delivered_accept(
    world: World,
) -> None:
    """A valid signed Follow of a local group is accepted and answered with an Accept delivered once."""
    # Given alice on peer.example, whose key we know
    before = await world.counts()
    # When she POSTs a signed Follow of the group to its inbox
    follow = activity("Follow", world.alice, world.group)
    reply = await world.send(GROUP_INBOX, follow, world.alice)
    # Then it is answered 202, stored once and processed once
    assert reply.status == 202
    await assert_stored_and_processed_once(world, follow["id"])
    assert await follow_state(world.node, world.alice.iri, world.group) == "accepted"
    # and the Accept went back to peer.example once, signed by the group's key
    deliveries = posts_to(world.peers, "peer.example")
    assert len(deliveries) == 1
    assert deliveries[0].key_id == f"{world.group}#main-key"
    diff = changed(before, await world.counts())
    assert diff["inbox_activities"] == 1 and diff["follows"] == 1 and diff["activities"] == 1


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_create_note_addressed_to_a_group_is_stored_once_and_filed_in_its_inbox(
    world: World, spec: str
) -> None:
    """A signed Create{Note} addressed to a local group stores the note once (both signature specs)."""
    # Given a note by alice addressed to the group
    obj = note(world.alice, to=[world.group])
    create_ = create(world.alice, obj)
    before = await world.counts()
    # When it is delivered to the group's inbox, signed with `spec`
    reply = await world.send(GROUP_INBOX, create_, world.alice, spec=spec)
    # Then 202, one inbox row, one job run once, one object with the sanitised content
    assert reply.status == 202 and reply.body is None
    await assert_stored_and_processed_once(world, create_["id"])
    stored = await object_row(world.node, obj["id"])
    assert stored is not None and stored.deleted_at is None
    assert "Réunion jeudi" in stored.document["content"]
    diff = changed(before, await world.counts())
    assert diff == {"inbox_activities": 1, "inbox_items": 1, "jobs": 1, "objects": 1}


async def test_sec_05_ten_duplicate_deliveries_are_accepted_but_processed_once(world: World) -> None:
    """The same signed Create delivered 10 times at once: 202 each, one row, one job, one object."""
    obj = note(world.alice, to=[world.group])
    create_ = create(world.alice, obj)
    signed = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    before = await world.counts()
    # When the identical request arrives 10 times, concurrently
    replies = await asyncio.wait_for(
        asyncio.gather(*(world.sender.post(signed) for _ in range(10))), timeout=60
    )
    # Then every delivery is acknowledged and the activity is processed exactly once
    assert [r.status for r in replies] == [202] * 10
    await assert_stored_and_processed_once(world, create_["id"])
    # and once more after processing, still nothing new
    assert (await world.sender.post(signed)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {
        "inbox_activities": 1,
        "inbox_items": 1,
        "jobs": 1,
        "objects": 1,
    }


async def test_sec_05_replayed_create_after_its_delete_does_not_resurrect_the_note(world: World) -> None:
    """After alice deletes her note, replaying her Create (same bytes, or a fresh id) leaves a tombstone."""
    # Given alice's note, stored, then deleted by her
    obj = note(world.alice, to=[world.group])
    create_ = create(world.alice, obj)
    original = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    assert (await world.sender.post(original)).status == 202
    await assert_stored_and_processed_once(world, create_["id"])
    delete = activity("Delete", world.alice, obj["id"])
    assert (await world.send(GROUP_INBOX, delete, world.alice)).status == 202
    await assert_stored_and_processed_once(world, delete["id"])
    tomb = await object_row(world.node, obj["id"])
    assert tomb is not None and tomb.deleted_at is not None
    before = await world.counts()
    # When the original signed request is replayed within the window
    assert (await world.sender.post(original)).status == 202
    await settle(world.node)
    # Then it is a duplicate: nothing stored, nothing queued
    assert changed(before, await world.counts()) == {}
    # When a Create with a fresh id carries the deleted note again
    again = create(world.alice, obj)
    assert (await world.send(GROUP_INBOX, again, world.alice)).status == 202
    await assert_stored_and_processed_once(world, again["id"])
    # Then the note stays a tombstone
    row = await object_row(world.node, obj["id"])
    assert row is not None and row.deleted_at is not None and row.document["type"] == "Tombstone"
    assert "content" not in row.document


# ---------------------------------------------------------------------------------------------
# A. Authentication (401, 400)
# ---------------------------------------------------------------------------------------------


async def test_unsigned_post_is_refused_with_401(world: World) -> None:
    """An unsigned Create is refused before anything is looked up or stored."""
    before = await world.counts()
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    response = await world.node.client.post(
        GROUP_INBOX, data=body, headers={"Content-Type": "application/activity+json"}
    )
    reply = await read_reply(response)
    assert_refused(reply, 401, "signature_missing")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


@pytest.mark.parametrize("signer", ["mallory", "bob"])
async def test_sec_01_activity_signed_by_another_actors_key_is_refused(world: World, signer: str) -> None:
    """Alice's Create signed with mallory's key (other host) or bob's (same host): 401, nothing stored."""
    # Given a Create whose actor is alice
    forged = create(
        world.alice, note(world.alice, to=[world.group], content="Alerte : rupture du médicament X")
    )
    key = world.mallory.key if signer == "mallory" else world.bob.key
    before = await world.counts()
    # When it is validly signed by someone else
    reply = await world.sender.send(GROUP_INBOX, forged, key)
    # Then it is refused with a stable code, before any handler
    assert_refused(reply, 401, "key_owner_mismatch")
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert await inbox_rows(world.node, forged["id"]) == 0


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_sec_02_tampered_body_with_the_original_digest_is_refused(world: World, spec: str) -> None:
    """A genuine signed request with its body swapped for a Delete: 401 digest_mismatch, no key lookup."""
    genuine = world.sender.sign_activity(
        GROUP_INBOX, create(world.alice, note(world.alice, to=[world.group])), world.alice.key, spec=spec
    )
    tampered = genuine.with_body(encode(activity("Delete", world.alice, world.alice.iri_on_host("/notes/1"))))
    before = await world.counts()
    reply = await world.sender.post(tampered)
    assert_refused(reply, 401, "digest_mismatch")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_03_signature_over_host_and_date_only_is_refused(world: World) -> None:
    """headers="host date" with a fresh matching Digest: 401, the signature does not cover enough."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    weak = world.sender.sign_cavage_raw(GROUP_INBOX, body, world.alice.key, covered=("host", "date"))
    before = await world.counts()
    reply = await world.sender.post(weak)
    assert_refused(reply, 401, "signature_coverage")
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
@pytest.mark.parametrize("offset", [timedelta(hours=-2), timedelta(hours=3)], ids=["2h_old", "3h_future"])
async def test_sec_04_signature_outside_the_time_window_is_refused(
    world: World, spec: str, offset: timedelta
) -> None:
    """A request signed 2 h ago or 3 h ahead (signer's clock) is refused 401 signature_expired."""
    create_ = create(world.alice, note(world.alice, to=[world.group]))
    stale = world.sender.sign_activity(
        GROUP_INBOX, create_, world.alice.key, spec=spec, now=utc_now() + offset
    )
    before = await world.counts()
    reply = await world.sender.post(stale)
    assert_refused(reply, 401, "signature_expired")
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize(
    ("spec", "header", "value"),
    [
        ("rfc9421", "Content-Digest", "sha-256=:AAAA:"),
        ("rfc9421", "Content-Digest", "sha-256=not a byte sequence"),
        ("rfc9421", "Content-Digest", "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:"),
        ("cavage", "Digest", "SHA-256=***"),
        ("cavage", "Digest", "MD5=1B2M2Y8AsgTpgAmY7PhCfg=="),
    ],
)
async def test_malformed_digest_header_is_400(world: World, spec: str, header: str, value: str) -> None:
    """A digest header that cannot be parsed (or is not SHA-256) is a 400 malformed_header."""
    signed = world.sender.sign_activity(
        GROUP_INBOX, create(world.alice, note(world.alice, to=[world.group])), world.alice.key, spec=spec
    )
    before = await world.counts()
    reply = await world.sender.post(signed.with_headers(**{header.replace("-", "_"): value}))
    assert_refused(reply, 400, "malformed_header")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_09_hmac_algorithm_with_the_public_key_as_secret_is_refused(world: World) -> None:
    """algorithm="hmac-sha256" keyed with alice's public PEM: 401 without fetching anything."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    forged = world.sender.sign_cavage_raw(
        GROUP_INBOX,
        body,
        world.alice.key,
        covered=("(request-target)", "host", "date", "digest"),
        algorithm="hmac-sha256",
        hmac_secret=world.alice.key.public.to_pem().encode(),
    )
    before = await world.counts()
    reply = await world.sender.post(forged)
    assert_refused(reply, 401)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_09_acct_key_id_is_refused_without_a_lookup(world: World) -> None:
    """keyId="acct:alice@peer.example" is refused 401 and nothing is fetched."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    forged = world.sender.sign_cavage_raw(
        GROUP_INBOX,
        body,
        world.alice.key,
        covered=("(request-target)", "host", "date", "digest"),
        key_id=f"acct:alice@{world.alice.host}",
    )
    before = await world.counts()
    reply = await world.sender.post(forged)
    assert_refused(reply, 401, "key_unavailable")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_09_a_1024_bit_rsa_key_is_refused(world: World) -> None:
    """An actor whose published key is RSA-1024 cannot sign anything: 401, the actor is not stored."""
    old = remote_account(world.peers, "peer.example", "old", "rsa-weak-1024.pem")
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, create(old, note(old, to=[world.group])), old)
    assert_refused(reply, 401, "key_unavailable")
    assert changed(before, await world.counts()) == {}
    assert len(gets_to(world.peers, "peer.example")) == 1  # one look at the key, then refused


@pytest.mark.parametrize("replayed_to", [OTHER_GROUP_INBOX, SHARED, f"{SHARED}?x=1"])
async def test_sec_10_signature_for_one_inbox_replayed_to_another_is_refused(
    world: World, replayed_to: str
) -> None:
    """A POST signed for /groups/collectif/inbox does not verify on another target."""
    other_group = await world.node.create_association("voisins", "Voisins")
    create_ = create(world.alice, note(world.alice, to=[world.group, other_group]))
    genuine = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    before = await world.counts()
    reply = await world.sender.post(genuine.with_target(replayed_to))
    assert_refused(reply, 401, "signature_invalid")
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize(
    "signature",
    [
        "garbage",
        'keyId="x",signature="%%%"',
        'keyId="https://peer.example/users/alice#main-key",keyId="https://evil.example/k",signature="AA=="',
        'keyId="\\"unterminated,signature="AA=="',
        'keyId="' + "a" * 5_000 + '",signature="AA=="',
    ],
)
async def test_unparsable_signature_header_is_400_never_5xx(world: World, signature: str) -> None:
    """Garbage in the Signature header is a 400 malformed_header, never a server error."""
    signed = world.sender.sign_activity(
        GROUP_INBOX, create(world.alice, note(world.alice, to=[world.group])), world.alice.key
    )
    before = await world.counts()
    reply = await world.sender.post(signed.with_headers(Signature=signature))
    assert reply.status in (400, 401), reply
    assert reply.is_problem
    assert changed(before, await world.counts()) == {}


# ---------------------------------------------------------------------------------------------
# E. Bodies (400, 413, 415)
# ---------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("shape", ["included", "reverse", "graph", "context_swaps_actor_and_object"])
async def test_sec_20_21_restructured_or_redefined_json_ld_is_400(world: World, shape: str) -> None:
    """@included/@reverse/@graph, or a context swapping actor and object: 400 before any lookup."""
    undo = {
        "id": world.alice.new_id(),
        "type": "Undo",
        "actor": world.alice.iri,
        "object": world.alice.new_id(),
    }
    base = activity("Announce", world.alice, world.alice.iri_on_host("/notes/1"))
    doc: JsonObject
    if shape == "included":
        doc = base | {"@included": [undo]}
    elif shape == "reverse":
        doc = base | {"@reverse": {"https://www.w3.org/ns/activitystreams#object": undo}}
    elif shape == "graph":
        doc = {"@context": AS_CONTEXT, "@graph": [base, undo]}
    else:
        swap = {"actor": {"@id": "as:object", "@type": "@id"}, "object": {"@id": "as:actor", "@type": "@id"}}
        doc = activity("Follow", world.alice, world.mallory.iri) | {"@context": [AS_CONTEXT, swap]}
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, doc, world.alice)
    assert reply.status == 400 and reply.is_problem, reply
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


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded", ""]
)
async def test_wrong_content_type_is_415(world: World, content_type: str) -> None:
    """A signed activity sent as something other than AS2 JSON is refused 415."""
    create_ = create(world.alice, note(world.alice, to=[world.group]))
    signed = world.sender.sign_activity(
        GROUP_INBOX, create_, world.alice.key, content_type=content_type or "text/plain"
    )
    if not content_type:
        signed = signed.with_headers(Content_Type=None)
    before = await world.counts()
    reply = await world.sender.post(signed)
    assert_refused(reply, 415, "unsupported_media_type")
    assert changed(before, await world.counts()) == {}


# ---------------------------------------------------------------------------------------------
# B. Origin and authorship: 202, then dropped
# ---------------------------------------------------------------------------------------------


async def test_sec_14_activity_id_on_another_host_is_acknowledged_and_dropped(world: World) -> None:
    """Alice signs a Create whose id is on third.example: 202, nothing stored or queued."""
    obj = note(world.alice, to=[world.group])
    foreign = create(world.alice, obj) | {"id": world.peers.iri("third.example", "/a/9")}
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, foreign, world.alice)
    assert reply.status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert await object_row(world.node, obj["id"]) is None


async def test_sec_14_embedded_object_on_another_host_is_not_taken_from_the_payload(world: World) -> None:
    """Alice's Create embeds an Article with an id on third.example: refetched there, dropped on 404."""
    claimed = world.peers.iri("third.example", "/resources/42")
    obj = note(world.alice, to=[world.group]) | {"id": claimed, "type": "Article"}
    create_ = create(world.alice, obj)
    reply = await world.send(GROUP_INBOX, create_, world.alice)
    assert reply.status == 202
    assert await processed(world.node, create_["id"]) == "processed"
    assert await object_row(world.node, claimed) is None
    assert world.peers.count(claimed) == 1  # asked the origin, which does not have it


@pytest.mark.parametrize("sender", ["alice", "mallory"])
async def test_sec_17_embedded_object_claiming_a_local_id_creates_nothing(world: World, sender: str) -> None:
    """A Create whose object has one of our ids and claims our group as author creates no object."""
    who = world.alice if sender == "alice" else world.mallory
    local_id = world.node.uris.object("new-1")
    obj = {
        "id": local_id,
        "type": "Note",
        "attributedTo": world.group,
        "content": "<p>Communiqué officiel</p>",
        "to": [AS_PUBLIC],
    }
    create_ = create(who, obj)
    before = await world.counts()
    reply = await world.send(SHARED, create_, who)
    assert reply.status == 202
    await processed(world.node, create_["id"])
    assert await object_row(world.node, local_id) is None
    assert "objects" not in changed(before, await world.counts())
    assert world.peers.hits == []  # and nothing fetched, not even from ourselves


async def test_sec_15_reusing_an_existing_object_id_does_not_take_it_over(world: World) -> None:
    """Bob (same host) re-sends alice's note id with a wider audience: the stored note stays alice's."""
    original = note(world.alice, to=[world.group], content="<p>Pour le groupe</p>")
    first = create(world.alice, original)
    assert (await world.send(GROUP_INBOX, first, world.alice)).status == 202
    assert await processed(world.node, first["id"]) == "processed"
    stored = await object_row(world.node, original["id"])
    assert stored is not None
    hijack = original | {"attributedTo": world.bob.iri, "content": "<p>Modifié</p>", "to": [AS_PUBLIC]}
    second = create(world.bob, hijack)
    assert (await world.send(GROUP_INBOX, second, world.bob)).status == 202
    assert await processed(world.node, second["id"]) == "processed"
    after = await object_row(world.node, original["id"])
    assert after is not None
    assert (after.attributed_to_id, after.visibility, after.document) == (
        stored.attributed_to_id,
        stored.visibility,
        stored.document,
    )


async def test_sec_16_announce_of_a_forged_embedded_object_is_refetched_and_dropped_on_404(
    world: World,
) -> None:
    """Mallory announces an embedded "alice" note: the origin is asked, answers 404, nothing is stored."""
    # Given the collectif follows mallory (so her boosts are relevant)
    await _follows(world.node, world.group, world.mallory.iri)
    forged_id = world.alice.iri_on_host("/users/alice/statuses/5")
    forged = {
        "id": forged_id,
        "type": "Note",
        "attributedTo": world.alice.iri,
        "content": "ALERTE : lot X rappelé",
        "to": [AS_PUBLIC],
    }
    announce = activity("Announce", world.mallory, forged, to=[AS_PUBLIC])
    before = await world.counts()
    # When she announces it with the forged body embedded
    reply = await world.send(SHARED, announce, world.mallory)
    # Then the object is fetched from peer.example (signed as our Application actor)
    assert reply.status == 202
    assert await processed(world.node, announce["id"]) == "processed"
    fetches = [h for h in gets_to(world.peers, "peer.example") if h.target.endswith("/statuses/5")]
    assert len(fetches) == 1 and fetches[0].key_id == world.node.uris.main_key(
        world.node.uris.application_actor()
    )
    # and, the origin having no such note, nothing is stored under alice's name
    assert await object_row(world.node, forged_id) is None
    assert changed(before, await world.counts()) == {"inbox_activities": 1, "jobs": 1}


async def test_sec_16_announce_stores_the_origins_copy_not_the_embedded_one(world: World) -> None:
    """When the origin has the note, its own content is stored, never the announcer's version."""
    await _follows(world.node, world.group, world.mallory.iri)
    genuine = note(world.alice, to=[AS_PUBLIC], content="<p>Distribution samedi</p>")
    world.peers.serve_json(genuine["id"], {"@context": AS_CONTEXT, **genuine})
    forged = genuine | {"content": "ALERTE : lot X rappelé"}
    announce = activity("Announce", world.mallory, forged, to=[AS_PUBLIC])
    assert (await world.send(SHARED, announce, world.mallory)).status == 202
    assert await processed(world.node, announce["id"]) == "processed"
    stored = await object_row(world.node, genuine["id"])
    assert stored is not None
    assert "Distribution samedi" in stored.document["content"]
    assert "ALERTE" not in json.dumps(stored.document)


async def test_sec_18_delete_and_update_by_someone_else_than_the_author_are_dropped(world: World) -> None:
    """Mallory's Delete and bob's Update of alice's note are accepted 202 and change nothing."""
    # Given alice's note, stored
    obj = note(world.alice, to=[world.group], content="<p>Original</p>")
    create_ = create(world.alice, obj)
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    await assert_stored_and_processed_once(world, create_["id"])
    original = await object_row(world.node, obj["id"])
    assert original is not None
    # When mallory deletes it, and bob (same host) updates it, claiming alice's authorship or his own
    attempts = [
        (activity("Delete", world.mallory, obj["id"]), world.mallory),
        (activity("Delete", world.bob, obj["id"]), world.bob),
        (activity("Update", world.bob, obj | {"content": "<p>modifié</p>"}), world.bob),
        (
            activity("Update", world.bob, obj | {"content": "<p>modifié</p>", "attributedTo": world.bob.iri}),
            world.bob,
        ),
    ]
    for forged, who in attempts:
        assert (await world.send(GROUP_INBOX, forged, who)).status == 202
        assert await processed(world.node, forged["id"]) == "processed"
    # Then the note is unchanged
    row = await object_row(world.node, obj["id"])
    assert row is not None and row.deleted_at is None
    assert row.document == original.document and row.updated == original.updated
    # (control) alice's own Delete does remove it
    delete = activity("Delete", world.alice, obj["id"])
    assert (await world.send(GROUP_INBOX, delete, world.alice)).status == 202
    await processed(world.node, delete["id"])
    gone = await object_row(world.node, obj["id"])
    assert gone is not None and gone.deleted_at is not None


async def test_sec_18d_accept_by_someone_other_than_the_follows_target_leaves_it_pending(
    world: World,
) -> None:
    """Our group follows alice; Accepts from mallory and from bob leave the follow pending."""
    # Given the collectif asked to follow alice (the Follow was delivered to peer.example)
    requested = await following.follow(world.node.fed, local_name="collectif", target_iri=world.alice.iri)
    await settle(world.node)
    assert len(posts_to(world.peers, "peer.example")) == 1
    our_follow = {
        "id": requested.follow_iri,
        "type": "Follow",
        "actor": world.group,
        "object": world.alice.iri,
    }
    # When mallory, then bob, "accept" it, or "reject" it
    for who in (world.mallory, world.bob):
        for kind in ("Accept", "Reject"):
            answer = activity(kind, who, our_follow)
            assert (await world.send(GROUP_INBOX, answer, who)).status == 202
            assert await processed(world.node, answer["id"]) == "processed"
            # Then it stays pending
            assert await follow_state(world.node, world.group, world.alice.iri) == "pending"
    # (control) alice's own Accept is honoured
    accept = activity("Accept", world.alice, our_follow)
    assert (await world.send(GROUP_INBOX, accept, world.alice)).status == 202
    await processed(world.node, accept["id"])
    assert await follow_state(world.node, world.group, world.alice.iri) == "accepted"


async def test_sec_18c_undo_of_someone_elses_follow_has_no_effect(world: World) -> None:
    """Alice follows the group; Undo{her Follow} from mallory or bob leaves her following."""
    follow = activity("Follow", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202
    await assert_stored_and_processed_once(world, follow["id"])
    assert await follow_state(world.node, world.alice.iri, world.group) == "accepted"
    for who in (world.mallory, world.bob):
        undo = activity("Undo", who, {k: follow[k] for k in ("id", "type", "actor", "object")})
        assert (await world.send(GROUP_INBOX, undo, who)).status == 202
        assert await processed(world.node, undo["id"]) == "processed"
        assert await follow_state(world.node, world.alice.iri, world.group) == "accepted"
    # (control) alice's own Undo ends it
    undo = activity("Undo", world.alice, {k: follow[k] for k in ("id", "type", "actor", "object")})
    assert (await world.send(GROUP_INBOX, undo, world.alice)).status == 202
    await processed(world.node, undo["id"])
    assert await follow_state(world.node, world.alice.iri, world.group) is None


async def test_sec_18e_delete_of_another_actor_is_dropped(world: World) -> None:
    """Alice's Delete{bob} (same host) neither deletes bob nor leaves any row behind."""
    # Given bob follows the group
    follow = activity("Follow", world.bob, world.group)
    assert (await world.send(SHARED, follow, world.bob)).status == 202
    await assert_stored_and_processed_once(world, follow["id"])
    before = await world.counts()
    # When alice deletes bob
    delete = activity("Delete", world.alice, world.bob.iri, to=[AS_PUBLIC])
    assert (await world.send(SHARED, delete, world.alice)).status == 202
    assert await processed(world.node, delete["id"]) == "processed"
    # Then bob is untouched and still follows; only the received activity was recorded
    bob = await world.node.scalar(select(Actor).where(Actor.iri == world.bob.iri))
    assert bob is not None and bob.deleted_at is None
    assert await follow_state(world.node, world.bob.iri, world.group) == "accepted"
    assert changed(before, await world.counts()) == {"inbox_activities": 1, "jobs": 1}


async def test_sec_08_update_carrying_another_key_never_replaces_alices_key(world: World) -> None:
    """Update{Person alice, publicKey: mallory's} from bob, then from alice herself: alice's key stays."""
    alice_pem = world.alice.key.public.to_pem()
    takeover = {
        "id": world.alice.iri,
        "type": "Person",
        "preferredUsername": "alice",
        "inbox": f"{world.alice.iri}/inbox",
        "publicKey": {
            "id": world.alice.key_id,
            "owner": world.alice.iri,
            "publicKeyPem": world.mallory.key.public.to_pem(),
        },
    }
    for who in (world.bob, world.alice):
        update = activity("Update", who, takeover, to=[AS_PUBLIC])
        assert (await world.send(SHARED, update, who)).status == 202
        assert await processed(world.node, update["id"]) == "processed"
        async with world.node.sessions() as session:
            pems = (
                await session.execute(
                    select(ActorKey.public_pem).where(ActorKey.key_iri == world.alice.key_id)
                )
            ).scalars()
            assert list(pems) == [alice_pem]
    # and mallory's private key still cannot speak under alice's keyId
    impostor = world.alice.signing_as(fixed_key("rsa-mallory.pem", world.alice.key_id, world.alice.iri))
    before = await world.counts()
    reply = await world.send(SHARED, create(world.alice, note(world.alice, to=[world.group])), impostor)
    assert_refused(reply, 401, "signature_invalid")
    assert changed(before, await world.counts()) == {}


async def test_sec_17_activity_claiming_a_local_actor_is_dropped_without_a_lookup(world: World) -> None:
    """A Create whose actor is our own group, signed by mallory, is acknowledged and stores nothing."""
    forged = activity("Create", world.mallory, note(world.mallory, to=[AS_PUBLIC])) | {"actor": world.group}
    before = await world.counts()
    assert (await world.send(SHARED, forged, world.mallory)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_07_key_id_caught_in_a_redirect_loop_costs_a_bounded_number_of_fetches(
    world: World,
) -> None:
    """keyIds that redirect in a loop or along a long chain: 401, a few GETs, then none on retry."""
    loop_a, loop_b = world.mallory.iri_on_host("/k/a"), world.mallory.iri_on_host("/k/b")
    world.peers.redirect(loop_a, loop_b)
    world.peers.redirect(loop_b, loop_a)
    for i in range(50):
        world.peers.redirect(
            world.mallory.iri_on_host(f"/chain/{i}"), world.mallory.iri_on_host(f"/chain/{i + 1}")
        )
    before = await world.counts()
    for key_id in (loop_a, world.mallory.iri_on_host("/chain/0")):
        key = fixed_key("rsa-mallory.pem", key_id, world.mallory.iri)
        for _ in range(3):
            reply = await world.sender.send(
                SHARED, create(world.mallory, note(world.mallory, to=[world.group])), key
            )
            assert_refused(reply, 401, "key_unavailable")
    assert (
        len(gets_to(world.peers, "evil.example")) <= 2 + 4
    )  # loop detected at hop 2; chain capped at 3 redirects
    assert changed(before, await world.counts()) == {}


async def _follows(node: Node, follower: str, followed: str) -> None:
    """Record an accepted follow directly (scene setting, not under test)."""
    async with node.sessions.begin() as session:
        ids = dict(
            (r[0], r[1])
            for r in await session.execute(
                select(Actor.iri, Actor.id).where(Actor.iri.in_((follower, followed)))
            )
        )
        session.add(
            Follow(
                follower_id=ids[follower],
                followed_id=ids[followed],
                follow_iri=f"{follower}#follows/{ids[followed]}",
                state="accepted",
                created_at=utc_now(),
                accepted_at=utc_now(),
            )
        )


# ---------------------------------------------------------------------------------------------
# Peer policy (403, case 47)
# ---------------------------------------------------------------------------------------------


async def test_sec_47_blocked_domain_is_refused_403_without_fetching_its_key(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """With evil.example blocked, mallory's activity, or alice's signed with an evil keyId: 403, unfetched."""
    async with start_node(federation={"blocked_domains": ["evil.example"]}) as node:
        world = await given_world(node, peers, warm=("alice",))
        before = await world.counts()
        # Mallory as actor and signer
        reply = await world.send(
            SHARED, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
        )
        assert_refused(reply, 403, "peer_not_allowed")
        # Alice as actor, a keyId on the blocked domain
        reply = await world.sender.send(
            SHARED, create(world.alice, note(world.alice, to=[world.group])), world.mallory.key
        )
        assert_refused(reply, 403, "peer_not_allowed")
        assert peers.hits_on("evil.example") == []
        assert changed(before, await world.counts()) == {}


async def test_sec_47_allowlist_refuses_unlisted_actor_hosts_and_objects(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """In a closed network of peer.example: mallory is 403 unfetched; alice boosting evil.example is 403."""
    async with start_node(federation={"network": "allowlist", "allowed_domains": ["peer.example"]}) as node:
        world = await given_world(node, peers, warm=("alice",))
        before = await world.counts()
        reply = await world.send(
            SHARED, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
        )
        assert_refused(reply, 403, "peer_not_allowed")
        assert peers.hits_on("evil.example") == []
        boost = activity("Announce", world.alice, world.mallory.iri_on_host("/notes/1"), to=[AS_PUBLIC])
        reply = await world.send(SHARED, boost, world.alice)
        assert_refused(reply, 403, "peer_not_allowed")
        await settle(node)
        assert changed(before, await world.counts()) == {}
        assert peers.hits_on("evil.example") == []
        # (control) alice herself is welcome
        follow = activity("Follow", world.alice, world.group)
        assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202


# ---------------------------------------------------------------------------------------------
# Key fetching under stress (cases 6, 7, 31)
# ---------------------------------------------------------------------------------------------


async def test_sec_06_self_delete_of_an_unknown_actor_whose_key_is_gone_is_202_and_stores_nothing(
    world: World,
) -> None:
    """A deleted actor's self-Delete (its key answers 410), delivered 3 times: 202 each, one fetch at most."""
    gone = remote_account(world.peers, "peer.example", "gone", "rsa-bob.pem", serve=False)
    world.peers.status(gone.iri, 410)
    before = await world.counts()
    for _ in range(3):
        delete = activity("Delete", gone, gone.iri, to=[AS_PUBLIC])
        assert (await world.send(SHARED, delete, gone)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert world.peers.count(gone.iri) <= 1


async def test_sec_07_flood_of_random_key_ids_is_cut_off_by_the_per_host_budget(world: World) -> None:
    """50 signed POSTs with random keyIds on evil.example: all 401, fetches bounded by the host budget."""
    before = await world.counts()
    started = time.monotonic()
    replies: list[Reply] = []
    for i in range(50):
        key = fixed_key(
            "rsa-mallory.pem", world.mallory.iri_on_host(f"/k/{i}-{time.time_ns()}"), world.mallory.iri
        )
        replies.append(
            await world.sender.send(SHARED, create(world.mallory, note(world.mallory, to=[world.group])), key)
        )
    elapsed = time.monotonic() - started
    assert all(r.status == 401 and r.is_problem for r in replies), {r.status for r in replies}
    budget = FetchBudget()
    allowance = budget.capacity + int(elapsed * budget.refill_per_minute / 60) + 1
    fetches = len(gets_to(world.peers, "evil.example"))
    assert fetches <= allowance, (fetches, allowance)
    assert replies[-1].code == "key_fetch_budget"  # refused without asking anyone
    assert elapsed < 30
    assert changed(before, await world.counts()) == {}


async def test_key_fetch_timeout_is_503_and_stores_nothing(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """A key host that does not answer within the transport timeout: 503 (retry later), nothing stored."""
    async with (
        peer_transport(timeouts=Timeouts(total_s=1.0, connect_s=1.0, sock_read_s=1.0)) as short,
        start_node(outbound=short) as node,
    ):
        world = await given_world(node, peers, warm=())
        slow = remote_account(peers, "peer.example", "slow", "rsa-bob.pem", serve=False)
        peers.stall(slow.iri, 5.0)
        before = await world.counts()
        started = time.monotonic()
        reply = await world.send(SHARED, create(slow, note(slow, to=[world.group])), slow)
        assert_refused(reply, 503, "key_fetch_temporary")
        assert time.monotonic() - started < 4.5
        # and a retry moments later is answered from the failure cache, without a second wait
        reply = await world.send(SHARED, create(slow, note(slow, to=[world.group])), slow)
        assert_refused(reply, 503, "key_fetch_temporary")
        assert peers.count(slow.iri) == 1
        await settle(node)
        assert changed(before, await world.counts()) == {}


# ---------------------------------------------------------------------------------------------
# Routing and the C2S read of an inbox
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/groups/personne/inbox", "/users/personne/inbox"])
async def test_inbox_of_an_unknown_local_actor_is_404(world: World, target: str) -> None:
    """A signed POST to the inbox of an actor we do not have is a 404 problem, nothing stored."""
    before = await world.counts()
    reply = await world.send(
        target, activity("Follow", world.alice, world.node.uris.iri(target[: -len("/inbox")])), world.alice
    )
    assert_refused(reply, 404)
    assert changed(before, await world.counts()) == {}


async def test_group_inbox_is_readable_by_its_admin_only(world: World) -> None:
    """GET of the group's inbox: anonymous 404, plain member 404, admin 200 with the stored activity."""
    await world.node.add_member("ada", "collectif", role="admin")
    await world.node.add_member("max", "collectif")
    create_ = create(world.alice, note(world.alice, to=[world.group]))
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    await assert_stored_and_processed_once(world, create_["id"])
    client = world.node.client
    anonymous = await read_reply(await client.get(GROUP_INBOX))
    assert_refused(anonymous, 404)
    member = await read_reply(
        await client.get(GROUP_INBOX, headers={"Authorization": f"Bearer {await world.node.token('max')}"})
    )
    assert_refused(member, 404)
    admin_headers = {"Authorization": f"Bearer {await world.node.token('ada')}"}
    root = await read_reply(await client.get(GROUP_INBOX, headers=admin_headers))
    assert root.status == 200
    assert root.body["type"] == "OrderedCollection" and root.body["totalItems"] == 1
    page = await read_reply(await client.get(f"{GROUP_INBOX}?page=true", headers=admin_headers))
    assert page.status == 200
    assert [item["id"] for item in page.body["orderedItems"]] == [create_["id"]]


# ---------------------------------------------------------------------------------------------
# Case 34: rate limits keyed on the verified signing host
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Case 30: hostile collections met while syncing a followed actor's outbox
# ---------------------------------------------------------------------------------------------


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
    outbox = f"{world.alice.iri}/outbox"
    world.peers.serve_json(
        outbox,
        {"@context": AS_CONTEXT, "id": outbox, "type": "OrderedCollection", "first": f"{outbox}?page=1"},
    )
    for n in range(1, 40):
        world.peers.serve_json(f"{outbox}?page={n}", _page(world, n, [], f"{outbox}?page={n + 1}"))
    remote = await world.node.fed.actor(world.alice.iri)
    await following.sync_outbox(world.node.fed, remote.id, max_pages=5)
    fetched = [n for n in range(1, 40) if world.peers.count(f"{outbox}?page={n}")]
    assert fetched == [1, 2, 3, 4, 5]
