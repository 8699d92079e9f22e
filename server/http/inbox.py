"""Inboxes: the shared one and each actor's. POST is server-to-server; GET is C2S reading.

A POST goes through :func:`federation.inbox.receive` (every check before anything is stored),
then :func:`server.services.inbox.process.accept` (store + queue in one transaction) and is answered
202. Ignored activities (duplicates, unverifiable self-Deletes, …) get 202 as well.
"""

from __future__ import annotations

from aiohttp import web

from federation import uris as paths
from federation.collections import render_collection, render_collection_page
from federation.domains import registrable_domain
from federation.http import Headers, IncomingRequest, is_activitypub_media_type
from federation.inbox import InboundActivity, InboxDeps, receive
from federation.iri import host_of
from federation.types import Iri
from server.appkeys import FEDERATION, INBOX_WRITER, NODE
from server.http.activitypub import KIND_TYPES, PAGE_SIZE, _page_params
from server.http.auth import viewer_of
from server.http.problems import problem
from server.http.ratelimit import HostRateLimiter, retry_after_header
from server.http.render import activity_response
from server.services.actors import directory
from server.services.errors import NotFound
from server.services.reading import visibility
from server.services.reading.inbox import inbox_page

routes = web.RouteTableDef()
INBOX_DEPS = web.AppKey("inbox_deps", InboxDeps)
INBOX_LIMITER = web.AppKey("inbox_limiter", HostRateLimiter)
UNVERIFIED_LIMITER = web.AppKey("unverified_limiter", HostRateLimiter)


def inbox_deps(app: web.Application) -> InboxDeps:
    fed = app[FEDERATION]
    return InboxDeps(
        resolve_key=fed.keys,
        policy=fed.policy,
        replay=app[INBOX_WRITER].recent,
        uris=fed.node.uris,
        clock=fed.node.clock,
        max_body_bytes=fed.node.settings.server.max_body_bytes,
    )


def to_incoming(request: web.Request, body: bytes) -> IncomingRequest:
    """The URL is rebuilt from the configured origin, never from the ``Host`` header."""
    origin = request.app[NODE].uris.origin
    return IncomingRequest(
        method=request.method,
        url=origin + request.raw_path,
        target=request.raw_path,
        headers=Headers(list(request.headers.items())),
        body=body,
    )


async def _recipient_id(request: web.Request) -> int | None:
    kind = request.match_info.get("kind")
    if kind is None:
        return None
    node = request.app[NODE]
    # One bare statement (decision 94): the ORM's read cost four hand-offs on SQLite, and on
    # PostgreSQL a BEGIN and a ROLLBACK around it, for every POST to a personal inbox.
    async with node.sessions() as session:
        actor = await directory.local_for_reading(session, KIND_TYPES[kind], request.match_info["handle"])
    if actor is None:
        raise NotFound("no such actor")
    return actor.id


async def post_inbox(request: web.Request) -> web.Response:
    if not is_activitypub_media_type(request.headers.get("Content-Type")):
        return problem(
            415,
            "inbox bodies must be application/activity+json or application/ld+json",
            code="unsupported_media_type",
        )
    recipient = await _recipient_id(request)
    # Until its signature is verified a request is anyone's: it spends from its source address's
    # bucket (``remote``: the socket's, or what a trusted proxy reports), refunded once verified,
    # so unsigned or forged traffic is throttled by where it comes from. Verified traffic spends
    # from the signer's registrable domain, never host:port (case 57).
    source = f"address:{request.remote or 'unknown'}"
    unverified = request.app[UNVERIFIED_LIMITER]
    wait_s = unverified.take(source)
    if wait_s is not None:
        return _rate_limited(wait_s)
    body = await request.read()
    verdict = await receive(to_incoming(request, body), request.app[INBOX_DEPS])
    if isinstance(verdict, InboundActivity):
        unverified.refund(source)
        wait_s = request.app[INBOX_LIMITER].take(registrable_domain(host_of(verdict.signer.owner)))
        if wait_s is not None:
            return _rate_limited(wait_s)
        await request.app[INBOX_WRITER].submit(verdict, recipient_id=recipient)
    return web.Response(status=202)


def _rate_limited(wait_s: float) -> web.Response:
    return problem(
        429,
        "too many activities from this peer; retry later",
        code="rate_limited",
        headers={"Retry-After": retry_after_header(wait_s)},
    )


async def get_inbox(request: web.Request) -> web.Response:
    """C2S: the actor (or an admin of the association) reads its inbox, newest first."""
    node = request.app[NODE]
    viewer = await viewer_of(request)
    is_page, before = _page_params(request)
    kind = request.match_info.get("kind")
    if kind is None or viewer.actor_id is None:
        raise NotFound("no such collection")
    async with node.sessions() as session:
        owner = await directory.local_by_handle(session, KIND_TYPES[kind], request.match_info["handle"])
        if owner is None:
            raise NotFound("no such collection")
        allowed = viewer.actor_id == owner.id or (
            owner.type == "Group" and await visibility.role_in(session, viewer, owner) == "admin"
        )
        if not allowed:
            raise NotFound("no such collection")  # the same answer as a missing one
        total, documents, cursor = await inbox_page(session, owner, before=before, limit=PAGE_SIZE)
    collection_iri = Iri(f"{owner.iri}/inbox")
    if not is_page:
        return activity_response(
            render_collection(collection_iri, total_items=total, first=Iri(f"{collection_iri}?page=true")),
            private=True,
        )
    page_iri = Iri(f"{collection_iri}?page=true" + (f"&before={before}" if before is not None else ""))
    doc = render_collection_page(
        page_iri,
        part_of=collection_iri,
        items=documents,
        next_page=Iri(f"{collection_iri}?page=true&before={cursor}") if cursor is not None else None,
    )
    return activity_response(doc, private=True)


routes.post(paths.SHARED_INBOX)(post_inbox)
routes.post("/{kind:groups|users}/{handle:" + paths.HANDLE_PATTERN + "}/inbox")(post_inbox)
routes.get("/{kind:groups|users}/{handle:" + paths.HANDLE_PATTERN + "}/inbox")(get_inbox)
