"""Actor documents and their collections, with content negotiation (JSON-LD or HTML)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from federation import uris as paths
from federation.audience import PUBLICLY_READABLE
from federation.collections import render_collection, render_collection_page
from federation.types import Iri
from federation.vocab.actors import render_actor
from server.appkeys import NODE
from server.http.auth import viewer_of
from server.http.pages import actors
from server.http.params import int_param
from server.http.render import activity_response, wants_ap
from server.services.actors import directory
from server.services.actors.profiles import local_actor_value
from server.services.content import likes
from server.services.content.current import current_documents
from server.services.errors import InvalidInput, NotFound
from server.services.membership import directory as member_directory
from server.services.reading import visibility
from server.services.reading.visibility import Viewer
from server.services.types import Actor, Session, Source

routes = web.RouteTableDef()
PAGE_SIZE = 20
KIND_TYPES = {"groups": "Group", "users": "Person"}


async def _load_actor(session: Session, request: web.Request, *, reading: bool = False) -> Actor:
    """The actor of the path; with ``reading``, one not in the session (see
    :func:`directory.local_for_reading`): a collection only reads its owner."""
    kind = request.match_info.get("kind")
    lookup = directory.local_for_reading if reading else directory.local_by_handle
    if kind is None:
        actor = await directory.application_actor(session)
    else:
        actor = await lookup(session, KIND_TYPES[kind], request.match_info["handle"])
    if actor is None:
        raise NotFound("no such actor")
    return actor


ACTOR_ROUTES = ("/actor", "/{kind:groups|users}/{handle:" + paths.HANDLE_PATTERN + "}")


async def get_actor(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if not wants_ap(request):
        if request.match_info.get("kind") is None:
            raise web.HTTPSeeOther("/")  # the node's own page is its home page
        return await actors.actor_page(request)  # a browser: the signed-in account reads
    if request.match_info.get("kind") is not None:
        await viewer_of(request)  # authorized fetch: refuses unsigned reads when enabled
    async with node.sessions() as session:
        kind = request.match_info.get("kind")
        gone = (
            await directory.local_tombstone(session, KIND_TYPES[kind], request.match_info["handle"])
            if kind is not None
            else None
        )
        if gone is not None and await directory.local_by_handle(session, gone.type, gone.handle) is None:
            return _tombstone(gone)
        actor = await _load_actor(session, request)
        doc = render_actor(await local_actor_value(session, node.uris, actor))
    return activity_response(doc)


def _tombstone(actor: Actor) -> web.Response:
    """A deleted account's IRI: 410 Gone with a Tombstone, so peers drop it and nobody takes it."""
    at = actor.deleted_at
    deleted = at.isoformat(timespec="seconds").replace("+00:00", "Z") if at is not None else None
    doc: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": actor.iri,
        "type": "Tombstone",
        "formerType": actor.type,
    }
    if deleted:
        doc["deleted"] = deleted
    response = activity_response(doc)
    response.set_status(410)
    return response


def _page_params(request: web.Request) -> tuple[bool, int | None]:
    page = request.query.get("page")
    before_raw = request.query.get("before")
    if page is None and before_raw is None:
        return False, None
    if page not in (None, "true", "1"):
        raise InvalidInput("page must be 'true'", field="page")
    return True, int_param(request, "before", minimum=1)


Lister = Callable[
    [Session, Viewer, Actor, int | None, bool],
    Awaitable[tuple[int | None, list[Any] | None, int | None, bool]],
]
"""(session, viewer, owner, before, is_page) -> (total or None if hidden, items or None if the
list is private, last cursor, private). The outbox gives its total only to the collection and
its items only to a page (``[]`` to the collection), since each side throws the other away."""


