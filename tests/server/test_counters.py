"""Counters kept by triggers (migration 0014), on both engines: ``activity_counts`` behind the
outbox's ``totalItems`` and NodeInfo's ``localPosts``, ``feed_marks`` behind the feeds'
validators. Each step is checked against a recount of the rows themselves."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Activity, ActivityCount, Actor, FeedMark, Follow, RemoteObject
from server.http.cache import PAGE_CACHE
from server.services import c2s as publishing
from server.services.reading import visibility
from tests.support.nodes import Node, running_node

AP = {"Accept": "application/activity+json"}
migration = importlib.import_module("server.db.migrations.versions.0014_counters")


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: nothing is delivered, only what the test publishes is stored."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _actor(node: Node, iri: str) -> Actor:
    row = await node.scalar(select(Actor).where(Actor.iri == iri))
    assert row is not None
    return row


async def _counters(node: Node) -> dict[tuple[int, str, str], int]:
    async with node.sessions() as session:
        rows = (await session.execute(select(ActivityCount))).scalars().all()
    return {(r.actor_id, r.type, r.visibility): r.n for r in rows if r.n}


async def _recount(node: Node) -> dict[tuple[int, str, str], int]:
    stmt = select(Activity.actor_id, Activity.type, Activity.visibility, func.count()).group_by(
        Activity.actor_id, Activity.type, Activity.visibility
    )
    async with node.sessions() as session:
        return {(a, t, v): n for a, t, v, n in (await session.execute(stmt)).all()}


async def _get_json(node: Node, path: str) -> Any:
    node.client.server.app[PAGE_CACHE].clear()  # type: ignore[union-attr]
    response = await node.client.get(path, headers=AP)
    assert response.status == 200, path
    return await response.json(content_type=None)


async def _assert_counts(node: Node, group: Actor) -> None:
    counted = await _recount(node)
    assert await _counters(node) == counted
    outbox = await _get_json(node, "/groups/demo/outbox")
    shown = sum(n for (a, _, v), n in counted.items() if a == group.id and v in ("public", "unlisted"))
    assert outbox["totalItems"] == shown
    assert "orderedItems" not in outbox  # the collection reads no documents
    nodeinfo = await _get_json(node, "/nodeinfo/2.1")
    async with node.sessions() as session:
        local = set((await session.scalars(select(Actor.id).where(Actor.local.is_(True)))).all())
    posts = sum(n for (a, t, v), n in counted.items() if a in local and t == "Create" and v == "public")
    assert nodeinfo["usage"]["localPosts"] == posts


def _activity_rows(
    actor_id: int, origin: str, count: int, *, visibility: str = "public"
) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        iri = f"{origin}/activities/{uuid.uuid4().hex}"
        rows.append(
            {
                "iri": iri,
                "actor_id": actor_id,
                "type": "Create",
                "object_iri": f"{origin}/objects/{uuid.uuid4().hex}",
                "visibility": visibility,
                "document": {"id": iri, "type": "Create", "to": [AS_PUBLIC]},
                "published": start + timedelta(minutes=i),
            }
        )
    return rows


async def test_activity_counters_follow_every_write(quiet_node: Node) -> None:
    node = quiet_node
    group = await _actor(node, await node.create_association("demo"))
    admin = await _actor(node, await node.add_member("alice", "demo", role="admin"))
    # Publications through the services: creates, an edit, a deletion
    first = await publishing.post_to_outbox(
        node.fed, group, {"type": "Note", "content": "<p>un</p>", "to": [AS_PUBLIC]}, by=admin
    )
    await publishing.post_to_outbox(
        node.fed, group, {"type": "Note", "content": "<p>deux</p>", "to": [AS_PUBLIC]}, by=admin
    )
    edit = {"type": "Update", "object": {"id": first.object_iri, "content": "<p>un, bis</p>"}}
    await publishing.post_to_outbox(node.fed, group, edit, by=admin)
    await publishing.post_to_outbox(node.fed, group, {"type": "Delete", "object": first.object_iri}, by=admin)
    await _assert_counts(node, group)
    assert (group.id, "Create", "public") in await _counters(node)

    # A backfill or bulk import: many rows in one statement (one grouped upsert on PostgreSQL)
    async with node.sessions.begin() as session:
        await session.execute(insert(Activity), _activity_rows(group.id, node.uris.origin, 250))
        await session.execute(
            insert(Activity), _activity_rows(group.id, node.uris.origin, 7, visibility="members")
        )
    await _assert_counts(node, group)

    # Rows removed (a purge) and a visibility changed in place: both sides of the counters move
    async with node.sessions.begin() as session:
        oldest = (
            await session.scalars(
                select(Activity.id).where(Activity.actor_id == group.id).order_by(Activity.id).limit(30)
            )
        ).all()
        await session.execute(delete(Activity).where(Activity.id.in_(oldest[:20])))
        await session.execute(
            update(Activity).where(Activity.id.in_(oldest[20:])).values(visibility="unlisted")
        )
    await _assert_counts(node, group)

    # A transaction that rolls back leaves the counters as they were
    before = await _counters(node)
    with pytest.raises(RuntimeError):
        async with node.sessions.begin() as session:
            await session.execute(insert(Activity), _activity_rows(group.id, node.uris.origin, 5))
            raise RuntimeError("abort")
    assert await _counters(node) == before

    # The migration's fill statement, run on the rows as they are now, gives the same counters
    async with node.sessions.begin() as session:
        await session.execute(delete(ActivityCount))
        await session.execute(text(migration._FILL_COUNTS))
    await _assert_counts(node, group)


async def test_an_undone_follow_is_counted(quiet_node: Node) -> None:
    node = quiet_node
    group = await _actor(node, await node.create_association("demo"))
    admin = await _actor(node, await node.add_member("alice", "demo", role="admin"))
    now = utc_now()
    async with node.sessions.begin() as session:
        other = Actor(
            iri="https://peer.example/users/bob",
            local=False,
            type="Person",
            handle="bob",
            host="peer.example",
            inbox_iri="https://peer.example/users/bob/inbox",
            created_at=now,
            updated_at=now,
        )
        session.add(other)
        await session.flush()
        follow_iri = f"{node.uris.origin}/activities/{uuid.uuid4().hex}"  # an earlier, accepted Follow
        session.add(
            Follow(
                follower_id=group.id,
                followed_id=other.id,
                follow_iri=follow_iri,
                state="accepted",
                created_at=now,
            )
        )
    before = await _recount(node)
    undo = await publishing.post_to_outbox(node.fed, group, {"type": "Undo", "object": follow_iri}, by=admin)
    assert undo.activity_iri is not None
    counted = await _recount(node)
    assert sum(counted.values()) == sum(before.values()) + 1
    assert any(t == "Undo" for _, t, _ in counted)
    await _assert_counts(node, group)


async def test_outbox_pages_do_not_count_and_the_collection_reads_no_document(quiet_node: Node) -> None:
    """totalItems comes from the counters even when they disagree with the rows (a tampered
    counter shows through), and a page carries no totalItems at all."""
    node = quiet_node
    group = await _actor(node, await node.create_association("demo"))
    async with node.sessions.begin() as session:
        await session.execute(insert(Activity), _activity_rows(group.id, node.uris.origin, 45))
        await session.execute(
            update(ActivityCount).where(ActivityCount.actor_id == group.id).values(n=ActivityCount.n + 1000)
        )
    assert (await _get_json(node, "/groups/demo/outbox"))["totalItems"] == 1045
    page = await _get_json(node, "/groups/demo/outbox?page=true")
    assert "totalItems" not in page and len(page["orderedItems"]) == 20
    second = await _get_json(node, page["next"].removeprefix(node.uris.origin))
    third = await _get_json(node, second["next"].removeprefix(node.uris.origin))
    ids = [item["id"] for p in (page, second, third) for item in p["orderedItems"]]
    assert len(ids) == len(set(ids)) == 45 and "next" not in third


def test_the_triggers_scope_is_the_feeds_scope() -> None:
    """The triggers hard-code the feeds' visibility rule: a change of the rule must change them."""
    assert visibility.feed_levels() == ("public",)
    assert "visibility = 'public'" in migration.FEED_SCOPE
    assert "in_reply_to_iri IS NULL" in migration.FEED_SCOPE and ".local" in migration.FEED_SCOPE


