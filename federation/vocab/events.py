"""Events on the wire, as Mobilizon publishes and reads them (docs/federation.md "Events").

An event is an ``Event`` object: ``name``, ``content``, ``startTime``/``endTime`` (written in the
event's own time zone offset, as Mobilizon does), ``timezone`` (``mz:timezone``, an IANA name),
``location`` (a ``Place`` with a schema.org ``PostalAddress``) or an online link (an ``attachment``
``Link`` named ``Website``, Mobilizon's form), ``joinMode`` (free, restricted, invite),
``maximumAttendeeCapacity``/``remainingAttendeeCapacity``, ``participantCount``, ``ical:status``
(TENTATIVE, CONFIRMED, CANCELLED), ``category``, ``anonymousParticipationEnabled`` and
``commentsEnabled``. Participation is ``Join{object: event}`` (an optional message in ``content``
or Mobilizon's ``participationMessage``), answered by the organiser with ``Accept``/``Reject`` of
the ``Join``; ``Leave{object: event}`` ends it.

Mastodon shows an ``Event`` by its ``name`` and link and other servers by its ``content``: our
``content`` therefore starts with a readable summary (name, date, place, link,
:func:`summary_html`) before the description.

This module renders our events (``render_*``) and reads the event terms of a peer's document
(:func:`read_event`); it is pure: no clock, no storage.
"""

from __future__ import annotations

import html
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from federation.types import Iri
from federation.vocab.context import AS2
from federation.vocab.entraide import CONTENT_TERMS, iso, parse_time

MOBILIZON_NS: Final = "https://joinmobilizon.org/ns#"
ICAL_NS: Final = "http://www.w3.org/2002/12/cal/ical#"
SCHEMA_NS: Final = "http://schema.org#"

EVENT_TERMS: Final[dict[str, Any]] = {
    "sc": SCHEMA_NS,
    "mz": MOBILIZON_NS,
    "ical": ICAL_NS,
    "pt": "https://joinpeertube.org/ns#",
    "category": "sc:category",
    "timezone": {"@id": "mz:timezone", "@type": "sc:Text"},
    "joinModeType": {"@id": "mz:joinModeType", "@type": "rdfs:Class"},
    "joinMode": {"@id": "mz:joinMode", "@type": "mz:joinModeType"},
    "maximumAttendeeCapacity": "sc:maximumAttendeeCapacity",
    "remainingAttendeeCapacity": "sc:remainingAttendeeCapacity",
    "participantCount": {"@id": "mz:participantCount", "@type": "sc:Integer"},
    "anonymousParticipationEnabled": {"@id": "mz:anonymousParticipationEnabled", "@type": "sc:Boolean"},
    "commentsEnabled": {"@id": "pt:commentsEnabled", "@type": "sc:Boolean"},
    "participationMessage": {"@id": "mz:participationMessage", "@type": "sc:Text"},
    "isOnline": {"@id": "mz:isOnline", "@type": "sc:Boolean"},
    "PostalAddress": "sc:PostalAddress",
    "address": {"@id": "sc:address", "@type": "sc:PostalAddress"},
    "addressCountry": "sc:addressCountry",
    "addressRegion": "sc:addressRegion",
    "postalCode": "sc:postalCode",
    "addressLocality": "sc:addressLocality",
    "streetAddress": "sc:streetAddress",
}
"""Mobilizon's terms, as its context defines them; ``location`` stays AS2's (a ``Place``), and
``category`` is schema.org's here (our alerts' ``category`` is not used on events)."""

EVENT_CONTEXT: Final[list[Any]] = [AS2, {**CONTENT_TERMS, **EVENT_TERMS}]

ONLINE_LINK_NAME: Final = "Website"
"""Mobilizon's name for the attachment ``Link`` that holds an event's online address."""
STATUS_TERM: Final = "ical:status"
MAX_TIMEZONE_CHARS: Final = 64
MAX_ADDRESS_CHARS: Final = 500
MAX_CAPACITY: Final = 1_000_000


class JoinMode(StrEnum):
    """Who may take part: anyone at once, after the organiser's approval, or on invitation."""

    FREE = "free"
    RESTRICTED = "restricted"
    INVITE = "invite"


