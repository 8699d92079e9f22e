"""WebFinger, NodeInfo and host-meta."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from federation.errors import WebFingerError
from federation.http import JRD_CONTENT_TYPE
from federation.nodeinfo import (
    NODEINFO_21_PROFILE,
    AssociationSummary,
    NodeDescription,
    NodeUsage,
    render_nodeinfo,
    render_nodeinfo_index,
)
from federation.types import Iri
from federation.webfinger import (
    WebFingerLink,
    is_http_resource,
    parse_acct,
    render_host_meta_json,
    render_host_meta_xml,
    render_jrd,
)
from server import __version__
from server.appkeys import NODE
from server.http.render import json_response
from server.services.actors import directory
from server.services.actors.local import APPLICATION_HANDLE
from server.services.context import NodeContext
from server.services.errors import Gone, NotFound

routes = web.RouteTableDef()
CORS = {"Access-Control-Allow-Origin": "*"}
WEBFINGER = "/.well-known/webfinger"
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
SERVED_SCHEMES = frozenset({"acct", "http", "https"})


async def webfinger_cors(request: web.Request, response: web.StreamResponse) -> None:
    """Every WebFinger answer, errors included (400, 404, 429...), may be read by a browser
    client on another origin (RFC 7033 §5): the header is set as any response is prepared."""
    if request.path == WEBFINGER:
        response.headers.update(CORS)


def _unserved_scheme(resource: str) -> bool:
    """A resource in a URI scheme we hold nothing for (``mailto:``, ``foo:``): RFC 7033 §4.2
    answers 404 (not found here), not 400. Without a scheme (``user@host``) it is read as acct."""
    match = SCHEME.match(resource)
    return match is not None and match.group(1).lower() not in SERVED_SCHEMES


@routes.get(WEBFINGER)
async def webfinger(request: web.Request) -> web.Response:
    """RFC 7033 lookup of a local actor by ``acct:`` or by IRI. A person or association that
    existed and was deleted answers **410 Gone**, as its actor IRI does (decision 40), so that
    peers drop the account instead of retrying a lookup that may succeed later (decision 86)."""
    node = request.app[NODE]
    resource = request.query.get("resource", "")
    if not resource:
        raise WebFingerError("the resource query parameter is required")
    if _unserved_scheme(resource):
        raise NotFound(f"no resource in this scheme here: {resource[:100]}")
    async with node.sessions() as session:
        if is_http_resource(resource):
            actors, handle, types = await _by_iri(session, node, resource)
            # Mastodon answers a lookup by IRI with the acct: subject (and the IRI as alias).
            subject = f"acct:{actors[0].handle}@{node.uris.host}" if actors else resource
        else:
            acct = parse_acct(resource)
            if acct.host != node.uris.host.lower():
                raise NotFound(f"{acct} is not on this node")
            if acct.user == APPLICATION_HANDLE:
                actors = [a for a in [await directory.application_actor(session)] if a]
            else:
                actors = list(await directory.local_by_name(session, acct.user))
            handle, types = acct.user, ("Group", "Person")
            subject = str(acct)
        if not actors and handle is not None and await directory.deleted_local(session, handle, types):
            raise Gone(f"{resource} was deleted")
    if not actors:
        raise NotFound(f"no actor for {resource}")
    links = [WebFingerLink(Iri(a.iri), a.type, Iri(a.url or a.iri)) for a in actors]
    # No OStatus subscribe template until a remote-follow page exists: a link must not 404.
    doc = render_jrd(subject, links)
    return json_response(doc, content_type=JRD_CONTENT_TYPE, headers=CORS)


async def _by_iri(
    session: Any, node: NodeContext, resource: str
) -> tuple[list[Any], str | None, tuple[str, ...]]:
    """The live actors an IRI names, and the handle and types under which a deleted one would be."""
    ref = node.uris.local_actor_ref(resource)
    if resource == node.uris.application_actor():
        return [a for a in [await directory.application_actor(session)] if a], None, ()
    if ref is None or ref.part is not None:
        return [], None, ()
    kind = "Group" if ref.kind == "group" else "Person"
    found = await directory.local_by_handle(session, kind, ref.handle)
    return ([found] if found else []), ref.handle, (kind,)


@routes.get("/.well-known/host-meta")
async def host_meta(request: web.Request) -> web.Response:
    origin = request.app[NODE].uris.origin
    return web.Response(text=render_host_meta_xml(origin), content_type="application/xrd+xml", headers=CORS)


@routes.get("/.well-known/host-meta.json")
async def host_meta_json(request: web.Request) -> web.Response:
    return json_response(
        render_host_meta_json(request.app[NODE].uris.origin), content_type=JRD_CONTENT_TYPE, headers=CORS
    )


@routes.get("/.well-known/nodeinfo")
async def nodeinfo_index(request: web.Request) -> web.Response:
    uris = request.app[NODE].uris
    doc = render_nodeinfo_index(
        uris.iri("/nodeinfo/2.1"), uris.iri("/nodeinfo/2.0"), uris.application_actor()
    )
    return json_response(doc, headers=CORS)


NODEINFO_CACHE_CONTROL = "public, max-age=300"


@routes.get("/nodeinfo/{version:2\\.[01]}")
async def nodeinfo(request: web.Request) -> web.Response:
    node = request.app[NODE]
    version = request.match_info["version"]
    async with node.sessions() as session:
        groups = await directory.local_groups(session)
        people = await directory.count_local_people(session)
        posts = await directory.count_local_posts(session)
        app_actor = await directory.application_actor(session)
    description = NodeDescription(
        node_name=app_actor.name if app_actor else node.uris.host,
        software_version=__version__,
        usage=NodeUsage(users_total=people, local_posts=posts),
        associations=[AssociationSummary(g.handle, g.name, Iri(g.iri)) for g in groups if g.discoverable],
    )
    content_type = (
        NODEINFO_21_PROFILE
        if version == "2.1"
        else ('application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.0#"')
    )
    return web.Response(
        body=orjson.dumps(render_nodeinfo(description, version=version)),
        # Public and the same for everyone: the page cache keeps it (one build per second at most).
        headers={"Content-Type": content_type, "Cache-Control": NODEINFO_CACHE_CONTROL, **CORS},
    )
