"""Peers' events (Mobilizon, other Entraide nodes): the calendar facts of a stored ``Event``.

The object itself is stored like any peer's content (:mod:`server.services.content.remote`:
author and origin checked, HTML sanitised); this module keeps its ``events`` row in step with
each ``Create``/``Update`` received: times, place, join mode, capacity and status (a Mobilizon
cancellation is an ``Update`` with ``ical:status: CANCELLED``), ``sequence`` raised on every
change so that calendars replace their copy. Our people taking part are told of the change
(the ``Update`` is filed in their inbox, :func:`participants_here`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.errors import FederationError
from federation.vocab import events as wire
from federation.vocab.entraide import Kind
from federation.vocab.events import EventStatus
from federation.vocab.objects import Content
from server.db.models import Actor, Event, EventParticipant, RemoteObject
from server.services.content import remote as objects
from server.services.events.records import apply
from server.services.federation import Federation

log = logging.getLogger(__name__)


async def record(
    fed: Federation, object_iri: str, raw: Mapping[str, Any], *, updated: datetime | None = None
) -> EventStatus | None:
    """Keep the ``events`` row of a peer's stored ``Event`` in step with ``raw``; returns its
    status (None when the object is not a readable event held here). A revision older than the
    one held changes nothing."""
    info = wire.read_event(raw)
    if info is None:
        return None
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(
            select(RemoteObject).where(
                RemoteObject.iri == object_iri,
                RemoteObject.local.is_(False),
                RemoteObject.deleted_at.is_(None),
            )
        )
        if row is None:
            return None
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        if event is None:
            event = Event(object_id=row.id, sequence=0)
            session.add(event)
        elif updated is not None and row.updated is not None and updated < row.updated:
            return EventStatus(event.status)
        else:
            event.sequence += 1
        row.kind = Kind.EVENT.value
        apply(event, info)
    if info.status is EventStatus.CANCELLED:
        log.info("peer event cancelled", extra={"event": object_iri})
    return info.status


async def participants_here(fed: Federation, object_iri: str) -> set[int]:
    """Our people taking part in (or asking to join) a peer's event."""
    async with fed.node.sessions() as session:
        return set(await session.scalars(_local_participants(object_iri)))


def _local_participants(object_iri: str) -> Any:
    return (
        select(EventParticipant.actor_id)
        .join(Event, Event.id == EventParticipant.event_id)
        .join(RemoteObject, RemoteObject.id == Event.object_id)
        .join(Actor, Actor.id == EventParticipant.actor_id)
        .where(
            RemoteObject.iri == object_iri,
            EventParticipant.state.in_(("pending", "accepted")),
            Actor.local.is_(True),
        )
    )


async def hold(fed: Federation, event_iri: str) -> bool:
    """Fetch a peer's event that one of our people wants to join and keep it (with its author),
    as Mobilizon does; True when it is now held. Only an ``Event`` is kept."""
    if fed.node.uris.is_local(event_iri):
        return False
    try:
        content, raw = await objects.fetch_object(fed, event_iri)
    except FederationError as exc:
        log.info("event fetch failed", extra={"event": event_iri, "code": exc.code})
        return False
    if not isinstance(content, Content) or content.type != "Event" or content.author is None:
        return False
    author = await fed.actor(content.author)
    now = fed.node.clock()
    row = await objects.store_object(fed, content, raw, author, now=now, require_relevance=False)
    return row is not None and await record(fed, event_iri, raw, updated=content.updated) is not None


async def is_event(session: AsyncSession, object_iri: str) -> bool:
    return (
        await session.scalar(
            select(Event.id)
            .join(RemoteObject, RemoteObject.id == Event.object_id)
            .where(RemoteObject.iri == object_iri)
        )
        is not None
    )