class EventStatus(StrEnum):
    """``ical:status``, stored in lower case, sent upper case as Mobilizon does."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Place:
    """Where an event happens: a name and a postal address (every part optional)."""

    name: str | None = None
    street: str | None = None
    locality: str | None = None
    postal_code: str | None = None
    region: str | None = None
    country: str | None = None

    def lines(self) -> list[str]:
        """The parts that are set, in reading order (for the fallback content and ICS)."""
        city = " ".join(p for p in (self.postal_code, self.locality) if p)
        return [p for p in (self.name, self.street, city, self.region, self.country) if p]


@dataclass(frozen=True, slots=True)
class EventInfo:
    """An event's calendar facts, ours or a peer's. ``start``/``end`` are aware UTC datetimes;
    ``timezone`` is a known IANA name (``UTC`` when none or an unknown one was sent)."""

    name: str
    start: datetime
    end: datetime | None = None
    timezone: str = "UTC"
    place: Place | None = None
    online_url: Iri | None = None
    join_mode: JoinMode = JoinMode.FREE
    capacity: int | None = None
    status: EventStatus = EventStatus.CONFIRMED
    category: str | None = None
    participant_count: int = 0
    anonymous_participation: bool = False
    comments_enabled: bool = True

    @property
    def remaining(self) -> int | None:
        """Places left, Mobilizon's ``remainingAttendeeCapacity`` (None without a capacity)."""
        return max(self.capacity - self.participant_count, 0) if self.capacity else None


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """The IANA names this system knows (``zoneinfo``); a name outside it is refused, so no
    file path or odd string ever reaches ``ZoneInfo`` (it reads files named after the key)."""
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def is_timezone(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= MAX_TIMEZONE_CHARS and name in known_timezones()


def local_time(moment: datetime, timezone: str) -> datetime:
    """``moment`` in the event's zone (UTC for an unknown name)."""
    zone = zoneinfo.ZoneInfo(timezone) if is_timezone(timezone) else UTC
    return moment.astimezone(zone)


def _local_iso(moment: datetime, timezone: str) -> str:
    """``2026-12-10T18:30:00+01:00``: the offset of the event's zone, as Mobilizon writes it."""
    if timezone == "UTC" or not is_timezone(timezone):
        return iso(moment)
    return local_time(moment, timezone).isoformat(timespec="seconds")


# --- rendering ------------------------------------------------------------------------------------


def place_document(place: Place) -> dict[str, Any]:
    """A ``Place`` with its ``PostalAddress``, Mobilizon's shape."""
    doc: dict[str, Any] = {"type": "Place"}
    if place.name:
        doc["name"] = place.name
    address = {
        "type": "PostalAddress",
        "streetAddress": place.street,
        "postalCode": place.postal_code,
        "addressLocality": place.locality,
        "addressRegion": place.region,
        "addressCountry": place.country,
    }
    if any(v for k, v in address.items() if k != "type"):
        doc["address"] = {k: v for k, v in address.items() if v is not None}
    return doc


def render_event_terms(info: EventInfo) -> dict[str, Any]:
    """The event terms of the document we publish (merged into the object)."""
    terms: dict[str, Any] = {
        "name": info.name,
        "startTime": _local_iso(info.start, info.timezone),
        "timezone": info.timezone,
        "joinMode": info.join_mode.value,
        "participantCount": info.participant_count,
        STATUS_TERM: info.status.value.upper(),
        "anonymousParticipationEnabled": info.anonymous_participation,
        "commentsEnabled": info.comments_enabled,
        "isOnline": info.online_url is not None and info.place is None,
    }
    if info.end is not None:
        terms["endTime"] = _local_iso(info.end, info.timezone)
    if info.capacity is not None:
        terms["maximumAttendeeCapacity"] = info.capacity
        terms["remainingAttendeeCapacity"] = info.remaining
    if info.place is not None:
        terms["location"] = place_document(info.place)
    if info.category:
        terms["category"] = info.category
    return terms


def online_link(url: Iri) -> dict[str, Any]:
    """The online address as Mobilizon sends it: ``Link{href, mediaType, name: Website}``."""
    return {"type": "Link", "href": url, "mediaType": "text/html", "name": ONLINE_LINK_NAME}


def when_text(info: EventInfo) -> str:
    """``2026-12-10 18:30 – 20:00 (Europe/Paris)``: the date as read in the event's zone."""
    start = local_time(info.start, info.timezone)
    text = start.strftime("%Y-%m-%d %H:%M")
    if info.end is not None:
        end = local_time(info.end, info.timezone)
        same_day = end.date() == start.date()
        text += " – " + (end.strftime("%H:%M") if same_day else end.strftime("%Y-%m-%d %H:%M"))
    return f"{text} ({info.timezone})"


def summary_html(info: EventInfo, url: str) -> str:
    """What Mastodon and other non-event servers show first: name, date, place or online link,
    and the link back to the event (all escaped: only the author's description is HTML)."""
    name = html.escape(info.name)
    if info.status is EventStatus.CANCELLED:
        name = f"CANCELLED · {name}"
    parts = [f"<p><strong>{name}</strong></p>", f"<p>📅 {html.escape(when_text(info))}</p>"]
    if info.place is not None and info.place.lines():
        parts.append(f"<p>📍 {html.escape(', '.join(info.place.lines()))}</p>")
    if info.online_url is not None:
        online = html.escape(info.online_url, quote=True)
        parts.append(f'<p>🔗 <a href="{online}">{online}</a></p>')
    link = html.escape(url, quote=True)
    parts.append(f'<p><a href="{link}">{link}</a></p>')
    return "".join(parts)


# --- reading peers' events ------------------------------------------------------------------------


def _short(value: Any, limit: int = MAX_ADDRESS_CHARS) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None


def _read_place(value: Any) -> Place | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict)), None)
    if not isinstance(value, dict):
        return None
    address = value.get("address")
    address = address if isinstance(address, dict) else {}
    place = Place(
        name=_short(value.get("name")),
        street=_short(address.get("streetAddress")),
        locality=_short(address.get("addressLocality"), 200),
        postal_code=_short(address.get("postalCode"), 32),
        region=_short(address.get("addressRegion"), 200),
        country=_short(address.get("addressCountry"), 100),
    )
    return place if place.lines() else None


