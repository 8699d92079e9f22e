"""Deleting an association across nodes (decision 97): node A deletes its association alpha, which
node B follows and in which B's member ben is a member. B forgets alpha as it forgets a deleted
person: the copies of its alert and post become tombstones (no peer keeps the alert active), the
follow and ben's membership end. On A the actor answers 410 and its handle is never given again,
and what ben posted into alpha stays his."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from server.db.models import Actor, Follow, Membership, RemoteObject
from server.services.actors import dissolution
from server.services.actors import local as actor_service
from server.services.errors import Conflict
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until


async def _deleted(node: Node, iri: str) -> bool:
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    return row is not None and row.deleted_at is not None


async def _count(node: Node, model: type, *where: object) -> int:
    async with node.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_deleted_association_is_forgotten_by_the_peers_that_knew_it(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.configure("alpha", join_policy="open")
        await a.add_member("alice", "alpha", role="admin")
        alice = await a.token("alice")
        await b.create_association("beta", "Beta")
        await b.add_member("ben", "beta", role="member")
        ben = await b.token("ben")
        await following.follow(b.fed, local_name="beta", target_iri=alpha)
        await wait_until(lambda: _has(b, Follow, Follow.state == "accepted"), what="beta follows alpha")
        await b.post_outbox("/users/ben", ben, {"type": "Join", "object": alpha})
        await wait_until(
            lambda: _has(a, Membership, Membership.state == "active", n=2), what="ben joins alpha"
        )
        await wait_until(lambda: _has(b, Membership, Membership.state == "active", n=2), what="B hears it")

        alert = (
            await a.post_outbox(
                "/groups/alpha",
                alice,
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
        note = (
            await a.post_outbox(
                "/groups/alpha", alice, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Bonjour</p>"}
            )
        )["object"]
        by_ben = (
            await b.post_outbox(
                "/users/ben",
                ben,
                {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Moi aussi</p>", "audience": alpha},
            )
        )["object"]
        await wait_until(lambda: _stored(b, alert, note), what="B holds alpha's alert and post")
        await wait_until(lambda: _stored(a, by_ben), what="A holds ben's post into alpha")

        planned = await dissolution.plan(a.fed, "alpha")
        assert (planned.objects, planned.members, planned.followers) == (2, 2, 1)
        done = await dissolution.delete_association(a.fed, "alpha", reason="test")
        assert (done.objects, done.members) == (2, 2)
        assert done.recipients >= 2  # beta, ben (and the holders of the copies)

        await wait_until(lambda: _gone_on(b, alert, note), what="B tombstones alpha's alert and post")
        # the Delete of the Group is another delivery: it may come after the objects' Deletes
        await wait_until(lambda: _actor_gone(b, alpha), what="B forgets alpha")
        assert await _count(b, Follow) == 0
        assert (
            await _count(b, Membership, Membership.group_id.in_(select(Actor.id).where(Actor.iri == alpha)))
            == 0
        )

        # On A: 410 for the actor and its objects, what ben posted stays, the handle is never given again
        for iri in (alpha, alert):
            answer = await a.client.get(
                iri.removeprefix(a.uris.origin), headers={"Accept": "application/activity+json"}
            )
            assert answer.status == 410, iri
        assert not await _deleted(a, by_ben)
        assert (await a.client.get("/groups/alpha/outbox")).status in (404, 410)
        async with a.sessions.begin() as session:
            with pytest.raises(Conflict):
                await actor_service.create_association(
                    session, a.uris, a.fed.node.vault, handle="alpha", name="Alpha", now=a.fed.node.clock()
                )


async def _has(node: Node, model: type, *where: object, n: int = 1) -> bool:
    return await _count(node, model, *where) == n


async def _stored(node: Node, *iris: str) -> bool:
    return await _count(node, RemoteObject, RemoteObject.iri.in_(iris)) == len(iris)


async def _gone_on(node: Node, *iris: str) -> bool:
    return all([await _deleted(node, iri) for iri in iris])


async def _actor_gone(node: Node, iri: str) -> bool:
    async with node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == iri))
    return row is not None and row.deleted_at is not None
