"""Members' drafts through the JSON API, on both engines: a member submits, lists their own, and
cannot decide; the association's admins and moderators list every pending draft and publish or
refuse it; bad input is a problem naming the field with nothing stored; and before publication a
draft is in no listing, outbox or delivery (security case 81)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.db.models import Activity, Draft, RemoteObject
from tests.support.nodes import Node

ALERT = {
    "kind": "alert",
    "name": "Pénurie",
    "content": "Plus de masques.",
    "severity": "warning",
    "category": "shortage",
}


async def _call(node: Node, method: str, path: str, token: str | None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await node.client.request(method, path, json=body, headers=headers)
    return response.status, await response.json(content_type=None)


async def test_a_draft_goes_from_a_member_to_an_editor_through_the_api(node: Node) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    await node.add_member("paul", "alpha")
    await node.add_member("zoe", "alpha")
    await node.create_association("beta")
    await node.add_member("bea", "beta", role="admin")
    alice, paul, zoe, bea = [await node.token(u) for u in ("alice", "paul", "zoe", "bea")]
    base = "/api/associations/alpha/drafts"

    status, created = await _call(node, "POST", base, paul, ALERT)
    assert status == 201 and created["state"] == "pending" and created["fields"]["name"] == "Pénurie"
    status, _ = await _call(node, "POST", base, None, ALERT)
    assert status == 401
    status, _ = await _call(node, "POST", base, bea, ALERT)  # not a member of alpha
    assert status == 403

    # Bad input: a problem naming the field; nothing stored.
    before = await node.row_counts()
    for body, field in (
        ({**ALERT, "severity": "huge"}, "severity"),
        ({**ALERT, "kind": "resource"}, "category"),  # an alert's field on a resource
        ({"kind": "proposal", "name": "Q", "oneOf": ["seule"]}, "oneOf"),
        ({**ALERT, "areaCode": "Lyon"}, "areaCode"),
    ):
        status, problem = await _call(node, "POST", base, paul, body)
        assert status == 400 and problem.get("field") == field, (body, problem)
    assert await node.row_counts() == before

    # Before publication: the author sees it, another member and the public listings do not.
    assert [d["id"] for d in (await _call(node, "GET", base, paul))[1]["items"]] == [created["id"]]
    assert (await _call(node, "GET", base, zoe))[1]["items"] == []
    alerts = (await _call(node, "GET", "/api/associations/alpha/alerts", alice))[1]["items"]
    assert alerts == []
    assert await node.scalar(select(Activity.id)) is None
    assert await node.scalar(select(RemoteObject.id).where(RemoteObject.kind == "alert")) is None

    # Only an editor decides.
    one = f"{base}/{created['id']}"
    assert (await _call(node, "POST", one + "/publish", paul))[0] == 403
    assert (await _call(node, "POST", one + "/refuse", zoe, {}))[0] == 403
    assert (await _call(node, "POST", f"/api/associations/beta/drafts/{created['id']}/publish", bea))[
        0
    ] == 404
    status, listing = await _call(node, "GET", base, alice)
    assert status == 200 and [d["id"] for d in listing["items"]] == [created["id"]]
    status, published = await _call(node, "POST", one + "/publish", alice)
    assert status == 201
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == published["id"]))
    assert row is not None and row.kind == "alert" and row.document["name"] == "Pénurie"
    assert (await _call(node, "POST", one + "/publish", alice))[0] == 409
    status, done = await _call(node, "GET", base + "?state=published", paul)
    assert done["items"][0]["object"] == published["id"]

    # Refusal, with a reason the author reads.
    _, second = await _call(node, "POST", base, paul, {**ALERT, "name": "Doublon"})
    status, _ = await _call(node, "POST", f"{base}/{second['id']}/refuse", alice, {"reason": "Déjà publié"})
    assert status == 200
    _, refused = await _call(node, "GET", base + "?state=refused", paul)
    assert refused["items"][0]["reason"] == "Déjà publié"
    async with node.sessions() as session:
        states = sorted((await session.scalars(select(Draft.state))).all())
    assert states == ["published", "refused"]
