"""Events (issue 18) on a real node, SQLite and PostgreSQL: publishing and its refusals, and
Mobilizon's participation payloads (``tests/fixtures/payloads/mobilizon/``) sent signed to the
inbox and answered as Mobilizon expects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import icalendar
import pytest
from sqlalchemy import select

from federation import validation
from server.db.models import Activity, Actor, Block, Event, EventParticipant, Follow, Membership, RemoteObject
from server.services.errors import Conflict, InvalidInput
from server.services.events import participation
from server.services.events import publishing as events
from tests.schemas.helpers import PAYLOADS
from tests.support.signed_inbox import changed, posts_to, processed, settle
from tests.support.world import GROUP_INBOX, NodeStarter, RemoteAccount, World, given_world

EVENT_PLACEHOLDER = "http://127.0.0.1:8080/objects/EVENT"


@pytest.fixture
async def world(start_node: NodeStarter, peers: Any) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("alice-admin", "collectif", role="admin")
        await node.add_member("marc", "collectif", role="member")
        yield world


async def _actors(world: World) -> tuple[Actor, Actor]:
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        admin = await session.scalar(select(Actor).where(Actor.handle == "alice-admin"))
    assert group is not None and admin is not None
    return group, admin


def _soon(days: int = 7) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _event(**extra: Any) -> dict[str, Any]:
    start = _soon()
    return {
        "name": "Table ronde",
        "content": "<p>Avec l'ARS.</p>",
        "startTime": start.isoformat(),
        "endTime": (start + timedelta(hours=2)).isoformat(),
        "timezone": "Europe/Paris",
        "location": {"name": "Maison des associations", "addressLocality": "Rennes", "postalCode": "35000"},
        "joinMode": "restricted",
        "maximumAttendeeCapacity": 2,
        **extra,
    }


async def _publish(world: World, **extra: Any) -> str:
    group, admin = await _actors(world)
    published = await events.create(world.node.fed, group, _event(**extra), by=admin)
    await settle(world.node)
    assert published.object_iri is not None
    return published.object_iri


def _mobilizon(name: str, world: World, who: RemoteAccount, event_iri: str = "") -> dict[str, Any]:
    """A recorded Mobilizon payload, sent by ``who`` (a fake peer that really signs): its
    Mobilizon host and actors become the peer's, its event placeholder one of our events."""
    text = (PAYLOADS / "mobilizon" / name).read_text(encoding="utf-8")
    base = who.iri_on_host("")
    text = text.replace("https://mobilizon.test/@camille", who.iri).replace(
        "https://mobilizon.test/@tcit", who.iri
    )
    text = text.replace("https://mobilizon.test", base).replace(EVENT_PLACEHOLDER, event_iri)
    document: dict[str, Any] = json.loads(text)
    return document


async def _send(world: World, doc: dict[str, Any], who: RemoteAccount) -> None:
    assert (await world.send(GROUP_INBOX, doc, who)).status == 202
    assert await processed(world.node, doc["id"]) == "processed"
    await settle(world.node)


async def _participant(world: World, event_iri: str, actor_iri: str) -> EventParticipant | None:
    async with world.node.sessions() as session:
        return await session.scalar(
            select(EventParticipant)
            .join(Event, Event.id == EventParticipant.event_id)
            .join(RemoteObject, RemoteObject.id == Event.object_id)
            .where(RemoteObject.iri == event_iri, EventParticipant.actor_iri == actor_iri)
        )


async def _answers(world: World, who: RemoteAccount) -> list[dict[str, Any]]:
    """The group's answers (Accept/Reject) addressed to ``who``, oldest first."""
    async with world.node.sessions() as session:
        documents = await session.scalars(
            select(Activity.document).where(Activity.type.in_(("Accept", "Reject"))).order_by(Activity.id)
        )
        return [d for d in documents if d.get("to") == [who.iri]]


# --- publishing ----------------------------------------------------------------------------------


