"""Who is asking: bearer tokens for local accounts (signed fetches come with the inbox work)."""

from __future__ import annotations

from aiohttp import web

from server.appkeys import NODE
from server.services import actors as actor_service
from server.services.visibility import ANONYMOUS, Viewer, ViewerKind


async def viewer_of(request: web.Request) -> Viewer:
    """The request's viewer; an invalid bearer token is refused rather than treated as anonymous."""
    header = request.headers.get("Authorization", "")
    if not header:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise web.HTTPUnauthorized(
            text="Authorization must be a Bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        auth = await actor_service.authenticate_token(session, token.strip(), now=node.clock())
    return Viewer(ViewerKind.LOCAL, actor_id=auth.actor.id, actor_iri=auth.actor.iri, scope=auth.scope)
