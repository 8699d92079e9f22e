"""Event notifications (issue 18, decision 72) on a real node, SQLite and PostgreSQL: a participant
of an event, ours or a peer's, is told when it changes, when it is cancelled, and shortly before it
starts; nobody else is, and a members-only event tells nothing to someone no longer a member."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Actor, Follow, Membership
from server.services.events import participation
from server.services.events import publishing as events
from server.services.reading import notifications
from server.services.reading.visibility import Viewer, ViewerKind
from tests.server.test_events import _actors, _event, _mobilizon, _send
from tests.support.signed_inbox import settle
from tests.support.world import NodeStarter, World, given_world

EVENT_TYPES = {"event_changed", "event_cancelled", "event_reminder"}


@pytest.fixture
async def world(start_node: NodeStarter, peers: Any) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("alice-admin", "collectif", role="admin")
        await node.add_member("marc", "collectif", role="member")
        await node.add_member("zoe", "collectif", role="member")
        yield world


async def _local(world: World, handle: str) -> Actor:
    async with world.node.sessions() as session:
        found = await session.scalar(select(Actor).where(Actor.handle == handle))
    assert found is not None
    return found


async def _publish(world: World, **extra: Any) -> str:
    group, admin = await _actors(world)
    published = await events.create(world.node.fed, group, _event(**extra), by=admin)
    await settle(world.node)
    assert published.object_iri is not None
    return published.object_iri


async def _notified(
    world: World, handle: str, *, before: timedelta = timedelta(hours=24), limit: int = 50
) -> list[tuple[str, str | None]]:
    """``handle``'s event notifications as ``(type, object)``, newest first."""
    person = await _local(world, handle)
    viewer = Viewer(ViewerKind.LOCAL, actor_id=person.id, actor_iri=person.iri, scope="write")
    async with world.node.sessions() as session:
        page = await notifications.notifications(
            session, viewer, before=None, limit=limit, now=world.node.fed.node.clock(), reminder_before=before
        )
    return [(n.type, n.object) for n in page.items if n.type in EVENT_TYPES]


async def test_participants_of_our_event_are_told_of_an_edit_then_of_its_cancellation(world: World) -> None:
    iri = await _publish(world, joinMode="free")
    marc = await _local(world, "marc")
    assert await participation.join(world.node.fed, marc, iri) == "accepted"
    assert await _notified(world, "marc") == []
    group, admin = await _actors(world)
    await events.update(world.node.fed, group, {"id": iri, "name": "Table ronde (salle B)"}, by=admin)
    assert await _notified(world, "marc") == [("event_changed", iri)]
    assert await _notified(world, "zoe") == [] and await _notified(world, "alice-admin") == []
    await events.cancel(world.node.fed, group, iri, by=admin)
    assert await _notified(world, "marc") == [("event_cancelled", iri)]
    assert await _notified(world, "zoe") == []


async def test_a_pending_participant_is_told_and_a_refused_one_is_not(world: World) -> None:
    iri = await _publish(world)  # restricted: requests wait for the organisers
    marc, zoe = await _local(world, "marc"), await _local(world, "zoe")
    assert await participation.join(world.node.fed, marc, iri) == "pending"
    assert await participation.join(world.node.fed, zoe, iri) == "pending"
    group, admin = await _actors(world)
    await participation.decide(world.node.fed, group, iri, zoe.iri, by=admin, accept=False)
    await events.update(world.node.fed, group, {"id": iri, "name": "Table ronde (salle C)"}, by=admin)
    assert await _notified(world, "marc") == [("event_changed", iri)]
    assert await _notified(world, "zoe") == []