async def test_a_published_event_is_stored_with_its_calendar_facts_and_a_readable_content(
    world: World,
) -> None:
    iri = await _publish(world)
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        create = await session.scalar(select(Activity).where(Activity.object_iri == iri))
    assert row.kind == "event" and row.type == "Event" and row.visibility == "public"
    assert event is not None and event.timezone == "Europe/Paris" and event.sequence == 0
    assert event.join_mode == "restricted" and event.capacity == 2 and event.locality == "Rennes"
    doc = row.document
    assert doc["ical:status"] == "CONFIRMED" and doc["joinMode"] == "restricted"
    assert doc["startTime"].endswith(("+01:00", "+02:00"))  # in the event's own zone, as Mobilizon
    assert doc["location"]["address"]["addressLocality"] == "Rennes"
    # Mastodon shows content: the name, the date, the place and the link come first.
    assert doc["content"].startswith("<p><strong>Table ronde</strong></p><p>📅 ")
    assert "Rennes" in doc["content"] and f'href="{iri}"' in doc["content"]
    assert create is not None and create.type == "Create"
    # What we serve and what peers receive hold to the strict schema (schemas/entraide/event).
    validation.validate(doc, "entraide/event")
    validation.validate({"@context": doc["@context"], **create.document["object"]}, "entraide/event")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endTime": "2020-01-01T00:00:00Z"}, "endTime"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"maximumAttendeeCapacity": -1}, "maximumAttendeeCapacity"),
        ({"joinMode": "anyone"}, "joinMode"),
        ({"onlineUrl": "javascript:alert(1)"}, "onlineUrl"),
        ({"visibility": "direct"}, "to"),  # the shared pipeline refuses it first: no recipients
        ({"startTime": None}, "startTime"),
    ],
)
async def test_bad_event_input_is_refused_by_field_and_nothing_is_stored(
    world: World, change: dict[str, Any], field: str
) -> None:
    group, admin = await _actors(world)
    before = await world.counts()
    with pytest.raises(InvalidInput) as refused:
        await events.create(world.node.fed, group, _event(**change), by=admin)
    assert refused.value.context["field"] == field
    assert changed(before, await world.counts()) == {}


async def test_an_edit_raises_the_sequence_and_a_cancellation_is_ical_cancelled(world: World) -> None:
    iri = await _publish(world)
    group, admin = await _actors(world)
    await events.update(world.node.fed, group, {"id": iri, "name": "Table ronde (salle B)"}, by=admin)
    with pytest.raises(InvalidInput):
        await events.update(world.node.fed, group, {"id": iri, "endTime": "2000-01-01T00:00:00Z"}, by=admin)
    await events.cancel(world.node.fed, group, iri, by=admin)
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        updates = (await session.scalars(select(Activity.type).where(Activity.object_iri == iri))).all()
    assert event is not None and event.status == "cancelled" and event.sequence == 2
    assert row.document["ical:status"] == "CANCELLED" and "CANCELLED" in row.document["content"]
    assert sorted(updates) == ["Create", "Update", "Update"]
    with pytest.raises(InvalidInput):
        await events.update(world.node.fed, group, {"id": iri, "name": "Again"}, by=admin)


# --- Mobilizon's participation ------------------------------------------------------------------


async def test_a_mobilizon_join_to_a_restricted_event_waits_then_the_organiser_accepts(world: World) -> None:
    iri = await _publish(world)
    join = _mobilizon("join_event.json", world, world.alice, iri)
    await _send(world, join, world.alice)
    pending = await _participant(world, iri, world.alice.iri)
    assert pending is not None and pending.state == "pending"
    assert pending.message == "Je viendrai avec une personne accompagnante."  # participationMessage
    assert await _answers(world, world.alice) == []  # restricted: no answer yet
    group, admin = await _actors(world)
    await participation.decide(world.node.fed, group, iri, world.alice.iri, by=admin, accept=True)
    await settle(world.node)
    accepted = await _participant(world, iri, world.alice.iri)
    assert accepted is not None and accepted.state == "accepted"
    [answer] = await _answers(world, world.alice)
    assert answer["type"] == "Accept" and answer["object"]["id"] == join["id"]
    assert [h.key_id for h in posts_to(world.peers, "peer.example")] == [f"{world.group}#main-key"]
    assert answer["actor"] == world.group
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None and row.document["participantCount"] == 1
    assert row.document["remainingAttendeeCapacity"] == 1


