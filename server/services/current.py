"""Activities as served now: their object is the one we hold today, or its tombstone.

An outbox keeps every activity as published, so without this a ``Create`` would serve the
first revision of an edited object, and the whole content of a deleted one, forever; a peer
that backfills or catches up from it would store that stale or deleted content as live (the
retracted alert shown as active). Every channel that serves a stored activity (the outbox,
``GET {activity}``, the C2S inbox) passes it through :func:`current_documents`: an embedded
object that we hold is replaced by its stored document, which is its latest revision (a poll
with its tally, an alert with its status) or its ``Tombstone``. The ``Create`` of a deleted
object therefore stays in the outbox with a ``Tombstone`` as object, and a follower that comes
back after a long outage learns of the deletion from the outbox alone (docs/federation.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.vocab.entraide import CONTENT_CONTEXT
from server.db.models import InboxActivity, RemoteObject

MAX_DEPTH = 3
"""``Announce{Create{Note}}`` is the deepest nesting we publish; deeper values are left alone."""


def _is_activity(value: Mapping[str, Any]) -> bool:
    """An embedded activity (an association relays a member's ``Create`` whole), not an object."""
    return "actor" in value and "object" in value


def _embedded(document: Mapping[str, Any], depth: int = 0) -> Iterator[str]:
    """IRIs of the objects embedded in ``document`` (through embedded activities)."""
    obj = document.get("object")
    if not isinstance(obj, dict) or depth >= MAX_DEPTH:
        return
    if _is_activity(obj):
        yield from _embedded(obj, depth + 1)
    elif isinstance(obj.get("id"), str):
        yield obj["id"]


def _with_current(
    document: dict[str, Any], held: Mapping[str, dict[str, Any]], depth: int = 0
) -> dict[str, Any]:
    obj = document.get("object")
    if not isinstance(obj, dict) or depth >= MAX_DEPTH:
        return document
    if _is_activity(obj):
        replaced = _with_current(obj, held, depth + 1)
    else:
        current = held.get(obj["id"]) if isinstance(obj.get("id"), str) else None
        if current is None:
            return document
        # A signed object (an endorsement's integrity proof covers its @context) is served whole.
        signed = "proof" in current
        replaced = dict(current) if signed else {k: v for k, v in current.items() if k != "@context"}
    return {**document, "object": replaced}


async def current_documents(
    session: AsyncSession, documents: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``documents`` (stored activities) with each embedded object we hold as it is now.

    One query for the whole page; objects we do not hold are served as published.
    """
    iris = {iri for document in documents for iri in _embedded(document)}
    if not iris:
        return list(documents)
    rows = await session.execute(
        select(RemoteObject.iri, RemoteObject.document).where(RemoteObject.iri.in_(iris))
    )
    held = {iri: document for iri, document in rows.all()}
    return [_with_current(document, held) for document in documents]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


async def inbox_documents(session: AsyncSession, rows: Sequence[InboxActivity]) -> list[dict[str, Any]]:
    """Received activities as the C2S inbox lists them: rebuilt from what processing stored, never
    the body a peer sent (security case 50). The activity's id, type, actor and object, with the
    object we hold embedded as it is now (sanitised when stored; a ``Tombstone`` once deleted)."""
    documents = [
        {
            "@context": CONTENT_CONTEXT,
            "id": row.iri,
            "type": row.type,
            "actor": row.actor_iri,
            "published": _iso(row.received_at),
            **({"object": {"id": row.object_iri}} if row.object_iri else {}),
        }
        for row in rows
    ]
    current = await current_documents(session, documents)
    return [
        {**document, "object": document["object"]["id"]}
        if isinstance(document.get("object"), dict) and set(document["object"]) == {"id"}
        else document
        for document in current
    ]
