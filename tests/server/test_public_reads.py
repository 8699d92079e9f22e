"""Anonymous outbox pages and feed states read outside any session (decision 99), on both engines."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event, select

from federation.types import AS_PUBLIC
from server.appkeys import ENGINE, NODE
from server.db.models import Actor
from server.db.queries import bare
from server.services import c2s as publishing
from tests.support.nodes import Node

AP = "application/activity+json"


async def _published(node: Node) -> tuple[Actor, Actor, str]:
    """An association, its admin, and the IRI of the public note it published."""
    group_iri = await node.create_association("demo")
    admin_iri = await node.add_member("alice", "demo", role="admin")
    async with node.sessions() as session:
        group = (await session.execute(select(Actor).where(Actor.iri == group_iri))).scalar_one()
        admin = (await session.execute(select(Actor).where(Actor.iri == admin_iri))).scalar_one()
    note = {"type": "Note", "content": "<p>un</p>", "to": [AS_PUBLIC]}
    return group, admin, (await publishing.post_to_outbox(node.fed, group, note, by=admin)).object_iri


async def test_anonymous_pages_and_feeds_check_out_no_pooled_connection_on_sqlite(node: Node) -> None:
    *_, note_iri = await _published(node)
    app: Any = node.client.server.app
    reader = app[NODE].reader
    assert (reader is not None) is (node.settings.database.dialect == "sqlite")
    await node.client.get("/groups/demo/feed.atom")  # renders the body once (a session)
    checkouts: list[str] = []
    pool = app[ENGINE].sync_engine.pool

    def listener(*_: object) -> None:  # a request's, not the in-process worker's polling
        task = asyncio.current_task()
        coroutine = task.get_coro().__qualname__ if task is not None else ""  # type: ignore[union-attr]
        if coroutine.startswith("RequestHandler."):
            checkouts.append(coroutine)

    event.listen(pool, "checkout", listener)
    try:
        for n in range(3):  # distinct query strings: the page cache never answers
            page = await node.client.get(f"/groups/demo/outbox?page=true&n={n}", headers={"Accept": AP})
            assert page.status == 200 and len((await page.json(content_type=None))["orderedItems"]) == 1
            feed = await node.client.get(f"/groups/demo/feed.atom?n={n}")
            assert feed.status == 200 and note_iri in await feed.text()
        missing = await node.client.get("/groups/nobody/outbox?page=true&n=x", headers={"Accept": AP})
        assert missing.status == 404
    finally:
        event.remove(pool, "checkout", listener)
    # SQLite: the reader only; PostgreSQL: a session per request, as before.
    assert (len(checkouts) == 0) is (reader is not None), checkouts


async def test_the_reader_sees_each_publication_at_once_and_never_members_only_content(node: Node) -> None:
    group, admin, _ = await _published(node)
    secret = {"type": "Note", "content": "<p>entre nous</p>", "to": [f"{group.iri}/members"]}
    members_only = await publishing.post_to_outbox(node.fed, group, secret, by=admin)
    public = await publishing.post_to_outbox(
        node.fed, group, {"type": "Note", "content": "<p>deux</p>", "to": [AS_PUBLIC]}, by=admin
    )
    page = await node.client.get("/groups/demo/outbox?page=true&n=1", headers={"Accept": AP})
    items = (await page.json(content_type=None))["orderedItems"]
    assert items[0]["object"]["id"] == public.object_iri
    assert members_only.object_iri not in await page.text()
    assert page.headers["Cache-Control"].startswith("public")
    token = await node.token("alice")
    own = await node.client.get(
        "/groups/demo/outbox?page=true&n=2", headers={"Accept": AP, "Authorization": f"Bearer {token}"}
    )
    assert members_only.object_iri in await own.text()  # the session path, for a reader with an actor
    assert own.headers["Cache-Control"] == "private, no-store"


async def test_the_reader_refuses_writes(node: Node) -> None:
    reader = node.client.server.app[NODE].reader  # type: ignore[union-attr]
    if reader is None:
        pytest.skip("PostgreSQL reads through sessions")
    with pytest.raises(ValueError, match="reads only"):
        await bare.fetch(reader, "DELETE FROM actors", [])
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.rows("DELETE FROM actors", [])