async def test_a_free_event_accepts_at_once_and_a_mobilizon_leave_ends_it(world: World) -> None:
    iri = await _publish(world, joinMode="free")
    await _send(world, _mobilizon("join_event.json", world, world.alice, iri), world.alice)
    participant = await _participant(world, iri, world.alice.iri)
    assert participant is not None and participant.state == "accepted"
    assert [a["type"] for a in await _answers(world, world.alice)] == ["Accept"]
    # bob's Leave names the event but ends only bob's own participation (he has none)
    await _send(world, _mobilizon("leave_event.json", world, world.bob, iri), world.bob)
    assert await _participant(world, iri, world.alice.iri) is not None
    await _send(
        world,
        _mobilizon("leave_event.json", world, world.alice, iri) | {"id": world.alice.new_id()},
        world.alice,
    )
    assert await _participant(world, iri, world.alice.iri) is None


async def _refused(world: World, iri: str, who: RemoteAccount) -> None:
    before = await world.counts()
    answered = len(await _answers(world, who))
    await _send(world, _mobilizon("join_event.json", world, who, iri) | {"id": who.new_id()}, who)
    assert await _participant(world, iri, who.iri) is None
    assert [a["type"] for a in (await _answers(world, who))[answered:]] == ["Reject"]
    diff = changed(before, await world.counts())
    assert "event_participants" not in diff


async def test_joins_to_a_full_a_cancelled_or_a_members_only_event_or_from_a_blocked_actor_are_rejected(
    world: World,
) -> None:
    full = await _publish(world, joinMode="free", maximumAttendeeCapacity=1)
    await _send(world, _mobilizon("join_event.json", world, world.alice, full), world.alice)
    await _refused(world, full, world.bob)

    cancelled = await _publish(world, joinMode="free")
    group, admin = await _actors(world)
    await events.cancel(world.node.fed, group, cancelled, by=admin)
    await _refused(world, cancelled, world.bob)

    members_only = await _publish(world, joinMode="free", visibility="members")
    await _refused(world, members_only, world.bob)

    open_event = await _publish(world, joinMode="free")
    async with world.node.sessions.begin() as session:
        bob = await session.scalar(select(Actor).where(Actor.iri == world.bob.iri))
        assert bob is not None
        session.add(
            Block(
                activity_iri=f"{world.group}#blocks/1",
                blocker_id=group.id,
                blocked_id=bob.id,
                created_at=datetime.now(UTC),
            )
        )
    await _refused(world, open_event, world.bob)


async def test_a_join_from_a_peers_member_suspended_in_the_association_is_rejected(world: World) -> None:
    """A suspension (decision 76) covers a peer's member too: its Join gets a Reject, nothing stored;
    once lifted, the same person joins."""
    open_event = await _publish(world, joinMode="free")
    group, _ = await _actors(world)
    now = datetime.now(UTC)
    async with world.node.sessions.begin() as session:
        alice = await session.scalar(select(Actor).where(Actor.iri == world.alice.iri))
        assert alice is not None
        row = Membership(
            group_id=group.id, member_id=alice.id, role="member", state="active",
            created_at=now, updated_at=now, suspended_at=now, suspended_until=now + timedelta(days=2),
        )  # fmt: skip
        session.add(row)
    await _refused(world, open_event, world.alice)
    async with world.node.sessions.begin() as session:
        lifted = await session.get(Membership, row.id)
        assert lifted is not None
        lifted.suspended_at = lifted.suspended_until = None
    await _send(world, _mobilizon("join_event.json", world, world.alice, open_event), world.alice)
    joined = await _participant(world, open_event, world.alice.iri)
    assert joined is not None and joined.state == "accepted"


