"""``follower_inboxes`` (decision 70): the per-shared-inbox follower counts that shared fan-out
planning reads, kept by triggers, always equal the grouped read of every follower they replace,
after every kind of write, on both engines; and planning reads the same few rows whatever the
number of followers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Activity, Actor, Block, Follow, FollowerInbox
from server.db.queries import delivery as delivery_queries
from server.services.delivery import fanout as delivery
from tests.support.nodes import Node, running_node


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: nothing leaves 127.0.0.1, the test runs what it needs."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _grouped(session: AsyncSession, actor_id: int) -> list[tuple[str, int]]:
    """The grouped read over every follower that the counts replace (the oracle)."""
    blocked = select(Block.blocker_id).where(Block.blocked_id == actor_id)
    rows = await session.execute(
        select(Actor.shared_inbox_iri, func.count())
        .select_from(Follow)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(
            Follow.followed_id == actor_id,
            Follow.state == "accepted",
            Actor.local.is_(False),
            Actor.deleted_at.is_(None),
            Actor.id.not_in(blocked),
            Actor.shared_inbox_iri.is_not(None),
            Actor.shared_inbox_iri != "",
        )
        .group_by(Actor.shared_inbox_iri)
        .order_by(Actor.shared_inbox_iri)
    )
    return [(str(inbox), int(n)) for inbox, n in rows.all()]


async def _actors(node: Node, hosts: int, per_host: int, prefix: str = "u") -> list[int]:
    now = utc_now()
    rows = [
        {
            "iri": f"https://peer{h}.example/users/{prefix}{i}",
            "local": False,
            "type": "Person",
            "handle": f"{prefix}{i}",
            "host": f"peer{h}.example",
            "inbox_iri": f"https://peer{h}.example/users/{prefix}{i}/inbox",
            "shared_inbox_iri": f"https://peer{h}.example/inbox",
            "created_at": now,
            "updated_at": now,
        }
        for h in range(hosts)
        for i in range(per_host)
    ]
    async with node.sessions.begin() as session:
        statement = insert(Actor).returning(Actor.id, sort_by_parameter_order=True)
        return list((await session.scalars(statement, rows)).all())


async def _follow(node: Node, followers: list[int], followed: int, state: str = "accepted") -> None:
    now = utc_now()
    async with node.sessions.begin() as session:
        await session.execute(
            insert(Follow),
            [
                {"follower_id": follower, "followed_id": followed, "state": state, "created_at": now}
                for follower in followers
            ],
        )


async def _group(node: Node, name: str) -> int:
    iri = await node.create_association(name)
    return int(await node.scalar(select(Actor.id).where(Actor.iri == iri)))


async def test_the_counts_follow_every_kind_of_write(quiet_node: Node) -> None:
    node = quiet_node
    group, other = await _group(node, "demo"), await _group(node, "autre")
    ids = await _actors(node, hosts=3, per_host=4)
    await _follow(node, ids[:10], group)
    await _follow(node, ids[10:], group, state="pending")
    await _follow(node, ids[:3], other)
    now = utc_now()

    def follow_of(i: int) -> Any:
        return update(Follow).where(Follow.follower_id == ids[i], Follow.followed_id == group)

    def actor(i: int) -> Any:
        return update(Actor).where(Actor.id == ids[i])

    block = {"activity_iri": f"https://peer2.example/{uuid.uuid4().hex}", "created_at": now}
    writes: list[tuple[str, Any]] = [
        ("a pending follow accepted", follow_of(10).values(state="accepted")),
        ("an accepted follow rejected", follow_of(0).values(state="rejected")),
        ("a follow removed", delete(Follow).where(Follow.follower_id == ids[1], Follow.followed_id == group)),
        ("a follow moved to another followed", follow_of(3).values(followed_id=other)),
        ("a follower's shared inbox moved", actor(4).values(shared_inbox_iri="https://new.example/inbox")),
        ("a follower's shared inbox gone", actor(5).values(shared_inbox_iri=None)),
        ("a follower's shared inbox empty", actor(6).values(shared_inbox_iri="")),
        ("a follower's shared inbox back", actor(6).values(shared_inbox_iri="https://peer1.example/inbox")),
        ("a follower deleted (tombstone)", actor(7).values(deleted_at=now)),
        ("a follower back from deletion", actor(7).values(deleted_at=None)),
        ("a follower's row removed", delete(Actor).where(Actor.id == ids[8])),
        ("a follower blocking us", insert(Block).values(blocker_id=ids[9], blocked_id=group, **block)),
        ("an unrelated column written", actor(3).values(handle="renamed")),
    ]
    for what, statement in [("the initial follows", None), *writes]:
        if statement is not None:
            async with node.sessions.begin() as session:
                await session.execute(statement)
        async with node.sessions() as session:
            for followed in (group, other):
                counted = await delivery_queries.remote_follower_shared_inboxes(session, followed)
                assert counted == await _grouped(session, followed), what
    # The followed actor's removal takes its counts with it
    async with node.sessions.begin() as session:
        await session.execute(delete(Follow).where(Follow.followed_id == other))
        await session.execute(delete(Actor).where(Actor.id == other))
    async with node.sessions() as session:
        left = await session.scalars(select(FollowerInbox).where(FollowerInbox.followed_id == other))
        assert list(left) == []


async def _planning_statements(node: Node, followers_per_host: int, name: str) -> list[str]:
    """The SQL statements of one public fan-out of ``name`` with 10 hosts of followers."""
    group = await _group(node, name)
    ids = await _actors(node, hosts=10, per_host=followers_per_host, prefix=name)
    await _follow(node, ids, group)
    async with node.sessions.begin() as session:
        row = Activity(
            iri=f"{node.uris.origin}/activities/{uuid.uuid4().hex}",
            actor_id=group,
            type="Create",
            visibility="public",
            document={"type": "Create", "to": [AS_PUBLIC]},
            published=utc_now(),
        )
        session.add(row)
        await session.flush()
        activity_id = row.id
    engine = node.fed.node.sessions.kw["bind"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await delivery.fanout(node.fed.node, activity_id)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert result.deliveries == 10 and result.recipients == 10 * followers_per_host
    return statements


async def test_planning_reads_one_row_per_shared_inbox_whatever_the_followers(quiet_node: Node) -> None:
    few = await _planning_statements(quiet_node, 2, "few")
    many = await _planning_statements(quiet_node, 60, "many")
    # The same statements for 20 and for 600 followers: no page per follower, no grouping of them
    assert len(many) == len(few)
    reads = [s for s in many if "follower_inboxes" in s]
    assert len(reads) == 1
    assert not any("GROUP BY" in s and "follows" in s and "blocks" not in s for s in many)
