"""Origin, authorship and spoofing (security.md §B, cases 11-19).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`): the database is the oracle.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from sqlalchemy import select

from federation.fetch import LocalIriRefused
from federation.types import Iri, JsonObject, utc_now
from server.db.models import Actor, ActorKey, Follow, RemoteObject
from server.services.membership import following
from tests.support.fake_peers import actor_document
from tests.support.nodes import Node
from tests.support.signed_inbox import (
    AS_CONTEXT,
    AS_PUBLIC,
    changed,
    fixed_key,
    gets_to,
    posts_to,
    processed,
    settle,
)
from tests.support.world import (
    GROUP_INBOX,
    SHARED,
    HandlerSpy,
    World,
    activity,
    assert_refused,
    assert_stored_and_processed_once,
    create,
    follow_state,
    note,
    object_row,
)


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


async def test_sec_17_activity_claiming_a_local_actor_is_dropped_without_a_lookup(world: World) -> None:
    """A Create whose actor is our own group, signed by mallory, is acknowledged and stores nothing."""
    forged = activity("Create", world.mallory, note(world.mallory, to=[AS_PUBLIC])) | {"actor": world.group}
    before = await world.counts()
    assert (await world.send(SHARED, forged, world.mallory)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


# ---------------------------------------------------------------------------------------------
# Case 11: a fetched document's id must be the URL it came from
# ---------------------------------------------------------------------------------------------


async def _actor_keys(node: Node, iri: str) -> list[tuple[str, str]]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(ActorKey.key_iri, ActorKey.public_pem).join(Actor).where(Actor.iri == iri)
        )
        return sorted((r[0], r[1]) for r in rows)


async def _actor_row(node: Node, iri: str) -> Actor | None:
    async with node.sessions() as session:
        return await session.scalar(select(Actor).where(Actor.iri == iri))


def _bare_activity(kind: str, actor: str, obj: object, *, to: list[str]) -> JsonObject:
    """An activity by ``actor`` (any IRI, not only the cast's) with a fresh id on its host."""
    return {
        "@context": AS_CONTEXT,
        "id": f"{actor}/activities/{secrets.token_hex(6)}",
        "type": kind,
        "actor": actor,
        "object": obj,
        "to": to,
    }


@pytest.mark.parametrize(
    ("served", "victim"),
    [("actor", "alice"), ("key", "carol")],
)
async def test_sec_11_key_fetched_from_evil_claiming_a_peer_id_is_refused(
    world: World, served: str, victim: str
) -> None:
    """A keyId on evil.example serving an actor or key "of" alice/carol@peer: 401, nothing stored."""
    # Given evil.example serves, at the keyId, a document whose id is on peer.example
    victim_iri = world.peers.iri("peer.example", f"/users/{victim}")
    path = f"/x/{secrets.token_hex(4)}"
    evil_url = world.peers.iri("evil.example", path)
    key_id = f"{evil_url}#main-key" if served == "actor" else evil_url
    forged_key = fixed_key("rsa-mallory.pem", key_id, victim_iri)
    if served == "actor":
        claimed_key = forged_key.public
        world.peers.serve_json(evil_url, actor_document(victim_iri, username=victim, keys=(claimed_key,)))
    else:
        world.peers.serve_json(
            evil_url,
            {
                "@context": ["https://w3id.org/security/v1"],
                "id": f"{victim_iri}#main-key",
                "owner": victim_iri,
                "publicKeyPem": forged_key.public.to_pem(),
            },
        )
    alice_keys = await _actor_keys(world.node, world.alice.iri)
    forged = create(world.alice, note(world.alice, to=[world.group])) | {"actor": victim_iri}
    forged["id"] = world.peers.iri("peer.example", f"/users/{victim}/activities/{secrets.token_hex(4)}")
    before = await world.counts()
    # When a Create "by" the victim is signed with that key
    reply = await world.sender.send(GROUP_INBOX, forged, forged_key)
    # Then it is refused: the key document does not speak for its own URL
    assert_refused(reply, 401)
    await settle(world.node)
    assert world.peers.count(evil_url) == 1
    assert changed(before, await world.counts()) == {}
    assert await _actor_keys(world.node, world.alice.iri) == alice_keys
    if victim == "carol":
        assert await _actor_row(world.node, victim_iri) is None


async def _announce_or_create_ref(world: World, path: str, ref: str) -> JsonObject:
    """Make the node fetch ``ref``: mallory (followed by the group: see :func:`_fetching_via`)
    announces it, or alice creates it by reference, addressed to the group."""
    if path == "announce":
        act = activity("Announce", world.mallory, ref, to=[AS_PUBLIC])
        who = world.mallory
    else:
        act = activity("Create", world.alice, ref, to=[world.group])
        who = world.alice
    assert (await world.send(SHARED, act, who)).status == 202
    assert await processed(world.node, act["id"]) == "processed"
    return act


async def _fetching_via(world: World, path: str) -> None:
    if path == "announce":
        await _follows(world.node, world.group, world.mallory.iri)


async def _objects_mentioning(node: Node, text: str) -> list[str]:
    async with node.sessions() as session:
        rows = (await session.execute(select(RemoteObject.iri, RemoteObject.document))).all()
    return [r[0] for r in rows if text in json.dumps(r[1], ensure_ascii=False)]


@pytest.mark.parametrize("path", ["announce", "create_ref"])
async def test_sec_11_object_fetched_from_evil_claiming_a_peer_id_is_not_stored(
    world: World, path: str
) -> None:
    """A note at evil.example whose id is alice's on peer.example: discarded; the origin's copy counts."""
    # Given evil.example serves a "note by alice" whose id is on peer.example
    claimed = world.alice.iri_on_host(f"/users/alice/statuses/{secrets.token_hex(4)}")
    evil_url = world.peers.iri("evil.example", f"/notes/{secrets.token_hex(4)}")
    forged = note(world.alice, to=[world.group, AS_PUBLIC], content="<p>ALERTE : lot X rappelé</p>")
    world.peers.serve_json(evil_url, {"@context": AS_CONTEXT, **forged, "id": claimed})
    # and peer.example has the genuine note at that id
    genuine = forged | {"id": claimed, "content": "<p>Distribution samedi</p>"}
    world.peers.serve_json(claimed, {"@context": AS_CONTEXT, **genuine})
    # When the node is made to fetch the evil URL
    await _fetching_via(world, path)
    await _announce_or_create_ref(world, path, evil_url)
    # Then it was fetched, and nothing forged is stored, under either IRI
    assert world.peers.count(evil_url) == 1
    assert await _objects_mentioning(world.node, "ALERTE") == []
    assert await object_row(world.node, evil_url) is None
    row = await object_row(world.node, claimed)
    # (a refetch from the claimed id is allowed: then the origin's copy is what is stored)
    assert row is None or "Distribution samedi" in row.document["content"]


async def test_sec_11_in_reply_to_is_never_dereferenced_from_the_payload(world: World) -> None:
    """A reply whose inReplyTo is forged on evil.example: the parent is neither fetched nor stored."""
    claimed = world.alice.iri_on_host("/users/alice/statuses/parent")
    evil_url = world.peers.iri("evil.example", "/notes/parent")
    world.peers.serve_json(
        evil_url,
        {"@context": AS_CONTEXT, **note(world.alice, to=[AS_PUBLIC], content="ALERTE"), "id": claimed},
        content_type="application/json",
    )
    reply_note = note(world.alice, to=[world.group], inReplyTo=evil_url)
    create_ = create(world.alice, reply_note)
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    assert await processed(world.node, create_["id"]) == "processed"
    assert world.peers.count(evil_url) == 0
    assert await object_row(world.node, claimed) is None
    assert await object_row(world.node, evil_url) is None


# ---------------------------------------------------------------------------------------------
# Case 12: type confusion (JSON that is not served as ActivityStreams)
# ---------------------------------------------------------------------------------------------

NOT_AS2 = [
    "application/json",
    "application/octet-stream",
    None,
    "text/html; charset=utf-8",
    "application/ld+json",  # without the ActivityStreams profile
]


@pytest.mark.parametrize("path", ["announce", "create_ref", "key"])
async def test_sec_12_json_not_served_as_activitystreams_is_refused(world: World, path: str) -> None:
    """Uploaded JSON on peer.example (application/json, octet-stream, none, text/html): never stored."""
    # Given peer.example hosts the catalogue's tract.json under several content types,
    # and (control) once as application/activity+json
    urls: dict[str | None, Iri] = {}
    for content_type in [*NOT_AS2, "application/activity+json"]:
        url = world.peers.iri("peer.example", f"/media/{secrets.token_hex(4)}.json")
        urls[content_type] = url
        if path == "key":
            key = fixed_key("rsa-mallory.pem", f"{url}#main-key", url)
            doc = actor_document(url, username="tract", keys=(key.public,))
        else:
            doc = {
                "@context": AS_CONTEXT,
                **note(world.alice, to=[world.group, AS_PUBLIC], content="Alice soutient…"),
                "id": url,
            }
        world.peers.serve_json(url, doc, content_type=content_type)
    await _fetching_via(world, path)
    before = await world.counts()
    for content_type, url in urls.items():
        # When the node is made to fetch it
        if path == "key":
            signer = fixed_key("rsa-mallory.pem", f"{url}#main-key", url)
            act = _bare_activity(
                "Create", url, note(world.alice, to=[AS_PUBLIC]) | {"attributedTo": url}, to=[]
            )
            act["object"]["id"] = f"{url}/notes/1"
            reply = await world.sender.send(SHARED, act, signer)
            accepted = content_type == "application/activity+json"
            assert reply.status == (202 if accepted else 401), (content_type, reply)
            await settle(world.node)
            stored = await _actor_row(world.node, url) is not None
        else:
            await _announce_or_create_ref(world, path, url)
            stored = await object_row(world.node, url) is not None
        assert world.peers.count(url) == 1, content_type
        # Then only the genuine ActivityStreams answer is stored
        assert stored == (content_type == "application/activity+json"), content_type
    if path != "key":
        assert changed(before, await world.counts()).get("objects") == 1


async def test_sec_12_uploaded_json_is_never_served_or_fetched_as_activitystreams(world: World) -> None:
    """Our side: JSON uploads are refused, text is served nosniff, our media URLs are never fetched."""
    await world.node.add_member("mallory-local", "collectif")
    token = await world.node.token("mallory-local")
    headers = {"Authorization": f"Bearer {token}"}
    tract = json.dumps(
        {
            "@context": AS_CONTEXT,
            "id": world.node.uris.media("ab12.json"),
            "type": "Note",
            "attributedTo": world.group,
            "content": "Le collectif soutient…",
        }
    ).encode()
    # Given the catalogue's tract.json uploaded as JSON, or disguised as text
    for filename, content_type in [("tract.json", "application/json"), ("tract.txt", "text/plain")]:
        form = aiohttp.FormData()
        form.add_field("file", tract, filename=filename, content_type=content_type)
        before = await world.counts()
        response = await world.node.client.post("/api/media", data=form, headers=headers)
        # Then it is refused (415) and nothing is kept
        assert response.status == 415, (filename, await response.text())
        assert changed(before, await world.counts()) == {}
    # Given a genuine text upload
    form = aiohttp.FormData()
    form.add_field("file", b"Permanence le mardi\n", filename="horaires.txt", content_type="text/plain")
    response = await world.node.client.post("/api/media", data=form, headers=headers)
    assert response.status == 201
    media_url = (await response.json())["url"]
    # When it is asked for as ActivityStreams, it is still served as a plain download
    served = await world.node.client.get(
        urlsplit(media_url).path, headers={"Accept": "application/activity+json"}
    )
    assert served.status == 200
    assert served.headers["Content-Type"].startswith("text/plain")
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"].startswith("attachment")
    # And when peers make us dereference it as an object, nothing is fetched or created
    with pytest.raises(LocalIriRefused):
        await world.node.fed.fetch(media_url)
    await _fetching_via(world, "announce")
    before = await world.counts()
    for path in ("announce", "create_ref"):
        await _announce_or_create_ref(world, path, media_url)
    assert await object_row(world.node, media_url) is None
    assert "objects" not in changed(before, await world.counts())


# ---------------------------------------------------------------------------------------------
# Case 13: redirects do not launder the origin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", ["peer_proxy_to_evil_claiming_peer", "peer_proxy_to_evil_own_id", "evil_to_peer"]
)
async def test_sec_13_redirect_does_not_launder_the_origin(world: World, shape: str) -> None:
    """A redirect between peer and evil: only a document whose id and author are on the final host counts."""
    token = secrets.token_hex(4)
    evil_url = world.peers.iri("evil.example", f"/forged/{token}")
    peer_note = world.alice.iri_on_host(f"/notes/{token}")
    body = note(world.alice, to=[world.group, AS_PUBLIC], content="<p>ALERTE : lot X rappelé</p>")
    if shape == "evil_to_peer":
        # evil.example redirects to alice's genuine note: the final host vouches for it
        requested = world.peers.iri("evil.example", f"/r/{token}")
        world.peers.redirect(requested, peer_note)
        world.peers.serve_json(
            peer_note,
            {"@context": AS_CONTEXT, **body, "id": peer_note, "content": "<p>Distribution samedi</p>"},
        )
    else:
        # peer.example's "proxy" redirects to evil.example, which claims an id on peer.example
        # (or its own id, with alice as the author)
        requested = world.peers.iri("peer.example", f"/proxy?url={quote(evil_url, safe='')}")
        world.peers.redirect(requested, evil_url)
        claimed = peer_note if shape == "peer_proxy_to_evil_claiming_peer" else evil_url
        world.peers.serve_json(evil_url, {"@context": AS_CONTEXT, **body, "id": claimed})
    # When mallory (followed by the group) announces the requested IRI
    await _fetching_via(world, "announce")
    await _announce_or_create_ref(world, "announce", requested)
    # Then the redirect was followed, and nothing from evil.example is stored under any name
    assert world.peers.count(requested) == 1
    assert await _objects_mentioning(world.node, "ALERTE") == []
    assert await object_row(world.node, requested) is None
    assert await object_row(world.node, evil_url) is None
    row = await object_row(world.node, peer_note)
    if shape == "evil_to_peer":
        # (control) the final document, at peer.example, by alice on peer.example, is kept as served there
        assert row is not None and "Distribution samedi" in row.document["content"]
    else:
        assert row is None


