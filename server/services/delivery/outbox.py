"""The transactional outbox: an activity and its single fan-out job commit together (docs/architecture.md R9).

Nothing is sent from a request: ``publish`` stores the rendered activity and queues one
``fanout`` job in the caller's transaction. If that transaction rolls back, nothing is sent;
once it commits, a worker delivers it even across crashes and restarts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab.entraide import CONTENT_CONTEXT
from server.db import queue
from server.db.models import Activity, Actor, InboxActivity, InboxItem, Relay
from server.services.content import changes

FANOUT = "fanout"
FILED_TYPES = frozenset({"Create", "Update", "Delete", "Announce", "Like", "Undo"})
"""Our actors' activities that reach the inboxes of the other local actors they address."""
ADDRESSING = ("to", "cc", "audience")
ACTIVITY_CONTEXT: list[Any] = CONTENT_CONTEXT
"""AS2 plus our inline content terms: an activity embeds its object, whose terms (``votersCount``,
``severity``, ...) must be defined in the activity's context for JSON-LD readers (Fedify)."""


def new_activity_iri(uris: UriScheme) -> Iri:
    """Activity IRIs are random (UUID), never sequential: no existence oracle (security case 39)."""
    return uris.activity(uuid.uuid4().hex)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def relayed_object(obj: Any) -> str | None:
    """The object an ``Announce`` relays: its object, or the object of the ``Create`` it wraps
    (FEP-1b12: an association relays a member's activity whole)."""
    if isinstance(obj, dict) and obj.get("type") == "Create":
        obj = obj.get("object")
    value = obj.get("id") if isinstance(obj, dict) else obj
    return value if isinstance(value, str) else None


async def publish(
    session: AsyncSession,
    actor: Actor,
    activity: dict[str, Any],
    *,
    visibility: str,
    now: datetime,
    priority: int = queue.Priority.NORMAL,
    also: list[str] | None = None,
) -> Activity:
    """Store ``activity`` (``id``, ``actor`` and ``published`` filled in) and queue its fan-out.

    ``bto``/``bcc`` are removed before storage: they must never reach a recipient
    (ActivityPub §6, security case 44). ``also`` names more actors to deliver to without
    addressing them in the document (a poll's voters get its ``Update``, as on Mastodon).
    """
    document: dict[str, Any] = {"@context": ACTIVITY_CONTEXT, **activity}
    document.setdefault("published", _iso(now))
    document["actor"] = actor.iri
    blind = [*_listed(document.pop("bto", None)), *_listed(document.pop("bcc", None))]
    obj = document.get("object")
    object_iri = obj if isinstance(obj, str) else obj.get("id") if isinstance(obj, dict) else None
    row = Activity(
        iri=document["id"],
        actor_id=actor.id,
        type=document["type"],
        object_iri=object_iri,
        visibility=visibility,
        document=document,
        published=now,
    )
    session.add(row)
    relayed = relayed_object(obj) if row.type == "Announce" else None
    if relayed is not None:
        session.add(Relay(announce_iri=row.iri, relayer_id=actor.id, object_iri=relayed, relayed_at=now))
    await session.flush()
    changes.mark_published(session)  # the page cache forgets what it kept once this commits
    payload: dict[str, Any] = {"activity_id": row.id}
    if also:
        payload["also"] = also
    await queue.enqueue(session, FANOUT, payload, dedup_key=f"fanout:{row.id}", priority=priority, now=now)
    if row.type in FILED_TYPES:
        # ``also`` of a Create are its blind recipients; of other activities, holders and voters
        # that get a copy without being addressed: not filed.
        extra = [*blind, *(also or [])] if row.type == "Create" else blind
        await file_locally(session, actor, row, extra, now=now)
    return row


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else value if isinstance(value, list) else []


async def file_locally(
    session: AsyncSession, actor: Actor, row: Activity, blind: list[str], *, now: datetime
) -> list[int]:
    """File ``row`` in the C2S inbox of every other local actor it addresses (``to``, ``cc``,
    ``audience``, and ``blind``: ``bto``/``bcc``), as a delivery would file a peer's activity.

    The fan-out never delivers to our own origin, so this is how a local addressee gets it. The
    filed ``Create`` is also what lets an addressee read the object through the read filter
    (:func:`server.services.reading.visibility.can_read`), blind ones included. Collections (followers,
    members) are not expanded: only actors named. Returns the actors it was filed for.
    """
    named = [iri for key in ADDRESSING for iri in _listed(row.document.get(key)) if isinstance(iri, str)]
    iris = {iri for iri in [*named, *blind] if isinstance(iri, str) and iri != actor.iri}
    if not iris:
        return []
    recipients = list(
        await session.scalars(
            select(Actor.id)
            .where(Actor.iri.in_(sorted(iris)), Actor.local.is_(True), Actor.deleted_at.is_(None))
            .order_by(Actor.id)
        )
    )
    if not recipients:
        return []
    filed = InboxActivity(
        iri=row.iri,
        actor_iri=actor.iri,
        type=row.type,
        object_iri=row.object_iri,
        signer_key_iri=f"{actor.iri}#main-key",
        document=row.document,
        state="processed",
        received_at=now,
        processed_at=now,
    )
    session.add(filed)
    await session.flush()
    session.add_all(InboxItem(actor_id=i, inbox_activity_id=filed.id, accepted=True) for i in recipients)
    return recipients
