"""An association publishes, edits and cancels its events.

An event is a content object (kind ``event``, type ``Event``, its document in Mobilizon's wire
form, :mod:`federation.vocab.events`) plus its ``events`` row (times, place, join mode, capacity,
status, ``SEQUENCE``). Publishing stores both and the ``Create`` with its fan-out job in one
transaction (the transactional outbox); every edit raises ``sequence`` and publishes an
``Update`` carrying the whole event to its audience and, beyond it, to every participant (a
participant who does not follow the association still learns of a change or a cancellation).
A cancellation is an edit to ``ical:status: CANCELLED``, as Mobilizon sends it.

Only the association's admins and moderators publish and edit (recorded in the audit log).
Members-only events are addressed to the members collection only, and their participants must
be active members (:mod:`server.services.events.participation`), so no channel widens them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import Visibility, address
from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab import entraide
from federation.vocab import events as wire
from federation.vocab.events import EventInfo, EventStatus, JoinMode, Place
from server.db.models import Actor, Event, EventParticipant, Membership, RemoteObject
from server.services.content import local as content
from server.services.content.local import Published
from server.services.content.sanitize import sanitize_html, text_paragraph
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.events import fields
from server.services.federation import Federation

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


# --- publish, edit, cancel ----------------------------------------------------------------------------


async def create(fed: Federation, group: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Publish a new event of ``group`` (``by``: the admin or moderator who does it)."""
    info, description = fields.read_new(obj)
    level = fields.visibility_of(obj.get("visibility"))
    tags = content.hashtags(fed, obj.get("tag"))
    uris = fed.node.uris
    now = fed.node.clock()
    object_iri = uris.object(uuid.uuid4().hex)
    to, cc = _addressing(uris, group, level)
    base: dict[str, Any] = {
        "id": object_iri,
        "type": "Event",
        "attributedTo": group.iri,
        "published": entraide.iso(now),
        "to": to,
        "cc": cc,
        "url": object_iri,
        "replies": uris.replies(object_iri),
        "likes": uris.likes(object_iri),
        "context": uris.context(object_iri),
    }
    if tags:
        base["tag"] = tags
    document = render_document(base, info, sanitize_html(description))
    async with fed.node.sessions.begin() as session:
        await check_organiser(session, group, by)
        row = RemoteObject(
            iri=object_iri,
            local=True,
            type="Event",
            kind=entraide.Kind.EVENT.value,
            attributed_to_id=group.id,
            audience_id=group.id,
            context_iri=base["context"],
            visibility=level.value,
            document=stored(document),
            published=now,
            received_at=now,
        )
        session.add(row)
        await session.flush()
        event = Event(object_id=row.id, sequence=0)
        apply(event, info)
        session.add(event)
        activity = {"id": new_activity_iri(uris), "type": "Create", "object": document, "to": to, "cc": cc}
        published = await publish(session, group, activity, visibility=level.value, now=now)
        content.audit(session, group, by, "event.create", object_iri, now)
    fed.notify_worker()
    return Published(published.iri, object_iri)


def _addressing(uris: UriScheme, group: Actor, level: Visibility) -> tuple[list[str], list[str]]:
    to, cc = address(
        level,
        actor_followers=Iri(group.followers_iri or ""),
        group_members=uris.members(Iri(group.iri)),
    )
    return list(to), list(cc)


async def owned_event(fed: Federation, group: Actor, object_iri: Any) -> RemoteObject:
    """One of ``group``'s live events (NotFound for anything else, as for a missing object)."""
    row = await content.owned(fed, group, object_iri)
    if row.kind != entraide.Kind.EVENT.value:
        raise NotFound("no such event")
    return row


async def update(fed: Federation, group: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Edit one of ``group``'s events: the fields given change, ``sequence`` is raised and the
    ``Update`` reaches the audience and every participant. The visibility never changes."""
    row = await owned_event(fed, group, obj.get("id"))
    if "visibility" in obj and obj["visibility"] != row.visibility:
        raise InvalidInput("visibility cannot be changed after publication", field="visibility")
    changes = {k: v for k, v in obj.items() if k != "visibility"}
    note = content.change_note(changes.get(content.CHANGE_NOTE))
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        await check_organiser(session, group, by)
        stored_row = await session.get(RemoteObject, row.id)
        event = await session.scalar(select(Event).where(Event.object_id == row.id))
        if stored_row is None or event is None:
            raise NotFound("no such event")
        base = info_of(event, stored_row.document, await accepted_count(session, event.id))
        if base.status is EventStatus.CANCELLED:
            raise InvalidInput("a cancelled event cannot be changed", field="status")
        info = fields.read_changes({k: v for k, v in changes.items() if k != content.CHANGE_NOTE}, base)
        document = dict(stored_row.document)
        if "tag" in changes:
            document["tag"] = content.hashtags(fed, changes.get("tag"))
        description = (
            sanitize_html(fields.description_of(changes.get("content")) or "")
            if "content" in changes
            else str(document.get("source", {}).get("content", ""))
        )
        apply(event, info)
        event.sequence += 1
        document = render_document(document, info, description)
        document["updated"] = entraide.iso(now)
        stored_row.document, stored_row.updated = stored(document), now
        activity: dict[str, Any] = {
            "id": new_activity_iri(fed.node.uris),
            "type": "Update",
            "object": document,
            "to": document.get("to", []),
            "cc": document.get("cc", []),
        }
        if note:
            activity["summary"] = text_paragraph(note)
        published = await publish(
            session,
            group,
            activity,
            visibility=stored_row.visibility,
            now=now,
            also=await participant_iris(session, event.id),
        )
        action = "event.cancel" if info.status is EventStatus.CANCELLED else "event.update"
        content.audit(session, group, by, action, row.iri, now, changed=sorted(changes))
    fed.notify_worker()
    return Published(published.iri, row.iri)


async def cancel(fed: Federation, group: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Cancel an event: an ``Update`` with ``ical:status: CANCELLED`` to everyone concerned."""
    return await update(fed, group, {"id": object_iri, "status": EventStatus.CANCELLED.value}, by=by)


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
