"""Case 50 (issue 12, finding 3): the C2S inbox lists only what processing accepted, rendered from
what we stored (sanitised, current), never the raw body a peer sent. Case 68 (issue 13): a relay
embeds only what the inbox's owner may read."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Actor, Follow
from tests.support.nodes import Node
from tests.support.signed_inbox import processed
from tests.support.world import World, activity, create, note

AP = "application/activity+json"
SCRIPT = "<script>alert(1)</script>"


async def _inbox(node: Node, token: str, path: str) -> tuple[list[dict[str, Any]], str]:
    response = await node.client.get(
        f"{path}/inbox?page=true", headers={"Accept": AP, "Authorization": f"Bearer {token}"}
    )
    assert response.status == 200, await response.text()
    text = await response.text()
    return orjson.loads(text)["orderedItems"], text


async def test_sec_50_the_c2s_inbox_lists_accepted_activities_rendered_from_storage(world: World) -> None:
    node = world.node
    await node.add_member("adele", "collectif", role="admin")
    await node.add_member("zoe", "collectif", role="member")
    zoe, adele = await node.token("zoe", "read"), await node.token("adele", "read")
    admin_token = await node.token("adele")
    posted = await node.post_outbox(
        "/groups/collectif", admin_token, {"to": [AS_PUBLIC], "type": "Note", "content": "x"}
    )
    own = posted["object"]
    zoe_iri = node.uris.iri("/users/zoe")

    # Refused by processing, sent to zoe's personal inbox: a forged Update of the association's
    # object, and a non-member's post into the association; both carry a script.
    edit = {"id": own, "type": "Note", "content": SCRIPT, "to": [zoe_iri]}
    forged = activity("Update", world.mallory, edit)
    intrusion = create(
        world.mallory, note(world.mallory, to=[zoe_iri, world.group], audience=world.group, content=SCRIPT)
    )
    # Accepted: alice writes to zoe, with a script in it, then to the association's inbox only.
    letter = note(world.alice, to=[zoe_iri], content=f"<p>Bonjour Zoé</p>{SCRIPT}")
    accepted = create(world.alice, letter)
    shared = create(world.alice, note(world.alice, to=[zoe_iri], content="<p>par la boîte partagée</p>"))
    for doc, who, target in (
        (forged, world.mallory, "/users/zoe/inbox"),
        (intrusion, world.mallory, "/users/zoe/inbox"),
        (accepted, world.alice, "/users/zoe/inbox"),
        (shared, world.alice, "/inbox"),
    ):
        reply = await world.send(target, doc, who)
        assert reply.status == 202, reply
        await processed(node, doc["id"])

    items, text = await _inbox(node, zoe, "/users/zoe")
    assert [item["id"] for item in items] == [shared["id"], accepted["id"]]
    assert "<script" not in text and "alert(1)" not in text
    assert items[1]["object"]["id"] == letter["id"] and "Bonjour Zoé" in items[1]["object"]["content"]
    admin_items, admin_text = await _inbox(node, adele, "/groups/collectif")
    assert forged["id"] not in admin_text and intrusion["id"] not in admin_text
    assert "alert(1)" not in admin_text

    # The author deletes it: the inbox lists the Delete, and the Create no longer serves its content.
    deletion = activity("Delete", world.alice, letter["id"], to=[zoe_iri])
    assert (await world.send("/users/zoe/inbox", deletion, world.alice)).status == 202
    await processed(node, deletion["id"])
    items, text = await _inbox(node, zoe, "/users/zoe")
    assert items[0]["id"] == deletion["id"] and "Bonjour" not in text
    assert next(i for i in items if i["id"] == accepted["id"])["object"]["type"] == "Tombstone"
    assert admin_items == [] or all(i["id"] != forged["id"] for i in admin_items)


async def test_sec_68_a_relay_never_shows_what_its_reader_may_not_read(world: World) -> None:
    """Case 68: alice (followed by zoe) publicly relays bob's followers-only note. zoe's C2S inbox
    lists the Announce with the note as a bare IRI (it embedded the note whole), and her
    timeline leaves it out: a relay never widens who reads an object."""
    node = world.node
    await node.add_member("zoe", "collectif")
    zoe_token = await node.token("zoe", "read")
    alice = await node.fed.actor(world.alice.iri)
    now = utc_now()
    async with node.sessions.begin() as session:
        zoe = await session.scalar(select(Actor.id).where(Actor.iri == node.uris.iri("/users/zoe")))
        session.add(
            Follow(follower_id=zoe, followed_id=alice.id, state="accepted", created_at=now, accepted_at=now)
        )
    secret = note(world.bob, to=[f"{world.bob.iri}/followers"], content="<p>Réservé aux abonnés</p>")
    world.peers.serve_json(secret["id"], {"@context": "https://www.w3.org/ns/activitystreams", **secret})
    boost = activity(
        "Announce", world.alice, secret["id"], to=[AS_PUBLIC], cc=[f"{world.alice.iri}/followers"]
    )
    assert (await world.send("/inbox", boost, world.alice)).status == 202
    assert await processed(node, boost["id"]) == "processed"
    items, text = await _inbox(node, zoe_token, "/users/zoe")
    assert [(i["id"], i["object"]) for i in items] == [(boost["id"], secret["id"])]
    assert "abonnés" not in text
    response = await node.client.get("/api/timeline", headers={"Authorization": f"Bearer {zoe_token}"})
    assert response.status == 200 and "abonnés" not in await response.text()