async def test_sec_13_key_redirected_to_another_host_is_refused(world: World) -> None:
    """carol@peer's keyId redirects to mallory's actor on evil.example: 401, nothing stored for carol."""
    carol = world.peers.iri("peer.example", "/users/carol")
    world.peers.redirect(carol, world.mallory.iri)
    signer = fixed_key("rsa-mallory.pem", f"{carol}#main-key", carol)
    forged = _bare_activity(
        "Create", carol, note(world.alice, to=[world.group]) | {"attributedTo": carol}, to=[world.group]
    )
    forged["object"]["id"] = f"{carol}/notes/1"
    before = await world.counts()
    reply = await world.sender.send(GROUP_INBOX, forged, signer)
    assert_refused(reply, 401)
    await settle(world.node)
    assert world.peers.count(carol) == 1
    assert changed(before, await world.counts()) == {}
    assert await _actor_row(world.node, carol) is None


# ---------------------------------------------------------------------------------------------
# Case 19: inbox forwarding is not trusted on the forwarder's word
# ---------------------------------------------------------------------------------------------

LD_SIGNATURE = {
    "type": "RsaSignature2017",
    "creator": "{alice}#main-key",
    "created": "2025-03-01T12:00:00Z",
    "signatureValue": "c2lnbmF0dXJl",
}
DATA_INTEGRITY_PROOF = {
    "type": "DataIntegrityProof",
    "cryptosuite": "eddsa-jcs-2022",
    "verificationMethod": "{alice}#ed25519-key",
    "proofPurpose": "assertionMethod",
    "created": "2025-03-01T12:00:00Z",
    "proofValue": "z3FXQjecWufY46yg5abdVZsXqLhxhueuSoZgNSARiKBk9czhSePTFehP8c3PGfb6a22gkfUKods5D2UAUL5n2Brbx",
}


