"""Visibility across three real Entraide nodes on loopback (issue 5's matrix, §G of the catalogue).

Node A hosts the association alpha (admin alice, local member mia, local non-member lou). Node B
holds ben, a member of alpha who joined from B, and nora, who merely follows alpha from B. Node C
holds gamma, an association following alpha, and inst, an institution's read-only account that
follows alpha too. Alpha publishes one alert at each visibility level, and a members-only thread
gets a reply by ben. Every reader then reads every object through every channel it has:

* deliveries: which node stored which object (members-only content reaches B for ben only, in
  his personal inbox; never C);
* signed fetches from B and C as each of their accounts, and B's and C's instance actors;
* anonymous fetches and A's own channels (object JSON, HTML page, replies, API, outbox counts).

A member reads what members read; everyone else gets exactly what they get for an object that
does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from federation.errors import FederationError
from federation.fetch import DocumentGone, fetch_document
from server.db.models import Activity, Actor, Delivery, Follow, Membership, RemoteObject
from server.services.actors.signing import actor_key_pair, instance_key_pair
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"
LEVELS = ("public", "unlisted", "followers", "members", "direct")
SECRET = "secret-{level}-7f3a"


async def _count(node: Node, model: Any, *where: Any) -> int:
    async with node.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _signed_get(reader: Node, handle: str | None, iri: str) -> int:
    """GET ``iri`` from ``reader``'s node signed as its account ``handle`` (None: its instance
    actor), through the node's own transport and fetch checks. 200, or the origin's status."""
    async with reader.sessions() as session:
        if handle is None:
            signer = await instance_key_pair(reader.fed.node)
        else:
            actor = await session.scalar(select(Actor).where(Actor.handle == handle, Actor.local.is_(True)))
            assert actor is not None
            signer = await actor_key_pair(reader.fed.node, actor)
    try:
        await fetch_document(
            iri,
            transport=reader.fed.transport,
            signer=signer,
            now=reader.fed.node.clock(),
            uris=reader.fed.node.uris,
            policy=reader.fed.policy,
        )
    except DocumentGone as gone:
        return int(getattr(gone, "status", 404))
    except FederationError as error:
        return int(getattr(error, "status", 0) or 0)
    return 200


async def _anonymous(node: Node, iri: str, accept: str = AP) -> tuple[int, str]:
    path = "/" + iri.split("://", 1)[1].split("/", 1)[1]
    response = await node.client.get(path, headers={"Accept": accept})
    return response.status, await response.text()


async def _publish(a: Node, token: str, level: str, **extra: Any) -> str:
    body: dict[str, Any] = {
        "type": "Note",
        "entraideKind": "Alert",
        "name": f"Alerte {level}",
        "content": f"<p>{SECRET.format(level=level)}</p>",
        "severity": "warning",
        "category": "shortage",
        "visibility": level,
        **extra,
    }
    return str((await a.post_outbox("/groups/alpha", token, body))["object"])


async def _has(node: Node, iri: str) -> bool:
    return await _count(node, RemoteObject, RemoteObject.iri == iri) == 1


async def test_three_nodes_members_only_content_reaches_and_shows_to_members_only(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        # Given alpha on A (admin alice, member mia, non-member lou)
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        await a.add_member("mia", "alpha")
        await a.create_association("autre", "Autre")
        await a.add_member("lou", "autre")
        alice = await a.token("alice")
        # ben on B joins alpha and is approved; nora on B and gamma and inst on C only follow
        await b.create_association("beta", "Beta")
        ben_iri = await b.add_member("ben", "beta")
        await b.add_member("nora", "beta")
        await b.post_outbox("/users/ben", await b.token("ben"), {"type": "Join", "object": alpha})

        async def pending() -> bool:
            return await _count(a, Membership, Membership.state == "pending") == 1

        await wait_until(pending, what="ben's request on A")
        await a.post_outbox(
            "/groups/alpha", alice, {"type": "Accept", "object": {"type": "Join", "actor": ben_iri}}
        )

        async def joined() -> bool:
            alpha_on_b = select(Actor.id).where(Actor.iri == alpha).scalar_subquery()
            return (
                await _count(b, Membership, Membership.group_id == alpha_on_b, Membership.state == "active")
                == 1
            )

        await wait_until(joined, what="ben a member, as B knows it")
        await b.post_outbox("/users/nora", await b.token("nora"), {"type": "Follow", "object": alpha})
        await c.create_association("gamma", "Gamma")
        await c.add_member("inst", "gamma")
        await following.follow(c.fed, local_name="gamma", target_iri=alpha)
        await c.post_outbox("/users/inst", await c.token("inst"), {"type": "Follow", "object": alpha})

        async def followed() -> bool:
            return await _count(a, Follow, Follow.state == "accepted") == 3

        await wait_until(followed, what="nora, gamma and inst following alpha")

        # When alpha publishes at every level (direct: to ben), and ben replies in the members' thread
        objects = {
            level: await _publish(a, alice, level, **({"to": [ben_iri]} if level == "direct" else {}))
            for level in LEVELS
        }
        await wait_until(lambda: _has(b, objects["members"]), what="B stores the members-only alert")
        posted_reply = await b.post_outbox(
            "/users/ben",
            await b.token("ben"),
            {
                "type": "Note",
                "content": f"<p>{SECRET.format(level='reply')}</p>",
                "inReplyTo": objects["members"],
                "to": [f"{alpha}/members"],
                "cc": [alpha],
                "audience": alpha,
            },
        )
        reply, reply_create = posted_reply["object"], posted_reply["id"]
        await wait_until(lambda: _has(a, reply), what="A stores ben's members-only reply")
        await wait_until(lambda: _has(c, objects["followers"]), what="C stores the followers-only alert")

        # Then deliveries: B holds everything addressed to its accounts; C never members-only
        assert [await _has(b, objects[level]) for level in LEVELS] == [True, True, True, True, True]
        assert [await _has(c, objects[level]) for level in LEVELS] == [True, True, True, False, False]
        async with a.sessions() as session:
            create = select(Activity.id).where(
                Activity.type == "Create", Activity.object_iri == objects["members"]
            )
            member_inboxes = (
                await session.scalars(select(Delivery.inbox_iri).where(Delivery.activity_id.in_(create)))
            ).all()
        assert member_inboxes == [f"{ben_iri}/inbox"]  # ben's personal inbox, never B's shared one
        reply_row = await _reply_row(a, reply)
        assert (reply_row.visibility, reply_row.audience_id is not None) == ("members", True)

        # and reads: signed fetches of A's objects from B and C, as each account and as the node
        readers = {
            "ben (member, B)": (b, "ben"),
            "nora (follower, B)": (b, "nora"),
            "B's instance actor": (b, None),
            "gamma (association following, C)": (c, "gamma"),
            "inst (institution following, C)": (c, "inst"),
            "C's instance actor": (c, None),
        }
        expected = {
            "ben (member, B)": {"public", "unlisted", "followers", "members", "direct"},
            "nora (follower, B)": {"public", "unlisted", "followers"},
            "B's instance actor": {"public", "unlisted"},
            "gamma (association following, C)": {"public", "unlisted", "followers"},
            "inst (institution following, C)": {"public", "unlisted", "followers"},
            "C's instance actor": {"public", "unlisted"},
        }
        targets = dict(objects)
        for who, (node, handle) in readers.items():
            readable = {name for name, iri in targets.items() if await _signed_get(node, handle, iri) == 200}
            assert readable == expected[who], who
            for name in set(targets) - readable:  # exactly as absent: no existence oracle
                assert await _signed_get(node, handle, targets[name]) == 404, (who, name)
        # anonymous readers of A: public and unlisted only, in JSON and in HTML, nothing else leaks
        for name, iri in targets.items():
            for accept in (AP, "text/html"):
                status, text = await _anonymous(a, iri, accept)
                assert (status == 200) == (name in ("public", "unlisted")), (name, accept)
                if status != 200:
                    assert SECRET.format(level=name) not in text
        # ben's members-only reply: on A, alpha's members read it and no one else; on B (its
        # origin) ben does, nora does not; anonymous readers nowhere
        listed = [reply in await _replies(a, user, objects["members"]) for user in ("alice", "mia", "lou")]
        assert listed == [True, True, False]
        # ben's inbox lists alpha's relay (an Announce of his Create), as a boost of his reply (its
        # object is the reply, never the Create); nora's shows neither
        ben_sees, nora_sees = await _inbox(b, "ben"), await _inbox(b, "nora")
        relayed = [i["object"] for i in json.loads(ben_sees)["orderedItems"] if i["type"] == "Announce"]
        assert any(isinstance(o, dict) and o["id"] == reply for o in relayed), relayed
        assert reply_create not in ben_sees
        assert reply not in nora_sees and reply_create not in nora_sees
        assert await _signed_get(c, "gamma", reply) == 404
        assert (await _anonymous(b, reply))[0] == 404
        # the members' thread, anonymously: no count, no item
        status, text = await _anonymous(a, f"{objects['members']}/replies")
        assert status == 404 and reply not in text
        # and on B, ben finds what he was sent in his inbox (C2S); nora's holds only what she follows
        ben_inbox, nora_inbox = await _inbox(b, "ben"), await _inbox(b, "nora")
        assert all(objects[level] in ben_inbox for level in ("members", "direct"))
        assert objects["followers"] in nora_inbox
        assert not any(
            objects[level] in nora_inbox or SECRET.format(level=level) in nora_inbox
            for level in ("members", "direct")
        )


async def _reply_row(node: Node, iri: str) -> RemoteObject:
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None
    return row


async def _inbox(node: Node, user: str) -> str:
    """The first page of ``user``'s inbox, read by ``user`` (C2S)."""
    token = await node.token(user, "read")
    response = await node.client.get(
        f"/users/{user}/inbox",
        params={"page": "true"},
        headers={"Accept": AP, "Authorization": f"Bearer {token}"},
    )
    assert response.status == 200, await response.text()
    return await response.text()


async def _replies(node: Node, user: str, parent: str) -> str:
    """The first page of ``parent``'s replies as ``user`` reads it ('' when refused)."""
    token = await node.token(user, "read")
    path = "/" + parent.split("://", 1)[1].split("/", 1)[1] + "/replies"
    response = await node.client.get(
        path, params={"page": "true"}, headers={"Accept": AP, "Authorization": f"Bearer {token}"}
    )
    return await response.text() if response.status == 200 else ""
