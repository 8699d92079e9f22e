"""ICS (RFC 5545) of an association's events and of one event, with the ``icalendar`` library.

Calendar feeds are a reading channel like the Atom, RSS and JSON feeds: read anonymously, kept
by any calendar app or aggregator, so they follow the feeds' rule
(:func:`server.services.reading.visibility.feed_levels`: public events only). A members-only,
followers-only or unlisted event is answered like a missing one (404), in the association's
calendar and on its own (security case 69).

Each ``VEVENT`` has the event's IRI as ``UID``, its local times with a ``VTIMEZONE`` for its
zone, ``SEQUENCE`` (raised by every change, so calendar apps replace their copy),
``STATUS`` (``CANCELLED`` for a cancellation) and ``URL`` back to the event. Conditional GET
uses :func:`validators`, computed from the same rows without rendering.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from icalendar import Calendar, vText
from icalendar import Event as VEvent
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.vocab.events import EventInfo, EventStatus, local_time
from server.db.models import Actor, Event, RemoteObject
from server.services.content.sanitize import plain_text
from server.services.errors import NotFound
from server.services.events.records import info_of
from server.services.reading import visibility

CONTENT_TYPE: Final = "text/calendar; charset=utf-8"
RECENT_DAYS: Final = 90
"""Past events stay in the association's calendar this long after they end."""
MAX_EVENTS: Final = 200
RENDER_VERSION: Final = "1"
PRODID: Final = "-//Entraide//Events//FR"


@dataclass(frozen=True, slots=True)
class Entry:
    """One event as the calendar shows it."""

    iri: str
    info: EventInfo
    sequence: int
    description: str
    published: datetime
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class CalendarSource:
    """What one calendar shows: its title and its entries."""

    title: str
    entries: tuple[Entry, ...]

    @property
    def validators(self) -> Validators:
        state = "\x1f".join(
            [RENDER_VERSION, self.title]
            + [f"{e.iri}:{e.sequence}:{e.info.status.value}:{e.info.participant_count}" for e in self.entries]
        )
        changed = [e.updated or e.published for e in self.entries]
        last = max(changed) if changed else datetime(2026, 1, 1).astimezone()
        return Validators(f'"{hashlib.sha256(state.encode()).hexdigest()[:32]}"', last.replace(microsecond=0))


def _entry(row: RemoteObject, event: Event) -> Entry:
    source = row.document.get("source")
    description = source.get("content") if isinstance(source, dict) else row.document.get("content")
    return Entry(
        iri=row.iri,
        info=info_of(event, row.document),
        sequence=event.sequence,
        description=plain_text(description if isinstance(description, str) else "").strip(),
        published=row.published,
        updated=row.updated,
    )


def _shown() -> list[ColumnElement[bool]]:
    return [
        RemoteObject.kind == "event",
        RemoteObject.local.is_(True),
        RemoteObject.deleted_at.is_(None),
        RemoteObject.visibility.in_(visibility.feed_levels()),
    ]


async def association_calendar(session: AsyncSession, handle: str, *, now: datetime) -> CalendarSource:
    """A local association's public upcoming and recent events (NotFound otherwise)."""
    group = await session.scalar(
        select(Actor).where(
            Actor.handle == handle, Actor.local.is_(True), Actor.type == "Group", Actor.deleted_at.is_(None)
        )
    )
    if group is None:
        raise NotFound("no such calendar")
    since = now - timedelta(days=RECENT_DAYS)
    rows = await session.execute(
        select(RemoteObject, Event)
        .join(Event, Event.object_id == RemoteObject.id)
        .where(RemoteObject.attributed_to_id == group.id, *_shown())
        .where(or_(Event.end_at >= since, Event.start_at >= since))
        .order_by(Event.start_at, RemoteObject.id)
        .limit(MAX_EVENTS)
    )
    title = group.name or group.handle
    return CalendarSource(title, tuple(_entry(row, event) for row, event in rows))


async def event_calendar(session: AsyncSession, object_iri: str) -> CalendarSource:
    """One public event of ours (NotFound for anything else, whoever asks)."""
    found = (
        await session.execute(
            select(RemoteObject, Event)
            .join(Event, Event.object_id == RemoteObject.id)
            .where(RemoteObject.iri == object_iri, *_shown())
        )
    ).first()
    if found is None:
        raise NotFound("no such event")
    row, event = found
    entry = _entry(row, event)
    return CalendarSource(entry.info.name, (entry,))


def _vevent(entry: Entry, stamp: datetime) -> VEvent:
    info = entry.info
    vevent = VEvent()
    vevent.add("uid", entry.iri)
    vevent.add("dtstamp", stamp)
    vevent.add("summary", info.name)
    vevent.add("dtstart", local_time(info.start, info.timezone))
    if info.end is not None:
        vevent.add("dtend", local_time(info.end, info.timezone))
    vevent.add("sequence", entry.sequence)
    vevent.add("status", "CANCELLED" if info.status is EventStatus.CANCELLED else info.status.value.upper())
    vevent.add("url", entry.iri)
    vevent.add("created", entry.published)
    vevent.add("last-modified", entry.updated or entry.published)
    if entry.description:
        vevent.add("description", entry.description)
    where = ", ".join(info.place.lines()) if info.place is not None else info.online_url
    if where:
        vevent.add("location", vText(where))
    if info.category:
        vevent.add("categories", [info.category])
    return vevent


def render(source: CalendarSource, *, now: datetime) -> bytes:
    """The ``VCALENDAR``: one ``VEVENT`` per entry and a ``VTIMEZONE`` per zone used."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", source.title)
    for entry in source.entries:
        calendar.add_component(_vevent(entry, now))
    calendar.add_missing_timezones()
    body: bytes = calendar.to_ical()
    return body
