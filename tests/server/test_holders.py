"""Edits and deletions reach every remote holder of an association's object, not only its
followers (issue 13): a voter, a replier, a co-signing association and an association that relayed
it, none of them following. Each inbox (shared inboxes deduplicated) gets each activity once; a
holder who may no longer read a members-only object gets its tombstone, never its new content.
Both engines."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, Iri
from server.db.models import Activity, Actor, Delivery, Endorsement, Follow, Relay, RemoteObject, Vote
from server.services.content import local as content
from tests.server.test_timeline_relays import remote_group
from tests.server.test_votes_inbox import mastodon_vote
from tests.support.fake_peers import actor_document
from tests.support.signed_inbox import (
    RemoteAccount,
    StallingPeers,
    accept_deliveries,
    fixed_key,
    posts_to,
    processed,
    settle,
)
from tests.support.world import GROUP_INBOX, SHARED, NodeStarter, World, activity, create, given_world, note

SECRET = "Ordre du jour réservé aux membres"


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("admin", "collectif", role="admin")
        yield world


def cosigner(peers: StallingPeers) -> RemoteAccount:
    """``amis``, an association on peer.example (alice's node: same shared inbox)."""
    iri = peers.iri("peer.example", "/groups/amis")
    key = fixed_key("rsa-bob.pem", f"{iri}#main-key", iri)
    peers.serve_json(iri, actor_document(iri, username="amis", keys=(key.public,), actor_type="Group"))
    account = RemoteAccount(iri, key, peers)
    accept_deliveries(account)
    return account


async def _actors(world: World) -> tuple[Actor, Actor]:
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        admin = await session.scalar(select(Actor).where(Actor.iri == world.node.uris.iri("/users/admin")))
    assert group is not None and admin is not None
    return group, admin


async def _publish(world: World, obj: dict[str, Any]) -> str:
    group, admin = await _actors(world)
    published = await content.create(world.node.fed, group, obj, by=admin)
    await settle(world.node)
    assert published.object_iri is not None
    return published.object_iri


async def _remote_id(world: World, iri: str) -> int:
    return (await world.node.fed.actor(Iri(iri))).id


async def _endorse(world: World, endorser: RemoteAccount, proposal: str) -> None:
    """``endorser`` co-signed ``proposal`` (the row an accepted remote endorsement leaves)."""
    async with world.node.sessions() as session:
        proposal_id = await session.scalar(select(RemoteObject.id).where(RemoteObject.iri == proposal))
    endorser_id = await _remote_id(world, endorser.iri)
    async with world.node.sessions.begin() as session:
        session.add(
            Endorsement(
                iri=endorser.new_id("endorsements"),
                proposal_iri=proposal,
                proposal_id=proposal_id,
                endorser_id=endorser_id,
                document={"type": "Endorsement"},
                created_at=datetime.now(UTC),
            )
        )


async def _deliver(world: World, who: RemoteAccount, doc: dict[str, Any], target: str = SHARED) -> None:
    assert (await world.send(target, doc, who)).status == 202
    assert await processed(world.node, doc["id"]) == "processed"


async def _inboxes(world: World, activity_iri: str) -> Counter[str]:
    """How many deliveries of the activity each inbox got (any state: planned once is enough)."""
    async with world.node.sessions() as session:
        rows = await session.scalars(
            select(Delivery.inbox_iri)
            .join(Activity, Activity.id == Delivery.activity_id)
            .where(Activity.iri == activity_iri)
        )
        return Counter(rows)


async def _states(world: World, activity_iri: str) -> set[str]:
    async with world.node.sessions() as session:
        return set(
            await session.scalars(
                select(Delivery.state)
                .join(Activity, Activity.id == Delivery.activity_id)
                .where(Activity.iri == activity_iri)
            )
        )


def _shared(account: RemoteAccount) -> str:
    return account.peers.iri(account.host, "/inbox")


async def _no_follower(world: World) -> None:
    async with world.node.sessions() as session:
        assert await session.scalar(select(Follow.id).limit(1)) is None


@pytest.mark.parametrize(
    "obj",
    [
        {
            "type": "Question",
            "name": "Stocks",
            "content": "<p>Quatre mois.</p>",
            "oneOf": ["Pour", "Contre"],
            "eligibility": "anyone",
        },
        {"type": "Article", "name": "Guide", "content": "<p>Version 1</p>"},
    ],
    ids=["proposal", "resource"],
)
async def test_an_edit_and_a_delete_reach_voters_repliers_cosigners_and_relayers_once(
    world: World, obj: dict[str, Any]
) -> None:
    # Given a public object of the association, and remote holders none of whom follows it:
    iri = await _publish(world, {"to": [AS_PUBLIC], **obj})
    proposal = obj["type"] == "Question"
    # mallory (evil.example) voted on the proposal — or, for a resource, liked it
    if proposal:
        vote = mastodon_vote(world.mallory, iri, world.group, "Pour", 1)
        await _deliver(world, world.mallory, vote, GROUP_INBOX)
    else:
        await _deliver(world, world.mallory, activity("Like", world.mallory, iri, to=[world.group]))
    # alice (peer.example) replied to it
    await _deliver(world, world.alice, create(world.alice, note(world.alice, to=[AS_PUBLIC], inReplyTo=iri)))
    # amis, an association on alice's node, co-signed it
    amis = cosigner(world.peers)
    await _endorse(world, amis, iri)
    # ligue (third.example) relayed it to its followers, who are on nodes we never heard of
    ligue = remote_group(world.peers)
    relay = activity("Announce", ligue, iri, to=[AS_PUBLIC], cc=[f"{ligue.iri}/followers"])
    await _deliver(world, ligue, relay)
    await settle(world.node)
    await _no_follower(world)
    if proposal:
        async with world.node.sessions() as session:
            assert await session.scalar(select(Vote.id).limit(1)) is not None
    group, admin = await _actors(world)
    world.peers.hits.clear()
    expected = {_shared(world.mallory), _shared(world.alice), _shared(ligue)}

    # When the association edits it
    edit = await content.update(world.node.fed, group, {"id": iri, "name": "Nouveau titre"}, by=admin)
    assert edit.activity_iri is not None
    await settle(world.node)
    # Then each holder's node gets the Update once (alice and amis share peer.example's inbox)
    inboxes = await _inboxes(world, edit.activity_iri)
    assert set(inboxes) == expected
    assert set(inboxes.values()) == {1}

    # When it deletes it
    gone = await content.delete(world.node.fed, group, iri, by=admin)
    assert gone.activity_iri is not None
    await settle(world.node)
    # Then the Delete reaches the same inboxes, once each
    inboxes = await _inboxes(world, gone.activity_iri)
    assert set(inboxes) == expected
    assert set(inboxes.values()) == {1}
    # and the peers accepted every one of them (the fake peers verified the signatures)
    assert await _states(world, edit.activity_iri) == {"delivered"}
    assert await _states(world, gone.activity_iri) == {"delivered"}
    for host in ("peer.example", "evil.example", "third.example"):
        assert posts_to(world.peers, host), host


async def test_a_members_only_edit_never_reaches_a_holder_who_may_not_read_it(world: World) -> None:
    # Given a members-only resource that alice, a member then, replied to; she has left since
    await world.node.add_member("mia", "collectif")
    group, admin = await _actors(world)
    iri = await _publish(
        world, {"type": "Article", "name": "Réservé", "content": "<p>v1</p>", "visibility": "members"}
    )
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None and row.visibility == "members"
    alice_id = await _remote_id(world, world.alice.iri)
    async with world.node.sessions.begin() as session:
        session.add(
            RemoteObject(
                iri=world.alice.new_id("notes"),
                type="Note",
                kind="reply",
                local=False,
                attributed_to_id=alice_id,
                in_reply_to_iri=iri,
                visibility="members",
                document={"type": "Note", "content": "<p>ok</p>"},
                published=datetime.now(UTC),
                updated=datetime.now(UTC),
                received_at=datetime.now(UTC),
            )
        )
    # and ligue, a remote association, relayed it (a members-only relay, recorded in relays)
    ligue = remote_group(world.peers)
    ligue_id = await _remote_id(world, ligue.iri)
    async with world.node.sessions.begin() as session:
        session.add(
            Relay(
                announce_iri=ligue.new_id(), relayer_id=ligue_id, object_iri=iri, relayed_at=datetime.now(UTC)
            )
        )
    assert set(await _holders(world, iri)) == {world.alice.iri, ligue.iri}
    world.peers.hits.clear()

    # When the association edits it with content only members may read
    edit = await content.update(world.node.fed, group, {"id": iri, "content": f"<p>{SECRET}</p>"}, by=admin)
    assert edit.activity_iri is not None
    await settle(world.node)
    # Then no peer received it: neither the former member nor the relaying association
    assert not (await _inboxes(world, edit.activity_iri))
    assert await _remote_deliveries_of_secret(world) == []
    for host in ("peer.example", "third.example"):
        assert posts_to(world.peers, host) == [], host

    # When it deletes it, both get the tombstone (no content) once
    gone = await content.delete(world.node.fed, group, iri, by=admin)
    assert gone.activity_iri is not None
    await settle(world.node)
    inboxes = await _inboxes(world, gone.activity_iri)
    # (members-only: each actor's own inbox, never a shared one)
    assert set(inboxes) == {f"{world.alice.iri}/inbox", f"{ligue.iri}/inbox"}
    assert set(inboxes.values()) == {1}
    assert await _remote_deliveries_of_secret(world) == []
    for host in ("peer.example", "third.example"):
        assert len(posts_to(world.peers, host)) == 1, host


async def _remote_deliveries_of_secret(world: World) -> list[str]:
    """Inboxes off this node that were sent an activity carrying the members-only text."""
    async with world.node.sessions() as session:
        rows = await session.execute(
            select(Activity.document, Delivery.inbox_iri).join(Delivery, Delivery.activity_id == Activity.id)
        )
        return [
            inbox
            for document, inbox in rows
            if SECRET in str(document) and not world.node.uris.is_local(inbox)
        ]


async def _holders(world: World, iri: str) -> list[str]:
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        return await content.holders(session, row)