async def test_a_local_member_joins_and_the_capacity_holds_for_the_organisers_too(world: World) -> None:
    iri = await _publish(world, maximumAttendeeCapacity=1)
    async with world.node.sessions() as session:
        marc = await session.scalar(select(Actor).where(Actor.handle == "marc"))
    assert marc is not None
    assert await participation.join(world.node.fed, marc, iri, "<b>Bonjour</b>") == "pending"
    await _send(world, _mobilizon("join_event.json", world, world.alice, iri), world.alice)
    group, admin = await _actors(world)
    await participation.decide(world.node.fed, group, iri, marc.iri, by=admin, accept=True)
    with pytest.raises(Conflict):
        await participation.decide(world.node.fed, group, iri, world.alice.iri, by=admin, accept=True)
    listed = await participation.participants(world.node.fed, group, iri, by=admin)
    assert [(p.actor_iri, p.state, p.message) for p in listed] == [
        (marc.iri, "accepted", "Bonjour"),
        (world.alice.iri, "pending", "Je viendrai avec une personne accompagnante."),
    ]


# --- a peer's event ----------------------------------------------------------------------------------


async def test_a_mobilizon_event_is_kept_with_its_facts_and_its_cancelling_update_cancels_it(
    world: World,
) -> None:
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
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
    assert row.kind == "event" and event is not None
    assert event.start_at == datetime(2027, 1, 14, 17, 30, tzinfo=UTC) and event.timezone == "Europe/Paris"
    assert event.join_mode == "restricted" and event.capacity == 40 and event.status == "confirmed"
    assert event.locality == "Rennes" and event.online_url and event.online_url.endswith("/table-ronde")
    update = _mobilizon("update_event_cancelled.json", world, world.alice) | {"id": world.alice.new_id()}
    await _send(world, update, world.alice)
    async with world.node.sessions() as session:
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
    assert event is not None and event.status == "cancelled" and event.sequence == 1


# --- calendars (ICS) and feeds ---------------------------------------------------------------------


def _vevents(body: bytes) -> list[Any]:
    parsed = icalendar.Calendar.from_ical(body)
    return list(parsed.walk("VEVENT"))


async def test_the_association_calendar_parses_with_icalendar_and_shows_a_cancellation_with_a_higher_sequence(
    world: World,
) -> None:
    public = await _publish(world)
    members_only = await _publish(world, visibility="members", name="Réunion interne")
    client = world.node.client
    first = await client.get("/groups/collectif/feeds/events.ics")
    assert first.status == 200 and first.headers["Content-Type"].startswith("text/calendar")
    body = await first.read()
    [vevent] = _vevents(body)
    assert str(vevent["uid"]) == public and str(vevent["url"]) == public
    assert int(vevent["sequence"]) == 0 and str(vevent["status"]) == "CONFIRMED"
    assert vevent["dtstart"].dt.tzinfo is not None and "Rennes" in str(vevent["location"])
    assert b"BEGIN:VTIMEZONE" in body and b"TZID:Europe/Paris" in body
    assert "interne" not in body.decode() and members_only.encode() not in body
    # A conditional GET with the ETag is 304; a cancellation changes the ETag and the SEQUENCE.
    etag = first.headers["ETag"]
    assert (
        await client.get("/groups/collectif/feeds/events.ics", headers={"If-None-Match": etag})
    ).status == 304
    group, admin = await _actors(world)
    await events.cancel(world.node.fed, group, public, by=admin)
    again = await client.get("/groups/collectif/feeds/events.ics", headers={"If-None-Match": etag})
    assert again.status == 200
    [cancelled] = _vevents(await again.read())
    assert str(cancelled["status"]) == "CANCELLED" and int(cancelled["sequence"]) > int(vevent["sequence"])
    single = await client.get(public.removeprefix(world.node.uris.origin) + "/event.ics")
    [one] = _vevents(await single.read())
    assert str(one["uid"]) == public and str(one["status"]) == "CANCELLED"


