"""The transactional outbox: an activity and its single fan-out job commit together (STYLE R9).

Nothing is sent from a request: ``publish`` stores the rendered activity and queues one
``fanout`` job in the caller's transaction. If that transaction rolls back, nothing is sent;
once it commits, a worker delivers it even across crashes and restarts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab.entraide import CONTENT_CONTEXT
from server.db import queue
from server.db.models import Activity, Actor
from server.services import changes

FANOUT = "fanout"
ACTIVITY_CONTEXT: list[Any] = CONTENT_CONTEXT
"""AS2 plus our inline content terms: an activity embeds its object, whose terms (``votersCount``,
``severity``, ...) must be defined in the activity's context for JSON-LD readers (Fedify)."""


def new_activity_iri(uris: UriScheme) -> Iri:
    """Activity IRIs are random (UUID), never sequential: no existence oracle (security case 39)."""
    return uris.activity(uuid.uuid4().hex)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


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
    document.pop("bto", None)
    document.pop("bcc", None)
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
    await session.flush()
    changes.mark_published(session)  # the page cache forgets what it kept once this commits
    payload: dict[str, Any] = {"activity_id": row.id}
    if also:
        payload["also"] = also
    await queue.enqueue(session, FANOUT, payload, dedup_key=f"fanout:{row.id}", priority=priority, now=now)
    return row
