"""Who is asking: a local account by bearer token, or a remote actor by HTTP signature (signed fetch).

With ``federation.authorized_fetch`` on, actor-scoped GETs without either are refused (401),
except the node's ``Application`` actor, which must stay fetchable unsigned: it is the actor
our own signed fetches are made as (docs/interop.md "Signed fetch").
"""

from __future__ import annotations

from aiohttp import web

from federation.http import Headers, IncomingRequest
from federation.inbox import claimed_key_id
from federation.iri import host_of
from federation.signatures import verify_request
from server.appkeys import FEDERATION, NODE
from server.services.actors import directory
from server.services.actors import local as actor_service
from server.services.errors import Unauthorized
from server.services.reading.visibility import ANONYMOUS, Viewer, ViewerKind


def _is_signed(request: web.Request) -> bool:
    return "Signature" in request.headers or "Signature-Input" in request.headers


async def _signed_viewer(request: web.Request) -> Viewer:
    fed = request.app[FEDERATION]
    incoming = IncomingRequest(
        method=request.method,
        url=fed.node.uris.origin + request.raw_path,
        target=request.raw_path,
        headers=Headers(list(request.headers.items())),
        body=b"",
    )
    # A blocked or unlisted host is refused before its key is looked up, as in the inbox (403).
    fed.policy.check(host_of(claimed_key_id(incoming)))
    signer = await verify_request(incoming, resolve_key=fed.keys, now=fed.node.clock())
    fed.policy.check(host_of(signer.owner))
    async with fed.node.sessions() as session:
        actor = await directory.by_iri(session, signer.owner)
    if actor is None:
        raise Unauthorized("the signing actor is unknown")
    return Viewer(
        ViewerKind.LOCAL if actor.local else ViewerKind.REMOTE, actor_id=actor.id, actor_iri=actor.iri
    )


async def viewer_of(request: web.Request, *, require_for_authorized_fetch: bool = True) -> Viewer:
    """The request's viewer; invalid credentials are refused rather than treated as anonymous.

    Raises:
        web.HTTPUnauthorized / Unauthorized / SignatureError: bad credentials, or none while
            authorized fetch is on (unless ``require_for_authorized_fetch`` is False).
        PeerNotAllowed: the signer's host is blocked or not on the allowlist.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise web.HTTPUnauthorized(
                text="Authorization must be a Bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        node = request.app[NODE]
        async with node.sessions.begin() as session:
            auth = await actor_service.authenticate_token(session, token.strip(), now=node.clock())
        return Viewer(ViewerKind.LOCAL, actor_id=auth.actor.id, actor_iri=auth.actor.iri, scope=auth.scope)
    if _is_signed(request):
        return await _signed_viewer(request)
    if require_for_authorized_fetch and request.app[NODE].settings.federation.authorized_fetch:
        raise Unauthorized("this node requires signed requests (authorized fetch)")
    return ANONYMOUS
