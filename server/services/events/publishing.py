"""An association publishes, edits and cancels its events (the JSON API, the command line and
the web pages call these; a C2S client publishes an ``Event`` through its outbox).

An event is a content kind (:mod:`server.services.content.kinds.event`): the shared pipeline
stores it with its ``Create`` and fan-out job in one transaction, and every edit publishes an
``Update`` carrying the whole event. A cancellation is an edit to ``ical:status: CANCELLED``,
as Mobilizon sends it. Updates reach the audience, every holder and every participant
(:func:`server.services.content.revisions.holders` lists them), so a participant who does
not follow the association still learns of a change or a cancellation.

Only the association's admins and moderators publish and edit (recorded in the audit log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.vocab.entraide import Kind
from federation.vocab.events import EventStatus
from server.db.models import Actor, RemoteObject
from server.services.content import local as content
from server.services.content.local import Published
from server.services.errors import NotFound
from server.services.events.records import check_organiser
from server.services.federation import Federation


async def _organiser(fed: Federation, group: Actor, by: Actor) -> None:
    async with fed.node.sessions() as session:
        await check_organiser(session, group, by)


async def create(fed: Federation, group: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Publish a new event of ``group`` (``by``: the admin or moderator who does it)."""
    await _organiser(fed, group, by)
    return await content.create(fed, group, {**obj, "type": "Event"}, by=by)


async def owned_event(fed: Federation, group: Actor, object_iri: Any) -> RemoteObject:
    """One of ``group``'s live events (NotFound for anything else, as for a missing object)."""
    row = await content.owned(fed, group, object_iri)
    if row.kind != Kind.EVENT.value:
        raise NotFound("no such event")
    return row


async def update(fed: Federation, group: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Edit one of ``group``'s events: the fields given change and ``SEQUENCE`` is raised."""
    await _organiser(fed, group, by)
    await owned_event(fed, group, obj.get("id"))
    return await content.update(fed, group, obj, by=by)


async def cancel(fed: Federation, group: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Cancel an event: an ``Update`` with ``ical:status: CANCELLED`` to everyone concerned."""
    return await update(fed, group, {"id": object_iri, "status": EventStatus.CANCELLED.value}, by=by)