@pytest.mark.parametrize("shape", ["create_reply", "delete"])
async def test_sec_19_activity_forwarded_by_another_actor_is_not_applied(
    world: World, shape: str, handler_spy: HandlerSpy
) -> None:
    """alice's Create/Delete relayed by bob or mallory, even with an LD signature or proof: 401, no effect."""
    # Given alice's note, stored
    stored = note(world.alice, to=[world.group], content="<p>Original</p>")
    first = create(world.alice, stored)
    assert (await world.send(GROUP_INBOX, first, world.alice)).status == 202
    await assert_stored_and_processed_once(world, first["id"])
    original = await object_row(world.node, stored["id"])
    assert original is not None
    handler_spy.calls.clear()
    world.peers.hits.clear()
    for forwarder in (world.bob, world.mallory):
        for attachment in (None, ("signature", LD_SIGNATURE), ("proof", DATA_INTEGRITY_PROOF)):
            # When the forwarder relays an activity "by alice", signed with its own key
            if shape == "delete":
                forwarded = activity("Delete", world.alice, stored["id"], to=[world.group])
            else:
                reply_note = note(
                    world.alice,
                    to=[world.group, AS_PUBLIC],
                    content="<p>Contrefaçon</p>",
                    inReplyTo=world.node.uris.object("12"),
                )
                forwarded = create(world.alice, reply_note)
            if attachment is not None:
                name, block = attachment
                forwarded[name] = {k: v.replace("{alice}", world.alice.iri) for k, v in block.items()}
            before = await world.counts()
            reply = await world.send(GROUP_INBOX, forwarded, forwarder)
            # Then it is refused, nothing is stored or queued, and nothing is fetched on its word
            assert_refused(reply, 401, "key_owner_mismatch")
            await settle(world.node)
            assert changed(before, await world.counts()) == {}, (forwarder.iri, attachment)
    assert handler_spy.calls == []
    assert gets_to(world.peers, "peer.example") == []
    row = await object_row(world.node, stored["id"])
    assert row is not None and row.deleted_at is None and row.document == original.document
    assert await _objects_mentioning(world.node, "Contrefaçon") == []
