"""Events in the browser (issue 18), on both engines: the publishing form and its refusals, the
event page (facts, status, places left, join and leave, the calendar link), the organisers'
participant list, cancelling, and the agendas of an association and of the node. A members-only
event is never shown to a stranger, in an agenda or on its page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from server.db.models import Actor, Event, EventParticipant, Follow, RemoteObject
from server.services.events import agenda
from server.services.events import publishing as events
from tests.server.test_events import _mobilizon, _send
from tests.server.test_web_account import _csrf
from tests.server.test_web_publish import HTML, _as, _get, _object, _post, _world
from tests.support.nodes import Node
from tests.support.world import NodeStarter, World, given_world

PARIS = ZoneInfo("Europe/Paris")
START = (datetime.now(PARIS) + timedelta(days=40)).replace(hour=18, minute=30, second=0, microsecond=0)
FORM = {
    "name": "Table ronde sur l'accès aux soins",
    "content": "Avec **l'ARS** et les usagers.",
    "startTime": START.strftime("%Y-%m-%dT%H:%M"),
    "endTime": (START + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
    "timezone": "Europe/Paris",
    "placeName": "Maison des associations",
    "streetAddress": "6 cours des Alliés",
    "postalCode": "35000",
    "addressLocality": "Rennes",
    "joinMode": "free",
    "maximumAttendeeCapacity": "30",
    "status": "confirmed",
    "category": "Santé",
    "visibility": "public",
}
NEW = "/groups/alpha/manage/new/event"


async def _actor(node: Node, handle: str) -> Actor:
    actor = await node.scalar(select(Actor).where(Actor.handle == handle))
    assert actor is not None
    return actor


async def _publish(node: Node, *, days: float = 10, **extra: Any) -> str:
    """An event of alpha, published by alice through the service (as the API does)."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    obj = {
        "name": "Permanence",
        "startTime": start.isoformat(),
        "endTime": (start + timedelta(hours=1)).isoformat(),
        "timezone": "Europe/Paris",
        **extra,
    }
    published = await events.create(
        node.fed, await _actor(node, "alpha"), obj, by=await _actor(node, "alice")
    )
    assert published.object_iri is not None
    return published.object_iri


def _path(iri: str) -> str:
    return "/" + iri.split("://", 1)[1].split("/", 1)[1]


async def _participate(node: Node, iri: str, **fields: str) -> Any:
    return await _post(node, _path(iri), _path(iri) + "/participation", **fields)


