"""Convergence (issue 13): a node that follows an association *after* it published, edited,
retracted and deleted things ends with what the origin serves now, and the origin's outbox never
serves the content of a deleted object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select, update

from federation.types import AS_PUBLIC
from server.db.models import Actor, Delivery, Follow, InboxActivity, Job, PeerHost, Reaction, RemoteObject
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"


async def _object(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def _outbox_items(node: Node, path: str) -> list[dict[str, Any]]:
    """Every item of an actor's paged outbox, as an anonymous peer reads it (bounded)."""
    items: list[dict[str, Any]] = []
    url: str | None = f"{path}/outbox?page=true"
    for _ in range(20):
        if url is None:
            break
        page = await (await node.client.get(url, headers={"Accept": AP})).json(content_type=None)
        items.extend(page.get("orderedItems", []))
        url = page["next"].removeprefix(node.uris.origin) if page.get("next") else None
    return items


async def _publish_history(a: Node, token: str) -> dict[str, str]:
    """A's association alpha: an alert then retracted, a resource edited to version 2, two posts
    deleted, a post left alone."""
    post = a.post_outbox
    alert = (
        await post(
            "/groups/alpha",
            token,
            {
                "to": [AS_PUBLIC],
                "type": "Note",
                "entraideKind": "Alert",
                "name": "Pénurie de lévothyroxine",
                "content": "<p>Les pharmacies manquent de Levothyrox 50.</p>",
                "severity": "warning",
                "category": "shortage",
            },
        )
    )["object"]
    resource = (
        await post(
            "/groups/alpha",
            token,
            {"to": [AS_PUBLIC], "type": "Article", "name": "Guide", "content": "<p>Version 1</p>"},
        )
    )["object"]
    gone = [
        (
            await post(
                "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": f"<p>secret {i}</p>"}
            )
        )["object"]
        for i in (1, 2)
    ]
    kept = (
        await post(
            "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>still here</p>"}
        )
    )["object"]
    retract = {"id": alert, "alertStatus": "retracted"}
    await post("/groups/alpha", token, {"type": "Update", "object": retract})
    edit = {"id": resource, "content": "<p>Version 2</p>"}
    await post("/groups/alpha", token, {"type": "Update", "object": edit})
    for iri in gone:
        await post("/groups/alpha", token, {"type": "Delete", "object": iri})
    return {"alert": alert, "resource": resource, "gone1": gone[0], "gone2": gone[1], "kept": kept}


