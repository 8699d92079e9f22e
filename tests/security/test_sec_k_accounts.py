"""Cases 62 and 63 (issue 16, their data, their rights).

62: a deleted account keeps no access and leaves no content: its API token and web session answer
as unknown at once (no cache between the deletion and the next request), its members-only content
is a tombstone on every read path (API, object IRI, the association's outbox and page, the C2S
inbox of the remote member it was relayed to is told with a signed ``Delete``), its username cannot
be taken again.

63: a remote person's verified ``Delete`` of itself removes what we held of it: its content, its
memberships in our associations, its follows, its votes on our open questions; before, only its
follows went and its posts stayed readable in the association it had joined.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Activity, Actor, Delivery, Follow, Membership, RemoteObject
from server.http.cache import PAGE_CACHE
from server.services.accounts import erasure as accounts
from server.services.actors.signing import actor_key_pair
from tests.server.test_web_account import _sign_in
from tests.support.nodes import wait_until
from tests.support.signed_inbox import posts_to, processed
from tests.support.world import World, activity, create, note

AP = "application/activity+json"
SECRET = "SECRET-members-only-of-lea"


async def _actor(world: World, iri: str) -> Actor:
    async with world.node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == iri))
    assert row is not None
    return row


async def test_sec_62_a_deleted_account_keeps_no_access_and_leaves_no_content(world: World) -> None:
    node = world.node
    await node.configure("collectif", join_policy="open")
    await node.add_member("adele", "collectif", role="admin")
    lea_iri = await node.add_member("lea", "collectif")
    join = activity("Join", world.alice, world.group)
    assert (await world.send("/inbox", join, world.alice)).status == 202
    await processed(node, join["id"])
    lea = await _actor(world, lea_iri)
    lea_key = await actor_key_pair(node.fed.node, lea)
    world.peers.trust(lea_key)
    tokens = {"lea": await node.token("lea"), "adele": await node.token("adele")}
    assert (await _sign_in(node.client, "lea")).status == 303
    members = node.uris.members(world.group)
    created = await node.post_outbox(
        "/users/lea",
        tokens["lea"],
        {"type": "Note", "content": f"<p>{SECRET}</p>", "to": [members], "audience": world.group},
    )
    secret = created["object"]
    adele = {"Authorization": f"Bearer {tokens['adele']}"}

    async def reads() -> list[tuple[str, int, str]]:
        found = []
        for path, params, headers in (
            ("/api/objects", {"iri": secret}, adele),
            (urlsplit(secret).path, None, {"Accept": AP, **adele}),
            ("/groups/collectif/outbox", {"page": "true"}, {"Accept": AP, **adele}),
            ("/groups/collectif", {"tab": "discussions"}, {"Accept": "text/html", **adele}),
            ("/api/timeline", None, adele),
        ):
            response = await node.client.get(path, params=params, headers=headers)
            found.append((path, response.status, await response.text()))
        return found

    assert all(SECRET in text for _, _, text in await reads())  # the control: readable before
    # When lea's account is deleted (the service the web page, the API and the CLI call)
    result = await accounts.delete_account(node.fed, lea.id, reason="test")
    # Then her token and her session are refused at once
    lea_auth = {"Authorization": f"Bearer {tokens['lea']}"}
    assert (await node.client.get("/api/timeline", headers=lea_auth)).status == 401
    account = await node.client.get("/account", allow_redirects=False)
    assert account.status == 303 and account.headers["Location"].startswith("/login")
    assert (await node.client.get(urlsplit(lea_iri).path, headers={"Accept": AP})).status == 410
    # and the members-only text survives on no read path
    for where, status, text in await reads():
        assert status < 500 and SECRET not in text, where
    # and the remote member's node got signed Deletes of the post and of the actor
    async with node.sessions() as session:
        deletes = {
            row.object_iri: row.id
            for row in await session.scalars(select(Activity).where(Activity.type == "Delete"))
        }
    assert {secret, lea_iri} <= set(deletes) and result.delete_iri

    async def delivered() -> bool:
        async with node.sessions() as session:
            states = set(
                await session.scalars(
                    select(Delivery.activity_id).where(
                        Delivery.activity_id.in_([deletes[secret], deletes[lea_iri]]),
                        Delivery.state == "delivered",
                    )
                )
            )
        return states == {deletes[secret], deletes[lea_iri]}

    await wait_until(delivered, what="the Deletes to reach peer.example")
    # signed with lea's key, which the peer verified (her actor is a tombstone by then)
    assert any(hit.key_id == lea_key.key_id for hit in posts_to(world.peers, "peer.example"))


async def test_sec_63_a_remote_persons_delete_of_itself_removes_what_we_held(world: World) -> None:
    node = world.node
    await node.configure("collectif", join_policy="open")
    for kind in ("Join", "Follow"):
        sent = activity(kind, world.alice, world.group)
        assert (await world.send("/inbox", sent, world.alice)).status == 202
        await processed(node, sent["id"])
    posted = note(world.alice, to=[AS_PUBLIC, world.group], audience=world.group, content="<p>de alice</p>")
    sent = create(world.alice, posted)
    assert (await world.send("/inbox", sent, world.alice)).status == 202
    await processed(node, sent["id"])
    alice = await _actor(world, world.alice.iri)

    async def held() -> dict[str, Any]:
        async with node.sessions() as session:
            row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == posted["id"]))
            return {
                "membership": await session.scalar(
                    select(Membership.id).where(Membership.member_id == alice.id)
                ),
                "follow": await session.scalar(select(Follow.id).where(Follow.follower_id == alice.id)),
                "live": row is not None and row.deleted_at is None,
                "text": orjson.dumps(row.document).decode() if row is not None else "",
            }

    before = await held()
    assert before["membership"] and before["follow"] and before["live"] and "de alice" in before["text"]
    page = await node.client.get("/groups/collectif?tab=discussions", headers={"Accept": "text/html"})
    assert "de alice" in await page.text()
    gone = activity("Delete", world.alice, world.alice.iri, to=[AS_PUBLIC])
    assert (await world.send("/inbox", gone, world.alice)).status == 202
    assert await processed(node, gone["id"]) == "processed"
    after = await held()
    assert after == {"membership": None, "follow": None, "live": False, "text": after["text"]}
    assert "de alice" not in after["text"]
    assert (await _actor(world, world.alice.iri)).deleted_at is not None
    await asyncio.sleep(node.client.app[PAGE_CACHE].ttl_s)  # anonymous pages are cached that long
    page = await node.client.get("/groups/collectif?tab=discussions", headers={"Accept": "text/html"})
    assert "de alice" not in await page.text()
