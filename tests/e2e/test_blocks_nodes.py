"""Three real Entraide nodes on loopback: a domain block imported from a shared CSV cuts the third
node off both ways (decisions 62-64).

B and C each have an association following alpha on A. A's admin imports a Mastodon CSV naming C's
host: from then on A plans no delivery to C (alpha's next note reaches B only), C's follow is gone
from A, and what C sends to A is refused at the inbox (C's new follow never becomes accepted).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Delivery
from server.services.membership import following
from server.services.moderation import blocklists
from tests.e2e.test_follow_and_deliver import _exists, _is
from tests.support.nodes import Node, running_node, wait_until


async def _deliveries_to(node: Node, host: str) -> int:
    async with node.sessions() as session:
        return sum(1 for h in await session.scalars(select(Delivery.host)) if h == host)


async def test_a_domain_block_imported_from_a_csv_cuts_a_third_node_off_both_ways(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        # Given beta (B) and gamma (C) following alpha (A)
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        token = await a.token("alice")
        beta = await b.create_association("beta", "Beta")
        gamma = await c.create_association("gamma", "Gamma")
        await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await following.follow(c.fed, local_name="gamma", target_iri=alpha)
        await wait_until(lambda: _is(b, beta, alpha, "accepted"), what="B's follow accepted")
        await wait_until(lambda: _is(c, gamma, alpha, "accepted"), what="C's follow accepted")
        c_host = c.uris.origin.split("://", 1)[1]
        # When A imports a shared list in Mastodon's format that suspends C's host
        shared = (
            "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
            f"{c_host},suspend,true,true,Spam,false\n"
        )
        async with a.sessions.begin() as session:
            preview = await blocklists.import_domain_csv(
                session, shared, name="shared.csv", by=None, apply=False
            )
        assert [add.domain for add in preview.adds] == [c_host]
        async with a.sessions.begin() as session:
            await blocklists.import_domain_csv(session, shared, name="shared.csv", by=None, apply=True)
        # Then C's follow is gone from A
        assert await _is(a, gamma, alpha, None)
        planned_for_c = await _deliveries_to(a, c_host)
        # and alpha's next note reaches B but is not even planned for C
        created = await a.post_outbox(
            "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Après</p>"}
        )
        await wait_until(lambda: _exists(b, created["object"]), what="delivery to B")
        assert not await _exists(c, created["object"])
        assert await _deliveries_to(a, c_host) == planned_for_c
        # and what C sends is refused: gamma's new follow of alpha never gets accepted on A
        await following.unfollow(
            c.fed, follower=await _actor(c, gamma), follow_iri=await _follow_iri(c, gamma)
        )
        again = await following.follow(c.fed, local_name="gamma", target_iri=alpha)
        assert again.state == "pending"
        await wait_until(lambda: _refused_by(c, a), what="C's delivery to A refused", timeout_s=30)
        assert await _is(a, gamma, alpha, None)


async def _actor(node: Node, iri: str):  # type: ignore[no-untyped-def]
    from server.db.models import Actor

    async with node.sessions() as session:
        return await session.scalar(select(Actor).where(Actor.iri == iri))


async def _follow_iri(node: Node, follower_iri: str) -> str:
    from server.db.models import Actor, Follow

    async with node.sessions() as session:
        actor = await session.scalar(select(Actor).where(Actor.iri == follower_iri))
        assert actor is not None
        iri = await session.scalar(select(Follow.follow_iri).where(Follow.follower_id == actor.id))
    assert iri is not None
    return str(iri)


async def _refused_by(sender: Node, receiver: Node) -> bool:
    """Has ``sender`` recorded a delivery to ``receiver`` answered 403 (refused, not retried)?"""
    host = receiver.uris.origin.split("://", 1)[1]
    async with sender.sessions() as session:
        rows = (await session.execute(select(Delivery).where(Delivery.host == host))).scalars().all()
    return any(row.last_status == 403 or row.state in ("failed", "rejected") for row in rows)
