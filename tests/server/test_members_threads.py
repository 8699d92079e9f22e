"""Members-only threads: members reply inside members-only content, and only members read it.

A reply never shows to more people than its parent. A member's reply to the association's
members-only content is members-only *in that association* (addressed to its members collection,
``audience`` the association), whether the member is local (C2S) or on another node (inbox): it
is read by the association's members and admins only, and the association relays it to its
members' inboxes only (FEP-1b12). Posting into an association (``audience``) is for its active
members. Both engines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from federation.types import AS_PUBLIC
from server.db.models import Activity, Actor, Delivery, InboxActivity, InboxItem, RemoteObject
from tests.support.signed_inbox import StallingPeers, posts_to, processed, settle
from tests.support.world import GROUP_INBOX, NodeStarter, World, activity, create, given_world, note

AP = "application/activity+json"
SECRET = "Compte rendu confidentiel"


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("adele", "collectif", role="admin")
        await node.add_member("mia", "collectif")
        await node.add_member("nina", "collectif")
        await node.create_association("voisins", "Voisins")
        await node.add_member("olga", "voisins", role="admin")
        yield world


async def _open(world: World) -> None:
    async with world.node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy="open"))


async def _join(world: World, who: Any) -> None:
    """``who`` (a remote account) becomes an active member of the open association."""
    join = activity("Join", who, world.group)
    assert (await world.send(GROUP_INBOX, join, who)).status == 202
    assert await processed(world.node, join["id"]) == "processed"
    await settle(world.node)


async def _post(world: World, user: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    token = await world.node.token(user)
    response = await world.node.client.post(
        f"/users/{user}/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def _members_only_alert(world: World) -> str:
    token = await world.node.token("adele")
    response = await world.node.client.post(
        "/groups/collectif/outbox",
        json={
            "type": "Note",
            "entraideKind": "Alert",
            "name": "Rupture de stock",
            "content": "<p>Entre nous</p>",
            "severity": "warning",
            "category": "shortage",
            "visibility": "members",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["object"])


async def _reads(world: World, iri: str, user: str | None) -> int:
    headers = {"Accept": AP}
    if user is not None:
        headers["Authorization"] = f"Bearer {await world.node.token(user, 'read')}"
    path = iri.split("://", 1)[1].split("/", 1)[1]
    response = await world.node.client.get(f"/{path}", headers=headers)
    return response.status


async def _row(world: World, iri: str) -> RemoteObject:
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None
    return row


async def _replies(world: World, parent: str, user: str | None) -> str:
    headers = {"Accept": AP}
    if user is not None:
        headers["Authorization"] = f"Bearer {await world.node.token(user, 'read')}"
    path = parent.split("://", 1)[1].split("/", 1)[1]
    response = await world.node.client.get(f"/{path}/replies?page=true", headers=headers)
    return await response.text() if response.status == 200 else ""


async def test_a_local_members_reply_to_members_only_content_is_read_by_members_only(world: World) -> None:
    alert = await _members_only_alert(world)
    # When mia, a member, replies members-only
    status, body = await _post(
        world,
        "mia",
        {"type": "Note", "content": f"<p>{SECRET}</p>", "inReplyTo": alert, "visibility": "members"},
    )
    assert status == 201, body
    reply = body["object"]
    row = await _row(world, reply)
    # Then it is members-only in the association, addressed to its members collection
    assert row.visibility == "members"
    assert row.document["to"] == [f"{world.group}/members"]
    assert row.document["audience"] == world.group
    # and readable by members and the association's admin only: exactly as absent for others
    assert {u: await _reads(world, reply, u) for u in ("mia", "nina", "adele", "olga", None)} == {
        "mia": 200,
        "nina": 200,
        "adele": 200,
        "olga": 404,
        None: 404,
    }
    assert reply in await _replies(world, alert, "nina")
    assert reply not in await _replies(world, alert, "olga")


async def test_replies_to_members_only_content_never_widen_it(world: World) -> None:
    alert = await _members_only_alert(world)
    before = await world.counts()
    for user, extra, status in [
        ("mia", {"visibility": "public"}, 400),  # a member's public reply would reveal it
        ("mia", {"visibility": "followers"}, 400),
        ("olga", {"visibility": "members"}, 400),  # a non-member cannot read it: no such object
        ("olga", {"visibility": "members", "inReplyTo": None}, 400),  # no association to post into
    ]:
        payload = {"type": "Note", "content": "<p>x</p>", "inReplyTo": alert, **extra}
        payload = {k: v for k, v in payload.items() if v is not None}
        got, problem = await _post(world, user, payload)
        assert got == status, (user, extra, problem)
    # a members-only reply stays in its thread's association
    got, problem = await _post(
        world,
        "mia",
        {
            "type": "Note",
            "content": "<p>x</p>",
            "inReplyTo": alert,
            "visibility": "members",
            "audience": world.group,
        },
    )
    assert got == 201, problem
    voisins = world.group.replace("/collectif", "/voisins")
    got, problem = await _post(
        world,
        "olga",
        {"type": "Note", "content": "<p>x</p>", "visibility": "members", "audience": world.group},
    )
    assert got == 403, problem  # not a member of collectif
    got, problem = await _post(
        world, "olga", {"type": "Note", "content": "<p>x</p>", "visibility": "members", "audience": voisins}
    )
    assert got == 201, problem  # members-only post into her own association
    diff = {k: v for k, v in (await world.counts()).items() if v != before.get(k)}
    allowed = {
        "objects",
        "activities",
        "relays",
        "jobs",
        "audit_log",
        "deliveries",
        "peer_hosts",
        "tokens",
        "activity_counts",
        "feed_marks",  # derived: kept by triggers from activities and objects
    }
    # the association relays what its members post into it
    assert set(diff) <= allowed | {"inbox_activities", "inbox_items"}
    # Filed only for the associations the two accepted posts name as audience (issue 15 item 4).
    async with world.node.sessions() as session:
        filed = set(
            await session.scalars(
                select(Actor.iri)
                .join(InboxItem, InboxItem.actor_id == Actor.id)
                .join(InboxActivity, InboxActivity.id == InboxItem.inbox_activity_id)
                .where(InboxActivity.iri.startswith(world.node.uris.origin))
            )
        )
    assert filed == {world.group, voisins}


async def test_a_local_members_post_into_the_association_is_relayed_to_its_followers(world: World) -> None:
    # Given alice (peer.example) following the association
    follow = activity("Follow", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202
    await processed(world.node, follow["id"])
    await settle(world.node)
    world.peers.hits.clear()
    # When mia, a local member, posts into it
    status, body = await _post(
        world, "mia", {"type": "Note", "content": "<p>Réunion</p>", "audience": world.group}
    )
    assert status == 201, body
    await settle(world.node)
    # Then the association announces it (FEP-1b12), publicly, and alice's node receives it
    announce, inboxes = await _relay(world)
    assert announce.document["object"]["object"]["id"] == body["object"]
    assert AS_PUBLIC in announce.document["to"]
    assert inboxes == [f"{world.alice.peers.iri('peer.example', '/inbox')}"]
    assert len(posts_to(world.peers, "peer.example")) == 1


async def _relay(world: World) -> tuple[Activity, list[str]]:
    """The association's one Announce and the inboxes it was delivered to."""
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor.id).where(Actor.iri == world.group))
        (announce,) = (
            await session.scalars(
                select(Activity).where(Activity.type == "Announce", Activity.actor_id == group)
            )
        ).all()
        inboxes = (
            await session.scalars(select(Delivery.inbox_iri).where(Delivery.activity_id == announce.id))
        ).all()
    return announce, list(inboxes)


