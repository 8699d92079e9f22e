"""A router that remembers where each path leads (decision 91).

aiohttp finds a request's route by walking the path's prefixes and trying, in registration
order, every resource indexed under each: an association's feed (``/groups/news/feed.atom``)
is tried against the 29 page routes under ``/groups`` and then most of the dynamic routes
under ``/``, each a regular expression and a coroutine, before it matches. That was 17% of
the CPU of a page-cache hit (docs/performance.md, "Reads"), more than the answer itself.

The match depends only on the method and the path (the query string is not part of it, there
are no sub-applications or domain rules here) and the table is frozen once the application
starts, so a hit of this memo is the match aiohttp would find. Only successful matches are kept
(a 404 or 405 is resolved again each time); the memo is bounded and emptied when full, so a
client walking many distinct paths costs memory for at most :attr:`MemoRouter.max_entries`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute, MatchInfoError, UrlMappingMatchInfo

MAX_PATH = 512
"""Longer paths are resolved without the memo (ids are far shorter)."""


class MemoRouter(web.UrlDispatcher):
    """:class:`aiohttp.web.UrlDispatcher` with a memo of (method, path) → (route, match)."""

    def __init__(self, *, max_entries: int = 4096) -> None:
        super().__init__()
        self.max_entries = max_entries
        self._memo: dict[tuple[str, str], tuple[AbstractRoute, dict[str, str]]] = {}

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        path = request.rel_url.path_safe
        key = (request.method, path)
        known = self._memo.get(key)
        if known is not None:
            route, match = known
            return UrlMappingMatchInfo(dict(match), route)  # a fresh one: aiohttp freezes it
        info = await super().resolve(request)
        if (
            self.frozen
            and len(path) <= MAX_PATH
            and not isinstance(info, MatchInfoError)
            and not info.apps  # a sub-application's match carries its apps: not remembered
        ):
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            self._memo[key] = (info.route, dict(info))
        return info
