"""An event's rows and documents: its facts (``EventInfo``) read from and written to its
``events`` row, the wire document rendered from them, participant counts. Shared by the event
kind (:mod:`server.services.content.kinds.event`), participation, peers' events and calendars;
it publishes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.vocab import events as wire
from federation.vocab.events import EventInfo, EventStatus, JoinMode, Place
from server.db.models import Actor, Event, EventParticipant, Membership, RemoteObject
from server.services.errors import Forbidden, InvalidInput

ORGANISING_ROLES = ("admin", "moderator")


async def check_organiser(session: AsyncSession, group: Actor, by: Actor) -> None:
    """``by`` acts for the association: one of its active admins or moderators."""
    if group.type != "Group" or not group.local:
        raise InvalidInput("events are published by one of our associations", field="actor")
    role = await session.scalar(
        select(Membership.role).where(
            Membership.group_id == group.id, Membership.member_id == by.id, Membership.state == "active"
        )
    )
    if role not in ORGANISING_ROLES:
        raise Forbidden("only the association's admins and moderators organise its events")


# --- rows <-> facts ---------------------------------------------------------------------------------


def info_of(event: Event, document: Mapping[str, Any], participants: int = 0) -> EventInfo:
    """The facts of a stored event (the row; the name and category from the document)."""
    place = Place(
        name=event.location_name,
        street=event.street,
        locality=event.locality,
        postal_code=event.postal_code,
        region=event.region,
        country=event.country,
    )
    category = document.get("category")
    return EventInfo(
        name=str(document.get("name") or "-"),
        start=event.start_at,
        end=event.end_at,
        timezone=event.timezone,
        place=place if place.lines() else None,
        online_url=Iri(event.online_url) if event.online_url else None,
        join_mode=JoinMode(event.join_mode),
        capacity=event.capacity,
        status=EventStatus(event.status),
        category=category if isinstance(category, str) else None,
        participant_count=participants,
        anonymous_participation=False,
        comments_enabled=document.get("commentsEnabled") is not False,
    )


def apply(event: Event, info: EventInfo) -> None:
    """Write the facts into the row (the caller raises ``sequence``)."""
    place = info.place or Place()
    event.start_at, event.end_at, event.timezone = info.start, info.end, info.timezone
    event.location_name, event.street, event.locality = place.name, place.street, place.locality
    event.postal_code, event.region, event.country = place.postal_code, place.region, place.country
    event.online_url = info.online_url
    event.join_mode, event.capacity, event.status = info.join_mode.value, info.capacity, info.status.value


async def accepted_count(session: AsyncSession, event_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(EventParticipant)
            .where(EventParticipant.event_id == event_id, EventParticipant.state == "accepted")
        )
        or 0
    )


EVENT_KEYS = frozenset(
    {
        "startTime",
        "endTime",
        "timezone",
        "location",
        "joinMode",
        "maximumAttendeeCapacity",
        "remainingAttendeeCapacity",
        "participantCount",
        wire.STATUS_TERM,
        "category",
        "isOnline",
        "anonymousParticipationEnabled",
        "commentsEnabled",
    }
)


def render_document(base: Mapping[str, Any], info: EventInfo, description_html: str) -> dict[str, Any]:
    """The event's document: ``base`` (ids, addressing, tags) with the event terms, the readable
    summary before the description in ``content``, and the online link as an attachment."""
    document = {k: v for k, v in base.items() if k not in EVENT_KEYS and k != "@context"}
    document.update(wire.render_event_terms(info))
    document["content"] = wire.summary_html(info, str(base["url"])) + description_html
    document["source"] = {"content": description_html, "mediaType": "text/html"}
    attachments = [a for a in document.get("attachment", []) if a.get("type") != "Link"]
    if info.online_url is not None:
        attachments.append(wire.online_link(info.online_url))
    if attachments:
        document["attachment"] = attachments
    else:
        document.pop("attachment", None)
    return document


def stored(document: Mapping[str, Any]) -> dict[str, Any]:
    return {"@context": wire.EVENT_CONTEXT, **{k: v for k, v in document.items() if k != "@context"}}


async def participant_iris(session: AsyncSession, event_id: int) -> list[str]:
    """Remote participants (pending or accepted): an edit or a cancellation reaches them even
    when they do not follow the association."""
    rows = await session.scalars(
        select(Actor.iri)
        .join(EventParticipant, EventParticipant.actor_id == Actor.id)
        .where(
            EventParticipant.event_id == event_id,
            EventParticipant.state.in_(("pending", "accepted")),
            Actor.local.is_(False),
        )
        .order_by(Actor.id)
    )
    return list(rows)


async def refresh_counts(session: AsyncSession, event: Event) -> None:
    """Keep the served document's ``participantCount`` and ``remainingAttendeeCapacity`` current
    (not an edit: no ``Update`` is published for a new participant, as on Mobilizon)."""
    row = await session.get(RemoteObject, event.object_id)
    if row is None or not row.local:
        return
    count = await accepted_count(session, event.id)
    document = dict(row.document)
    document["participantCount"] = count
    if event.capacity:
        document["remainingAttendeeCapacity"] = max(event.capacity - count, 0)
    row.document = document


def is_over(event: Event, now: datetime) -> bool:
    """The event has ended (or, without an end, started): nobody joins it any more."""
    return (event.end_at or event.start_at) <= now
