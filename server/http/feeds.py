"""Atom, RSS and JSON Feed endpoints of each association's public content (GET and HEAD).

Anonymous by design: credentials on the request are never read, so a token or a signature
changes nothing (the rule is :func:`server.services.reading.visibility.feed_levels`). Every refusal
(unknown association, a member's actor, unknown kind or format, invalid handle) is the same
404, so the endpoints are no oracle of who exists.

Each request costs the validators' aggregate query; a matching conditional request ends there
(304), and a body already rendered for the same strong ETag is served again rather than rebuilt
(rendering 50 entries costs several times the queries, and every reader polls the same feeds).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from datetime import datetime

from aiohttp import web

from federation import uris as paths
from server.appkeys import NODE
from server.services.errors import NotFound
from server.services.reading import feeds

routes = web.RouteTableDef()

CACHE_CONTROL = "public, max-age=60"
# Handles and kinds are matched loosely and checked in the handler: a route-level mismatch
# would be aiohttp's own 404, which differs from ours.
_ACTOR = "/{actor_type:groups|users}/{handle}"
FEED_ROUTE = paths.ACTOR_FEED.format(actor=_ACTOR, format="{fmt}")
KIND_FEED_ROUTE = paths.ACTOR_KIND_FEED.format(actor=_ACTOR, kind="{kind}", format="{fmt}")


class RenderedFeeds:
    """Bodies of recently rendered feeds by (format, kind, strong ETag); LRU, bounded in bytes.

    A strong ETag names exactly one body, so a hit is the body rendering would produce now.
    """

    def __init__(self, *, max_bytes: int = 16 * 1024 * 1024, max_body_bytes: int = 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self._bodies: OrderedDict[tuple[str, str | None, str], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[str, str | None, str]) -> bytes | None:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def clear(self) -> None:
        self._bodies.clear()
        self._bytes = 0

    def put(self, key: tuple[str, str | None, str], body: bytes) -> None:
        if len(body) > self.max_body_bytes or key in self._bodies:
            return
        self._bodies[key] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, dropped = self._bodies.popitem(last=False)
            self._bytes -= len(dropped)


# One memo per application (several nodes may run in one process, e.g. in tests), dropped with
# it. A route module cannot add keys to an application once it has started, hence the weak map.
_RENDERED: weakref.WeakKeyDictionary[web.Application, RenderedFeeds] = weakref.WeakKeyDictionary()


def rendered_feeds(app: web.Application) -> RenderedFeeds:
    memo = _RENDERED.get(app)
    if memo is None:
        memo = _RENDERED[app] = RenderedFeeds()
    return memo


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): ``W/`` is ignored."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def not_modified(request: web.Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match when present, otherwise If-Modified-Since (the calendar
    feeds, server/http/calendar.py, answer conditional requests the same way)."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    since = request.if_modified_since  # None when absent or not an HTTP-date
    return since is not None and last_modified <= since


@routes.get(FEED_ROUTE)
@routes.get(KIND_FEED_ROUTE)
async def get_feed(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if request.match_info["actor_type"] != "groups":
        raise NotFound("no such feed")
    spec = feeds.parse_feed_spec(request.match_info["fmt"], request.match_info.get("kind"))
    # Feeds are public: the state is read outside any session when the node has a reader
    # (decision 99); only a body not rendered yet for this ETag opens one.
    async with node.reading() as source:
        owner, validators = await feeds.feed_state(source, request.match_info["handle"], spec)
    headers = {"ETag": validators.etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request, validators.etag, validators.last_modified):
        response = web.Response(status=304, headers=headers)
        response.last_modified = validators.last_modified
        return response
    memo, key = rendered_feeds(request.app), (spec.fmt, spec.kind, validators.etag)
    body = memo.get(key)
    if body is None:
        async with node.sessions() as session:
            items = await feeds.feed_items(session, owner, spec)
        body = feeds.render_feed(spec, feeds.feed_meta(node.uris, owner, spec, validators), items)
        memo.put(key, body)
    headers["Content-Type"] = spec.content_type
    headers["X-Content-Type-Options"] = "nosniff"  # entries carry HTML: never sniffed as a page
    response = web.Response(body=body, headers=headers)
    response.last_modified = validators.last_modified
    return response