async def test_an_ics_request_for_a_members_only_event_is_a_404_whoever_asks(world: World) -> None:
    """Security case 69: the calendar never shows a non-public event, even with a member's token."""
    members_only = await _publish(world, visibility="members")
    followers_only = await _publish(world, visibility="followers")
    token = await world.node.token("marc")
    for iri in (members_only, followers_only):
        path = iri.removeprefix(world.node.uris.origin) + "/event.ics"
        for headers in ({}, {"Authorization": f"Bearer {token}"}):
            answer = await world.node.client.get(path, headers=headers)
            assert answer.status == 404, path
            assert answer.headers["Content-Type"].startswith("application/problem+json")
    missing = await world.node.client.get("/groups/nobody/feeds/events.ics")
    assert missing.status == 404


async def test_public_events_are_in_the_atom_and_json_feeds_and_members_only_ones_are_not(
    world: World,
) -> None:
    public = await _publish(world)
    members_only = await _publish(world, visibility="members")
    for path in ("/groups/collectif/feed.atom", "/groups/collectif/feeds/events.json"):
        answer = await world.node.client.get(path)
        assert answer.status == 200, path
        text = await answer.text()
        assert public in text and members_only not in text


# --- the JSON API ------------------------------------------------------------------------------------


async def test_the_json_api_publishes_refuses_bad_input_and_runs_participation(world: World) -> None:
    client = world.node.client
    admin = {"Authorization": f"Bearer {await world.node.token('alice-admin')}"}
    marc = {"Authorization": f"Bearer {await world.node.token('marc')}"}
    before = await world.counts()
    bad = await client.post(
        "/api/associations/collectif/events", json=_event(timezone="Mars/Olympus"), headers=admin
    )
    assert bad.status == 400 and (await bad.json(content_type=None))["field"] == "timezone"
    negative = await client.post(
        "/api/associations/collectif/events", json=_event(maximumAttendeeCapacity=-5), headers=admin
    )
    assert negative.status == 400
    assert changed(before, await world.counts()) == {}
    assert (
        await client.post("/api/associations/collectif/events", json=_event(), headers=marc)
    ).status == 403
    created = await client.post("/api/associations/collectif/events", json=_event(), headers=admin)
    assert created.status == 201, await created.text()
    iri = (await created.json(content_type=None))["id"]
    listed = await (await client.get("/api/associations/collectif/events")).json(content_type=None)
    assert [item["id"] for item in listed["items"]] == [iri]
    joined = await client.post(
        "/api/events/participations", json={"event": iri, "message": "Merci"}, headers=marc
    )
    assert joined.status == 202 and (await joined.json(content_type=None))["state"] == "pending"
    path = f"/api/associations/collectif/events/participants?event={iri}"
    assert (await client.get(path, headers=marc)).status == 403  # participants see the count only
    people = await (await client.get(path, headers=admin)).json(content_type=None)
    [person] = people["items"]
    assert person["state"] == "pending" and person["message"] == "Merci"
    decided = await client.post(
        "/api/associations/collectif/events/participants",
        json={"event": iri, "participant": person["actor"], "accept": True},
        headers=admin,
    )
    assert decided.status == 200 and (await decided.json(content_type=None))["state"] == "accepted"
    left = await client.delete(f"/api/events/participations?event={iri}", headers=marc)
    assert left.status == 200
    gone = await client.delete(f"/api/events/participations?event={iri}", headers=marc)
    assert gone.status == 404 and gone.headers["Content-Type"].startswith("application/problem+json")


