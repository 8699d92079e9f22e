"""The JSON API of a member's own account: their profile, the archive of their data (GDPR art. 15
and 20) and the deletion of the account (art. 17). The web pages and the CLI call the same services
(:mod:`server.services.accounts.erasure`, :mod:`server.services.accounts.export`)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.api import NO_STORE, json_body, reader_of
from server.http.outbox import writer_of
from server.http.render import json_response
from server.services.accounts import erasure as accounts
from server.services.accounts import export as export_service
from server.services.actors import directory
from server.services.context import NodeContext
from server.services.errors import NotFound
from server.services.media import uploads as media_service
from server.services.types import Actor

routes = web.RouteTableDef()

PROFILE_PATH: Final = "/api/account/profile"


async def _profile(node: NodeContext, actor: Actor) -> dict[str, object]:
    async with node.sessions() as session:
        avatar = await media_service.avatar_of(session, actor.id)
    return {
        "id": actor.iri,
        "username": actor.handle,
        "name": actor.name,
        "summary": actor.summary,
        "discoverable": actor.discoverable,
        "manuallyApprovesFollowers": actor.manually_approves_followers,
        "icon": media_service.icon_document(node.uris, avatar) if avatar is not None else None,
    }


@routes.get(PROFILE_PATH)
async def get_profile(request: web.Request) -> web.Response:
    """The caller's profile as they edit it (plain-text summary)."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    async with node.sessions() as session:
        actor = await directory.by_id(session, viewer.actor_id)
    if actor is None or actor.type != "Person" or actor.deleted_at is not None:
        raise NotFound("no such account")
    return json_response(await _profile(node, actor), headers=NO_STORE)


@routes.patch(PROFILE_PATH)
async def patch_profile(request: web.Request) -> web.Response:
    """Change the caller's name, summary, discoverability, avatar (``icon``: an upload's key or
    URL, null to remove it) or whether they approve followers by hand; followers get
    ``Update{Person}``."""
    viewer = await writer_of(request)
    body = await json_body(request, "ProfilePatch")
    assert viewer.actor_id is not None
    result = await accounts.update_profile(
        request.app[FEDERATION],
        viewer.actor_id,
        name=body.get("name"),
        summary=body.get("summary"),
        discoverable=body.get("discoverable"),
        manually_approves_followers=body.get("manuallyApprovesFollowers"),
        avatar=(body["icon"] or "") if "icon" in body else None,
    )
    profile = await _profile(request.app[NODE], result.actor)
    return json_response({**profile, "update": result.update_iri}, headers=NO_STORE)


@routes.get("/api/account/export")
async def get_export(request: web.Request) -> web.Response:
    """The caller's archive: the same zip as the web page's download."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    async with node.sessions() as session:
        actor = await directory.by_id(session, viewer.actor_id)
        if actor is None or actor.deleted_at is not None:
            raise NotFound("no such account")
        data = await export_service.archive(session, node.uris, actor, now=node.clock())
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="entraide-{actor.handle}.zip"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.post("/api/account/delete")
async def post_delete(request: web.Request) -> web.Response:
    """Delete the caller's account. The password is asked even with a write token: a leaked token
    alone cannot erase a member."""
    viewer = await writer_of(request)
    body = await json_body(request, "AccountDelete")
    node = request.app[NODE]
    assert viewer.actor_id is not None
    async with node.sessions() as session:
        await accounts.check_password(session, viewer.actor_id, body["password"])
    result = await accounts.delete_account(request.app[FEDERATION], viewer.actor_id, reason="api")
    return json_response(
        {
            "id": result.actor_iri,
            "deleted": True,
            "activity": result.delete_iri,
            "objects": result.objects,
            "votesWithdrawn": result.votes_withdrawn,
        },
        headers=NO_STORE,
    )
