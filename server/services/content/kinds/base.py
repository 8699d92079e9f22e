"""What a content kind is to the publishing pipeline: its shape, its fields, its hooks.

:func:`server.services.content.local.create` and :func:`~server.services.content.local.update`
are the same for every kind (addressing, threads, associations, attachments, the outbox); what
differs is here. A kind reads and checks the fields only it has, writes them into the wire
document (with the renderers of :mod:`federation.vocab.entraide`) and says what happens once the
object is stored. It reads its input through :mod:`server.services.content.fields` and revises
other objects through :mod:`server.services.content.revisions`, never through the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from federation.vocab.entraide import Kind
from server.db import queue
from server.db.models import Actor, RemoteObject
from server.services.content.fields import MAX_NAME_CHARS, MAX_SUMMARY_CHARS, text
from server.services.content.sanitize import sanitize_html
from server.services.federation import Federation


@dataclass(slots=True)
class Draft:
    """A new object being built: the client's ``obj``, its author, and the wire ``document`` so
    far (every field all kinds share is in it: content, name, addressing, thread, tags)."""

    fed: Federation
    author: Actor
    obj: Mapping[str, Any]
    document: dict[str, Any]
    now: datetime


@dataclass(frozen=True, slots=True)
class Stored:
    """An object just stored, inside the transaction that publishes its ``Create`` (or its
    ``Update``): a hook's work commits (or rolls back) with it."""

    fed: Federation
    session: AsyncSession
    author: Actor
    by: Actor
    row: RemoteObject
    document: Mapping[str, Any]
    now: datetime


@dataclass(slots=True)
class Edit:
    """An edit being applied: the client's ``obj``, the stored document ``before`` it, the
    ``document`` being edited (shared fields already applied), the new ``name`` (checked) and
    ``content`` as sent (``None``: unchanged)."""

    fed: Federation
    obj: Mapping[str, Any]
    before: Mapping[str, Any]
    document: dict[str, Any]
    name: str | None
    content: str | None


class ContentKind:
    """The default kind (a plain post); each kind module subclasses it and overrides what
    differs. Instances are registered in :mod:`server.services.content.kinds`."""

    kind: ClassVar[Kind]
    types: ClassVar[tuple[str, ...]]
    """The AS2 types it is published as; the first is the default."""
    wire_term: ClassVar[str | None] = None
    """Its ``entraideKind`` value, by which a client asks for it (and peers recognise it)."""
    association_only: ClassVar[bool] = False
    """Only an association (a ``Group``) publishes it."""
    named: ClassVar[bool] = False
    """Its ``name`` (title, headline, question) is required and cannot be removed."""
    name_chars: ClassVar[int] = MAX_NAME_CHARS
    content_required: ClassVar[bool] = True
    takes_summary: ClassVar[bool] = True
    """It takes ``summary`` and ``sensitive`` (a content warning)."""
    priority: ClassVar[int] = queue.Priority.NORMAL
    """The priority of its activities' fan-out and deliveries."""
    own_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields only this kind takes: refused for any other (:func:`fields_that_apply`)."""
    removable: ClassVar[frozenset[str]] = frozenset()
    """Optional fields of its own that an edit removes by setting them to ``null`` (besides the
    shared ones, ``content.local.REMOVABLE``)."""
    server_kept: ClassVar[frozenset[str]] = frozenset()
    """Properties of its documents the server keeps current by itself (counters, states): a
    client's stale copy of them in an ``Update`` is ignored, not refused."""
    listed: ClassVar[bool] = True
    """Listed with an association's content (its lists, feeds, relays); replies are not."""
    feed_path: ClassVar[str | None] = None
    """Its own feed's path segment (``/feeds/<path>.atom``), if it has one."""
    feed_label: ClassVar[str | None] = None
    """Its feed's title (French, as the feeds' other labels)."""
    api_path: ClassVar[str | None] = None
    """Its JSON API collection, ``/api/associations/{slug}/<path>`` (also in ``schemas/openapi.json``)."""
    api_schema: ClassVar[str | None] = None
    """The OpenAPI schema of a request creating it there."""

    def claims(self, obj: Mapping[str, Any], author: Actor) -> bool:
        """Whether a client object without ``entraideKind`` has this kind's shape."""
        return False

    @property
    def api_fixed(self) -> dict[str, str]:
        """What the JSON API sets on a request to :attr:`api_path`: its type and wire term."""
        fixed = {"type": self.types[0]}
        if self.wire_term is not None:
            fixed["entraideKind"] = self.wire_term
        return fixed

    async def build(self, draft: Draft) -> None:
        """Read and check this kind's own fields and write them into ``draft.document``."""

    async def after_store(self, stored: Stored) -> None:
        """What follows once the object is stored (jobs, other objects revised)."""

    async def after_update(self, stored: Stored) -> None:
        """What follows once an edit is stored, in its transaction (``stored.row`` is the object
        with its new document): columns kept beside the document, a job rescheduled."""

    def edit(self, edit: Edit) -> None:
        """Apply an edit of the fields this kind takes besides the shared ones: by default the
        content, the summary and whether it is sensitive, as given."""
        if edit.content is not None:
            edit.document["content"] = sanitize_html(edit.content)
        summary = text(edit.obj.get("summary"), "summary", MAX_SUMMARY_CHARS)
        if summary is not None:
            edit.document["summary"] = sanitize_html(summary)
        if edit.obj.get("sensitive") is True:
            edit.document["sensitive"] = True
        elif edit.obj.get("sensitive") is False:
            edit.document.pop("sensitive", None)

    def update_action(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        """The audit log's action for an edit from ``before`` to ``after``."""
        return f"{self.kind.value}.update"

    def status(self, document: Mapping[str, Any], now: datetime) -> str:
        """One word for lists of an association's content."""
        return "published"