async def test_c2s_join_of_an_event_and_the_organisers_accept_through_their_outboxes(world: World) -> None:
    iri = await _publish(world)
    marc_token, admin_token = await world.node.token("marc"), await world.node.token("alice-admin")
    await world.node.post_outbox("/users/marc", marc_token, {"type": "Join", "object": iri})
    marc = await _participant(world, iri, world.node.uris.iri("/users/marc"))
    assert marc is not None and marc.state == "pending"
    await world.node.post_outbox(
        "/groups/collectif",
        admin_token,
        {"type": "Accept", "object": {"type": "Join", "actor": marc.actor_iri, "object": iri}},
    )
    accepted = await _participant(world, iri, marc.actor_iri)
    assert accepted is not None and accepted.state == "accepted"
    await world.node.post_outbox("/users/marc", marc_token, {"type": "Leave", "object": iri})
    assert await _participant(world, iri, marc.actor_iri) is None


# --- removing the end ---------------------------------------------------------------------------------


async def _end_removed(world: World, iri: str) -> None:
    """The stored document, the row, the last ``Update`` and the calendar have no end any more."""
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        update = await session.scalar(
            select(Activity.document)
            .where(Activity.object_iri == iri, Activity.type == "Update")
            .order_by(Activity.id.desc())
            .limit(1)
        )
    assert event is not None and event.end_at is None and event.sequence == 1
    assert "endTime" not in row.document and row.document["startTime"]
    assert update is not None and "endTime" not in update["object"]
    assert update["object"]["startTime"] == row.document["startTime"]
    validation.validate(row.document, "entraide/event")
    answer = await world.node.client.get(iri.removeprefix(world.node.uris.origin) + "/event.ics")
    [vevent] = _vevents(await answer.read())
    # RFC 5545 §3.6.1: a VEVENT with a DATE-TIME start and neither DTEND nor DURATION ends when it starts.
    assert "dtend" not in vevent and "duration" not in vevent and vevent["dtstart"].dt.tzinfo is not None


async def test_an_edit_with_a_null_end_time_removes_the_end_through_the_service(world: World) -> None:
    iri = await _publish(world, joinMode="free")
    group, admin = await _actors(world)
    await events.update(world.node.fed, group, {"id": iri, "endTime": None}, by=admin)
    await _end_removed(world, iri)
    # the start is still required, and an end before it still refused
    with pytest.raises(InvalidInput) as refused:
        await events.update(world.node.fed, group, {"id": iri, "startTime": None}, by=admin)
    assert refused.value.context["field"] == "startTime"


async def test_a_json_api_patch_with_a_null_end_time_removes_the_end(world: World) -> None:
    iri = await _publish(world)
    admin = {"Authorization": f"Bearer {await world.node.token('alice-admin')}"}
    patched = await world.node.client.patch(
        "/api/objects", params={"iri": iri}, json={"endTime": None, "changeNote": "Fin libre"}, headers=admin
    )
    assert patched.status == 200, await patched.text()
    await _end_removed(world, iri)
    before = await world.counts()
    earlier = (_soon() - timedelta(days=1)).isoformat()
    later = (_soon() + timedelta(days=30)).isoformat()
    for body, field in (
        ({"endTime": earlier}, "endTime"),
        ({"startTime": later, "endTime": _soon().isoformat()}, "endTime"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"maximumAttendeeCapacity": -1}, "maximumAttendeeCapacity"),
        ({"startTime": "demain"}, "startTime"),
    ):
        refused = await world.node.client.patch("/api/objects", params={"iri": iri}, json=body, headers=admin)
        assert refused.status == 400 and (await refused.json(content_type=None))["field"] == field
    assert changed(before, await world.counts()) == {}
    # an event's own category (free text), and its capacity removed
    body = {"category": "MEETING", "maximumAttendeeCapacity": None, "location": None}
    patched = await world.node.client.patch("/api/objects", params={"iri": iri}, json=body, headers=admin)
    assert patched.status == 200, await patched.text()
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None and row.document["category"] == "MEETING"
    assert "maximumAttendeeCapacity" not in row.document and "location" not in row.document


