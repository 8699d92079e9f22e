"""The public page cache: anonymous public answers are reused; nothing private or credentialed is."""

from __future__ import annotations

from server.http.cache import PAGE_CACHE
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