async def test_follow_after_retract_edit_delete_stores_what_the_origin_serves_now(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        await b.create_association("beta", "Beta")
        made = await _publish_history(a, await a.token("alice"))

        # A's outbox serves no content of a deleted object, and every object in its current state
        items = await _outbox_items(a, "/groups/alpha")
        served = orjson.dumps(items).decode()
        assert "secret 1" not in served and "secret 2" not in served and "Version 1" not in served
        creates = {i["object"]["id"]: i["object"] for i in items if i["type"] == "Create"}
        assert creates[made["gone1"]]["type"] == "Tombstone"
        assert creates[made["alert"]]["alertStatus"] == "retracted"
        create = next(i["id"] for i in items if i["type"] == "Create" and i["object"]["id"] == made["gone2"])
        single = await a.client.get(create.removeprefix(a.uris.origin), headers={"Accept": AP})
        assert "secret 2" not in await single.text()

        # When B follows alpha after all that, its backfill holds what A serves now
        await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await wait_until(lambda: _has(b, made["kept"]), what="B's backfill")
        await wait_until(lambda: _tombstoned(b, made["gone1"]), what="B's backfill of deletions")
        for iri in (made["gone1"], made["gone2"]):
            row = await _object(b, iri)
            assert row is not None and row.deleted_at is not None
            assert "secret" not in orjson.dumps(row.document).decode()
        alert = await _object(b, made["alert"])
        assert alert is not None and alert.document["alertStatus"] == "retracted"
        resource = await _object(b, made["resource"])
        assert resource is not None and "Version 2" in resource.document["content"]
        assert await b.scalar(select(Follow.state)) == "accepted"


async def _has(node: Node, iri: str) -> bool:
    return await _object(node, iri) is not None


async def _tombstoned(node: Node, iri: str) -> bool:
    row = await _object(node, iri)
    return row is not None and row.deleted_at is not None


async def test_edits_and_deletes_reach_a_node_that_holds_the_object_without_following(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    """beta (on B) relayed alpha's note, then stopped following alpha: B still holds the note, and
    alpha's edit and deletion reach it although B is no longer among alpha's followers."""
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        beta = await b.create_association("beta", "Beta")
        await b.add_member("bob", "beta", role="admin")
        alice, bob = await a.token("alice"), await b.token("bob")
        requested = await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await wait_until(lambda: _follows(a), what="alpha has a follower")
        posted = await a.post_outbox(
            "/groups/alpha", alice, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>v1</p>"}
        )
        note = posted["object"]
        await wait_until(lambda: _has(b, note), what="the note reaches B")
        await b.post_outbox("/groups/beta", bob, {"type": "Announce", "object": note})
        await wait_until(lambda: _announced(a, note), what="A records beta's relay")
        async with b.sessions() as session:
            beta_actor = await session.scalar(select(Actor).where(Actor.iri == beta))
        assert beta_actor is not None
        await following.unfollow(b.fed, follower=beta_actor, follow_iri=requested.follow_iri)
        await wait_until(lambda: _no_follows(a), what="alpha loses its follower")

        edit = {"id": note, "content": "<p>v2</p>"}
        await a.post_outbox("/groups/alpha", alice, {"type": "Update", "object": edit})
        await wait_until(lambda: _content_has(b, note, "v2"), what="the edit reaches B")
        await a.post_outbox("/groups/alpha", alice, {"type": "Delete", "object": note})
        await wait_until(lambda: _tombstoned(b, note), what="the deletion reaches B")


async def _follows(node: Node) -> bool:
    return await node.scalar(select(Follow.id).where(Follow.state == "accepted")) is not None


async def _no_follows(node: Node) -> bool:
    return await node.scalar(select(Follow.id)) is None


async def _announced(node: Node, iri: str) -> bool:
    return await node.scalar(select(Reaction.id).where(Reaction.object_iri == iri)) is not None


async def _content_has(node: Node, iri: str, text: str) -> bool:
    row = await _object(node, iri)
    return row is not None and text in str(row.document.get("content"))


async def test_a_delivery_retried_after_a_delete_carries_no_content(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    """B is down when alpha publishes then deletes a note: the retried Create reaches B with a
    Tombstone, never the deleted text."""
    database_b = await new_database(1)
    async with running_node(tmp_path / "a", await new_database(0)) as a:
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        alice = await a.token("alice")
        async with running_node(tmp_path / "b", database_b) as b:
            port = b.client.server.port
            await b.create_association("beta", "Beta")
            await following.follow(b.fed, local_name="beta", target_iri=alpha)
            await wait_until(lambda: _follows(a), what="alpha has a follower")
        posted = await a.post_outbox(
            "/groups/alpha", alice, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>oublié</p>"}
        )
        await a.post_outbox("/groups/alpha", alice, {"type": "Delete", "object": posted["object"]})
        await wait_until(lambda: _failed_once(a), what="the deliveries to B fail")
        async with running_node(tmp_path / "b", database_b, port=port) as b:
            async with a.sessions.begin() as session:  # time passes: the retries come due
                due = update(Job).where(Job.state == "queued").values(run_at=a.fed.node.clock())
                await session.execute(due)
                await session.execute(update(PeerHost).values(breaker="closed", open_until=None))
            a.fed.notify_worker()
            await wait_until(lambda: _received(b, posted["id"]), what="the retried Create reaches B")
            async with b.sessions() as session:
                bodies = list(await session.scalars(select(InboxActivity.document)))
            assert "oublié" not in orjson.dumps(bodies).decode()


async def _failed_once(node: Node) -> bool:
    return await node.scalar(select(Delivery.id).where(Delivery.attempts > 0)) is not None


async def _received(node: Node, activity_iri: str) -> bool:
    return await node.scalar(select(InboxActivity.id).where(InboxActivity.iri == activity_iri)) is not None
