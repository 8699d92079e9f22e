"""Signed fetch between real nodes: who may read what, and the authorized-fetch mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from federation.fetch import DocumentGone, fetch_document
from server.db.models import Actor
from server.services.actors.signing import actor_key_pair, instance_key_pair
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"


async def _actor_row(node: Node, iri: str) -> Actor:
    async with node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == iri))
    assert row is not None
    return row


async def _signed_get(reader: Node, iri: str, *, as_iri: str | None = None) -> dict[str, object]:
    """GET ``iri`` from ``reader``'s node, signed as one of its actors (default: its Application)."""
    signer = (
        await actor_key_pair(reader.fed.node, await _actor_row(reader, as_iri))
        if as_iri
        else await instance_key_pair(reader.fed.node)
    )
    fetched = await fetch_document(
        iri,
        transport=reader.fed.transport,
        signer=signer,
        now=reader.fed.node.clock(),
        uris=reader.fed.node.uris,
    )
    return fetched.document


async def test_followers_only_object_is_readable_by_a_follower_only(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        # Given beta@B follows alpha@A, and alpha publishes a followers-only note
        alpha = await a.create_association("alpha")
        await a.add_member("alice", "alpha", role="admin")
        beta = await b.create_association("beta")
        await following.follow(b.fed, local_name="beta", target_iri=alpha)

        async def accepted() -> bool:
            row = await _actor_row(b, alpha)
            return row is not None and await a.scalar(select(Actor.id).where(Actor.iri == beta)) is not None

        await wait_until(accepted, what="follow exchange")
        note = (
            await a.post_outbox(
                "/groups/alpha",
                await a.token("alice"),
                {"type": "Note", "content": "pour les abonnés", "to": [f"{alpha}/followers"]},
            )
        )["object"]
        path = note.removeprefix(a.uris.origin)
        await wait_until(lambda: _follow_accepted(a, beta), what="accepted follower on A")

        # Then an anonymous GET gets the same 404 as a missing object
        assert (await a.client.get(path, headers={"Accept": AP})).status == 404
        # a signed fetch by B's Application actor (not a follower) is refused
        with pytest.raises(DocumentGone):
            await _signed_get(b, note)
        # and a signed fetch by the following association reads it
        document = await _signed_get(b, note, as_iri=beta)
        assert document["id"] == note


async def _follow_accepted(node: Node, follower_iri: str) -> bool:
    from server.db.models import Follow

    follower = await node.scalar(select(Actor.id).where(Actor.iri == follower_iri))
    if follower is None:
        return False
    return await node.scalar(select(Follow.state).where(Follow.follower_id == follower)) == "accepted"


async def test_authorized_fetch_refuses_unsigned_reads_but_serves_the_application_actor(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0), federation={"authorized_fetch": True}) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha")
        unsigned = await a.client.get("/groups/alpha", headers={"Accept": AP})
        assert unsigned.status == 401 and unsigned.content_type == "application/problem+json"
        assert (await a.client.get("/groups/alpha/outbox", headers={"Accept": AP})).status == 401
        # The Application actor stays fetchable unsigned (no chicken-and-egg for signed fetches)
        assert (await a.client.get("/actor", headers={"Accept": AP})).status == 200
        # Browsers still get the HTML page; discovery stays open
        assert (await a.client.get("/groups/alpha")).status == 200
        assert (
            await a.client.get("/.well-known/webfinger", params={"resource": f"acct:alpha@{a.uris.host}"})
        ).status == 200
        # A signed fetch from another node is served
        document = await _signed_get(b, alpha)
        assert document["id"] == alpha
