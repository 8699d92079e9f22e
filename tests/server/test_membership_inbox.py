"""Join, Leave and their answers from peers, on a real node (SQLite and PostgreSQL).

Forged answers and Leaves for someone else change nothing; only the verified actor's own
membership is ever created or ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from server.db.models import Actor, Membership
from server.services.membership import members as membership
from tests.support.signed_inbox import StallingPeers, changed, posts_to, processed, settle
from tests.support.world import (
    GROUP_INBOX,
    NodeStarter,
    World,
    activity,
    given_world,
)


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("alice-admin", "collectif", role="admin")
        yield world


async def _policy(world: World, policy: str) -> None:
    async with world.node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy=policy))


async def _state(world: World, member_iri: str) -> str | None:
    async with world.node.sessions() as session:
        member = await session.scalar(select(Actor.id).where(Actor.iri == member_iri))
        group = await session.scalar(select(Actor.id).where(Actor.iri == world.group))
        return await session.scalar(
            select(Membership.state).where(Membership.group_id == group, Membership.member_id == member)
        )


async def _send(world: World, doc: dict, who) -> None:  # type: ignore[no-untyped-def, type-arg]
    assert (await world.send(GROUP_INBOX, doc, who)).status == 202
    assert await processed(world.node, doc["id"]) == "processed"
    await settle(world.node)


async def test_join_waits_for_approval_by_default_then_is_accepted(world: World) -> None:
    join = activity("Join", world.alice, world.group)
    world.peers.hits.clear()
    await _send(world, join, world.alice)
    assert await _state(world, world.alice.iri) == "pending"
    assert posts_to(world.peers, "peer.example") == []  # no answer yet
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        admin = await session.scalar(select(Actor).where(Actor.handle == "alice-admin"))
    assert group is not None and admin is not None
    await membership.decide(world.node.fed, group, world.alice.iri, by=admin, approve=True)
    await settle(world.node)
    assert await _state(world, world.alice.iri) == "active"
    [answer] = posts_to(world.peers, "peer.example")
    assert answer.key_id == f"{world.group}#main-key"


async def test_open_association_accepts_at_once_and_closed_refuses(world: World) -> None:
    await _policy(world, "open")
    await _send(world, activity("Join", world.alice, world.group), world.alice)
    assert await _state(world, world.alice.iri) == "active"
    await _policy(world, "closed")
    before = await world.counts()
    await _send(world, activity("Join", world.bob, world.group), world.bob)
    assert await _state(world, world.bob.iri) is None
    diff = changed(before, await world.counts())
    assert "memberships" not in diff and diff.get("activities") == 1  # the Reject{Join}


async def test_a_leave_ends_only_the_senders_own_membership(world: World) -> None:
    await _policy(world, "open")
    await _send(world, activity("Join", world.alice, world.group), world.alice)
    before = await world.counts()
    # mallory "leaves" (she is no member) and sends a Leave naming alice as object
    await _send(world, activity("Leave", world.mallory, world.group), world.mallory)
    await _send(world, activity("Leave", world.mallory, world.alice.iri), world.mallory)
    assert await _state(world, world.alice.iri) == "active"
    assert "memberships" not in changed(before, await world.counts())
    await _send(world, activity("Leave", world.alice, world.group), world.alice)
    assert await _state(world, world.alice.iri) is None


async def test_a_forged_accept_of_a_join_changes_nothing(world: World) -> None:
    # our member asks to join an association hosted by peer.example (bob plays the group's role
    # only as an actor IRI: what matters is who answers)
    member_iri = await world.node.add_member("mia", "collectif", role="member")
    async with world.node.sessions.begin() as session:
        mia = await session.scalar(select(Actor).where(Actor.iri == member_iri))
        bob = await session.scalar(select(Actor).where(Actor.iri == world.bob.iri))
        assert mia is not None and bob is not None
        bob.type = "Group"
    join_iri = await membership.join(world.node.fed, mia, world.bob.iri)
    # mallory answers for bob's group: no effect
    forged = activity(
        "Accept",
        world.mallory,
        {"id": join_iri, "type": "Join", "actor": member_iri, "object": world.bob.iri},
    )
    await _send(world, forged, world.mallory)
    async with world.node.sessions() as session:
        state = await session.scalar(select(Membership.state).where(Membership.join_iri == join_iri))
    assert state == "pending"
    # the group itself answers: active
    await _send(world, activity("Accept", world.bob, join_iri), world.bob)
    async with world.node.sessions() as session:
        state = await session.scalar(select(Membership.state).where(Membership.join_iri == join_iri))
    assert state == "active"
