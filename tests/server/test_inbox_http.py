"""The inbox over HTTP, on a real node, on SQLite and PostgreSQL (security.md §0, cases 1-18, 27, 28, 47).

Remote actors are fake peers on 127.0.0.1 (``peer.example``: alice and bob; ``evil.example``:
mallory) that serve actor documents with the fixed keys of tests/fixtures/keys; the node fetches
and checks those keys itself. Requests are really signed (draft-cavage or RFC 9421). The
database is the oracle: after every refusal the row count of every table is unchanged (so no
inbox row, no job, no object, no follow), and an accepted activity is stored once and
processed once.
"""

from __future__ import annotations

import time

import pytest

from federation.transport import Timeouts
from tests.support.fake_peers import peer_transport
from tests.support.signed_inbox import (
    StallingPeers,
    changed,
    encode,
    posts_to,
    read_reply,
    remote_account,
    settle,
)
from tests.support.world import (
    GROUP_INBOX,
    SHARED,
    NodeStarter,
    World,
    activity,
    assert_refused,
    assert_stored_and_processed_once,
    create,
    follow_state,
    given_world,
    note,
    object_row,
)

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


# ---------------------------------------------------------------------------------------------
# Peer policy (403, case 47)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Key fetching under stress (cases 6, 7, 31)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Case 30: hostile collections met while syncing a followed actor's outbox
# ---------------------------------------------------------------------------------------------