async def test_an_admin_publishes_an_event_shown_on_its_page_and_in_both_agendas(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    form = await _get(node, NEW)
    assert 'name="timezone"' in form and 'name="joinMode"' in form and 'value="Europe/Paris"' in form
    assert "New event" in await _get(node, "/groups/alpha/manage")
    created = await _post(node, NEW, NEW, **FORM)
    assert created.status == 303, await created.text()
    row = await _object(node, created.headers["Location"])
    event = await node.scalar(select(Event).where(Event.object_id == row.id))
    # The local time typed in the form is read in the event's zone and stored in UTC.
    assert row.kind == "event" and event.start_at == START.astimezone(UTC)
    assert event.timezone == "Europe/Paris" and event.capacity == 30 and event.locality == "Rennes"
    assert "<strong>l'ARS</strong>" in row.document["source"]["content"]  # Markdown rendered once

    page = await _get(node, created.headers["Location"])
    assert "<h1>Table ronde sur l&#39;accès aux soins</h1>" in page
    assert "Europe/Paris" in page and "6 cours des Alliés" in page and "Confirmed" in page
    assert "Open to all" in page and "30 places left" in page and "Participants" in page
    assert f'href="{created.headers["Location"]}/event.ics"' in page
    assert "<strong>l&#39;ARS</strong>" in page or "<strong>l'ARS</strong>" in page
    assert "Event participants" in page  # alice organises

    for agenda_page in ("/groups/alpha/events", "/events"):
        node.client.session.cookie_jar.clear()  # anonymous
        listed = await _get(node, agenda_page)
        assert "Table ronde" in listed and "Upcoming" in listed
    subscribe = f'href="{node.uris.origin}/groups/alpha/feeds/events.ics"'
    assert subscribe in await _get(node, "/groups/alpha/events")
    assert 'href="/groups/alpha/events"' in await _get(node, "/groups/alpha")
    french = await node.client.get("/groups/alpha/events", headers={**HTML, "Accept-Language": "fr"})
    assert "À venir" in await french.text() and "S&#39;abonner au calendrier" in await french.text()


async def test_bad_event_input_is_refused_next_to_its_field_and_nothing_is_stored(node: Node) -> None:
    await _world(node)
    await _as(node, "mona")
    before = await node.row_counts()
    bad = {
        "endTime": ((START - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "endTime-error"),
        "timezone": ("Mars/Olympus_Mons", "timezone-error"),
        "maximumAttendeeCapacity": ("-3", "maximumAttendeeCapacity-error"),
        "onlineUrl": ("javascript:alert(1)", "onlineUrl-error"),
        "startTime": ("", "startTime-error"),
    }
    for field, (value, error_id) in bad.items():
        response = await _post(node, NEW, NEW, **{**FORM, field: value})
        page = await response.text()
        assert response.status == 400, (field, page[:500])
        assert f'id="{error_id}"' in page and 'aria-invalid="true"' in page, field
        assert "Table ronde sur l&#39;accès aux soins" in page  # the input is kept
    assert await node.row_counts() == before


async def test_a_members_only_event_is_never_shown_to_a_stranger(node: Node) -> None:
    await _world(node)
    iri = await _publish(node, name="Réunion interne", visibility="members")
    await _publish(node, name="Journée portes ouvertes")
    for who in (None, "bea"):  # anonymous, then a member of another association
        node.client.session.cookie_jar.clear()
        if who:
            await _as(node, who)
        for listing in ("/groups/alpha/events", "/events"):
            shown = await _get(node, listing)
            assert "Journée portes ouvertes" in shown and "Réunion interne" not in shown, (who, listing)
        await _get(node, _path(iri), status=404)
        refused = await node.client.get(_path(iri) + "/event.ics")
        assert refused.status == 404
    await _as(node, "paul")
    for listing in ("/groups/alpha/events", "/events"):
        shown = await _get(node, listing)
        assert "Réunion interne" in shown and "Members only" in shown
    page = await _get(node, _path(iri))
    assert "Réunion interne" in page and "event.ics" not in page  # no public calendar for it


async def test_a_member_joins_and_leaves_a_free_event(node: Node) -> None:
    await _world(node)
    iri = await _publish(node, joinMode="free", maximumAttendeeCapacity=5)
    await _as(node, "paul")
    page = await _get(node, _path(iri))
    assert 'value="join"' in page and "5 places left" in page
    joined = await _participate(node, iri, action="join")
    assert joined.status == 303 and joined.headers["Location"] == _path(iri) + "?participation=accepted"
    page = await _get(node, joined.headers["Location"])
    assert "You are taking part in this event." in page and "4 places left" in page
    assert 'value="leave"' in page
    left = await _participate(node, iri, action="leave")
    assert left.headers["Location"].endswith("?participation=left")
    assert await node.scalar(select(EventParticipant.id)) is None
    # A forged post (no CSRF token) is refused and changes nothing.
    forged = await node.client.post(_path(iri) + "/participation", data={"action": "join"}, headers=HTML)
    assert forged.status == 403 and await node.scalar(select(EventParticipant.id)) is None
    node.client.session.cookie_jar.clear()
    assert "Sign in to take part" in await _get(node, _path(iri))


async def test_an_organiser_accepts_a_restricted_request(node: Node) -> None:
    await _world(node)
    iri = await _publish(node, joinMode="restricted", maximumAttendeeCapacity=1)
    await node.add_member("zoe", "alpha")
    await _as(node, "paul")
    page = await _get(node, _path(iri))
    assert 'name="message"' in page and "Ask to take part" in page
    asked = await _participate(node, iri, action="join", message="Je viendrai avec ma fille.")
    assert asked.headers["Location"].endswith("?participation=pending")
    page = await _get(node, _path(iri))
    assert "Request pending" in page and "Withdraw my request" in page
    assert "Your request is pending" in await _get(node, "/groups/alpha/events")
    participants = f"/groups/alpha/events/participants?event={iri}"
    await _get(node, participants, status=403)  # a plain member never sees the list

    await _as(node, "zoe")
    await _participate(node, iri, action="join")
    await _as(node, "mona")
    assert "2 pending request(s)" in await _get(node, _path(iri))
    listing = await _get(node, participants)
    assert "paul" in listing and "Je viendrai avec ma fille." in listing and "Pending" in listing
    paul = await _actor(node, "paul")
    accepted = await _post(
        node,
        participants,
        "/groups/alpha/events/participants",
        event=iri,
        participant=paul.iri,
        decision="accept",
    )
    assert accepted.status == 303 and "decided=accepted" in accepted.headers["Location"]
    assert "The request is accepted." in await _get(node, accepted.headers["Location"])
    # The event is now full: accepting zoe is refused and said so; refusing her works.
    zoe = await _actor(node, "zoe")
    full = await _post(
        node,
        participants,
        "/groups/alpha/events/participants",
        event=iri,
        participant=zoe.iri,
        decision="accept",
    )
    assert full.status == 409 and "The event is full" in await full.text()
    refused = await _post(
        node,
        participants,
        "/groups/alpha/events/participants",
        event=iri,
        participant=zoe.iri,
        decision="reject",
    )
    assert "decided=rejected" in refused.headers["Location"]
    async with node.sessions() as session:
        states = dict(
            (await session.execute(select(EventParticipant.actor_iri, EventParticipant.state))).all()
        )
    assert states == {paul.iri: "accepted", zoe.iri: "rejected"}
    await _as(node, "paul")
    page = await _get(node, _path(iri))
    assert "You are taking part." in page and "The event is full." not in page
    await _as(node, "zoe")
    page = await _get(node, _path(iri))
    assert "The event is full." in page and 'value="join"' not in page


async def test_joining_is_refused_clearly_when_full_or_cancelled(node: Node) -> None:
    await _world(node)
    iri = await _publish(node, joinMode="free", maximumAttendeeCapacity=1)
    await _as(node, "paul")
    await _participate(node, iri, action="join")
    await _as(node, "mona")
    page = await _get(node, _path(iri))
    assert "The event is full." in page and 'value="join"' not in page and "0 places left" in page
    csrf = _csrf(page)
    full = await node.client.post(
        _path(iri) + "/participation",
        data={"csrf": csrf, "action": "join"},
        headers=HTML,
        allow_redirects=False,
    )
    assert full.status == 409 and "Participation refused" in await full.text()

    # Cancelling: without the box ticked nothing happens; then the event is cancelled for good.
    edit_page = f"/groups/alpha/manage/edit?iri={iri}"
    form = await _get(node, edit_page)
    assert "Cancel the event" in form and 'name="confirm"' in form
    unconfirmed = await _post(node, edit_page, "/groups/alpha/manage/cancel", iri=iri)
    assert unconfirmed.status == 400 and "Tick the box" in await unconfirmed.text()
    assert (await node.scalar(select(Event.status))) == "confirmed"
    cancelled = await _post(node, edit_page, "/groups/alpha/manage/cancel", iri=iri, confirm="1")
    assert cancelled.headers["Location"] == "/groups/alpha/manage?done=cancelled"
    assert (await node.scalar(select(Event.status))) == "cancelled"
    assert "Cancelled" in await _get(node, "/groups/alpha/manage")
    again = await _post(node, "/groups/alpha/manage", "/groups/alpha/manage/cancel", iri=iri, confirm="1")
    assert again.headers["Location"] == "/groups/alpha/manage?done=refused_cancelled"
    await _as(node, "paul")
    page = await _get(node, _path(iri))
    assert "This event is cancelled." in page and "Cancelled" in page
    assert "The event is cancelled: nobody joins any more." in page
    listed = await _get(node, "/groups/alpha/events")
    assert "Cancelled" in listed


async def test_an_admin_edits_an_event_in_its_own_time_zone(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    created = await _post(node, NEW, NEW, **FORM)
    row = await _object(node, created.headers["Location"])
    edit_page = f"/groups/alpha/manage/edit?iri={row.iri}"
    form = await _get(node, edit_page)
    assert f'value="{FORM["startTime"]}"' in form and 'value="Rennes"' in form  # local times, as typed
    assert "Current description" in form
    edited = await _post(
        node, edit_page, "/groups/alpha/manage/edit",
        **{**FORM, "iri": row.iri, "content": "", "timezone": "America/Montreal",
           "maximumAttendeeCapacity": "12", "status": "tentative", "changeNote": "Nouvelle salle"},
    )  # fmt: skip
    assert edited.status == 303, await edited.text()
    event = await node.scalar(select(Event).where(Event.object_id == row.id))
    start = datetime.fromisoformat(FORM["startTime"]).replace(tzinfo=ZoneInfo("America/Montreal"))
    assert event.start_at == start.astimezone(UTC) and event.capacity == 12 and event.status == "tentative"
    row = await _object(node, created.headers["Location"])
    assert "<strong>l'ARS</strong>" in row.document["source"]["content"]  # an empty field keeps it
    assert "Tentative" in await _get(node, created.headers["Location"])
    bad = await _post(
        node, edit_page, "/groups/alpha/manage/edit", **{**FORM, "iri": row.iri, "timezone": "Nowhere"}
    )
    assert bad.status == 400 and 'id="timezone-error"' in await bad.text()
    # A plain member reaches none of the organisers' pages.
    await _as(node, "paul")
    await _get(node, NEW, status=403)
    await _get(node, edit_page, status=403)


async def test_the_agenda_pages_upcoming_events_and_keeps_the_recent_past(node: Node) -> None:
    await _world(node)
    for day in range(agenda.PAGE_SIZE + 2):
        await _publish(node, days=day + 1, name=f"Atelier {day:02d}")
    async with node.sessions.begin() as session:  # one event that ended last week
        row = await session.scalar(select(RemoteObject).where(RemoteObject.kind == "event").limit(1))
        assert row is not None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        event.start_at = datetime.now(UTC) - timedelta(days=7, hours=2)
        event.end_at = datetime.now(UTC) - timedelta(days=7)
    first = await _get(node, "/events")
    upcoming, past = first.split('id="past-title"')
    assert "Atelier 00" in past and "Atelier 00" not in upcoming
    assert upcoming.index("Atelier 01") < upcoming.index("Atelier 02")  # soonest first
    shown = set(re.findall(r"Atelier \d\d", upcoming))
    assert len(shown) == agenda.PAGE_SIZE and "Atelier 21" not in shown
    later = re.search(r'href="\?after=([^"]+)" rel="next"', first)
    assert later is not None
    second = await _get(node, "/events?after=" + later.group(1))
    assert set(re.findall(r"Atelier \d\d", second)) == {"Atelier 21"} and 'id="past-title"' not in second
    assert "Back to the next events" in second and 'rel="next"' not in second
    assert "Atelier" in await _get(node, "/events?after=garbage")  # a bad cursor is the first page


@pytest.fixture
async def world(start_node: NodeStarter, peers: Any) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("marc", "collectif")
        yield world


async def test_a_member_sees_the_events_of_a_peer_they_follow_in_the_node_agenda(world: World) -> None:
    node = world.node
    now = datetime.now(UTC)
    async with node.sessions.begin() as session:
        peer = await session.scalar(select(Actor).where(Actor.iri == world.alice.iri))
        assert peer is not None
        for follower in ("collectif", "marc"):
            who = await session.scalar(select(Actor).where(Actor.handle == follower, Actor.local.is_(True)))
            assert who is not None
            session.add(
                Follow(
                    follower_id=who.id, followed_id=peer.id, state="accepted",
                    follow_iri=f"{who.iri}#follows/1", created_at=now, accepted_at=now,
                )
            )  # fmt: skip
    create = _mobilizon("create_event.json", world, world.alice)
    start = now.replace(microsecond=0) + timedelta(days=30)
    create["object"].update(startTime=start.isoformat(), endTime=(start + timedelta(hours=2)).isoformat())
    await _send(world, create, world.alice)
    name = "Table ronde : accès aux soins en Bretagne"
    assert name not in await _get(node, "/events")  # anonymous: only our associations' events
    await _as(node, "marc")
    listed = await _get(node, "/events")
    assert name in listed
    copy = re.search(r'href="(/read/\d+)"', listed)
    assert copy is not None
    page = await _get(node, copy.group(1))
    assert "Europe/Paris" in page and "Rennes" in page and "Ask to take part" in page
    assert "event.ics" not in page  # a peer's event: its calendar is on its own server


async def test_the_places_left_are_said_in_the_singular_and_the_plural_in_both_languages(node: Node) -> None:
    """The plural forms of the catalogues' headers: English ``n != 1``, French ``n > 1``."""
    await _world(node)
    one = await _publish(node, joinMode="free", maximumAttendeeCapacity=1)
    two = await _publish(node, joinMode="free", maximumAttendeeCapacity=2)
    node.client.session.cookie_jar.clear()  # anonymous: the language is the browser's
    expected = {
        "en": {one: "1 place left", two: "2 places left"},
        "fr": {one: "1 place restante", two: "2 places restantes"},
    }
    for lang, wanted in expected.items():
        for iri, words in wanted.items():
            response = await node.client.get(_path(iri), headers={**HTML, "Accept-Language": lang})
            page = await response.text()
            assert response.status == 200 and words in page, (lang, words)
            assert "place(s)" not in page and "1 places" not in page
