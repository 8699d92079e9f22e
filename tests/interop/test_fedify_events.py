"""Events (issue 18) against a real Fedify peer (``@fedify/fedify`` 2.3.6, ``tests/interop/peer``):
the peer receives an association's ``Create{Event}``, takes part with Mobilizon's ``Join`` and
gets the organiser's ``Accept`` (at once for a free event, once an organiser accepts for a
restricted one) or ``Reject`` (a full event), each verified by Fedify.

The oracles: what Fedify read from the delivered event (``describe`` in peer.mjs, which is also
what Mastodon shows: the name, the date and the link lead ``content``), the answers it received
(matched by the ``Join`` id), and the node's participants and served ``participantCount``.
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.db.models import Event, EventParticipant, RemoteObject
from tests.interop.support import FedifyPeer, activity_of, assert_verified, parsed_object
from tests.interop.test_fedify_content import Association, _followed_by_peer
from tests.support.nodes import Node, running_node, wait_until

StartPeer = Callable[..., AbstractAsyncContextManager[FedifyPeer]]
NewDatabase = Callable[[int], Awaitable[str]]

START = (datetime.now(UTC) + timedelta(days=12)).replace(hour=16, minute=0, second=0, microsecond=0)


async def _api(node: Node, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    response = await node.client.request(method, path, json=body, headers=headers)
    return response.status, await response.json(content_type=None)


async def _event(alpha: Association, name: str, **extra: Any) -> str:
    """A public event of alpha, published through the JSON API; its IRI."""
    body = {
        "name": name,
        "startTime": START.isoformat(),
        "endTime": (START + timedelta(hours=2)).isoformat(),
        "timezone": "Europe/Paris",
        "location": {"name": "Maison des associations", "addressLocality": "Rennes"},
        **extra,
    }
    status, created = await _api(alpha.node, alpha.token, "POST", "/api/associations/alpha/events", body)
    assert status == 201, created
    return str(created["id"])


async def _state(node: Node, event_iri: str, actor_iri: str) -> str | None:
    async with node.sessions() as session:
        return await session.scalar(
            select(EventParticipant.state)
            .join(Event, Event.id == EventParticipant.event_id)
            .join(RemoteObject, RemoteObject.id == Event.object_id)
            .where(RemoteObject.iri == event_iri, EventParticipant.actor_iri == actor_iri)
        )


def _is(node: Node, event_iri: str, actor_iri: str, state: str | None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _state(node, event_iri, actor_iri) == state

    return check


def _answer_to(join_id: str) -> Callable[[dict[str, Any]], bool]:
    """An ``Accept`` or ``Reject`` whose embedded object is the peer's ``Join``."""

    def match(record: dict[str, Any]) -> bool:
        body = record.get("body")
        obj = body.get("object") if isinstance(body, dict) else None
        return isinstance(obj, dict) and obj.get("id") == join_id and body.get("type") in ("Accept", "Reject")

    return match


async def _answered(peer: FedifyPeer, join_id: str, kind: str) -> dict[str, Any]:
    record = await peer.wait_received(_answer_to(join_id), what=f"the {kind} of {join_id}")
    assert_verified(record)
    body = record["body"]
    assert body["type"] == kind and record["type"] == kind, body
    assert body["object"]["type"] == "Join" and body["object"]["actor"] == peer.actor, body
    return body


async def test_peer_receives_an_event_joins_it_and_gets_accept_or_reject(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _followed_by_peer(node, peer)

        # A free public event reaches the following peer; Fedify reads an Event whose content
        # leads with the name, the date and the link (what Mastodon shows).
        free = await _event(alpha, "Permanence juridique", joinMode="free")
        created = await peer.wait_received(activity_of("Create", object_id=free), what="the Create{Event}")
        assert_verified(created)
        event = parsed_object(created)
        assert event["class"] == "Event" and event["name"] == "Permanence juridique", event
        assert event["attributedTo"] == alpha.iri and event["startTime"] and event["endTime"], event
        assert event["content"].startswith("<p><strong>Permanence juridique</strong></p><p>📅 "), event
        assert START.strftime("%Y-%m-%d") in event["content"] and f'href="{free}"' in event["content"]
        assert created["body"]["object"]["joinMode"] == "free"

        # Join -> Accept at once; the peer counts among the participants
        join = await peer.act("join", event=free)
        await _answered(peer, join["id"], "Accept")
        assert await _state(node, free, peer.actor) == "accepted"
        fetched = await peer.get("fetch", url=free, signed="1")
        assert fetched["ok"] and fetched["document"]["participantCount"] == 1, fetched
        participants = f"/api/associations/alpha/events/participants?event={free}"
        status, listed = await _api(node, alpha.token, "GET", participants)
        assert status == 200, listed
        assert [(p["actor"], p["state"]) for p in listed["items"]] == [(peer.actor, "accepted")]

        # A restricted event: pending until an organiser accepts, then the Accept reaches the peer
        restricted = await _event(alpha, "Assemblée générale", joinMode="restricted")
        join = await peer.act("join", event=restricted, message="Je représente l'antenne de Brest")
        await wait_until(_is(node, restricted, peer.actor, "pending"), what="the request is pending")
        assert [r for r in await peer.received() if _answer_to(join["id"])(r)] == []
        decision = {"event": restricted, "participant": peer.actor, "accept": True}
        decide = "/api/associations/alpha/events/participants"
        status, decided = await _api(node, alpha.token, "POST", decide, decision)
        assert status == 200 and decided["state"] == "accepted", decided
        await _answered(peer, join["id"], "Accept")

        # A full event (one place, taken by alice): Reject, and nothing stored for the peer
        full = await _event(alpha, "Atelier", joinMode="free", maximumAttendeeCapacity=1)
        status, taken = await _api(node, alpha.token, "POST", "/api/events/participations", {"event": full})
        assert status == 201 and taken["state"] == "accepted", taken
        join = await peer.act("join", event=full)
        await _answered(peer, join["id"], "Reject")
        assert await _state(node, full, peer.actor) is None
