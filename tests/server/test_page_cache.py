"""The public page cache: anonymous public answers are reused; nothing private or credentialed is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.appkeys import METRICS
from server.db.models import Actor
from server.http.cache import PAGE_CACHE, PageCache
from server.services import c2s as publishing
from server.services.content import changes
from tests.support.nodes import Node

AP = "application/activity+json"


async def test_anonymous_public_documents_are_served_from_the_cache(node: Node) -> None:
    cache = node.client.server.app[PAGE_CACHE]
    await node.create_association("demo")
    first = await node.client.get("/groups/demo/outbox", headers={"Accept": AP})
    second = await node.client.get("/groups/demo/outbox", headers={"Accept": AP})
    assert first.status == second.status == 200
    assert await first.read() == await second.read()
    assert cache.hits == 1
    # HTML and ActivityStreams are cached apart (same URL, different representation)
    assert (await node.client.get("/groups/demo")).content_type == "text/html"
    assert (await node.client.get("/groups/demo", headers={"Accept": AP})).content_type == AP


def _outbox_requests_counted(node: Node, status: str) -> float:
    registry = node.client.server.app[METRICS].registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "entraide_http_requests"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["status"] == status
        and sample.labels["route"].endswith("/{collection}")
    )


async def test_a_hit_answered_first_keeps_its_request_id_and_is_counted(node: Node) -> None:
    """Hits are answered before the request-id and metrics middlewares (decision 83), with both."""
    cache = node.client.server.app[PAGE_CACHE]
    await node.create_association("demo")
    built = await node.client.get("/groups/demo/outbox", headers={"Accept": AP})
    hit = await node.client.get("/groups/demo/outbox", headers={"Accept": AP, "X-Request-Id": "abc-1"})
    fresh_id = await node.client.get("/groups/demo/outbox", headers={"Accept": AP, "X-Request-Id": "é" * 3})
    assert cache.hits == 2 and cache.misses == 1
    assert hit.headers["X-Request-Id"] == "abc-1"
    assert len(fresh_id.headers["X-Request-Id"]) == 16  # not ASCII: a fresh one
    assert await hit.read() == await built.read()
    assert _outbox_requests_counted(node, "200") == 3


async def test_private_and_credentialed_answers_are_never_cached(node: Node) -> None:
    """A member's view must never be served to an anonymous reader (security case 41)."""
    cache = node.client.server.app[PAGE_CACHE]
    await node.create_association("demo")
    await node.add_member("alice", "demo", role="admin")
    token = await node.token("alice")
    members = await node.client.get(
        "/groups/demo/members?page=true", headers={"Accept": AP, "Authorization": f"Bearer {token}"}
    )
    assert members.status == 200
    anonymous = await node.client.get("/groups/demo/members?page=true", headers={"Accept": AP})
    assert anonymous.status == 404
    assert cache.hits == 0


async def test_a_cached_page_answers_a_matching_conditional_get_with_304(node: Node) -> None:
    from server.http.cache import _matches

    assert _matches('"abc"', '"abc"') and _matches('W/"abc"', '"x", "abc"') and _matches('"abc"', "*")
    assert not _matches('"abc"', '"abd"') and not _matches('"abc"', "")


# --- single flight, stale while revalidating, invalidation on publish, If-Modified-Since -----------