async def _marks(node: Node, actor_id: int) -> dict[str, tuple[int, datetime]]:
    async with node.sessions() as session:
        rows = (await session.execute(select(FeedMark).where(FeedMark.actor_id == actor_id))).scalars()
        return {r.kind: (r.version, r.changed_at) for r in rows}


async def test_feed_marks_move_only_for_what_a_feed_may_show(quiet_node: Node) -> None:
    node = quiet_node
    group = await _actor(node, await node.create_association("demo"))
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    async def add(**fields: Any) -> int:
        values: dict[str, Any] = {
            "iri": node.uris.object(uuid.uuid4().hex),
            "local": True,
            "type": "Note",
            "kind": "post",
            "attributed_to_id": group.id,
            "visibility": "public",
            "document": {"type": "Note", "content": "x"},
            "published": t0,
            "received_at": t0,
        } | fields
        async with node.sessions.begin() as session:
            return int(
                (
                    await session.execute(insert(RemoteObject).returning(RemoteObject.id), [values])
                ).scalar_one()
            )

    public = await add()
    assert await _marks(node, group.id) == {"post": (1, t0)}
    # Not in any feed: members-only, a reply, a peer's object, each writes nothing
    hidden = await add(visibility="members", published=t0 + timedelta(hours=5))
    await add(in_reply_to_iri="https://peer.example/objects/1", published=t0 + timedelta(hours=5))
    await add(local=False, iri="https://peer.example/objects/2", published=t0 + timedelta(hours=5))
    async with node.sessions.begin() as session:
        await session.execute(
            update(RemoteObject).where(RemoteObject.id == hidden).values(updated=t0 + timedelta(hours=6))
        )
    assert await _marks(node, group.id) == {"post": (1, t0)}
    # An edit and a deletion of the listed one move version and change time
    async with node.sessions.begin() as session:
        await session.execute(
            update(RemoteObject).where(RemoteObject.id == public).values(updated=t0 + timedelta(hours=1))
        )
    assert await _marks(node, group.id) == {"post": (2, t0 + timedelta(hours=1))}
    async with node.sessions.begin() as session:
        await session.execute(
            update(RemoteObject).where(RemoteObject.id == public).values(deleted_at=t0 + timedelta(hours=2))
        )
    assert await _marks(node, group.id) == {"post": (3, t0 + timedelta(hours=2))}
    # Another kind has its own marker; leaving the feed (made members-only) moves it too
    alert = await add(kind="alert", published=t0 + timedelta(hours=3))
    async with node.sessions.begin() as session:
        await session.execute(
            update(RemoteObject).where(RemoteObject.id == alert).values(visibility="members")
        )
        await session.execute(delete(RemoteObject).where(RemoteObject.id == hidden))  # not listed: no move
    marks = await _marks(node, group.id)
    assert marks["post"] == (3, t0 + timedelta(hours=2)) and marks["alert"][0] == 2
    assert marks["alert"][1] >= t0 + timedelta(hours=3)
