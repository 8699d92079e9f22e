"""What a client sends to publish or edit an event, read field by field into an ``EventInfo``.

Every field that is refused names itself (``InvalidInput.field``) and nothing is stored: an end
before the start, an unknown time zone, a capacity below zero, an online link that is not
http(s), a status or join mode we do not know. The same reader serves the JSON API, the command
line and the C2S outbox, so they refuse the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from federation.audience import Visibility
from federation.types import Iri
from federation.vocab import events as wire
from federation.vocab.events import EventInfo, EventStatus, JoinMode, Place
from server.services.content.fields import choice, iri_value, text, when
from server.services.content.sanitize import plain_text
from server.services.errors import InvalidInput

MAX_NAME_CHARS = 500
MAX_DESCRIPTION_CHARS = 100_000
MAX_CATEGORY_CHARS = 100
EVENT_VISIBILITIES = (Visibility.PUBLIC, Visibility.UNLISTED, Visibility.FOLLOWERS, Visibility.MEMBERS)
"""An event is for an audience: direct events (to named people) are not offered."""

PLACE_FIELDS = {
    "name": ("name", 500),
    "streetAddress": ("street", 500),
    "addressLocality": ("locality", 200),
    "postalCode": ("postal_code", 32),
    "addressRegion": ("region", 200),
    "addressCountry": ("country", 100),
}
"""Client field -> (``Place`` attribute, limit); the names are Mobilizon's (schema.org)."""

EDITABLE = frozenset(
    {
        "name",
        "content",
        "startTime",
        "endTime",
        "timezone",
        "location",
        "onlineUrl",
        "joinMode",
        "maximumAttendeeCapacity",
        "status",
        "category",
        "tag",
        "commentsEnabled",
        "changeNote",
    }
)


def timezone_of(value: Any, default: str = "UTC") -> str:
    if value is None:
        return default
    if not wire.is_timezone(value):
        raise InvalidInput("timezone must be a known IANA time zone such as Europe/Paris", field="timezone")
    return str(value)


def capacity_of(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > wire.MAX_CAPACITY:
        raise InvalidInput(
            f"maximumAttendeeCapacity must be a whole number from 0 to {wire.MAX_CAPACITY}",
            field="maximumAttendeeCapacity",
        )
    return value or None  # 0 means no limit, as Mobilizon reads it


def place_of(value: Any) -> Place | None:
    """``location``: ``{name, streetAddress, postalCode, addressLocality, addressRegion,
    addressCountry}``, flat or with the address in ``address`` (Mobilizon's ``Place``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("location must be an object (a place and its address)", field="location")
    address = value.get("address")
    flat = {**value, **address} if isinstance(address, dict) else dict(value)
    parts: dict[str, str] = {}
    for key, (attribute, limit) in PLACE_FIELDS.items():
        found = text(flat.get(key), f"location.{key}", limit)
        if found is not None and plain_text(found).strip():
            parts[attribute] = plain_text(found).strip()
    place = Place(**parts)
    if not place.lines():
        raise InvalidInput("location must name a place or an address", field="location")
    return place


def status_of(value: Any, default: EventStatus) -> EventStatus:
    status: EventStatus = choice(
        EventStatus, value.lower() if isinstance(value, str) else value, "status", default
    )
    return status


def read_new(obj: Mapping[str, Any]) -> tuple[EventInfo, str]:
    """A new event: the facts and the description (HTML, sanitised later)."""
    name = text(obj.get("name"), "name", MAX_NAME_CHARS, required=True)
    start = when(obj.get("startTime"), "startTime")
    if start is None:
        raise InvalidInput("startTime is required", field="startTime")
    status = status_of(obj.get("status"), EventStatus.CONFIRMED)
    if status is EventStatus.CANCELLED:
        raise InvalidInput("a new event cannot be cancelled", field="status")
    info = EventInfo(
        name=plain_text(name or "").strip() or "-",
        start=start,
        end=when(obj.get("endTime"), "endTime"),
        timezone=timezone_of(obj.get("timezone")),
        place=place_of(obj.get("location")),
        online_url=online_url_of(obj.get("onlineUrl")),
        join_mode=choice(JoinMode, obj.get("joinMode"), "joinMode", JoinMode.FREE),
        capacity=capacity_of(obj.get("maximumAttendeeCapacity")),
        status=status,
        category=category_of(obj.get("category")),
        comments_enabled=obj.get("commentsEnabled") is not False,
    )
    check(info)
    return info, description_of(obj.get("content"))


def description_of(value: Any) -> str:
    """The description (HTML; sanitised by the caller)."""
    return text(value, "content", MAX_DESCRIPTION_CHARS) or ""


def read_changes(obj: Mapping[str, Any], base: EventInfo) -> EventInfo:
    """An edit: the fields given replace the stored ones (``null`` removes an optional one)."""
    unknown = sorted(k for k in obj if k not in EDITABLE and k != "id")
    if unknown:
        raise InvalidInput(f"{unknown[0]} cannot be changed on an event", field=unknown[0])
    changes: dict[str, Any] = {}
    if "name" in obj:
        name = text(obj.get("name"), "name", MAX_NAME_CHARS, required=True)
        changes["name"] = plain_text(name or "").strip() or "-"
    if "startTime" in obj:
        start = when(obj.get("startTime"), "startTime")
        if start is None:
            raise InvalidInput("startTime cannot be removed", field="startTime")
        changes["start"] = start
    readers: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "endTime": ("end", lambda v: when(v, "endTime")),
        "timezone": ("timezone", timezone_of),
        "location": ("place", place_of),
        "onlineUrl": ("online_url", online_url_of),
        "joinMode": ("join_mode", lambda v: choice(JoinMode, v, "joinMode", JoinMode.FREE)),
        "maximumAttendeeCapacity": ("capacity", capacity_of),
        "status": ("status", lambda v: status_of(v, base.status)),
        "category": ("category", category_of),
        "commentsEnabled": ("comments_enabled", lambda v: v is not False),
    }
    for key, (attribute, reader) in readers.items():
        if key in obj:
            changes[attribute] = reader(obj[key])
    info = replace(base, **changes)
    check(info)
    return info


def check(info: EventInfo) -> None:
    """Rules across fields: the end after the start."""
    if info.end is not None and info.end <= info.start:
        raise InvalidInput("endTime must be after startTime", field="endTime")


def online_url_of(value: Any) -> Iri | None:
    return iri_value(value, "onlineUrl")


def category_of(value: Any) -> str | None:
    found = text(value, "category", MAX_CATEGORY_CHARS)
    return plain_text(found).strip() or None if found is not None else None


def visibility_of(value: Any) -> Visibility:
    level: Visibility = choice(Visibility, value, "visibility", Visibility.PUBLIC)
    if level not in EVENT_VISIBILITIES:
        allowed = ", ".join(v.value for v in EVENT_VISIBILITIES)
        raise InvalidInput(f"an event's visibility is one of: {allowed}", field="visibility")
    return level
