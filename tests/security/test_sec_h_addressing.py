"""Addressing chosen by a client is never widened: direct names only the actors it names."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Activity, RemoteObject
from tests.support.nodes import Node


async def test_sec_55_direct_with_the_public_collection_in_to_stays_direct(node: Node) -> None:
    """Finding 8 of issue 12: a direct reply naming Public in ``to`` was delivered as public."""
    await node.create_association("demo")
    await node.add_member("alice", "demo", role="admin")
    bob = await node.add_member("bob", "demo")
    token = await node.token("alice")
    parent = await node.post_outbox(
        "/groups/demo", token, {"to": [AS_PUBLIC], "type": "Note", "content": "hi"}
    )
    headers = {"Authorization": f"Bearer {token}"}
    reply = await node.client.post(
        "/api/users/alice/replies",
        json={
            "inReplyTo": parent["object"],
            "content": "psst",
            "visibility": "direct",
            "to": [AS_PUBLIC, bob],
        },
        headers=headers,
    )
    assert reply.status == 201, await reply.text()
    direct = {"type": "Note", "content": "psst", "visibility": "direct", "to": [AS_PUBLIC, bob]}
    c2s = await node.post_outbox("/users/alice", token, direct)
    for created in ((await reply.json())["id"], c2s["object"]):
        row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == created))
        activity = await node.scalar(select(Activity).where(Activity.object_iri == created))
        assert row.visibility == "direct"
        for document in (row.document, activity.document, activity.document["object"]):
            assert AS_PUBLIC not in [*document["to"], *document["cc"]], document
            assert bob in document["to"]
        path = urlsplit(created).path
        assert (await node.client.get(path, headers={"Accept": "application/activity+json"})).status == 404
    alone = await node.client.post(
        "/users/alice/outbox",
        json={"type": "Note", "content": "x", "visibility": "direct", "to": ["as:Public"]},
        headers=headers,
    )
    assert alone.status == 400, await alone.text()