def _read_online(doc: Mapping[str, Any]) -> Iri | None:
    attachments = doc.get("attachment")
    for item in attachments if isinstance(attachments, list) else [attachments]:
        if isinstance(item, dict) and item.get("type") == "Link" and item.get("name") == ONLINE_LINK_NAME:
            href = item.get("href")
            if isinstance(href, str) and href.startswith(("https://", "http://")) and len(href) <= 2048:
                return Iri(href)
    return None


def _read_status(doc: Mapping[str, Any]) -> EventStatus:
    """``ical:status`` (or Mobilizon 5's ``status``); anything unreadable is CONFIRMED, as
    Mobilizon reads it."""
    value = doc.get(STATUS_TERM, doc.get("status"))
    try:
        return EventStatus(value.lower()) if isinstance(value, str) else EventStatus.CONFIRMED
    except ValueError:
        return EventStatus.CONFIRMED


def _read_count(value: Any) -> int | None:
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CAPACITY
        else None
    )


def read_event(doc: Mapping[str, Any]) -> EventInfo | None:
    """The event terms of a peer's ``Event`` document (already accepted by the parser); ``None``
    when it has no readable ``startTime`` or no ``name``. Unknown values fall back to
    Mobilizon's defaults (free, confirmed, UTC) rather than failing the whole object."""
    start = parse_time(doc.get("startTime"))
    name = _short(doc.get("name"))
    if start is None or name is None:
        return None
    end = parse_time(doc.get("endTime"))
    sent_zone = doc.get("timezone")
    timezone = sent_zone if isinstance(sent_zone, str) and is_timezone(sent_zone) else "UTC"
    try:
        join_mode = JoinMode(doc.get("joinMode", "free"))
    except ValueError:
        join_mode = JoinMode.RESTRICTED  # an unknown mode is never read as "anyone at once"
    return EventInfo(
        name=name,
        start=start,
        end=end if end is not None and end >= start else None,
        timezone=timezone,
        place=_read_place(doc.get("location")),
        online_url=_read_online(doc),
        join_mode=join_mode,
        capacity=_read_count(doc.get("maximumAttendeeCapacity")) or None,
        status=_read_status(doc),
        category=_short(doc.get("category"), 100),
        participant_count=_read_count(doc.get("participantCount")) or 0,
        anonymous_participation=doc.get("anonymousParticipationEnabled") is True,
        comments_enabled=doc.get("commentsEnabled") is not False,
    )


def participation_message(doc: Mapping[str, Any]) -> str | None:
    """A ``Join``'s message: Mobilizon's ``participationMessage``, else ``content`` (raw text or
    HTML as sent: the caller turns it into plain text)."""
    for key in ("participationMessage", "content"):
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
