"""C2S ``Like`` and ``Undo{Like}`` (issue 15 item 8): stored once, delivered to the object's
author (signed, to a peer; filed, to one of ours), counted with the Likes received from peers in
the object's ``likes`` (count public, likers for the author) and the API's object view, listed in
the actor's ``liked`` (for the actor), and undone by their own actor only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from server.db.models import Activity, Actor, Reaction
from server.services.actors.signing import actor_key_pair
from tests.support.nodes import Node, running_node, wait_until
from tests.support.signed_inbox import posts_to, processed, settle
from tests.support.world import World, activity, create, note

AP = {"Accept": "application/activity+json"}


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


def _auth(token: str | None) -> dict[str, str]:
    return {**AP, **({"Authorization": f"Bearer {token}"} if token else {})}


async def _get(node: Node, iri: str, token: str | None = None) -> tuple[int, Any]:
    parts = urlsplit(iri)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    response = await node.client.get(path, headers=_auth(token))
    body = await response.json(content_type=None) if response.status < 500 else None
    return response.status, body


async def _post(node: Node, actor_path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await node.client.post(
        f"{actor_path}/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json(content_type=None)


async def _likes(node: Node, iri: str) -> int:
    async with node.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Reaction)
                .where(Reaction.type == "Like", Reaction.object_iri == iri)
            )
            or 0
        )


async def _scene(node: Node) -> dict[str, str]:
    await node.create_association("demo")
    for name in ("alice", "bob", "carol"):
        await node.add_member(name, "demo")
    return {name: await node.token(name) for name in ("alice", "bob", "carol")}


async def test_a_like_is_stored_once_filed_for_the_author_and_counted(quiet_node: Node) -> None:
    node = quiet_node
    tokens = await _scene(node)
    posted = await node.post_outbox(
        "/users/alice", tokens["alice"], {"type": "Note", "content": "merci", "to": [AS_PUBLIC]}
    )
    note_iri = posted["object"]
    status, document = await _get(node, note_iri)
    assert status == 200 and document["likes"] == f"{note_iri}/likes"
    status, liked = await _post(node, "/users/bob", tokens["bob"], {"type": "Like", "object": note_iri})
    assert status == 201, liked
    assert liked["object"] == note_iri and liked["type"] == "Like"
    assert liked["to"] == [node.uris.person("alice")]
    # Twice is once: the same Like answered, nothing new stored or sent.
    status, again = await _post(
        node, "/users/bob", tokens["bob"], {"type": "Like", "object": {"id": note_iri}}
    )
    assert status == 201 and again["id"] == liked["id"]
    assert await _likes(node, note_iri) == 1
    assert await node.scalar(select(func.count()).select_from(Activity).where(Activity.type == "Like")) == 1
    # The author (local) finds it in her inbox.
    status, inbox = await _get(node, f"{node.uris.person('alice')}/inbox?page=true", tokens["alice"])
    assert status == 200
    assert [(i["type"], i["actor"], i["object"]["id"]) for i in inbox["orderedItems"]] == [
        ("Like", node.uris.person("bob"), note_iri)
    ]
    # likes: the count for anyone who reads the object, the likers for its author only.
    status, anonymous = await _get(node, f"{note_iri}/likes")
    assert status == 200 and anonymous["totalItems"] == 1 and "first" not in anonymous
    status, other = await _get(node, f"{note_iri}/likes", tokens["carol"])
    assert other["totalItems"] == 1 and "first" not in other
    status, own = await _get(node, f"{note_iri}/likes", tokens["alice"])
    assert own["totalItems"] == 1 and own["first"]["orderedItems"] == [node.uris.person("bob")]
    # liked: the count for anyone, the objects for the actor itself.
    status, actor = await _get(node, node.uris.person("bob"))
    assert actor["liked"] == f"{node.uris.person('bob')}/liked"
    status, anonymous = await _get(node, f"{actor['liked']}?page=true")
    assert status == 200 and anonymous["totalItems"] == 1 and "orderedItems" not in anonymous
    assert "first" not in anonymous
    status, page = await _get(node, f"{actor['liked']}?page=true", tokens["bob"])
    assert page["orderedItems"] == [note_iri]
    # The API's object view counts it.
    response = await node.client.get("/api/objects", params={"iri": note_iri})
    assert (await response.json())["likes"] == 1


async def test_undo_answers_what_it_undid_and_only_the_liker_may(quiet_node: Node) -> None:
    node = quiet_node
    tokens = await _scene(node)
    note_iri = (
        await node.post_outbox(
            "/users/alice", tokens["alice"], {"type": "Note", "content": "merci", "to": [AS_PUBLIC]}
        )
    )["object"]
    liked = await node.post_outbox("/users/bob", tokens["bob"], {"type": "Like", "object": note_iri})
    # Someone else's Like: refused, and still counted.
    status, refused = await _post(
        node, "/users/carol", tokens["carol"], {"type": "Undo", "object": liked["id"]}
    )
    assert status == 403, refused
    assert await _likes(node, note_iri) == 1
    status, undone = await _post(
        node, "/users/bob", tokens["bob"], {"type": "Undo", "object": {"id": liked["id"], "type": "Like"}}
    )
    assert status == 201, undone
    assert undone["type"] == "Undo" and undone["object"] == liked["id"]
    assert undone["undid"] == {
        "id": liked["id"],
        "type": "Like",
        "actor": node.uris.person("bob"),
        "object": note_iri,
    }
    assert undone["to"] == [node.uris.person("alice")]
    assert await _likes(node, note_iri) == 0
    status, page = await _get(node, f"{node.uris.person('bob')}/liked?page=true", tokens["bob"])
    assert page["orderedItems"] == []
    status, root = await _get(node, f"{node.uris.person('bob')}/liked")
    assert root["totalItems"] == 0
    # Undone, it is gone: undoing it again is a missing follow or like (404).
    status, _ = await _post(node, "/users/bob", tokens["bob"], {"type": "Undo", "object": liked["id"]})
    assert status == 404


async def test_liking_what_one_may_not_read_answers_like_a_missing_object(quiet_node: Node) -> None:
    node = quiet_node
    tokens = await _scene(node)
    private = (await node.post_outbox("/users/alice", tokens["alice"], {"type": "Note", "content": "à moi"}))[
        "object"
    ]
    missing = node.uris.object("0" * 32)
    answers = []
    for target in (private, missing):
        status, body = await _post(node, "/users/bob", tokens["bob"], {"type": "Like", "object": target})
        answers.append((status, body))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
    assert await _likes(node, private) == 0
    # The author may read her own: she may like it (her likes collection shows her).
    status, _ = await _post(node, "/users/alice", tokens["alice"], {"type": "Like", "object": private})
    assert status == 201
    status, _ = await _get(node, f"{private}/likes")
    assert status == 404  # the collection of an object one may not read: like a missing one


async def test_a_like_reaches_a_peer_signed_and_peers_likes_are_counted(world: World) -> None:
    node = world.node
    zoe = await node.add_member("zoe", "collectif")
    token = await node.token("zoe")
    async with node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == zoe))
    world.peers.trust(await actor_key_pair(node.fed.node, row))
    # A peer's public post addressed to zoe is held here; zoe likes it through C2S.
    theirs = note(world.alice, to=[AS_PUBLIC], cc=[zoe])
    sent = create(world.alice, theirs)
    assert (await world.send("/users/zoe/inbox", sent, world.alice)).status == 202
    assert await processed(node, sent["id"]) == "processed"
    liked = await node.post_outbox("/users/zoe", token, {"type": "Like", "object": theirs["id"]})
    assert liked["to"] == [world.alice.iri]
    await settle(node)

    async def delivered() -> bool:
        return any(
            h.target == "/users/alice/inbox" and h.key_id == f"{zoe}#main-key"
            for h in posts_to(world.peers, "peer.example")
        )

    await wait_until(delivered, what="the Like, signed by zoe")
    world.peers.hits.clear()
    await node.post_outbox("/users/zoe", token, {"type": "Undo", "object": liked["id"]})
    await settle(node)
    await wait_until(delivered, what="the Undo, signed by zoe")
    # Peers' Likes of our object are counted in the same collection and the API's object view.
    await node.add_member("adele", "collectif", role="admin")
    mine = await node.post_outbox(
        "/groups/collectif", await node.token("adele"), {"type": "Note", "content": "x", "to": [AS_PUBLIC]}
    )
    for who in (world.alice, world.bob, world.alice):  # alice twice: one Like
        like = activity("Like", who, mine["object"])
        assert (await world.send("/groups/collectif/inbox", like, who)).status == 202
        assert await processed(node, like["id"]) == "processed"
    status, collection = await _get(node, f"{mine['object']}/likes")
    assert status == 200 and collection["totalItems"] == 2
    status, own = await _get(node, f"{mine['object']}/likes", await node.token("adele"))
    assert status == 200 and set(own["first"]["orderedItems"]) == {world.alice.iri, world.bob.iri}
    response = await node.client.get("/api/objects", params={"iri": mine["object"]})
    assert (await response.json())["likes"] == 2
