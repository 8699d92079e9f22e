"""Security cases 69-71 (issue 18): events.

69: a calendar (``.ics``) never shows a non-public event: the association's calendar leaves it out
and the event's own ``.ics`` is a 404 whoever asks (a member's token is never read), like a missing
event. 70: a ``Join`` from an actor the association blocked, or from a non-member to a members-only
event, is refused with ``Reject`` and stores no participant (nor says more than "refused").
71: an ``Accept`` of one of our people's ``Join`` counts only from the event's organiser: a
forged one from another actor changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Actor, Block, EventParticipant, Follow
from server.services.events import participation
from tests.server.test_events import (
    _actors,
    _answers,
    _mobilizon,
    _participant,
    _publish,
    _refused,
    _send,
)
from tests.support.world import NodeStarter, World, given_world


@pytest.fixture
async def world(start_node: NodeStarter, peers: Any) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("alice-admin", "collectif", role="admin")
        await node.add_member("marc", "collectif", role="member")
        yield world


async def test_sec_69_a_calendar_never_shows_a_non_public_event(world: World) -> None:
    hidden = {
        level: await _publish(world, visibility=level) for level in ("members", "followers", "unlisted")
    }
    token = await world.node.token("marc")
    calendar = await (await world.node.client.get("/groups/collectif/feeds/events.ics")).read()
    for level, iri in hidden.items():
        assert iri.encode() not in calendar, level
        path = iri.removeprefix(world.node.uris.origin) + "/event.ics"
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            answer = await world.node.client.get(path, headers=headers)
            assert answer.status == 404, (level, headers)
    missing = await world.node.client.get("/objects/" + "0" * 32 + "/event.ics")
    assert missing.status == 404


async def test_sec_70_joins_from_blocked_actors_and_non_members_are_refused_and_store_nothing(
    world: World,
) -> None:
    members_only = await _publish(world, joinMode="free", visibility="members")
    await _refused(world, members_only, world.alice)
    open_event = await _publish(world, joinMode="free")
    group, _ = await _actors(world)
    async with world.node.sessions.begin() as session:
        mallory = await session.scalar(select(Actor).where(Actor.iri == world.mallory.iri))
        assert mallory is not None
        session.add(
            Block(
                activity_iri=f"{world.group}#blocks/70",
                blocker_id=group.id,
                blocked_id=mallory.id,
                created_at=datetime.now(UTC),
            )
        )
    await _refused(world, open_event, world.mallory)
    [reject] = await _answers(world, world.mallory)
    assert "content" not in reject  # no reason given: refused, nothing more


async def test_sec_71_a_forged_accept_of_our_join_changes_nothing(world: World) -> None:
    group, _ = await _actors(world)
    async with world.node.sessions.begin() as session:
        alice = await session.scalar(select(Actor).where(Actor.iri == world.alice.iri))
        assert alice is not None
        now = datetime.now(UTC)
        session.add(
            Follow(
                follower_id=group.id,
                followed_id=alice.id,
                state="accepted",
                follow_iri=f"{world.group}#follows/71",
                created_at=now,
                accepted_at=now,
            )
        )
    create = _mobilizon("create_event.json", world, world.alice)
    await _send(world, create, world.alice)
    event_iri = create["object"]["id"]
    async with world.node.sessions() as session:
        marc = await session.scalar(select(Actor).where(Actor.handle == "marc"))
    assert marc is not None
    assert await participation.join(world.node.fed, marc, event_iri, "Bonjour") == "pending"
    async with world.node.sessions() as session:
        join_iri = await session.scalar(
            select(EventParticipant.join_iri).where(EventParticipant.actor_id == marc.id)
        )
    assert join_iri is not None

    def accept(who: Any) -> dict[str, Any]:
        doc = _mobilizon("accept_join.json", world, who)
        return doc | {"id": who.new_id(), "object": join_iri, "to": [marc.iri]}

    await _send(world, accept(world.mallory), world.mallory)  # not the organiser
    await _send(world, accept(world.bob), world.bob)  # same host as the organiser, another actor
    forged = await _participant(world, event_iri, marc.iri)
    assert forged is not None and forged.state == "pending"
    await _send(world, accept(world.alice), world.alice)
    accepted = await _participant(world, event_iri, marc.iri)
    assert accepted is not None and accepted.state == "accepted"