async def _followers(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    total, rows = await directory.followers_page(session, owner.id, before=before, limit=PAGE_SIZE)
    if not await visibility.can_list_followers(session, viewer, owner):
        return total, None, None, False
    return total, [iri for _, iri in rows], rows[-1][0] if len(rows) == PAGE_SIZE else None, True


async def _following(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    total, rows = await directory.following_page(session, owner.id, before=before, limit=PAGE_SIZE)
    if not await visibility.can_list_followers(session, viewer, owner):  # same rule (case 56)
        return total, None, None, False
    return total, [iri for _, iri in rows], rows[-1][0] if len(rows) == PAGE_SIZE else None, True


async def _members(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    if owner.type != "Group" or not await visibility.can_list_members(session, viewer, owner):
        raise NotFound("no such collection")  # same answer as a missing one: no existence oracle
    listed_only = not await member_directory.lists_everyone(session, viewer, owner)  # decision 59
    total, rows = await directory.members_page(
        session, owner.id, before=before, limit=PAGE_SIZE, listed_only=listed_only
    )
    private = owner.members_visibility != "public"
    return total, [iri for _, iri, _ in rows], rows[-1][0] if len(rows) == PAGE_SIZE else None, private


async def _outbox(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    levels = await visibility.outbox_levels(session, viewer, owner)
    private = any(level not in PUBLICLY_READABLE for level in levels)
    if not is_page:  # the collection: totalItems from the counters, no documents read
        return await directory.outbox_total(session, owner.id, visibilities=levels), [], None, private
    documents, cursor = await _outbox_items(session, owner.id, levels, before)
    return None, documents, cursor, private


async def _outbox_items(
    source: Source, owner_id: int, levels: tuple[str, ...], before: int | None
) -> tuple[list[Any], int | None]:
    """A page of the outbox of ``owner_id`` at ``levels``, and the cursor of the next one."""
    rows = await directory.outbox_page(source, owner_id, visibilities=levels, before=before, limit=PAGE_SIZE)
    # Each activity's object as it is now: a deleted object's Create serves its Tombstone.
    documents = await current_documents(source, [doc for _, doc in rows])
    return documents, rows[-1][0] if len(rows) == PAGE_SIZE else None


async def _public_outbox_page(request: web.Request, kind: str, before: int | None) -> web.Response:
    """An outbox page for a reader with no actor (decision 99): :data:`visibility.PUBLIC_OUTBOX`
    only, read outside any session when the node has a reader (``NodeContext.reading``)."""
    levels = visibility.PUBLIC_OUTBOX
    async with request.app[NODE].reading() as source:
        owner = await directory.local_reference(source, KIND_TYPES[kind], request.match_info["handle"])
        if owner is None:
            raise NotFound("no such actor")
        owner_id, owner_iri = owner
        documents, cursor = await _outbox_items(source, owner_id, levels, before)
    private = any(level not in PUBLICLY_READABLE for level in levels)
    return _page_response(Iri(f"{owner_iri}/outbox"), before, documents, cursor, private=private)


async def _featured(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    if owner.type != "Group":
        raise NotFound("no such collection")
    return 0, [], None, False


async def _liked(session: Session, viewer: Viewer, owner: Actor, before: int | None, is_page: bool):  # type: ignore[no-untyped-def]
    """What the actor likes: the count for anyone, the objects for the actor itself (and, for an
    association, its admins), like ``following`` (case 56)."""
    total, rows = await likes.liked_page(session, owner.id, before=before, limit=PAGE_SIZE)
    if not await visibility.can_list_followers(session, viewer, owner):
        return total, None, None, False
    return total, [iri for _, iri in rows], rows[-1][0] if len(rows) == PAGE_SIZE else None, True


LISTERS: dict[str, Any] = {
    "liked": _liked,
    "outbox": _outbox,
    "followers": _followers,
    "following": _following,
    "members": _members,
    "featured": _featured,
}


async def get_collection(request: web.Request) -> web.Response:
    node = request.app[NODE]
    name = request.match_info["collection"]
    is_page, before = _page_params(request)
    viewer = await viewer_of(request)
    kind = request.match_info.get("kind")
    if name == "outbox" and is_page and viewer.actor_id is None and kind is not None:
        return await _public_outbox_page(request, kind, before)
    async with node.sessions() as session:
        owner = await _load_actor(session, request, reading=True)
        total, items, cursor, private = await LISTERS[name](session, viewer, owner, before, is_page)
    collection_iri = Iri(f"{owner.iri}/{name}")
    if items is None:
        # The list itself is private: publish the count only, never a first page.
        return activity_response(render_collection(collection_iri, total_items=total, first=None))
    if not is_page:
        doc = render_collection(collection_iri, total_items=total, first=Iri(f"{collection_iri}?page=true"))
        return activity_response(doc, private=private)
    return _page_response(collection_iri, before, items, cursor, private=private)


def _page_response(
    collection_iri: Iri, before: int | None, items: list[Any], cursor: int | None, *, private: bool
) -> web.Response:
    page_iri = Iri(f"{collection_iri}?page=true" + (f"&before={before}" if before is not None else ""))
    next_iri = Iri(f"{collection_iri}?page=true&before={cursor}") if cursor is not None else None
    doc = render_collection_page(page_iri, part_of=collection_iri, items=items, next_page=next_iri)
    return activity_response(doc, private=private)


COLLECTIONS = "{collection:outbox|followers|following|liked|members|featured}"
for prefix in ACTOR_ROUTES:
    routes.get(prefix)(get_actor)
    routes.get(f"{prefix}/{COLLECTIONS}")(get_collection)