async def test_a_remote_members_members_only_reply_is_relayed_to_members_only(world: World) -> None:
    # Given alice a member (remote), bob a mere follower
    await _open(world)
    await _join(world, world.alice)
    follow = activity("Follow", world.bob, world.group)
    assert (await world.send(GROUP_INBOX, follow, world.bob)).status == 202
    await processed(world.node, follow["id"])
    alert = await _members_only_alert(world)
    await settle(world.node)
    # When alice replies to it, addressed to the association's members collection
    reply = note(
        world.alice,
        to=[f"{world.group}/members"],
        cc=[world.group],
        inReplyTo=alert,
        content=f"<p>{SECRET}</p>",
    )
    reply["audience"] = world.group
    create_ = create(world.alice, reply)
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    assert await processed(world.node, create_["id"]) == "processed"
    await settle(world.node)
    # Then it is stored members-only in the association and read by members only
    row = await _row(world, reply["id"])
    assert (row.visibility, row.audience_id is not None) == ("members", True)
    assert reply["id"] in await _replies(world, alert, "mia")
    assert reply["id"] not in await _replies(world, alert, "olga")
    assert reply["id"] not in await _replies(world, alert, None)
    # and relayed in an Announce addressed to the members, delivered to alice's inbox only
    announce, inboxes = await _relay(world)
    assert announce.visibility == "members" and announce.document["to"] == [f"{world.group}/members"]
    assert inboxes == [f"{world.alice.iri}/inbox"]