LAST_MODIFIED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = ("/groups/demo/outbox?page=true", True, "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingBuilder:
    """A handler that counts its calls and, while ``gate`` is closed, blocks inside the build."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: web.Request) -> web.Response:
        self.calls += 1
        version = self.calls
        await self.gate.wait()
        response = web.Response(
            body=f"build {version}".encode(),
            headers={"Cache-Control": "public, max-age=60", "ETag": f'"v{version}"'},
        )
        response.last_modified = LAST_MODIFIED
        return response


def _request(**headers: str) -> web.Request:
    return make_mocked_request("GET", KEY[0], headers=headers)


async def _body(response: web.StreamResponse) -> bytes:
    assert isinstance(response, web.Response)
    return response.body if isinstance(response.body, bytes) else b""


async def test_concurrent_requests_on_a_missing_key_build_once() -> None:
    cache, build = PageCache(clock=Clock()), CountingBuilder()
    build.gate.clear()
    tasks = [asyncio.create_task(cache.serve(KEY, _request(), build)) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert build.calls == 1 and not any(t.done() for t in tasks)  # the others wait for that build
    build.gate.set()
    responses = await asyncio.gather(*tasks)
    assert build.calls == 1 and cache.misses == 1
    assert {await _body(r) for r in responses} == {b"build 1"}
    assert {r.status for r in responses} == {200}


async def test_an_expired_key_is_rebuilt_once_while_the_others_get_the_stale_bytes() -> None:
    clock = Clock()
    cache, build = PageCache(clock=clock), CountingBuilder()
    assert await _body(await cache.serve(KEY, _request(), build)) == b"build 1"
    clock.now += 5  # expired
    build.gate.clear()
    leader = asyncio.create_task(cache.serve(KEY, _request(), build))
    await asyncio.sleep(0)
    assert build.calls == 2
    # While the rebuild is blocked, every other request is answered at once, with the old bytes
    others = [await cache.serve(KEY, _request(), build) for _ in range(20)]
    assert {await _body(r) for r in others} == {b"build 1"} and cache.stale_hits == 20
    build.gate.set()
    assert await _body(await leader) == b"build 2"
    assert await _body(await cache.serve(KEY, _request(), build)) == b"build 2"
    assert build.calls == 2


async def test_a_publication_empties_the_cache_and_drops_builds_in_flight() -> None:
    cache, build = PageCache(clock=Clock()), CountingBuilder()
    await cache.serve(KEY, _request(), build)
    changes.notify()  # what a committed publication does
    assert await _body(await cache.serve(KEY, _request(), build)) == b"build 2"  # no stale bytes
    # A build that started before the publication is served to its request but never kept
    build.gate.clear()
    changes.notify()
    early = asyncio.create_task(cache.serve(KEY, _request(), build))
    await asyncio.sleep(0)
    changes.notify()
    build.gate.set()
    assert await _body(await early) == b"build 3"
    assert await _body(await cache.serve(KEY, _request(), build)) == b"build 4"


async def test_conditional_gets_honour_if_none_match_then_if_modified_since() -> None:
    cache, build = PageCache(clock=Clock()), CountingBuilder()
    await cache.serve(KEY, _request(), build)
    later = format_datetime(LAST_MODIFIED.replace(hour=10), usegmt=True)
    earlier = format_datetime(LAST_MODIFIED.replace(hour=8), usegmt=True)
    same = format_datetime(LAST_MODIFIED, usegmt=True)
    assert (await cache.serve(KEY, _request(**{"If-Modified-Since": later}), build)).status == 304
    assert (await cache.serve(KEY, _request(**{"If-Modified-Since": same}), build)).status == 304
    assert (await cache.serve(KEY, _request(**{"If-Modified-Since": earlier}), build)).status == 200
    assert (await cache.serve(KEY, _request(**{"If-Modified-Since": "not a date"}), build)).status == 200
    assert (await cache.serve(KEY, _request(**{"If-None-Match": '"v1"'}), build)).status == 304
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    mixed = {"If-None-Match": '"old"', "If-Modified-Since": later}
    assert (await cache.serve(KEY, _request(**mixed), build)).status == 200
    assert build.calls == 1


async def test_a_publication_is_seen_at_once_and_the_old_etag_gets_no_304(node: Node) -> None:
    cache = node.client.server.app[PAGE_CACHE]
    group_iri = await node.create_association("demo")
    admin_iri = await node.add_member("alice", "demo", role="admin")
    async with node.sessions() as session:
        group = (await session.execute(select(Actor).where(Actor.iri == group_iri))).scalar_one()
        admin = (await session.execute(select(Actor).where(Actor.iri == admin_iri))).scalar_one()
    note = {"type": "Note", "content": "<p>un</p>", "to": [AS_PUBLIC]}
    await publishing.post_to_outbox(node.fed, group, note, by=admin)
    feed = await node.client.get("/groups/demo/feed.atom")
    etag = feed.headers["ETag"]
    page = await (await node.client.get("/groups/demo/outbox?page=true", headers={"Accept": AP})).json(
        content_type=None
    )
    assert (await node.client.get("/groups/demo/feed.atom", headers={"If-None-Match": etag})).status == 304
    assert cache.hits >= 1  # answered from the cache
    # When a note is published (within the cache's second)
    second = await publishing.post_to_outbox(
        node.fed, group, {"type": "Note", "content": "<p>deux</p>", "to": [AS_PUBLIC]}, by=admin
    )
    # Then the next reads see it, and the old ETag is no longer "not modified"
    refreshed = await node.client.get("/groups/demo/feed.atom", headers={"If-None-Match": etag})
    assert refreshed.status == 200 and refreshed.headers["ETag"] != etag
    assert second.object_iri in await refreshed.text()
    after = await (await node.client.get("/groups/demo/outbox?page=true", headers={"Accept": AP})).json(
        content_type=None
    )
    assert len(after["orderedItems"]) == len(page["orderedItems"]) + 1
    assert after["orderedItems"][0]["object"]["id"] == second.object_iri


async def test_nodeinfo_is_served_from_the_cache(node: Node) -> None:
    cache = node.client.server.app[PAGE_CACHE]
    first = await node.client.get("/nodeinfo/2.1")
    second = await node.client.get("/nodeinfo/2.1")
    assert first.status == second.status == 200 and await first.read() == await second.read()
    assert first.headers["Cache-Control"].startswith("public") and cache.hits == 1
