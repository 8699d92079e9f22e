"""C2S outbox addressing (ActivityPub §6): bto/bcc, merged recipients, audience lists, partial Update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Activity, Actor, Delivery, Job, RemoteObject
from server.services.delivery import fanout as delivery
from tests.support.fake_peers import actor_document
from tests.support.nodes import Node, running_node, wait_until
from tests.support.signed_inbox import StallingPeers, gets_to, posts_to
from tests.support.world import NodeStarter, given_world

AP = {"Accept": "application/activity+json"}


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: the fan-out is run by the test, so nothing leaves 127.0.0.1."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _remote(node: Node, name: str) -> str:
    iri = f"https://peer.example/users/{name}"
    now = utc_now()
    async with node.sessions.begin() as session:
        session.add(
            Actor(
                iri=iri,
                local=False,
                type="Person",
                handle=name,
                host="peer.example",
                inbox_iri=f"{iri}/inbox",
                created_at=now,
                updated_at=now,
            )
        )
    return iri


async def _alice(node: Node) -> str:
    await node.create_association("demo")
    await node.add_member("alice", "demo")
    return await node.token("alice")


async def _stored(node: Node, object_iri: str) -> tuple[RemoteObject, Activity]:
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
    activity = await node.scalar(select(Activity).where(Activity.object_iri == object_iri))
    return row, activity


async def test_bto_and_bcc_are_delivered_but_never_stored_served_or_public(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    bob, carol = await _remote(node, "bob"), await _remote(node, "carol")
    created = await node.post_outbox(
        "/users/alice",
        token,
        {"type": "Create", "bcc": [bob], "object": {"type": "Note", "content": "secret", "bto": carol}},
    )
    row, activity = await _stored(node, created["object"])
    assert row.visibility == "direct"  # not public: the only recipients were blind
    for document in (row.document, activity.document):
        text = orjson.dumps(document).decode()
        # As JSON keys: a random hex id may well contain "bcc".
        assert '"bto"' not in text and '"bcc"' not in text and bob not in text and carol not in text
        assert AS_PUBLIC not in text
    path = urlsplit(created["object"]).path
    assert (await node.client.get(path, headers=AP)).status == 404
    job = await node.scalar(select(Job).where(Job.kind == delivery.FANOUT))
    assert job.payload["also"] == [carol, bob]
    await delivery.fanout(node.fed.node, activity.id, also=job.payload["also"])
    async with node.sessions() as session:
        inboxes = set(await session.scalars(select(Delivery.inbox_iri)))
    assert inboxes == {f"{bob}/inbox", f"{carol}/inbox"}


async def test_create_unites_the_recipients_of_the_activity_and_its_object(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    dave, erin = await _remote(node, "dave"), await _remote(node, "erin")
    created = await node.post_outbox(
        "/users/alice",
        token,
        {
            "type": "Create",
            "to": [AS_PUBLIC],
            "cc": [dave],
            "object": {"type": "Note", "content": "hello", "to": [erin], "cc": [dave]},
        },
    )
    row, activity = await _stored(node, created["object"])
    assert row.visibility == "public"
    assert row.document["to"] == [erin, AS_PUBLIC]
    assert row.document["cc"] == [dave]
    assert activity.document["to"] == row.document["to"]


async def test_audience_as_a_list_keeps_the_association_and_addresses_the_rest(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    dave = await _remote(node, "dave")
    group = node.uris.group("demo")
    created = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "into demo", "audience": [group, dave]}
    )
    row, _ = await _stored(node, created["object"])
    assert row.document["audience"] == group
    assert row.audience_id is not None
    assert dave in row.document["cc"] and group in row.document["cc"]
    # A value that names no association here is ordinary addressing, not a 400.
    other = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "to dave", "to": [dave], "audience": [dave]}
    )
    row, _ = await _stored(node, other["object"])
    assert row.visibility == "direct" and "audience" not in row.document


async def _update(node: Node, token: str, obj: dict[str, Any]) -> Any:
    return await node.client.post(
        "/users/alice/outbox",
        json={"type": "Update", "object": obj},
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_partial_update_with_null_removes_the_property(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    created = await node.post_outbox(
        "/users/alice",
        token,
        {"type": "Article", "name": "Titre", "summary": "Résumé", "content": "<p>Texte</p>"},
    )
    iri = created["object"]
    response = await _update(node, token, {"id": iri, "name": None, "summary": None})
    assert response.status == 201, await response.text()
    row, _ = await _stored(node, iri)
    assert "name" not in row.document and "summary" not in row.document
    assert row.document["content"] == "<p>Texte</p>"
    refused = await _update(node, token, {"id": iri, "content": None})
    assert refused.status == 400
    assert (await refused.json())["field"] == "content"


async def test_unknown_remote_addressees_are_fetched_then_delivered_and_the_unresolvable_shown(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """Addressees the node has never seen are fetched (signed) and delivered to; one that cannot
    be resolved is a failed delivery in ``entraide deliveries status``, not a silent drop."""
    async with start_node() as node:
        world = await given_world(node, peers, warm=())
        await node.add_member("zoe", "collectif")
        ghost = peers.iri("peer.example", "/users/ghost")
        peers.status(ghost, 404)
        body = {"type": "Note", "content": "hi", "to": [world.alice.iri, ghost], "bcc": [world.bob.iri]}
        await node.post_outbox("/users/zoe", await node.token("zoe"), body)

        async def delivered() -> bool:
            targets = {h.target for h in posts_to(peers, "peer.example")}
            return {"/users/alice/inbox", "/users/bob/inbox"} <= targets

        await wait_until(delivered, what="the deliveries to the fetched addressees")
        fetched = {h.target for h in gets_to(peers, "peer.example") if h.key_id is not None}
        assert {"/users/alice", "/users/bob", "/users/ghost"} <= fetched  # signed fetches
        async with node.sessions() as session:
            status = await delivery.delivery_status(session)
        assert next(e for e in status if e["type"] == "Create").get("failed") == 1
        failed = await node.scalar(select(Delivery).where(Delivery.inbox_iri == ghost))
        assert (failed.state, failed.last_error) == ("failed", "recipient_unresolvable")


async def test_a_reply_to_a_remote_post_not_held_here_reaches_its_author_and_thread_audience(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    async with start_node() as node:
        world = await given_world(node, peers, warm=())
        await node.add_member("zoe", "collectif")
        group = peers.iri("peer.example", "/groups/quartier")
        peers.serve_json(group, actor_document(group, username="quartier", actor_type="Group"))
        peers.serve_json(f"{group}/inbox", {}, status=202)
        parent = peers.iri("peer.example", "/notes/1")
        context = peers.iri("peer.example", "/contexts/1")
        peers.serve_json(
            parent,
            {
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": parent,
                "type": "Note",
                "attributedTo": world.alice.iri,
                "audience": group,
                "context": context,
                "to": [AS_PUBLIC],
                "content": "<p>Qui peut aider ?</p>",
            },
        )
        body = {"type": "Note", "content": "<p>Moi</p>", "inReplyTo": parent, "to": [AS_PUBLIC]}
        created = await node.post_outbox("/users/zoe", await node.token("zoe"), body)
        row, _ = await _stored(node, created["object"])
        assert world.alice.iri in row.document["cc"] and group in row.document["cc"]
        assert {"type": "Mention", "href": world.alice.iri} in row.document["tag"]
        assert row.context_iri == context
        assert any(h.target == "/notes/1" and h.key_id is not None for h in gets_to(peers, "peer.example"))

        async def delivered() -> bool:  # public: both through the peer's shared inbox
            return "/inbox" in {h.target for h in posts_to(peers, "peer.example")}

        await wait_until(delivered, what="the reply's delivery to the parent's author and audience")


async def _get(node: Node, path: str, token: str | None = None) -> Any:
    headers = dict(AP)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await node.client.get(path, headers=headers)


async def _inbox(node: Node, actor_path: str, token: str) -> list[dict[str, Any]]:
    response = await _get(node, f"{actor_path}/inbox?page=true", token)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json(content_type=None))["orderedItems"]
    return items


def _objects_in(items: list[dict[str, Any]]) -> set[str]:
    return {
        (item["object"]["id"] if isinstance(item.get("object"), dict) else item.get("object"))
        for item in items
    }


async def test_no_addressing_reaches_no_one_and_is_readable_by_its_author_only(quiet_node: Node) -> None:
    """Issue 15 item 2 (decision 37): a C2S post that addresses nobody is not public."""
    node = quiet_node
    token = await _alice(node)
    await node.add_member("bob", "demo")
    bob_token = await node.token("bob")
    follower = await _remote(node, "fran")
    async with node.sessions.begin() as session:
        from server.db.models import Follow

        alice = await session.scalar(select(Actor).where(Actor.iri == node.uris.person("alice")))
        fran = await session.scalar(select(Actor).where(Actor.iri == follower))
        session.add(
            Follow(
                follow_iri="https://peer.example/follows/1",
                follower_id=fran.id,
                followed_id=alice.id,
                state="accepted",
                created_at=utc_now(),
            )
        )
    response = await node.client.post(
        "/users/alice/outbox",
        json={"type": "Note", "content": "note to self"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201
    answer = await response.json(content_type=None)
    assert (answer["visibility"], answer["to"], answer["cc"]) == ("direct", [], [])
    row, activity = await _stored(node, answer["object"])
    assert row.visibility == activity.visibility == "direct"
    assert row.document["to"] == [] and row.document["cc"] == []
    path = urlsplit(answer["object"]).path
    assert (await _get(node, path)).status == 404
    assert (await _get(node, path, bob_token)).status == 404
    assert (await _get(node, path, token)).status == 200
    outbox = await _get(node, "/users/alice/outbox?page=true")
    assert answer["object"] not in orjson.dumps(await outbox.json(content_type=None)).decode()
    await delivery.fanout(node.fed.node, activity.id)
    assert await node.scalar(select(Delivery.id)) is None  # not even to the follower
    # A Create that addresses nobody, around an object that addresses nobody: the same.
    created = await node.post_outbox(
        "/users/alice", token, {"type": "Create", "object": {"type": "Note", "content": "again"}}
    )
    assert created["visibility"] == "direct"
    # A reply that addresses nobody does not reach, nor show to, the parent's author.
    public = await node.post_outbox(
        "/users/bob", bob_token, {"type": "Note", "content": "public", "to": [AS_PUBLIC]}
    )
    reply = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "aside", "inReplyTo": public["object"]}
    )
    row, _ = await _stored(node, reply["object"])
    assert row.visibility == "direct" and node.uris.person("bob") not in orjson.dumps(row.document).decode()
    assert (await _get(node, urlsplit(reply["object"]).path, bob_token)).status == 404
    assert reply["object"] not in _objects_in(await _inbox(node, "/users/bob", bob_token))


async def test_local_addressees_get_the_post_in_their_inbox_and_read_it(quiet_node: Node) -> None:
    """Issue 15 item 4: to, cc, bto, bcc and audience naming local actors file the post in their
    C2S inbox and let them (only them) read it."""
    node = quiet_node
    token = await _alice(node)
    for name in ("bob", "carol", "dave", "erin"):
        await node.add_member(name, "demo")
    await node.create_association("voisins")
    await node.add_member("vera", "voisins", role="admin")
    tokens = {name: await node.token(name) for name in ("bob", "carol", "dave", "erin", "vera")}
    user = node.uris.person
    voisins = node.uris.group("voisins")
    created = await node.post_outbox(
        "/users/alice",
        token,
        {
            "type": "Create",
            "to": [user("bob")],
            "bcc": [user("carol")],
            "object": {"type": "Note", "content": "pour vous", "bto": user("dave"), "cc": [voisins]},
        },
    )
    assert created["visibility"] == "direct"
    iri, path = created["object"], urlsplit(created["object"]).path
    row, _ = await _stored(node, iri)
    assert user("carol") not in orjson.dumps(row.document).decode()
    for name in ("bob", "carol", "dave"):
        items = await _inbox(node, f"/users/{name}", tokens[name])
        assert iri in _objects_in(items), name
        assert (await _get(node, path, tokens[name])).status == 200, name
        served = await _get(node, urlsplit(created["id"]).path, tokens[name])
        assert served.status == 200, name
        text = await served.text()
        assert user("carol") not in text and user("dave") not in text  # blind stays blind
    assert iri in _objects_in(await _inbox(node, "/groups/voisins", tokens["vera"]))
    # Not addressed: erin (a member of demo, like alice) gets nothing and reads nothing.
    assert iri not in _objects_in(await _inbox(node, "/users/erin", tokens["erin"]))
    assert (await _get(node, path, tokens["erin"])).status == 404
    assert (await _get(node, urlsplit(created["id"]).path, tokens["erin"])).status == 404
    assert (await _get(node, path)).status == 404
    # The API's object view uses the same read filter.
    for name, status in (("carol", 200), ("erin", 404)):
        api = await node.client.get(
            "/api/objects", params={"iri": iri}, headers={"Authorization": f"Bearer {tokens[name]}"}
        )
        assert api.status == status, name


async def test_members_only_posts_reach_the_members_they_address_and_leak_to_no_one(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    await node.add_member("bob", "demo")
    await node.add_member("ada", "demo", role="admin")
    await node.add_member("mia", "demo")
    await node.create_association("autre")
    await node.add_member("zed", "autre")
    tokens = {name: await node.token(name) for name in ("bob", "zed", "ada", "mia")}
    demo = node.uris.group("demo")
    members = f"{demo}/members"
    created = await node.post_outbox(
        "/users/alice",
        token,
        {
            "type": "Note",
            "content": "entre nous",
            "to": [members],
            "cc": [node.uris.person("bob")],
            "audience": demo,
        },
    )
    assert created["visibility"] == "members"
    iri, path = created["object"], urlsplit(created["object"]).path
    assert iri in _objects_in(await _inbox(node, "/users/bob", tokens["bob"]))
    assert (await _get(node, path, tokens["bob"])).status == 200
    # The association named as audience gets it (its admins read its inbox); a member not named
    # reads it as a member, but it is not filed in her inbox.
    assert iri in _objects_in(await _inbox(node, "/groups/demo", tokens["ada"]))
    assert (await _get(node, path, tokens["mia"])).status == 200
    assert iri not in _objects_in(await _inbox(node, "/users/mia", tokens["mia"]))
    assert iri not in _objects_in(await _inbox(node, "/users/zed", tokens["zed"]))
    assert (await _get(node, path, tokens["zed"])).status == 404
    assert (await _get(node, path)).status == 404


async def _served(node: Node, iri: str) -> dict[str, Any]:
    response = await node.client.get(urlsplit(iri).path, headers=AP)
    assert response.status == 200, await response.text()
    document: dict[str, Any] = await response.json(content_type=None)
    return document


async def test_an_update_may_send_the_whole_object_back_and_only_real_changes_count(quiet_node: Node) -> None:
    """ActivityPub §6.3.1: each key given replaces the current value, so repeating a property
    unchanged (type, url, attributedTo, published, addressing in another order) is no change; a
    real change of a property fixed at publication is a 400 naming it."""
    node = quiet_node
    token = await _alice(node)
    created = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "<p>Avant</p>", "to": [AS_PUBLIC], "cc": []}
    )
    iri = created["object"]
    document = await _served(node, iri)
    edited = {**document, "content": "<p>Après</p>", "sensitive": True, "to": document["to"][0]}
    response = await _update(node, token, edited)
    assert response.status == 201, await response.text()
    row, _ = await _stored(node, iri)
    assert row.document["content"] == "<p>Après</p>" and row.document["sensitive"] is True
    for field, value in (("type", "Article"), ("url", f"{iri}/ailleurs"), ("to", [])):
        refused = await _update(node, token, {**row.document, field: value})
        assert refused.status == 400, await refused.text()
        problem = await refused.json()
        assert problem["field"] == field and "cannot be changed" in problem["detail"]
    assert (await _stored(node, iri))[0].document == row.document


async def test_an_alert_sent_back_whole_keeps_its_rendered_content_once(quiet_node: Node) -> None:
    """An alert's content is rendered from its headline, body and terms: sent back unchanged,
    it is not taken for a new body (which would repeat the headline and the terms)."""
    node = quiet_node
    await node.create_association("demo")
    await node.add_member("alice", "demo", role="admin")
    token = await node.token("alice")
    alert = {
        "type": "Note",
        "entraideKind": "Alert",
        "name": "Coupure d'eau",
        "content": "<p>Rue des Lilas.</p>",
        "severity": "warning",
        "category": "shortage",
        "to": [AS_PUBLIC],
    }
    created = await node.post_outbox("/groups/demo", token, alert)
    iri = created["object"]
    document = await _served(node, iri)
    response = await node.client.post(
        "/groups/demo/outbox",
        json={"type": "Update", "object": {**document, "severity": "critical"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()
    row, _ = await _stored(node, iri)
    assert row.document["severity"] == "critical"
    assert row.document["content"].count("Rue des Lilas.") == 1
    assert row.document["content"].count("Coupure d") == 1
