"""An event: an association's ``Event`` in Mobilizon's wire form (issue 18, docs/federation.md
"Events"), with its ``events`` row beside the document.

The shared pipeline does the rest (addressing, tags, thread, the outbox); this kind reads the
event's fields (:mod:`server.services.events.fields`: an end before the start, an unknown time
zone, a capacity below zero are refused by name), renders the document with its readable
summary first, keeps the ``events`` row and raises its ``SEQUENCE`` on every edit. Participation
and calendars are in :mod:`server.services.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select

from federation.vocab import events as wire
from federation.vocab.entraide import Kind
from federation.vocab.events import EventStatus
from server.db.models import Actor, Event
from server.services.content.kinds.base import ContentKind, Draft, Edit, Stored
from server.services.content.sanitize import sanitize_html
from server.services.errors import InvalidInput
from server.services.events import fields, records

OWN_FIELDS = frozenset(fields.EDITABLE - {"name", "content", "tag", "changeNote"})


class EventKind(ContentKind):
    kind: ClassVar[Kind] = Kind.EVENT
    types: ClassVar[tuple[str, ...]] = ("Event",)
    association_only: ClassVar[bool] = True
    named: ClassVar[bool] = True
    content_required: ClassVar[bool] = False
    takes_summary: ClassVar[bool] = False  # Mastodon would hide the summary line behind a warning
    own_fields: ClassVar[frozenset[str]] = OWN_FIELDS
    removable: ClassVar[frozenset[str]] = frozenset(
        {"endTime", "location", "onlineUrl", "maximumAttendeeCapacity", "category"}
    )
    server_kept: ClassVar[frozenset[str]] = frozenset({"participantCount", "remainingAttendeeCapacity"})
    feed_path: ClassVar[str | None] = "events"
    feed_label: ClassVar[str | None] = "événements"
    api_path: ClassVar[str | None] = "events"
    api_schema: ClassVar[str | None] = "EventCreate"

    def claims(self, obj: Mapping[str, Any], author: Actor) -> bool:
        return obj.get("type") == "Event"

    async def build(self, draft: Draft) -> None:
        fields.visibility_of(draft.obj.get("visibility"))  # no direct events
        info, _ = fields.read_new(draft.obj)
        rendered = records.render_document(draft.document, info, draft.document["content"])
        draft.document.clear()
        draft.document.update(rendered)

    async def after_store(self, stored: Stored) -> None:
        info = wire.read_event(stored.document)
        assert info is not None  # we rendered it
        event = Event(object_id=stored.row.id, sequence=0)
        records.apply(event, info)
        stored.session.add(event)
        stored.row.document = records.stored(stored.row.document)

    def edit(self, edit: Edit) -> None:
        base = wire.read_event(edit.before)
        if base is None or base.status is EventStatus.CANCELLED:
            raise InvalidInput("a cancelled event cannot be changed", field="status")
        changes = {k: v for k, v in edit.obj.items() if k not in ("id", "tag", "content", "changeNote")}
        info = fields.read_changes(changes, base)
        description = (
            sanitize_html(edit.content)
            if edit.content is not None
            else str(edit.before.get("source", {}).get("content", ""))
        )
        rendered = records.render_document(edit.document, info, description)
        edit.document.clear()
        edit.document.update(rendered)

    async def after_update(self, stored: Stored) -> None:
        info = wire.read_event(stored.row.document)
        event = await stored.session.scalar(select(Event).where(Event.object_id == stored.row.id))
        if info is None or event is None:
            return
        records.apply(event, info)
        event.sequence += 1
        stored.row.document = records.stored(stored.row.document)

    def update_action(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        cancelled = after.get(wire.STATUS_TERM) == "CANCELLED" != before.get(wire.STATUS_TERM)
        return "event.cancel" if cancelled else "event.update"

    def status(self, document: Mapping[str, Any], now: datetime) -> str:
        info = wire.read_event(document)
        if info is None or info.status is EventStatus.CANCELLED:
            return "cancelled"
        return "past" if (info.end or info.start) <= now else "upcoming"


KIND = EventKind()
