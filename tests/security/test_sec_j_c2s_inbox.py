"""Case 50 (issue 12, finding 3): the C2S inbox lists only what processing accepted, rendered from
what we stored (sanitised, current), never the raw body a peer sent."""

from __future__ import annotations

from typing import Any

import orjson

from federation.types import AS_PUBLIC
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
