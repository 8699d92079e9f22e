"""Shared-inbox fan-out planning: many followers on few hosts give one delivery per shared inbox,
planned from one grouped read (O(hosts)); followers without a shared inbox keep their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Activity, Actor, Block, Delivery, Follow
from server.db.queries import delivery as delivery_queries
from server.services import c2s as publishing
from server.services.delivery import fanout as delivery
from tests.support.nodes import Node, running_node

HOSTS = 12
PER_HOST = 150


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: the fan-out is run by the test, nothing leaves 127.0.0.1."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _followers(node: Node, group_id: int) -> dict[str, int]:
    """HOSTS x PER_HOST followers with shared inboxes, 3 without, one blocking us, one deleted,
    one pending; returns actor ids of the special ones."""
    now = utc_now()
    actors = []
    for h in range(HOSTS):
        host = f"peer{h}.example"
        for i in range(PER_HOST):
            iri = f"https://{host}/users/u{i}"
            actors.append(
                {
                    "iri": iri,
                    "local": False,
                    "type": "Person",
                    "handle": f"u{i}",
                    "host": host,
                    "inbox_iri": f"{iri}/inbox",
                    "shared_inbox_iri": f"https://{host}/inbox",
                    "created_at": now,
                    "updated_at": now,
                }
            )
    for name in ("solo1", "solo2", "solo3"):  # no shared inbox ("" counts as none)
        iri = f"https://solo.example/users/{name}"
        actors.append(
            {
                "iri": iri,
                "local": False,
                "type": "Person",
                "handle": name,
                "host": "solo.example",
                "inbox_iri": f"{iri}/inbox",
                "shared_inbox_iri": "" if name == "solo3" else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    for name, host in (
        ("blocker", "blocking.example"),
        ("gone", "gone.example"),
        ("asking", "asking.example"),
    ):
        iri = f"https://{host}/users/{name}"
        actors.append(
            {
                "iri": iri,
                "local": False,
                "type": "Person",
                "handle": name,
                "host": host,
                "inbox_iri": f"{iri}/inbox",
                "shared_inbox_iri": f"https://{host}/inbox",
                "created_at": now,
                "updated_at": now,
                "deleted_at": now if name == "gone" else None,
            }
        )
    async with node.sessions.begin() as session:
        ids = (
            await session.scalars(insert(Actor).returning(Actor.id, sort_by_parameter_order=True), actors)
        ).all()
        follows = [
            {
                "follower_id": actor_id,
                "followed_id": group_id,
                "state": "pending" if row["handle"] == "asking" else "accepted",
                "created_at": now,
            }
            for actor_id, row in zip(ids, actors, strict=True)
        ]
        await session.execute(insert(Follow), follows)
        blocker = ids[-3]
        session.add(
            Block(
                activity_iri=f"https://blocking.example/{uuid.uuid4().hex}",
                blocker_id=blocker,
                blocked_id=group_id,
                created_at=now,
            )
        )
    return {"blocker": blocker}


async def test_many_followers_on_few_hosts_get_one_delivery_per_shared_inbox(quiet_node: Node) -> None:
    node = quiet_node
    group_iri = await node.create_association("demo")
    admin_iri = await node.add_member("alice", "demo", role="admin")
    async with node.sessions() as session:
        group = (await session.execute(select(Actor).where(Actor.iri == group_iri))).scalar_one()
        admin = (await session.execute(select(Actor).where(Actor.iri == admin_iri))).scalar_one()
    await _followers(node, group.id)
    async with node.sessions() as session:
        inboxes = await delivery_queries.remote_follower_shared_inboxes(session, group.id)
    assert inboxes == sorted((f"https://peer{h}.example/inbox", PER_HOST) for h in range(HOSTS))

    published = await publishing.post_to_outbox(
        node.fed, group, {"type": "Note", "content": "<p>à tous</p>", "to": [AS_PUBLIC]}, by=admin
    )
    activity_id = await node.scalar(select(Activity.id).where(Activity.iri == published.activity_iri))
    result = await delivery.fanout(node.fed.node, activity_id)

    async with node.sessions() as session:
        planned = (
            await session.scalars(select(Delivery.inbox_iri).where(Delivery.activity_id == activity_id))
        ).all()
    expected = {f"https://peer{h}.example/inbox" for h in range(HOSTS)} | {
        f"https://solo.example/users/{n}/inbox" for n in ("solo1", "solo2", "solo3")
    }
    assert sorted(planned) == sorted(expected)  # one per shared inbox, none twice, none blocked/gone/pending
    assert result.deliveries == len(expected)
    assert result.recipients == HOSTS * PER_HOST + 3
    # Run again (a retried job): nothing new is planned
    again = await delivery.fanout(node.fed.node, activity_id)
    assert again.deliveries == 0


async def test_members_only_content_never_uses_a_shared_inbox(quiet_node: Node) -> None:
    """Followers-only fan-out may share; a members-only one goes to each member's own inbox."""
    node = quiet_node
    group_iri = await node.create_association("demo")
    async with node.sessions() as session:
        group = (await session.execute(select(Actor).where(Actor.iri == group_iri))).scalar_one()
    await _followers(node, group.id)
    async with node.sessions.begin() as session:
        row = Activity(
            iri=f"{node.uris.origin}/activities/{uuid.uuid4().hex}",
            actor_id=group.id,
            type="Create",
            visibility="members",
            document={"type": "Create", "actor": group_iri, "to": [f"{group_iri}/members"]},
            published=utc_now(),
        )
        session.add(row)
        await session.flush()
        activity_id = row.id
    result = await delivery.fanout(node.fed.node, activity_id)
    assert result.deliveries == 0  # followers are not members: nothing goes to their hosts