async def test_a_reminder_shows_within_the_delay_for_accepted_participants_only(world: World) -> None:
    iri = await _publish(world)  # starts in 7 days
    marc, zoe = await _local(world, "marc"), await _local(world, "zoe")
    group, admin = await _actors(world)
    for person in (marc, zoe):
        assert await participation.join(world.node.fed, person, iri) == "pending"
    await participation.decide(world.node.fed, group, iri, marc.iri, by=admin, accept=True)
    await participation.decide(world.node.fed, group, iri, zoe.iri, by=admin, accept=False)
    assert await _notified(world, "marc") == []  # 24 h by default: too early
    eight_days = timedelta(days=8)
    assert await _notified(world, "marc", before=eight_days) == [("event_reminder", iri)]
    assert await _notified(world, "zoe", before=eight_days) == []  # refused
    assert await _notified(world, "alice-admin", before=eight_days) == []  # not taking part
    assert await _notified(world, "marc", before=timedelta(0)) == []  # reminders off
    await events.cancel(world.node.fed, group, iri, by=admin)
    assert await _notified(world, "marc", before=eight_days) == [("event_cancelled", iri)]


async def test_a_reminder_is_dated_start_minus_delay_and_pages_on_the_keyset(world: World) -> None:
    first = await _publish(world, joinMode="free")
    group, admin = await _actors(world)
    later = _event(joinMode="free", startTime=(datetime.now(UTC) + timedelta(days=8)).isoformat())
    later.pop("endTime")
    second = (await events.create(world.node.fed, group, later, by=admin)).object_iri
    assert second is not None
    marc = await _local(world, "marc")
    for iri in (first, second):
        assert await participation.join(world.node.fed, marc, iri) == "accepted"
    viewer = Viewer(ViewerKind.LOCAL, actor_id=marc.id, actor_iri=marc.iri, scope="write")
    delay = timedelta(days=9)
    seen: list[Any] = []
    cursor = None
    async with world.node.sessions() as session:
        while True:
            page = await notifications.notifications(
                session,
                viewer,
                before=cursor,
                limit=1,
                now=world.node.fed.node.clock(),
                reminder_before=delay,
            )
            seen += page.items
            cursor = page.next_before
            if cursor is None:
                break
    reminders = [n for n in seen if n.type == "event_reminder"]
    assert [n.object for n in reminders] == [second, first]  # the later start reminds later
    assert all(n.at <= world.node.fed.node.clock() for n in reminders)
    assert len({n.key for n in seen}) == len(seen)


async def test_a_members_only_event_notifies_nobody_outside_the_association(world: World) -> None:
    iri = await _publish(world, joinMode="free", visibility="members")
    marc = await _local(world, "marc")
    assert await participation.join(world.node.fed, marc, iri) == "accepted"
    group, admin = await _actors(world)
    async with world.node.sessions.begin() as session:
        membership = await session.scalar(
            select(Membership).where(Membership.member_id == marc.id, Membership.group_id == group.id)
        )
        assert membership is not None
        await session.delete(membership)  # marc left the association
    await events.update(world.node.fed, group, {"id": iri, "name": "Réunion interne"}, by=admin)
    assert await _notified(world, "marc", before=timedelta(days=8)) == []
    await events.cancel(world.node.fed, group, iri, by=admin)
    assert await _notified(world, "marc", before=timedelta(days=8)) == []
    assert await _notified(world, "zoe", before=timedelta(days=8)) == []


async def test_a_participant_of_a_peers_event_is_told_of_its_cancelling_update(world: World) -> None:
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
                follow_iri=f"{world.group}#follows/1",
                created_at=now,
                accepted_at=now,
            )
        )
    create = _mobilizon("create_event.json", world, world.alice)
    await _send(world, create, world.alice)
    iri = create["object"]["id"]
    marc = await _local(world, "marc")
    assert await participation.join(world.node.fed, marc, iri) == "pending"
    update = _mobilizon("update_event_cancelled.json", world, world.alice) | {"id": world.alice.new_id()}
    later = datetime.now(UTC) + timedelta(seconds=1)  # the peer's edit comes after marc's Join
    update["object"]["updated"] = later.isoformat().replace("+00:00", "Z")
    await _send(world, update, world.alice)
    assert await _notified(world, "marc") == [("event_cancelled", iri)]
    assert await _notified(world, "zoe") == []
