"""Catch-up of a long backlog: bounded runs continue where they stopped; the cursor moves last."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, select

from server.db.models import Activity, Actor, Job, RemoteObject, SyncState
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until


async def _publish_directly(node: Node, group_iri: str, count: int) -> list[str]:
    """Insert ``count`` public notes in the group's outbox (fast: no fan-out needed here)."""
    now = node.fed.node.clock()
    iris = []
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        for _ in range(count):
            note = node.uris.object(uuid.uuid4().hex)
            public = ["https://www.w3.org/ns/activitystreams#Public"]
            obj = {"id": note, "type": "Note", "attributedTo": group_iri, "content": "x", "to": public}
            session.add(
                RemoteObject(
                    iri=note,
                    local=True,
                    type="Note",
                    attributed_to_id=group.id,
                    visibility="public",
                    document=obj,
                    published=now,
                    received_at=now,
                )
            )
            session.add(
                Activity(
                    iri=node.uris.activity(uuid.uuid4().hex),
                    actor_id=group.id,
                    type="Create",
                    object_iri=note,
                    visibility="public",
                    published=now,
                    document={
                        "id": f"{note}#create",
                        "type": "Create",
                        "actor": group_iri,
                        "object": obj,
                        "to": public,
                    },
                )
            )
            iris.append(note)
    return iris


async def test_a_backlog_longer_than_one_run_is_read_to_the_end(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha")
        await b.create_association("beta")
        # Given beta follows alpha and has backfilled its first 5 notes
        await _publish_directly(a, alpha, 5)
        await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await wait_until(lambda: _stored_is(b, 5), what="the initial backfill")
        remote = int(await b.scalar(select(Actor.id).where(Actor.iri == alpha)))
        await wait_until(lambda: _cursor_set(b, remote), what="the backfill cursor")
        # When 95 more are published while B was away, and B's catch-up reads 20 items per run
        backlog = await _publish_directly(a, alpha, 95)
        read = await following.sync_outbox(b.fed, remote, max_items=20, max_pages=1)
        assert read == 20
        # Then the run continues in follow-up jobs until it meets the old cursor
        newest = f"{backlog[-1]}#create"
        await wait_until(lambda: _cursor_is(b, remote, newest), what="the cursor to reach the newest item")
        assert await _stored_is(b, 100)
        continuations = await b.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == "sync_outbox", Job.dedup_key.like("%:resume:%"))
        )
        assert continuations >= 1


async def _stored_is(node: Node, count: int) -> bool:
    stored = await node.scalar(
        select(func.count()).select_from(RemoteObject).where(RemoteObject.local.is_(False))
    )
    return int(stored) == count


async def _cursor_is(node: Node, actor_id: int, iri: str) -> bool:
    return await node.scalar(select(SyncState.newest_seen_iri).where(SyncState.actor_id == actor_id)) == iri


async def _cursor_set(node: Node, actor_id: int) -> bool:
    return (
        await node.scalar(select(SyncState.newest_seen_iri).where(SyncState.actor_id == actor_id)) is not None
    )
