"""An association's block of a remote actor hides that actor's stored content in the association's
context, on every read channel, while its content elsewhere stays shown (docs/decisions.md 80).

Channels: the object's page (HTML), the JSON API's timeline, the ActivityPub ``replies`` and
``context`` collections, the timeline page. Feeds carry only the association's own objects, so no
blocked actor's content can reach them. Both engines; mallory is on ``evil.example``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Actor, Relay
from server.services.moderation import blocks
from tests.support.signed_inbox import settle
from tests.support.world import GROUP_INBOX, World, assert_stored_and_processed_once, create, note

AP = "application/activity+json"


async def _group_post(world: World) -> str:
    await world.node.configure("collectif", replies_policy="anyone")
    await world.node.add_member("ana", "collectif", role="admin")
    token = await world.node.token("ana")
    created = await world.node.post_outbox(
        "/groups/collectif", token, {"type": "Note", "content": "<p>Réunion</p>", "to": [AS_PUBLIC]}
    )
    await settle(world.node)
    return str(created["object"])


async def _reply(world: World, who: Any, parent: str, text: str) -> str:
    obj = note(who, to=[AS_PUBLIC, world.group], content=f"<p>{text}</p>", inReplyTo=parent)
    activity = create(who, obj)
    assert (await world.send(GROUP_INBOX, activity, who)).status == 202
    await assert_stored_and_processed_once(world, activity["id"])
    return str(obj["id"])


async def _collection(world: World, parent: str, name: str, token: str | None = None) -> str:
    headers = {"Accept": AP}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    path = parent.split("://", 1)[1].split("/", 1)[1]
    response = await world.node.client.get(f"/{path}/{name}?page=true", headers=headers)
    assert response.status == 200, await response.text()
    return await response.text()


async def _relayed_by_the_association(world: World, object_iri: str) -> None:
    """The association relayed ``object_iri`` (a remote member posted into it, FEP-1b12)."""
    async with world.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        assert group is not None
        session.add(
            Relay(
                announce_iri=f"{world.group}/announces/1",
                relayer_id=group.id,
                object_iri=object_iri,
                relayed_at=group.created_at,
            )
        )


async def _timeline(world: World, token: str) -> str:
    response = await world.node.client.get("/api/timeline", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    return await response.text()


async def _block(world: World, who: str, *, by_group: bool) -> None:
    async with world.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group)) if by_group else None
        await blocks.block_actor(session, uris=world.node.uris, by=None, actor_iri=who, group=group)


async def test_an_association_block_hides_the_actor_in_its_context_on_every_channel(world: World) -> None:
    # Given the association's post with replies by alice and mallory, and mallory's own post
    # that the association relayed to its members
    post = await _group_post(world)
    kept = await _reply(world, world.alice, post, "Je viens")
    spam = await _reply(world, world.mallory, post, "Achetez maintenant")
    elsewhere = note(world.mallory, to=[AS_PUBLIC, world.group], content="<p>Ailleurs</p>")
    assert (await world.send(GROUP_INBOX, create(world.mallory, elsewhere), world.mallory)).status == 202
    await settle(world.node)
    await _relayed_by_the_association(world, str(elsewhere["id"]))
    token = await world.node.token("ana", "read")
    page_path = "/" + post.split("://", 1)[1].split("/", 1)[1]
    assert "Achetez" in await (await world.node.client.get(page_path)).text()
    assert spam in await _collection(world, post, "replies")
    assert "Ailleurs" in await _timeline(world, token)
    # When the association blocks mallory
    await _block(world, world.mallory.iri, by_group=True)
    # Then mallory's reply is gone from the page, the collections (anonymous and for a member),
    # and its relayed post from the members' timeline (JSON and page); alice's reply stays
    page = await (await world.node.client.get(page_path)).text()
    assert "Achetez" not in page and "Je viens" in page
    for name in ("replies", "context"):
        for reader in (None, token):
            listed = await _collection(world, post, name, reader)
            assert spam not in listed and kept in listed, (name, reader)
    assert "Ailleurs" not in await _timeline(world, token)
    # and mallory's post outside the association's context is still readable on its own
    async with world.node.sessions() as session:
        found = await blocks.hidden_iris(session, None, {world.mallory.iri})
    assert found == set()


async def test_a_node_block_hides_everywhere_and_an_unblock_brings_it_back(world: World) -> None:
    post = await _group_post(world)
    spam = await _reply(world, world.mallory, post, "Achetez maintenant")
    await _block(world, world.mallory.iri, by_group=True)
    assert spam not in await _collection(world, post, "replies")
    async with world.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        await blocks.unblock_actor(
            session, uris=world.node.uris, by=None, actor_iri=world.mallory.iri, group=group
        )
    assert spam in await _collection(world, post, "replies")
    await _block(world, world.mallory.iri, by_group=False)
    assert spam not in await _collection(world, post, "replies")
