"""A member's timeline shows what the associations they follow or joined relayed from other nodes
(issue 13): the relay is recorded (``Announce``, FEP-1b12 ``Announce{Create}`` too), the object is
shown at its relay time with who relayed it, once, as it is now, and only when the member may read
it. Both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, Iri, JsonObject
from server.db.models import Actor, Follow, Membership, Relay
from tests.support.fake_peers import actor_document
from tests.support.signed_inbox import (
    RemoteAccount,
    StallingPeers,
    accept_deliveries,
    fixed_key,
    processed,
)
from tests.support.world import SHARED, NodeStarter, World, activity, create, given_world, note

SECRET = "Réservé aux membres de la Ligue"


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("mia", "collectif")
        await node.add_member("nina", "collectif")
        yield world


def remote_group(peers: StallingPeers) -> RemoteAccount:
    """``ligue``, an association on another node (a Group with a members collection)."""
    iri = peers.iri("third.example", "/groups/ligue")
    key = fixed_key("rsa-mallory.pem", f"{iri}#main-key", iri)
    doc = actor_document(
        iri, username="ligue", keys=(key.public,), actor_type="Group", members=f"{iri}/members"
    )
    peers.serve_json(iri, doc)
    account = RemoteAccount(iri, key, peers)
    accept_deliveries(account)
    return account


async def _local_id(world: World, name: str) -> int:
    return int(
        await world.node.scalar(select(Actor.id).where(Actor.iri == world.node.uris.iri(f"/users/{name}")))
    )


async def _follows(world: World, name: str, target: str) -> None:
    """``name`` (local) follows ``target`` (remote), accepted."""
    remote = await world.node.fed.actor(Iri(target))
    now = datetime.now(UTC)
    async with world.node.sessions.begin() as session:
        session.add(
            Follow(
                follower_id=await _local_id(world, name),
                followed_id=remote.id,
                state="accepted",
                created_at=now,
                accepted_at=now,
            )
        )


async def _joins(world: World, name: str, group: str) -> None:
    """``name`` (local) is an active member of the remote association ``group``."""
    remote = await world.node.fed.actor(Iri(group))
    now = datetime.now(UTC)
    async with world.node.sessions.begin() as session:
        session.add(
            Membership(
                group_id=remote.id,
                member_id=await _local_id(world, name),
                role="member",
                state="active",
                created_at=now,
                updated_at=now,
            )
        )


def _serve(world: World, doc: JsonObject) -> str:
    world.peers.serve_json(doc["id"], {"@context": "https://www.w3.org/ns/activitystreams", **doc})
    return str(doc["id"])


async def _deliver(world: World, who: RemoteAccount, doc: JsonObject) -> None:
    assert (await world.send(SHARED, doc, who)).status == 202
    assert await processed(world.node, doc["id"]) == "processed"


async def _relay(world: World, group: RemoteAccount, obj: Any, *, to: list[str] | None = None) -> str:
    announce = activity("Announce", group, obj, to=to or [AS_PUBLIC], cc=[f"{group.iri}/followers"])
    await _deliver(world, group, announce)
    return str(announce["id"])


async def _timeline(world: World, name: str, query: str = "") -> dict[str, Any]:
    token = await world.node.token(name, scope="read")
    response = await world.node.client.get(
        f"/api/timeline{query}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def _ids(world: World, name: str, query: str = "") -> list[str]:
    return [item["id"] for item in (await _timeline(world, name, query))["items"]]


async def test_a_relay_from_another_node_shows_at_its_relay_time_once_and_current(world: World) -> None:
    ligue = remote_group(world.peers)
    # Given mia follows ligue (on another node) and bob, who wrote the first note
    await _follows(world, "mia", ligue.iri)
    await _follows(world, "mia", world.bob.iri)
    older = _serve(world, note(world.bob, to=[AS_PUBLIC], content="<p>Permanence</p>"))
    alert = note(world.alice, to=[AS_PUBLIC], content="<p>Pénurie</p>", published="2025-01-01T08:00:00Z")
    alert.update(entraideKind="Alert", name="Pénurie", severity="warning", category="shortage")
    newer_published = _serve(world, alert)
    # When ligue relays bob's note (published in March), then alice's alert (published in January):
    # once as a plain Announce, once FEP-1b12 style (Announce of alice's Create)
    first = await _relay(world, ligue, older)
    create_ = create(world.alice, {"id": newer_published, "type": "Note", "attributedTo": world.alice.iri})
    create_["to"] = [AS_PUBLIC, ligue.iri]
    world.peers.serve_json(create_["id"], {**create_, "object": alert})
    await _relay(world, ligue, create_)
    # Then both show, newest relay first, whatever their publication dates, each once (mia also
    # follows bob), with who relayed them
    page = await _timeline(world, "mia")
    assert [item["id"] for item in page["items"]] == [newer_published, older]
    assert {item["relayedBy"] for item in page["items"]} == {ligue.iri}
    assert all(item["relayedAt"] for item in page["items"])
    # and the relays are recorded with the relayed object, also for the Announce of a Create
    relays = await world.node.scalar(select(Relay.object_iri).where(Relay.announce_iri == first))
    assert relays == older
    # ?kind= filters, and the cursor walks the relays in the same order
    assert await _ids(world, "mia", "?kind=alert") == [newer_published]
    assert await _ids(world, "mia", "?kind=post") == [older]
    one = await _timeline(world, "mia", "?limit=1")
    rest = await _timeline(
        world, "mia", one["next"].removeprefix(world.node.uris.origin).removeprefix("/api/timeline")
    )
    assert [i["id"] for i in one["items"] + rest["items"]] == [newer_published, older] and rest[
        "next"
    ] is None
    # When ligue relays bob's note again (as an association does when an object changes): no bump
    await _relay(world, ligue, older)
    assert await _ids(world, "mia") == [newer_published, older]
    # When bob edits his note and alice deletes her alert
    edited = {
        "@context": "https://www.w3.org/ns/activitystreams",
        **note(world.bob, to=[AS_PUBLIC], content="<p>Permanence déplacée</p>"),
        "id": older,
        "updated": "2025-03-02T12:00:00Z",
    }
    world.peers.serve_json(older, edited)
    await _deliver(world, world.bob, activity("Update", world.bob, edited, to=[AS_PUBLIC]))
    await _deliver(world, world.alice, activity("Delete", world.alice, newer_published, to=[AS_PUBLIC]))
    # Then the timeline shows the latest revision and the deleted alert is gone
    items = (await _timeline(world, "mia"))["items"]
    assert [i["id"] for i in items] == [older]
    assert "déplacée" in items[0]["content"]


async def test_relays_reach_members_who_do_not_follow_and_never_leak(world: World) -> None:
    ligue = remote_group(world.peers)
    # Given nina joined ligue without following it; nobody here follows ligue or bob
    await _joins(world, "nina", ligue.iri)
    public = _serve(world, note(world.alice, to=[AS_PUBLIC], content="<p>Collecte samedi</p>"))
    # When ligue relays a public note: it is kept for nina, a member
    boost = await _relay(world, ligue, public)
    assert await _ids(world, "nina") == [public]
    # and when ligue takes it back (Undo), it leaves her timeline; relayed again, it comes back
    await _deliver(world, ligue, activity("Undo", ligue, boost))
    assert await _ids(world, "nina") == []
    await _relay(world, ligue, public)
    assert await _ids(world, "nina") == [public]
    # Given mia now follows ligue (not a member, and not following bob)
    await _follows(world, "mia", ligue.iri)
    members_only = _serve(
        world,
        {
            "id": ligue.new_id("notes"),
            "type": "Note",
            "attributedTo": ligue.iri,
            "content": f"<p>{SECRET}</p>",
            "to": [f"{ligue.iri}/members"],
            "published": "2025-03-05T12:00:00Z",
        },
    )
    followers_only = _serve(
        world, note(world.bob, to=[f"{world.bob.iri}/followers"], content=f"<p>{SECRET} (abonnés)</p>")
    )
    # When ligue relays its members-only note to its members, and bob's followers-only note
    await _relay(world, ligue, members_only, to=[f"{ligue.iri}/members"])
    await _relay(world, ligue, followers_only)
    # Then nina reads the members-only note; mia reads neither, on any page or kind
    assert await _ids(world, "nina") == [members_only, public]
    for query in ("", "?kind=post", "?limit=1"):
        page = await _timeline(world, "mia", query)
        assert SECRET not in str(page), query
    assert await _ids(world, "mia") == [public]


async def _inbox(world: World, name: str) -> list[dict[str, Any]]:
    token = await world.node.token(name, scope="read")
    response = await world.node.client.get(
        f"/users/{name}/inbox?page=true",
        headers={"Accept": "application/activity+json", "Authorization": f"Bearer {token}"},
    )
    assert response.status == 200, await response.text()
    return list((await response.json(content_type=None))["orderedItems"])


async def test_the_c2s_inbox_embeds_the_relayed_object_as_it_is_now(world: World) -> None:
    ligue = remote_group(world.peers)
    await _follows(world, "mia", ligue.iri)
    letter = note(world.bob, to=[AS_PUBLIC, ligue.iri], content="<p>Version 1</p>")
    letter_iri = _serve(world, letter)
    # When ligue relays bob's Create (FEP-1b12), then bob's note itself
    create_ = create(world.bob, letter)
    world.peers.serve_json(create_["id"], create_)
    wrapped = await _relay(world, ligue, create_)
    plain = await _relay(world, ligue, letter_iri)
    # Then each Announce in mia's inbox names the note itself, embedded as held (never the Create)
    items = {item["id"]: item for item in await _inbox(world, "mia")}
    for announce in (wrapped, plain):
        assert items[announce]["type"] == "Announce"
        assert items[announce]["object"]["id"] == letter_iri, items[announce]
        assert items[announce]["object"]["type"] == "Note"
        assert "Version 1" in items[announce]["object"]["content"]
    # When bob edits it: the Announces show the latest revision; when he deletes it: a Tombstone
    edited = {**letter, "content": "<p>Version 2</p>", "updated": "2025-03-02T12:00:00Z"}
    world.peers.serve_json(letter_iri, {"@context": "https://www.w3.org/ns/activitystreams", **edited})
    await _deliver(world, world.bob, activity("Update", world.bob, edited, to=[AS_PUBLIC]))
    items = {item["id"]: item for item in await _inbox(world, "mia")}
    assert "Version 2" in items[wrapped]["object"]["content"]
    assert "Version 1" not in str(items)
    await _deliver(world, world.bob, activity("Delete", world.bob, letter_iri, to=[AS_PUBLIC]))
    items = {item["id"]: item for item in await _inbox(world, "mia")}
    assert items[wrapped]["object"]["type"] == "Tombstone" and "Version" not in str(items)


async def test_the_c2s_inbox_never_embeds_a_relayed_object_its_owner_may_not_read(world: World) -> None:
    ligue = remote_group(world.peers)
    await _follows(world, "mia", ligue.iri)
    private = _serve(world, note(world.bob, to=[f"{world.bob.iri}/followers"], content=f"<p>{SECRET}</p>"))
    # When ligue relays (publicly) bob's followers-only note: mia, who does not follow bob, gets
    # the Announce (she follows ligue), but not the note's content
    announce = await _relay(world, ligue, private)
    items = {item["id"]: item for item in await _inbox(world, "mia")}
    assert items[announce]["object"] == private
    assert SECRET not in str(items)