async def test_a_c2s_update_with_a_null_end_time_removes_the_end(world: World) -> None:
    iri = await _publish(world)
    token = await world.node.token("alice-admin")
    update = {"type": "Update", "object": {"id": iri, "endTime": None}}
    await world.node.post_outbox("/groups/collectif", token, update)
    await _end_removed(world, iri)


async def test_a_members_api_join_of_a_full_a_cancelled_or_a_blocking_associations_event_is_a_409(
    world: World,
) -> None:
    """The JSON API says why in general terms (409 problem+json) and stores nothing."""
    full = await _publish(world, joinMode="free", maximumAttendeeCapacity=1)
    await _send(world, _mobilizon("join_event.json", world, world.alice, full), world.alice)
    cancelled = await _publish(world, joinMode="free")
    blocking = await _publish(world, joinMode="free")
    group, admin = await _actors(world)
    await events.cancel(world.node.fed, group, cancelled, by=admin)
    await world.node.create_association("autre", "Autre")
    olga_iri = await world.node.add_member("olga", "autre")
    async with world.node.sessions.begin() as session:
        olga = await session.scalar(select(Actor).where(Actor.iri == olga_iri))
        assert olga is not None
        session.add(
            Block(
                activity_iri=f"{world.group}#blocks/2",
                blocker_id=group.id,
                blocked_id=olga.id,
                created_at=datetime.now(UTC),
            )
        )
    marc = {"Authorization": f"Bearer {await world.node.token('marc')}"}
    olga_token = {"Authorization": f"Bearer {await world.node.token('olga')}"}
    before = await world.counts()
    for iri, headers in ((full, marc), (cancelled, marc), (blocking, olga_token)):
        answer = await world.node.client.post(
            "/api/events/participations", json={"event": iri}, headers=headers
        )
        assert answer.status == 409, await answer.text()
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert "no more participants" in (await answer.json(content_type=None))["detail"]
    assert "event_participants" not in changed(before, await world.counts())


async def test_a_c2s_update_carrying_the_whole_event_changes_only_what_differs(world: World) -> None:
    """A client that sends the event back as it was served, with one change, is not refused for
    the properties it repeats (ActivityPub §6.3.1); a real change of one fixed at publication is
    a 400 naming it, and nothing is stored."""
    iri = await _publish(world)
    token = await world.node.token("alice-admin")
    served = await world.node.client.get(urlsplit(iri).path, headers={"Accept": "application/activity+json"})
    assert served.status == 200
    document = await served.json(content_type=None)
    headers = {"Authorization": f"Bearer {token}"}
    update = {
        "type": "Update",
        "object": {**document, "name": "Table ronde (salle 2)", "participantCount": 9},
    }
    answer = await world.node.client.post("/groups/collectif/outbox", json=update, headers=headers)
    assert answer.status == 201, await answer.text()
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None and row.document["name"] == "Table ronde (salle 2)"
    assert row.document["content"].count("Avec l'ARS.") == 1  # the description is not rendered twice
    assert row.document["participantCount"] == 0  # the server's counter, not the client's
    assert row.document["location"] == document["location"]
    before = await world.counts()
    for field, value in (
        ("type", "Note"),
        ("attributedTo", world.alice.iri),
        ("published", _soon().isoformat()),
    ):
        changed_object = {**row.document, field: value}
        refused = await world.node.client.post(
            "/groups/collectif/outbox", json={"type": "Update", "object": changed_object}, headers=headers
        )
        assert refused.status == 400, await refused.text()
        problem = await refused.json(content_type=None)
        assert problem["field"] == field and field in problem["detail"]
    assert changed(before, await world.counts()) == {}
