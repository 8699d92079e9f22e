"""The collections of one of our objects: ``replies``, its thread (``context``, FEP-7888/f228),
its ``history`` (FEP-bad1), its ``likes`` and a proposal's ``endorsements``.

Every item goes through the single read filter: an object the viewer may not read answers
exactly like a missing one, and each listed item is one the viewer may read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE
from federation.collections import render_collection, render_collection_page
from federation.types import Iri
from federation.vocab.entraide import Kind
from server.appkeys import NODE
from server.db.models import Activity, Actor, RemoteObject
from server.http.auth import viewer_of
from server.http.params import int_param
from server.http.render import activity_response
from server.services.content import endorsements
from server.services.content import likes
from server.services.reading import visibility
from server.services.errors import NotFound
from server.services.reading.visibility import Viewer

routes = web.RouteTableDef()
PAGE_SIZE = 50
MAX_SCAN = 4 * PAGE_SIZE
"""Rows read at most for one page of replies or of a thread, whoever asks (case 51)."""


def _after(request: web.Request) -> int:
    return int_param(request, "after") or 0


async def _objects(
    session: AsyncSession, viewer: Viewer, condition: Any, after: int, *, embed: bool
) -> tuple[list[Any], int | None, bool]:
    """One page (oldest first) of the readable live objects matching ``condition``, and whether
    it lists any non-public one (the page is then this viewer's own: never cached, case 41).

    The database leaves out what the viewer certainly may not read (``visibility.readable_by``:
    for an anonymous reader, exactly the non-public rows) and votes; the read filter then decides
    on each row left. At most :data:`MAX_SCAN` rows are read for one page: a thread full of
    objects this viewer may not read gives short pages that carry on (the cursor is the last row
    read), never an unbounded scan (case 51).
    """
    rows = (
        await session.scalars(
            select(RemoteObject)
            .where(
                condition,
                RemoteObject.id > after,
                RemoteObject.deleted_at.is_(None),
                RemoteObject.kind != Kind.VOTE.value,
                visibility.readable_by(viewer),
            )
            .order_by(RemoteObject.id)
            .limit(MAX_SCAN)
        )
    ).all()
    # The authors and associations of the page in one statement, held while the read filter
    # asks for them (the session's identity map only keeps what something references).
    actor_ids = {row.attributed_to_id for row in rows} | {row.audience_id for row in rows if row.audience_id}
    actors = (await session.scalars(select(Actor).where(Actor.id.in_(actor_ids)))).all() if rows else []
    await visibility.preload_delivered(
        session, viewer, [row.iri for row in rows if row.visibility not in PUBLICLY_READABLE]
    )
    items: list[Any] = []
    cursor = after
    hidden = False
    for row in rows:
        cursor = row.id
        if not await visibility.can_read_object(session, viewer, row):
            continue
        document = {k: v for k, v in row.document.items() if k != "@context"}
        items.append(document if embed else row.iri)
        hidden = hidden or row.visibility not in PUBLICLY_READABLE
        if len(items) == PAGE_SIZE:
            break
    del actors
    return items, cursor if len(items) == PAGE_SIZE or len(rows) == MAX_SCAN else None, hidden


@routes.get("/objects/{id:[0-9a-f]{32}}/{collection:replies|context|history|endorsements|likes}")
async def get_object_collection(request: web.Request) -> web.Response:
    node = request.app[NODE]
    object_iri = node.uris.object(request.match_info["id"])
    name = request.match_info["collection"]
    after = _after(request)
    viewer = await viewer_of(request)
    collection_iri = Iri(f"{object_iri}/{name}")
    async with node.sessions() as session:
        row = await session.scalar(
            select(RemoteObject).where(RemoteObject.iri == object_iri, RemoteObject.local.is_(True))
        )
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
            items, cursor, hidden = await _objects(
                session, viewer, RemoteObject.in_reply_to_iri == object_iri, after, embed=False
            )
        elif name == "context":
            if row.context_iri != node.uris.context(object_iri):
                raise NotFound("no such collection")  # a reply's thread is its root's
            items, cursor, hidden = await _objects(
                session,
                viewer,
                (RemoteObject.context_iri == collection_iri) | (RemoteObject.iri == object_iri),
                after,
                embed=True,
            )
        elif name == "history":
            rows = (
                await session.scalars(
                    select(Activity)
                    .where(
                        Activity.object_iri == object_iri,
                        Activity.actor_id == row.attributed_to_id,
                        Activity.type.in_(("Create", "Update")),
                        Activity.id > after,
                    )
                    .order_by(Activity.id)
                    .limit(PAGE_SIZE)
                )
            ).all()
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
    session: AsyncSession,
    viewer: Viewer,
    row: RemoteObject,
    collection_iri: Iri,
    after: int,
) -> web.Response:
    """``likes``: how many like the object is public (to whoever may read it); who likes it is
    for its author only (for an association: the admins and moderators acting as it)."""
    total = (await likes.likes_count(session, [row.iri])).get(row.iri, 0)
    owner = await session.get(Actor, row.attributed_to_id)
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
