"""A short-lived cache of public, anonymous responses, kept as bytes.

Building an outbox page through the ORM costs 10 to 20 times serving the same bytes
(docs/performance.md); hot public documents are therefore cached for ``ttl_s`` (one second by
default — they already say ``Cache-Control: public, max-age=60`` to proxies). Only GETs without
credentials (no ``Authorization``, no HTTP signature) whose response was 200 and ``public`` are
cached, keyed by path, query, whether ActivityStreams was asked for and, for a page, the
visitor's language (their language cookie, else ``Accept-Language``): a private or
viewer-dependent answer is never stored and never served to someone else (security case 41),
and a page in one language is never served to a visitor who reads the other.

No request's latency depends on an entry expiring (decision 48):

* single flight: one request per key rebuilds an expired or missing entry; the others get the
  expired entry meanwhile (stale while revalidating) or, when there is none, wait for that one
  build and share its bytes;
* a committed publication (:mod:`server.services.content.changes`) empties the cache at once, and a
  build that started before it is not kept: the next request sees the publication, and no 304
  answers the old ETag;
* conditional GETs are answered from an entry with ``If-None-Match`` (weak comparison) or, when
  absent, ``If-Modified-Since`` against the entry's ``Last-Modified`` (RFC 9110 §13.2.2).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from federation.http import wants_activitypub
from server.http.middlewares import record_request, request_id
from server.services.content import changes

LANGUAGE_COOKIE = "entraide_lang"
"""The visitors' language choice (server/http/pages/member.py sets it; the pages read it)."""
CACHED_PREFIXES = ("/groups/", "/users/", "/actor", "/objects/", "/activities/", "/nodeinfo/")

