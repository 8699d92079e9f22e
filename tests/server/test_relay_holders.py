"""A post that reached a node only through an association's relay (FEP-1b12 ``Announce{Create}``)
is edited and deleted there too (decisions 14 and 22; decision 85).

The association's followers do not follow the member who wrote the post: they hold it because the
association relayed it. When the author edits or deletes it, their nodes must hear of it, or they
keep showing the old text, or a post that no longer exists. Two cases, both engines:

- the author is one of our people: the ``Update``/``Delete`` goes to every inbox the relay reached;
- the author is a member on another node: our association relays the change again (an
  ``Announce`` of the object, which the relay's receivers refetch from its origin: 410 once gone);
- and on the receiving side, a node that holds a post only through a relay applies the edit, or
  keeps a tombstone, when the relay comes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from federation.types import AS_PUBLIC
from server.db.models import Activity, Actor, Delivery
from server.services.actors.signing import actor_key_pair
from server.services.content import local as content
from tests.server.test_timeline_relays import _follows, _relay, _serve, remote_group
from tests.support.signed_inbox import RemoteAccount, StallingPeers, processed, settle
from tests.support.world import (
    GROUP_INBOX,
    NodeStarter,
    World,
    activity,
    create,
    given_world,
    note,
    object_row,
)


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    """collectif, followed by mallory (evil.example) alone; alice (peer.example) and mia (here) are
    members who nobody follows."""
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("mia", "collectif")
        async with node.sessions.begin() as session:
            await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy="open"))
        await _deliver(world, world.alice, activity("Join", world.alice, world.group))
        await _deliver(world, world.mallory, activity("Follow", world.mallory, world.group))
        yield world


async def _deliver(world: World, who: RemoteAccount, doc: dict[str, object]) -> None:
    assert (await world.send(GROUP_INBOX, doc, who)).status == 202
    assert await processed(world.node, str(doc["id"])) == "processed"


async def _inboxes(world: World, activity_iri: str) -> set[str]:
    """The inboxes a delivery of the activity was planned for (any state)."""
    async with world.node.sessions() as session:
        rows = await session.scalars(
            select(Delivery.inbox_iri)
            .join(Activity, Activity.id == Delivery.activity_id)
            .where(Activity.iri == activity_iri)
        )
        return set(rows)


async def _relayed_by_the_group(world: World, object_iri: str) -> dict[str, set[str]]:
    """The association's ``Announce``s naming the object itself (its relays of a change), with
    the inboxes each was planned for."""
    async with world.node.sessions() as session:
        iris = list(
            await session.scalars(
                select(Activity.iri)
                .join(Actor, Actor.id == Activity.actor_id)
                .where(Actor.iri == world.group, Activity.type == "Announce")
                .where(Activity.object_iri == object_iri)
                .order_by(Activity.id)
            )
        )
    return {iri: await _inboxes(world, iri) for iri in iris}


def _mallory_inbox(world: World) -> str:
    return world.peers.iri(world.mallory.host, "/inbox")


async def _mia(world: World) -> Actor:
    async with world.node.sessions() as session:
        mia = await session.scalar(select(Actor).where(Actor.iri == world.node.uris.iri("/users/mia")))
    assert mia is not None
    world.peers.trust(await actor_key_pair(world.node.fed.node, mia))
    return mia


async def test_a_local_members_relayed_post_is_edited_and_deleted_on_the_relays_followers(
    world: World,
) -> None:
    # Given mia's public post into collectif, relayed (Announce{Create}) to mallory, who follows
    # the association but not mia
    mia = await _mia(world)
    fed = world.node.fed
    post = {"type": "Note", "content": "<p>Permanence lundi</p>", "to": [AS_PUBLIC], "audience": world.group}
    created = await content.create(fed, mia, post, by=mia)
    await settle(world.node)
    assert created.object_iri is not None
    async with world.node.sessions() as session:
        relay = await session.scalar(
            select(Activity.iri)
            .join(Actor, Actor.id == Activity.actor_id)
            .where(Actor.iri == world.group, Activity.type == "Announce")
        )
    assert relay is not None and _mallory_inbox(world) in await _inboxes(world, relay)
    assert _mallory_inbox(world) not in await _inboxes(world, str(created.activity_iri))

    # When mia edits it, then deletes it
    edited = await content.update(fed, mia, {"id": created.object_iri, "content": "<p>Mardi</p>"}, by=mia)
    gone = await content.delete(fed, mia, created.object_iri, by=mia)
    await settle(world.node)

    # Then the Update and the Delete reach the inbox the relay reached
    assert _mallory_inbox(world) in await _inboxes(world, str(edited.activity_iri))
    assert _mallory_inbox(world) in await _inboxes(world, str(gone.activity_iri))


@pytest.mark.parametrize("change", ["Update", "Delete"])
async def test_a_remote_members_relayed_post_changed_at_its_origin_is_relayed_again(
    world: World, change: str
) -> None:
    # Given alice's public post into collectif (from her node), relayed to mallory
    posted = note(world.alice, to=[AS_PUBLIC], audience=world.group)
    await _deliver(world, world.alice, create(world.alice, posted))
    await settle(world.node)
    assert await _relayed_by_the_group(world, posted["id"]) == {}  # the relay wraps the Create

    # When alice edits or deletes it on her node, and tells collectif
    if change == "Update":
        revised = {**posted, "content": "<p>Réunion vendredi</p>", "updated": "2025-03-02T12:00:00Z"}
        await _deliver(world, world.alice, activity("Update", world.alice, revised, to=[AS_PUBLIC]))
    else:
        world.peers.serve_json(posted["id"], {}, status=410)
        await _deliver(world, world.alice, activity("Delete", world.alice, posted["id"], to=[AS_PUBLIC]))
    await settle(world.node)

    # Then collectif relays the change once, to the inbox its relay reached
    relays = await _relayed_by_the_group(world, posted["id"])
    assert list(relays.values()) == [{_mallory_inbox(world)}]


@pytest.mark.parametrize("change", ["Update", "Delete"])
async def test_a_node_holding_a_post_only_through_a_relay_follows_its_change_when_relayed_again(
    world: World, change: str
) -> None:
    """The receiving side: mia follows ligue (another node's association), not bob. Bob's post
    reached us only through ligue's relay; when ligue relays it again after bob changed it, we
    refetch it from bob's node: the edit shows, or the post is gone (410, a tombstone here)."""
    ligue = remote_group(world.peers)
    await _follows(world, "mia", ligue.iri)
    posted = note(world.bob, to=[AS_PUBLIC], content="<p>Collecte samedi</p>")
    iri = _serve(world, posted)
    await _relay(world, ligue, posted)
    row = await object_row(world.node, iri)
    assert row is not None and row.deleted_at is None
    if change == "Update":
        revised = {**posted, "content": "<p>Collecte dimanche</p>", "updated": "2025-03-02T12:00:00Z"}
        _serve(world, revised)
    else:
        world.peers.serve_json(iri, {}, status=410)
    await _relay(world, ligue, iri)
    row = await object_row(world.node, iri)
    assert row is not None
    if change == "Update":
        assert row.deleted_at is None and "dimanche" in row.document["content"]
    else:
        assert row.deleted_at is not None and row.document["type"] == "Tombstone"
