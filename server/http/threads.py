"""The collections of one of our objects: ``replies``, its thread (``context``, FEP-7888/f228),
its ``history`` (FEP-bad1), its ``likes`` and a proposal's ``endorsements``.

Every item goes through the single read filter: an object the viewer may not read answers
exactly like a missing one, and each listed item is one the viewer may read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.audience import PUBLICLY_READABLE
from federation.collections import render_collection, render_collection_page
from federation.types import Iri
from federation.vocab.entraide import Kind
from server.appkeys import NODE
from server.http.auth import viewer_of
from server.http.params import int_param
from server.http.render import activity_response
from server.services.actors import directory
from server.services.content import endorsements, likes
from server.services.errors import NotFound
from server.services.reading import objects, visibility
from server.services.reading.visibility import Viewer
from server.services.types import RemoteObject, Session

routes = web.RouteTableDef()
PAGE_SIZE = objects.PAGE_SIZE


def _after(request: web.Request) -> int:
    return int_param(request, "after") or 0


@routes.get("/objects/{id:[0-9a-f]{32}}/{collection:replies|context|history|endorsements|likes}")
async def get_object_collection(request: web.Request) -> web.Response:
    node = request.app[NODE]
    object_iri = node.uris.object(request.match_info["id"])
    name = request.match_info["collection"]
    after = _after(request)
    viewer = await viewer_of(request)
    collection_iri = Iri(f"{object_iri}/{name}")
    async with node.sessions() as session:
        row = await objects.local_object(session, object_iri)
        if (
            row is None
            or row.deleted_at is not None
            or not await visibility.can_read_object(session, viewer, row)
        ):
            raise NotFound("no such collection")  # the same answer as for a missing object
        items: list[Any]
        cursor: int | None = None
        hidden = False
        if name == "likes":
            return await _likes(request, session, viewer, row, collection_iri, after)
        if name == "replies":
            items, cursor, hidden = await objects.replies_page(session, viewer, object_iri, after=after)
        elif name == "context":
            if row.context_iri != node.uris.context(object_iri):
                raise NotFound("no such collection")  # a reply's thread is its root's
            items, cursor, hidden = await objects.thread_page(
                session, viewer, object_iri, collection_iri, after=after
            )
        elif name == "history":
            rows = await objects.revisions(session, row, after=after, limit=PAGE_SIZE)
            items = [{k: v for k, v in a.document.items() if k != "@context"} for a in rows]
            cursor = rows[-1].id if len(rows) == PAGE_SIZE else None
        else:
            if row.kind != Kind.PROPOSAL.value:
                raise NotFound("no such collection")
            items, cursor = await endorsements.endorsements_page(
                session, object_iri, after=after, limit=PAGE_SIZE
            )
    page_iri = Iri(f"{collection_iri}?after={after}")
    next_iri = Iri(f"{collection_iri}?after={cursor}") if cursor is not None else None
    doc = render_collection_page(page_iri, part_of=collection_iri, items=items, next_page=next_iri)
    if "after" not in request.query:
        # The collection, with its first page embedded: one GET backfills a short thread.
        page = {k: v for k, v in doc.items() if k != "@context"}
        doc = render_collection(collection_iri, total_items=None, first=None)
        doc["first"] = page
    private = (
        hidden
        or row.visibility not in PUBLICLY_READABLE
        or any(
            isinstance(i, dict)
            and i.get("to")
            and "https://www.w3.org/ns/activitystreams#Public" not in visibility.addressed_in(i)
            for i in items
        )
    )
    return activity_response(doc, private=private)


async def _likes(
    request: web.Request,
    session: Session,
    viewer: Viewer,
    row: RemoteObject,
    collection_iri: Iri,
    after: int,
) -> web.Response:
    """``likes``: how many like the object is public (to whoever may read it); who likes it is
    for its author only (for an association: the admins and moderators acting as it)."""
    total = (await likes.likes_count(session, [row.iri])).get(row.iri, 0)
    owner = await directory.by_id(session, row.attributed_to_id)
    acting = owner is not None and (
        viewer.actor_id == owner.id
        or (
            owner.type == "Group"
            and await visibility.role_in(session, viewer, owner) in ("admin", "moderator")
        )
    )
    if not acting:
        doc = render_collection(collection_iri, total_items=total, first=None)
        return activity_response(doc, private=row.visibility not in PUBLICLY_READABLE)
    items, cursor = await likes.likers_page(session, row.iri, after=after, limit=PAGE_SIZE)
    page_iri = Iri(f"{collection_iri}?after={after}")
    next_iri = Iri(f"{collection_iri}?after={cursor}") if cursor is not None else None
    doc = render_collection_page(page_iri, part_of=collection_iri, items=items, next_page=next_iri)
    if "after" not in request.query:
        page = {k: v for k, v in doc.items() if k != "@context"}
        doc = render_collection(collection_iri, total_items=total, first=None)
        doc["first"] = page
    return activity_response(doc, private=True)
