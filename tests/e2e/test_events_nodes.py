"""Events across two nodes (issue 18, "done when"): an association on A publishes a restricted
event, a member of B asks to take part, A's organiser accepts, the event is cancelled; B's member
is told and B's copy is cancelled; A's ``events.ics`` parses with icalendar and shows the
cancellation with a higher ``SEQUENCE``. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
from sqlalchemy import select

from server.db.models import Actor, Event, EventParticipant, InboxActivity, InboxItem, RemoteObject
from server.services.events import participation
from server.services.events import publishing as events
from tests.support.nodes import Node, running_node, wait_until


async def _participant_state(node: Node, event_iri: str, actor_iri: str) -> str | None:
    async with node.sessions() as session:
        return await session.scalar(
            select(EventParticipant.state)
            .join(Event, Event.id == EventParticipant.event_id)
            .join(RemoteObject, RemoteObject.id == Event.object_id)
            .where(RemoteObject.iri == event_iri, EventParticipant.actor_iri == actor_iri)
        )


async def _event_status(node: Node, event_iri: str) -> str | None:
    async with node.sessions() as session:
        return await session.scalar(
            select(Event.status)
            .join(RemoteObject, RemoteObject.id == Event.object_id)
            .where(RemoteObject.iri == event_iri)
        )


async def _told(node: Node, actor_iri: str, activity_type: str, object_iri: str | None = None) -> bool:
    """The activity is filed in the person's inbox (what their notifications and C2S inbox read)."""
    query = (
        select(InboxItem.id)
        .join(InboxActivity, InboxActivity.id == InboxItem.inbox_activity_id)
        .join(Actor, Actor.id == InboxItem.actor_id)
        .where(Actor.iri == actor_iri, InboxActivity.type == activity_type)
    )
    if object_iri is not None:
        query = query.where(InboxActivity.object_iri == object_iri)
    async with node.sessions() as session:
        return await session.scalar(query.limit(1)) is not None


async def test_a_restricted_event_joined_from_another_node_accepted_then_cancelled(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        await b.create_association("beta", "Beta")
        ben_iri = await b.add_member("ben", "beta")
        ben = {"Authorization": f"Bearer {await b.token('ben')}"}
        async with a.sessions() as session:
            group = await session.scalar(select(Actor).where(Actor.iri == alpha))
            alice = await session.scalar(select(Actor).where(Actor.handle == "alice"))
        assert group is not None and alice is not None
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
        published = await events.create(
            a.fed,
            group,
            {
                "name": "Colloque régional",
                "startTime": start.isoformat(),
                "endTime": (start + timedelta(hours=6)).isoformat(),
                "timezone": "Europe/Paris",
                "location": {"name": "Hôtel de région", "addressLocality": "Rennes"},
                "joinMode": "restricted",
                "maximumAttendeeCapacity": 50,
            },
            by=alice,
        )
        event_iri = published.object_iri
        assert event_iri is not None

        # ben (on B) asks to take part: B fetches the event from A and sends the Join
        joined = await b.client.post(
            "/api/events/participations", json={"event": event_iri, "message": "Avec ma fille"}, headers=ben
        )
        assert joined.status == 202, await joined.text()
        await wait_until(
            lambda: _is(a, event_iri, ben_iri, "pending"), what="A records the request", timeout_s=60
        )

        # A's organiser accepts: B gets the Accept and ben is taking part
        await participation.decide(a.fed, group, event_iri, ben_iri, by=alice, accept=True)
        await wait_until(
            lambda: _is(b, event_iri, ben_iri, "accepted"), what="B gets the Accept", timeout_s=60
        )
        await wait_until(lambda: _told(b, ben_iri, "Accept"), what="ben told of the Accept", timeout_s=30)

        # A cancels: B's copy is cancelled and ben is told
        await events.cancel(a.fed, group, event_iri, by=alice)

        async def cancelled_on_b() -> bool:
            return await _event_status(b, event_iri) == "cancelled"

        await wait_until(cancelled_on_b, what="B's copy cancelled", timeout_s=60)
        await wait_until(lambda: _told(b, ben_iri, "Update", event_iri), what="ben told", timeout_s=30)
        async with b.sessions() as session:
            copy = await session.scalar(select(RemoteObject).where(RemoteObject.iri == event_iri))
        assert copy is not None and copy.document["ical:status"] == "CANCELLED"

        # A's calendar: the cancellation with a higher SEQUENCE
        answer = await a.client.get("/groups/alpha/feeds/events.ics")
        assert answer.status == 200
        [vevent] = list(icalendar.Calendar.from_ical(await answer.read()).walk("VEVENT"))
        assert str(vevent["uid"]) == event_iri and str(vevent["status"]) == "CANCELLED"
        assert int(vevent["sequence"]) >= 1


async def _is(node: Node, event_iri: str, actor_iri: str, state: str) -> bool:
    return await _participant_state(node, event_iri, actor_iri) == state
