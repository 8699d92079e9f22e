"""A short-lived cache of public, anonymous responses, kept as bytes.

Building an outbox page through the ORM costs 10 to 20 times serving the same bytes
(shared/performance.md (c)); hot public documents are therefore cached for ``ttl_s`` (one
second by default — they already say ``Cache-Control: public, max-age=60`` to proxies). Only
GETs without credentials (no ``Authorization``, no HTTP signature) whose response was 200 and
``public`` are cached, keyed by path, query, whether ActivityStreams was asked for and, for a
page, the visitor's language (their language cookie, else ``Accept-Language``): a private or
viewer-dependent answer is never stored and never served to someone else (security case 41),
and a page in one language is never served to a visitor who reads the other.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from federation.http import wants_activitypub

LANGUAGE_COOKIE = "entraide_lang"
"""The visitors' language choice (server/http/pages/member.py sets it; the pages read it)."""
CACHED_PREFIXES = ("/groups/", "/users/", "/actor", "/objects/", "/activities/")


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class PageCache:
    """An LRU of response bytes with a TTL; bounded in entries and in bytes per entry."""

    def __init__(
        self, *, ttl_s: float = 1.0, max_entries: int = 2048, max_body_bytes: int = 256 * 1024
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self._entries: OrderedDict[tuple[str, bool, str], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, bool, str]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires < time.monotonic():
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: tuple[str, bool, str], response: web.Response) -> None:
        body = response.body
        if not isinstance(body, bytes) or len(body) > self.max_body_bytes:
            return
        headers = tuple(
            (k, v) for k, v in response.headers.items() if k.lower() not in ("x-request-id", "date")
        )
        self._entries[key] = _Entry(time.monotonic() + self.ttl_s, response.status, body, headers)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


PAGE_CACHE = web.AppKey("page_cache", PageCache)


def _matches(etag: str, if_none_match: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison; ``*`` matches any current representation."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",") if t.strip()}
    return "*" in tags or etag.removeprefix("W/") in tags


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


@web.middleware
async def page_cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cache: PageCache | None = request.app.get(PAGE_CACHE)
    if cache is None or not _cacheable_request(request):
        return await handler(request)
    activitypub = wants_activitypub(request.headers.get("Accept"))
    key = (request.path_qs, activitypub, "" if activitypub else _language(request))
    entry = cache.get(key)
    if entry is not None:
        headers = dict(entry.headers)
        etag = headers.get("ETag")
        if etag is not None and _matches(etag, request.headers.get("If-None-Match", "")):
            # The client holds these bytes already (RFC 9110 §13.1.2): no body.
            kept = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
            return web.Response(status=304, headers=kept)
        return web.Response(status=entry.status, body=entry.body, headers=headers)
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and response.status == 200
        and response.headers.get("Cache-Control", "").startswith("public")
    ):
        cache.put(key, response)
    return response
