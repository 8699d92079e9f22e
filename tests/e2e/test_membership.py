"""Membership across nodes (FEP-1b12): a member on node B joins an association on node A, posts
into it, and A's followers on node C receive the association's Announce. Subscribers who are not
members cannot post into the association."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from server.db.models import Activity, Actor, AuditEntry, Follow, Membership, RemoteObject
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until


async def _membership_state(node: Node, group_iri: str, member_iri: str) -> str | None:
    async with node.sessions() as session:
        group = await session.scalar(select(Actor.id).where(Actor.iri == group_iri))
        member = await session.scalar(select(Actor.id).where(Actor.iri == member_iri))
        if group is None or member is None:
            return None
        return await session.scalar(
            select(Membership.state).where(Membership.group_id == group, Membership.member_id == member)
        )


async def _stored(node: Node, iri: str) -> bool:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject.id).where(RemoteObject.iri == iri)) is not None


async def _accepted_follows(node: Node) -> int:
    async with node.sessions() as session:
        return int(
            await session.scalar(select(func.count()).select_from(Follow).where(Follow.state == "accepted"))
            or 0
        )


async def test_a_remote_member_joins_posts_and_the_association_relays_to_its_followers(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        alice = await a.token("alice")
        await b.create_association("beta", "Beta")
        ben_iri = await b.add_member("ben", "beta", role="member")
        ben = await b.token("ben")
        sam_iri = await b.add_member("sam", "beta", role="member")
        sam = await b.token("sam")
        await c.create_association("gamma", "Gamma")
        await following.follow(c.fed, local_name="gamma", target_iri=alpha)
        await wait_until(lambda: _accepted(c), what="gamma follows alpha")

        # ben asks to join alpha; alpha requires approval (the default)
        await b.post_outbox("/users/ben", ben, {"type": "Join", "object": alpha})
        await wait_until(lambda: _is(a, alpha, ben_iri, "pending"), what="A records the pending request")
        assert await _membership_state(b, alpha, ben_iri) == "pending"
        # a plain member of alpha cannot approve; alice (admin) does
        await a.post_outbox(
            "/groups/alpha", alice, {"type": "Accept", "object": {"type": "Join", "actor": ben_iri}}
        )
        await wait_until(lambda: _is(a, alpha, ben_iri, "active"), what="A approves")
        await wait_until(lambda: _is(b, alpha, ben_iri, "active"), what="B receives the Accept{Join}")
        async with a.sessions() as session:
            actions = (await session.scalars(select(AuditEntry.action))).all()
        assert "member.approve" in actions

        # ben posts into alpha: A stores it and announces it to its followers; C stores it
        post = (
            await b.post_outbox(
                "/users/ben",
                ben,
                {"type": "Note", "content": "<p>Compte rendu de la réunion</p>", "audience": alpha},
            )
        )["object"]
        await wait_until(lambda: _stored(a, post), what="A stores the member's post")

        async def relayed() -> bool:
            async with a.sessions() as session:
                announce = await session.scalar(select(Activity).where(Activity.type == "Announce"))
            return announce is not None and announce.document["object"]["object"]["id"] == post

        await wait_until(relayed, what="alpha announces the member's post (FEP-1b12)")
        await wait_until(lambda: _stored(c, post), what="C receives it through alpha's Announce")
        async with a.sessions() as session:
            stored_on_a = await session.scalar(select(func.count()).select_from(RemoteObject))

        # sam, who is not a member (a read-only subscriber at most), cannot post into alpha: his
        # own node refuses it already (A refuses it too: tests/server/test_membership_inbox.py)
        assert (
            await _post_status(
                b, "/users/sam", sam, {"type": "Note", "content": "<p>Spam</p>", "audience": alpha}
            )
            == 403
        )
        # ben leaves; afterwards his posts into alpha are refused too
        await b.post_outbox("/users/ben", ben, {"type": "Leave", "object": alpha})
        await wait_until(lambda: _is(a, alpha, ben_iri, None), what="A applies the Leave")
        late = {"type": "Note", "content": "<p>Après</p>", "audience": alpha}
        assert await _post_status(b, "/users/ben", ben, late) == 403
        await _settled(b)
        await _settled(a)
        async with a.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(RemoteObject)) == stored_on_a
        assert sam_iri


async def _post_status(node: Node, actor_path: str, token: str, body: dict[str, Any]) -> int:
    response = await node.client.post(
        f"{actor_path}/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status


async def _accepted(node: Node) -> bool:
    return await _accepted_follows(node) == 1


async def _is(node: Node, group: str, member: str, state: str | None) -> bool:
    return await _membership_state(node, group, member) == state


async def _settled(node: Node) -> None:
    from tests.support.signed_inbox import settle

    await settle(node)