Key = tuple[str, bool, str]  # (path and query, ActivityStreams asked for, page language or "")
CACHE_KEY = web.RequestKey("page_cache_key", tuple)
"""A cacheable request's key, worked out once by :func:`page_cache_hit_middleware` for
:func:`page_cache_middleware` (a feed's key negotiates the visitor's language)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    etag: str | None
    last_modified: datetime | None


class PageCache:
    """An LRU of response bytes with a TTL; bounded in entries and in bytes per entry."""

    def __init__(
        self,
        *,
        ttl_s: float = 1.0,
        max_entries: int = 2048,
        max_body_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._building: dict[Key, asyncio.Future[_Entry | None]] = {}
        self.generation = 0  # moves on every invalidation; a build from an older one is not kept
        self.hits = 0  # answered from a fresh entry
        self.stale_hits = 0  # answered from an expired entry while another request rebuilt it
        self.misses = 0  # builds
        self.invalidations = 0
        changes.subscribe(self.invalidate)

    def get(self, key: Key) -> _Entry | None:
        """The fresh entry of ``key`` (counted as a hit), or None."""
        entry = self._entries.get(key)
        if entry is None or entry.expires < self.clock():
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: Key, response: web.Response, *, generation: int | None = None) -> _Entry | None:
        """Keep ``response``'s bytes, unless too big or built before the last invalidation."""
        body = response.body
        if not isinstance(body, bytes) or len(body) > self.max_body_bytes:
            return None
        if generation is not None and generation != self.generation:
            return None
        headers = tuple(
            (k, v) for k, v in response.headers.items() if k.lower() not in ("x-request-id", "date")
        )
        entry = _Entry(
            self.clock() + self.ttl_s,
            response.status,
            body,
            headers,
            response.headers.get("ETag"),
            response.last_modified,
        )
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def invalidate(self) -> None:
        """Forget every entry and every build in flight (a publication was committed)."""
        self._entries.clear()
        self._building.clear()
        self.generation += 1
        self.invalidations += 1

    def clear(self) -> None:
        self.invalidate()

    async def serve(self, key: Key, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = self.get(key)
        if entry is not None:
            return _answer(request, entry)
        flight = self._building.get(key)
        if flight is not None:
            stale = self._entries.get(key)
            if stale is not None:  # being rebuilt by another request: the expired bytes meanwhile
                self.stale_hits += 1
                return _answer(request, stale)
            shared = await asyncio.shield(flight)
            if shared is not None:
                return _answer(request, shared)
            return await handler(request)  # that build was not cacheable: this request's own
        return await self._build(key, request, handler)

    async def _build(self, key: Key, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.misses += 1
        flight: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._building[key] = flight
        generation = self.generation
        entry: _Entry | None = None
        try:
            response = await handler(request)
            if (
                isinstance(response, web.Response)
                and response.status == 200
                and response.headers.get("Cache-Control", "").startswith("public")
            ):
                entry = self.put(key, response, generation=generation)
        finally:
            if self._building.get(key) is flight:
                del self._building[key]
            flight.set_result(entry)  # waiters get the bytes, or None: build your own
        if entry is not None and _not_modified(request, entry):
            return _answer(request, entry)
        return response


PAGE_CACHE = web.AppKey("page_cache", PageCache)


def _matches(etag: str, if_none_match: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison; ``*`` matches any current representation."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",") if t.strip()}
    return "*" in tags or etag.removeprefix("W/") in tags


def _not_modified(request: web.Request, entry: _Entry) -> bool:
    """RFC 9110 §13.2.2: If-None-Match when present, otherwise If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return entry.etag is not None and _matches(entry.etag, if_none_match)
    since = request.if_modified_since  # None when absent or not an HTTP-date
    return since is not None and entry.last_modified is not None and entry.last_modified <= since


def _answer(request: web.Request, entry: _Entry) -> web.Response:
    headers = dict(entry.headers)
    if _not_modified(request, entry):
        # The client holds these bytes already (RFC 9110 §15.4.5): no body.
        kept = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
        return web.Response(status=304, headers=kept)
    return web.Response(status=entry.status, body=entry.body, headers=headers)


def _cacheable_request(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.path.startswith(CACHED_PREFIXES)
        and "Authorization" not in request.headers
        and "Signature" not in request.headers
        and "Signature-Input" not in request.headers
        and "entraide_session" not in request.cookies  # a signed-in browser's pages name the reader
    )


def _language(request: web.Request) -> str:
    """The language a visitor's page is written in (as :func:`server.http.pages.core.language`
    decides for someone not signed in)."""
    from server.http.pages import i18n  # the pages import this module: imported when first used

    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    return chosen if chosen in i18n.LANGUAGES else i18n.negotiate(request.headers.get("Accept-Language", ""))


def _key(request: web.Request) -> Key:
    activitypub = wants_activitypub(request.headers.get("Accept"))
    return (request.path_qs, activitypub, "" if activitypub else _language(request))


@web.middleware
async def page_cache_hit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A fresh entry answered before any other middleware but the proxies' (decision 83).

    A hit needs none of the request id, audit, problem or page machinery: it gets its
    ``X-Request-Id`` and is counted in the metrics (with label children bound once) here. Anything
    else (a miss, an expired entry, a build in flight) goes through the whole chain, down to
    :func:`page_cache_middleware`.
    """
    cache: PageCache | None = request.app.get(PAGE_CACHE)
    if cache is None or not _cacheable_request(request):
        return await handler(request)
    key = request[CACHE_KEY] = _key(request)
    entry = cache.get(key)
    if entry is None:
        return await handler(request)
    started = time.perf_counter()
    response = _answer(request, entry)
    response.headers["X-Request-Id"] = request_id(request)
    record_request(request, response.status, time.perf_counter() - started)
    return response


@web.middleware
async def page_cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cache: PageCache | None = request.app.get(PAGE_CACHE)
    if cache is None:
        return await handler(request)
    key = request.get(CACHE_KEY)  # None: not cacheable (the hit middleware decided)
    if key is None:
        if not _cacheable_request(request):
            return await handler(request)
        key = _key(request)
    return await cache.serve(key, request, handler)
