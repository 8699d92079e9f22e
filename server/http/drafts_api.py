"""Members' drafts in the JSON API (``/api/associations/{slug}/drafts``), described by
``schemas/openapi.json``: a member submits one, lists their own (the association's admins and
moderators list all), and an admin or moderator publishes or refuses it. The same service as the
pages (:mod:`server.services.content.drafts`, decision 65) decides every rule.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from federation.vocab import entraide as wire
from server.appkeys import FEDERATION, NODE
from server.http.api import NO_STORE, json_body, published_response
from server.http.outbox import writer_of
from server.http.render import json_response
from server.services.content import drafts, editors
from server.services.errors import Forbidden, InvalidInput

routes = web.RouteTableDef()
BASE: Final = "/api/associations/{slug}/drafts"
ONE: Final = BASE + "/{id:[0-9]{1,18}}"


def draft_of(view: drafts.DraftView) -> dict[str, Any]:
    return {
        "id": view.id,
        "kind": view.kind,
        "state": view.state,
        "fields": dict(view.fields),
        "author": view.author_iri,
        "created": wire.iso(view.created_at),
        "reason": view.reason or None,
        "object": view.object_iri,
    }


async def _caller(request: web.Request) -> editors.Editor:
    """The token's member and their role in the association (403 for a non-member)."""
    viewer = await writer_of(request)
    node = request.app[NODE]
    editor = await editors.role(node, request.match_info["slug"], await editors.member(node, viewer.actor_id))
    if editor.role is None:
        raise Forbidden("only the association's members have drafts here")
    return editor


@routes.post(BASE)
async def post_draft(request: web.Request) -> web.Response:
    """An active member proposes a draft; nothing is published or sent."""
    editor = await _caller(request)
    body = await json_body(request, "DraftCreate")
    kind = body.pop("kind")
    view = await drafts.submit(request.app[FEDERATION], editor.group, editor.member, kind, body)
    return json_response(draft_of(view), status=201, headers=NO_STORE)


@routes.get(BASE)
async def get_drafts(request: web.Request) -> web.Response:
    """Drafts in one state (``pending`` by default): all for editors, the caller's own otherwise."""
    editor = await _caller(request)
    state = request.query.get("state", "pending")
    if state not in ("pending", "published", "refused"):
        raise InvalidInput("state must be pending, published or refused", field="state")
    views = await drafts.listing(request.app[FEDERATION], editor.group, editor.member, state=state)
    return json_response({"items": [draft_of(v) for v in views]}, headers=NO_STORE)


@routes.post(ONE + "/publish")
async def post_publish(request: web.Request) -> web.Response:
    """Publish the draft as the association (its admins and moderators)."""
    editor = await _caller(request)
    result = await drafts.publish(
        request.app[FEDERATION], editor.group, int(request.match_info["id"]), by=editor.member
    )
    return published_response(result, status=201)


@routes.post(ONE + "/refuse")
async def post_refuse(request: web.Request) -> web.Response:
    """Refuse the draft, with an optional reason its author reads."""
    editor = await _caller(request)
    body = await json_body(request, "DraftRefusal")
    draft_id = int(request.match_info["id"])
    await drafts.refuse(
        request.app[FEDERATION], editor.group, draft_id, by=editor.member, reason=body.get("reason", "")
    )
    return json_response({"id": draft_id, "state": "refused"}, headers=NO_STORE)
