"""Real nodes on loopback: follow, accept, deliver create/update/delete, backfill, undo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from server.db.models import Actor, Delivery, Follow, RemoteObject, SyncState
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"


async def _follow_state(node: Node, follower_iri: str, followed_iri: str) -> str | None:
    async with node.sessions() as session:
        follower = await session.scalar(select(Actor.id).where(Actor.iri == follower_iri))
        followed = await session.scalar(select(Actor.id).where(Actor.iri == followed_iri))
        if follower is None or followed is None:
            return None
        return await session.scalar(
            select(Follow.state).where(Follow.follower_id == follower, Follow.followed_id == followed)
        )


async def _object(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def test_follow_accept_then_create_update_delete_reach_the_follower(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        # Given association alpha on A (with an admin) and association beta on B
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        token = await a.token("alice")
        beta = await b.create_association("beta", "Beta")
        # A note published before the follow, to be backfilled
        early = await a.post_outbox(
            "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Avant</p>"}
        )

        # When beta follows alpha
        result = await following.follow(b.fed, local_name="beta", target_iri=alpha)
        assert result.state == "pending"

        # Then A records an accepted follower and B sees the Accept
        await wait_until(lambda: _is(a, beta, alpha, "accepted"), what="A accepts the follow")
        await wait_until(lambda: _is(b, beta, alpha, "accepted"), what="B receives the Accept")
        # and B backfills alpha's outbox
        await wait_until(lambda: _exists(b, early["object"]), what="backfill of the earlier note")

        # When alpha publishes, edits and deletes a note, B follows every step
        created = await a.post_outbox(
            "/groups/alpha",
            token,
            {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Rupture de stock</p>", "name": "Alerte"},
        )
        note = created["object"]
        await wait_until(lambda: _exists(b, note), what="delivery of the Create")
        stored = await _object(b, note)
        assert stored is not None and stored.visibility == "public" and not stored.local
        assert "Rupture de stock" in stored.document["content"]

        await a.post_outbox(
            "/groups/alpha",
            token,
            {"type": "Update", "object": {"id": note, "content": "<p>Réapprovisionné</p>"}},
        )
        await wait_until(lambda: _content_has(b, note, "Réapprovisionné"), what="delivery of the Update")

        await a.post_outbox("/groups/alpha", token, {"type": "Delete", "object": note})
        await wait_until(lambda: _deleted(b, note), what="delivery of the Delete")
        gone = await a.client.get(note.removeprefix(a.uris.origin), headers={"Accept": AP})
        assert gone.status == 410

        # Every delivery from A ended delivered, each to B's shared inbox once. A records an
        # outcome after B's answer, and B may have processed the Delete before that: wait for it.
        async def states() -> dict[str, int]:
            async with a.sessions() as session:
                stmt = select(Delivery.state, func.count()).group_by(Delivery.state)
                return {str(state): int(n) for state, n in (await session.execute(stmt)).all()}

        async def all_recorded() -> bool:
            return "pending" not in await states()

        await wait_until(all_recorded, what="A to record every delivery's outcome")
        final = await states()
        assert final == {"delivered": final.get("delivered", 0)} and final["delivered"] >= 4
        async with b.sessions() as session:
            sync = await session.scalar(select(SyncState))
        assert sync is not None and sync.backfilled_at is not None


async def test_unfollow_stops_deliveries(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha")
        await a.add_member("alice", "alpha", role="admin")
        token = await a.token("alice")
        beta = await b.create_association("beta")
        await b.add_member("bob", "beta", role="admin")
        follow = await b.post_outbox(
            "/groups/beta", await b.token("bob"), {"type": "Follow", "object": alpha}
        )
        await wait_until(lambda: _is(a, beta, alpha, "accepted"), what="follow accepted")
        await wait_until(lambda: _is(b, beta, alpha, "accepted"), what="accept received")

        await b.post_outbox("/groups/beta", await b.token("bob"), {"type": "Undo", "object": follow["id"]})
        await wait_until(lambda: _is(a, beta, alpha, None), what="A applies the Undo")
        note = (
            await a.post_outbox(
                "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": "après"}
            )
        )["object"]
        async with a.sessions() as session:
            assert (
                await session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.inbox_iri.like(f"{b.uris.origin}%"), Delivery.state == "pending")
                )
                == 0
            )
        assert await _object(b, note) is None


async def _is(node: Node, follower: str, followed: str, state: str | None) -> bool:
    return await _follow_state(node, follower, followed) == state


async def _exists(node: Node, iri: str) -> bool:
    return await _object(node, iri) is not None


async def _content_has(node: Node, iri: str, text: str) -> bool:
    row = await _object(node, iri)
    return row is not None and text in str(row.document.get("content"))


async def _deleted(node: Node, iri: str) -> bool:
    row = await _object(node, iri)
    return row is not None and row.deleted_at is not None


async def test_rfc9421_first_knock_is_remembered_per_host(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    """With first-knock on, deliveries to a peer that verifies RFC 9421 use it and remember it."""
    from server.db.models import PeerHost

    async with (
        running_node(tmp_path / "a", await new_database(0), federation={"rfc9421_first_knock": True}) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha")
        await a.add_member("alice", "alpha", role="admin")
        beta = await b.create_association("beta")
        await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await wait_until(lambda: _is(a, beta, alpha, "accepted"), what="follow accepted")
        note = (
            await a.post_outbox(
                "/groups/alpha", await a.token("alice"), {"to": [AS_PUBLIC], "type": "Note", "content": "x"}
            )
        )["object"]
        await wait_until(lambda: _exists(b, note), what="delivery")
        spec = await a.scalar(select(PeerHost.signature_spec).where(PeerHost.host == b.uris.host))
        assert spec == "rfc9421"
