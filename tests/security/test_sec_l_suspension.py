"""Security cases 88 and 89 (issue 17, suspended members; decision 76).

88: a suspension holds on every channel, not only the one a moderator thinks of. A suspended member
edits nothing in the association (the JSON API's ``PATCH``, the C2S ``Update``), replies in none of
its threads through the C2S outbox, and a suspended admin relays (``Announce``) nothing in its name;
each is refused with 403 ``member_suspended`` and nothing is stored or queued. Elsewhere the member
acts as before, and reads the association's members-only content as a member. A member on another
node, suspended, posts nothing into the association through our inbox until it is lifted.

89: a suspension is a moderator's act on someone else's membership, within their rights: a
moderator never suspends an admin, nobody suspends (or lifts) themselves, a suspended moderator
neither suspends, lifts (their own suspension included) nor answers requests to join, and nobody
outside the association's admins and moderators (a member, another association's admin, a read-only
token) suspends anyone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from server.db.models import Actor
from server.services.membership import suspension
from tests.server.test_api import Api, _alert, _people
from tests.support.nodes import Node
from tests.support.signed_inbox import processed
from tests.support.world import GROUP_INBOX, World, activity, create, note, object_row

SUSPENSION = "/api/associations/demo/members/suspension"


async def _outbox(node: Node, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await node.client.post(
        f"{path}/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json(content_type=None)


async def test_sec_88_a_suspended_member_acts_in_the_association_through_no_channel(node: Node) -> None:
    api, t = Api(node), await _people(node)
    await node.add_member("ann", "demo", role="admin")
    ann = await node.token("ann")
    demo = node.uris.group("demo")
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    status, own = await _outbox(
        node, "/users/mia", t["mia"], {"type": "Note", "content": "<p>Avant</p>", "audience": demo}
    )
    assert status == 201, own
    for member in ("mia", "alice"):
        body = {"member": node.uris.person(member)}
        assert (await api.call("POST", SUSPENSION, token=ann, body=body))[0] == 200
    before = await node.row_counts()
    edit = {"content": "<p>Après</p>"}
    status, answer, _ = await api.call(
        "PATCH", "/api/objects", token=t["mia"], params={"iri": own["object"]}, body=edit
    )
    refusals = [(status, answer)]
    for path, token, body in (
        ("/users/mia", t["mia"], {"type": "Update", "object": {"id": own["object"], "type": "Note", **edit}}),
        ("/users/mia", t["mia"], {"type": "Note", "content": "<p>Non</p>", "inReplyTo": alert["id"]}),
        ("/groups/demo", t["alice"], {"type": "Announce", "object": alert["id"]}),
    ):
        refusals.append(await _outbox(node, path, token, body))
    for status, answer in refusals:
        assert (status, answer.get("code")) == (403, "member_suspended"), answer
    assert await node.row_counts() == before
    # she still reads as a member, and acts in another association as before
    assert (await api.get(own["object"], token=t["mia"]))[0] == 200
    await node.add_member("mia", "other")
    elsewhere = await api.create("other", "alerts", t["olga"], _alert())
    reply = {"type": "Note", "content": "<p>Oui</p>", "inReplyTo": elsewhere["id"]}
    status, _ = await _outbox(node, "/users/mia", t["mia"], reply)
    assert status == 201


async def test_sec_89_only_the_associations_managers_suspend_others_within_their_rights(node: Node) -> None:
    api, t = Api(node), await _people(node)
    mia, mo, alice = (node.uris.person(n) for n in ("mia", "mo", "alice"))
    for token, body, expected in (
        (t["mo"], {"member": alice}, 403),  # a moderator, an admin
        (t["alice"], {"member": alice}, 400),  # oneself
        (t["mia"], {"member": mo}, 403),  # a plain member
        (t["olga"], {"member": mia}, 403),  # another association's admin
        (t["alice_read"], {"member": mia}, 403),  # a read-only token
    ):
        status, answer, _ = await api.call("POST", SUSPENSION, token=token, body=body)
        assert status == expected, (body, answer)
    # a suspended moderator suspends, lifts and answers nothing, their own suspension included
    status, _, _ = await api.call("POST", SUSPENSION, token=t["alice"], body={"member": mo})
    assert status == 200
    for method, params, body in (
        ("POST", None, {"member": mia}),
        ("DELETE", {"member": mo}, None),
    ):
        status, answer, _ = await api.call(method, SUSPENSION, token=t["mo"], params=params, body=body)
        assert (status, answer["code"]) == (403, "member_suspended"), answer
    await node.configure("demo", join_policy="approval")
    asked = {"association": node.uris.group("demo")}
    assert (await api.call("POST", "/api/memberships", token=t["zed"], body=asked))[0] == 202
    decision = {"member": node.uris.person("zed"), "decision": "approve"}
    status, answer, _ = await api.call("POST", "/api/associations/demo/members", token=t["mo"], body=decision)
    assert (status, answer["code"]) == (403, "member_suspended")
    status, _, _ = await api.call("DELETE", SUSPENSION, token=t["alice"], params={"member": mo})
    assert status == 200


async def test_sec_88_a_suspended_peer_member_posts_nothing_into_the_association(world: World) -> None:
    async with world.node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy="open"))
    join = activity("Join", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, join, world.alice)).status == 202
    assert await processed(world.node, join["id"]) == "processed"
    await world.node.add_member("adele", "collectif", role="admin")
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        adele = await session.scalar(select(Actor).where(Actor.handle == "adele", Actor.local.is_(True)))
    assert group is not None and adele is not None
    await suspension.suspend(world.node.fed, group, world.alice.iri, by=adele)
    post = note(world.alice, to=[f"{world.group}/members"], cc=[world.group], audience=world.group)
    sent = create(world.alice, post)
    assert (await world.send(GROUP_INBOX, sent, world.alice)).status == 202
    await processed(world.node, sent["id"])
    assert await object_row(world.node, post["id"]) is None
    # lifted, the same member posts into it again
    await suspension.unsuspend(world.node.fed, group, world.alice.iri, by=adele)
    again = note(world.alice, to=[f"{world.group}/members"], cc=[world.group], audience=world.group)
    sent = create(world.alice, again)
    assert (await world.send(GROUP_INBOX, sent, world.alice)).status == 202
    assert await processed(world.node, sent["id"]) == "processed"
    assert await object_row(world.node, again["id"]) is not None
