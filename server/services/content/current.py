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
from server.db.models import Activity, InboxActivity, Relay, RemoteObject
from server.db.queries import objects
from server.db.queries.bare import Source
from server.services.moderation import blocks
from server.services.reading import visibility
from server.services.reading.visibility import Viewer

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


async def current_documents(session: Source, documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``documents`` (stored activities) with each embedded object we hold as it is now.

    One query for the whole page; objects we do not hold are served as published.
    """
    iris = {iri for document in documents for iri in _embedded(document)}
    if not iris:
        return list(documents)
    held = await objects.documents_by_iri(session, iris)
    return [_with_current(document, held) for document in documents]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


async def _relayed_objects(session: AsyncSession, rows: Sequence[InboxActivity]) -> dict[str, str]:
    """The object each received ``Announce`` among ``rows`` relays (by the Announce's IRI): the
    relay recorded when it was processed, else, when the Announce names a ``Create`` we hold
    (FEP-1b12 relays a member's activity), that Create's object."""
    announces = [row for row in rows if row.type == "Announce" and row.object_iri]
    if not announces:
        return {}
    recorded = await session.execute(
        select(Relay.announce_iri, Relay.object_iri).where(
            Relay.announce_iri.in_([row.iri for row in announces])
        )
    )
    found = {announce: obj for announce, obj in recorded.all()}
    named = {row.object_iri for row in announces if row.iri not in found}
    if named:
        creates = await session.execute(
            select(InboxActivity.iri, InboxActivity.object_iri)
            .where(InboxActivity.iri.in_(named), InboxActivity.type == "Create")
            .union_all(
                select(Activity.iri, Activity.object_iri).where(
                    Activity.iri.in_(named), Activity.type == "Create"
                )
            )
        )
        inner = {iri: obj for iri, obj in creates.all() if obj}
        for row in announces:
            if row.iri not in found and row.object_iri in inner:
                found[row.iri] = inner[row.object_iri]
    return found


async def inbox_documents(
    session: AsyncSession, rows: Sequence[InboxActivity], reader: Viewer
) -> list[dict[str, Any]]:
    """Received activities as the C2S inbox lists them: rebuilt from what processing stored, never
    the body a peer sent (security case 50). The activity's id, type, actor and object, with the
    object we hold embedded as it is now (sanitised when stored; a ``Tombstone`` once deleted).

    An ``Announce`` embeds the object it relays, as ActivityPub clients show a boost (Mastodon's
    ``reblog``), also when the peer announced the ``Create`` of it (FEP-1b12): never the
    activity. An object is embedded only when ``reader`` (the inbox's owner) may read it; else
    it stays a reference, as does an object we do not hold. Activities of actors the node
    blocks (``server/services/moderation/blocks.py``) are left out.
    """
    hidden = await blocks.hidden_iris(session, reader.actor_id, {row.actor_iri for row in rows})
    rows = [row for row in rows if row.actor_iri not in hidden]  # blocked peers: not listed at all
    relayed = await _relayed_objects(session, rows)
    named = {relayed.get(row.iri, row.object_iri) for row in rows if row.object_iri}
    held: dict[str, dict[str, Any]] = {}
    if named:
        for obj in await session.scalars(select(RemoteObject).where(RemoteObject.iri.in_(named))):
            if obj.deleted_at is not None or await visibility.can_read_object(session, reader, obj):
                held[obj.iri] = obj.document
    documents = []
    for row in rows:
        target = relayed.get(row.iri, row.object_iri)
        document: dict[str, Any] = {
            "@context": CONTENT_CONTEXT,
            "id": row.iri,
            "type": row.type,
            "actor": row.actor_iri,
            "published": _iso(row.received_at),
        }
        if target:
            current = held.get(target)
            if current is None:
                document["object"] = target
            elif "proof" in current:  # a signed object (its proof covers its @context) is served whole
                document["object"] = dict(current)
            else:
                document["object"] = {k: v for k, v in current.items() if k != "@context"}
        documents.append(document)
    return documents
