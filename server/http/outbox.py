"""C2S outbox POST, and GET of our objects and activities (410 once deleted)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation import uris as paths
from federation.audience import PUBLICLY_READABLE
from federation.http import is_activitypub_media_type
from server.appkeys import FEDERATION, NODE
from server.http.activitypub import KIND_TYPES
from server.http.auth import viewer_of
from server.http.pages import objects
from server.http.params import json_value
from server.http.render import activity_response, wants_ap
from server.services import c2s as publishing
from server.services.actors import directory
from server.services.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from server.services.reading import objects as reading
from server.services.reading import visibility
from server.services.reading.visibility import Viewer
from server.services.types import Actor, Session

routes = web.RouteTableDef()
ACTOR = "/{kind:groups|users}/{handle:" + paths.HANDLE_PATTERN + "}"
ACTING_ROLES = ("admin", "moderator")


async def writer_of(request: web.Request) -> Viewer:
    """The caller, who must hold a bearer token with the write (or admin) scope.

    Raises:
        Unauthorized: no credentials (or invalid ones).
        Forbidden: a read-only token, or a remote actor's signature (which never writes here).
    """
    viewer = await viewer_of(request)
    if viewer.actor_id is None:
        raise Unauthorized("a bearer token with the write scope is required")
    if viewer.scope not in ("write", "admin"):
        raise Forbidden("this token's scope does not allow writing")
    return viewer


async def acting_for(
    session: Session, viewer: Viewer, author: Actor, *, roles: tuple[str, ...] = ACTING_ROLES
) -> Actor:
    """The caller's own actor, when it may act as ``author``: it is ``author``, or ``author`` is an
    association in which it has one of ``roles`` (it is then recorded as ``by``).

    Raises:
        Forbidden: anyone else.
    """
    member = await directory.by_id(session, viewer.actor_id)
    allowed = viewer.actor_id == author.id or (
        author.type == "Group" and await visibility.role_in(session, viewer, author) in roles
    )
    if not allowed or member is None:
        raise Forbidden("you may not post as this actor")
    return member


@routes.post(ACTOR + "/outbox")
async def post_outbox(request: web.Request) -> web.Response:
    """Publish as this actor: the actor itself, or an admin/moderator of the association."""
    content_type = request.headers.get("Content-Type", "")
    if not (is_activitypub_media_type(content_type) or content_type.startswith("application/json")):
        raise web.HTTPUnsupportedMediaType(
            text="the body must be application/activity+json or application/json"
        )
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        author = await directory.local_by_handle(
            session, KIND_TYPES[request.match_info["kind"]], request.match_info["handle"]
        )
        if author is None:
            raise NotFound("no such actor")
        member = await acting_for(session, viewer, author)
    body = json_value(await request.read())
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    result = await publishing.post_to_outbox(fed, author, body, by=member)
    answer: dict[str, Any] = {"id": result.activity_iri, "object": result.object_iri}
    if result.activity_iri is not None:
        async with fed.node.sessions() as session:
            stored = await reading.activity_by_iri(session, result.activity_iri)
        if stored is not None:
            # What was published and to whom (bto/bcc are never stored): a client that addressed
            # nobody sees ``"visibility": "direct"`` with empty ``to`` and ``cc`` (decision 37).
            answer |= {
                "type": stored.type,
                "to": stored.document.get("to", []),
                "cc": stored.document.get("cc", []),
                "visibility": stored.visibility,
            }
            if stored.type == "Undo":
                answer["undid"] = stored.document.get("object")  # what the Undo undid
    return web.json_response(
        answer,
        status=201,
        headers={"Location": result.activity_iri or result.object_iri or ""},
        content_type="application/activity+json",
    )


@routes.get("/objects/{id:[0-9a-f]{32}}")
async def get_object(request: web.Request) -> web.Response:
    if not wants_ap(request):
        return await objects.object_page(request)  # a browser: its signed-in account reads
    node = request.app[NODE]
    iri = node.uris.object(request.match_info["id"])
    async with node.sessions() as session:
        row = await reading.local_object(session, iri)
    viewer = await viewer_of(request)
    async with node.sessions() as session:
        readable = row is not None and await visibility.can_read_object(session, viewer, row)
    if row is None or not readable:
        raise NotFound("no such object")  # not visible answers exactly like absent (case 39)
    private = row.visibility not in PUBLICLY_READABLE
    if row.deleted_at is not None:
        response = activity_response(row.document, private=private)
        response.set_status(410)
        return response
    return activity_response(row.document, private=private)


@routes.get("/activities/{id:[0-9a-f]{32}}")
async def get_activity(request: web.Request) -> web.Response:
    node = request.app[NODE]
    iri = node.uris.activity(request.match_info["id"])
    viewer = await viewer_of(request)
    async with node.sessions() as session:
        found = await reading.readable_activity(session, viewer, iri)
    if found is None:
        raise NotFound("no such activity")
    row, document = found
    return activity_response(document, private=row.visibility not in PUBLICLY_READABLE)
