"""C2S outbox addressing (ActivityPub §6): bto/bcc, merged recipients, audience lists, partial Update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, utc_now
from server.db.models import Activity, Actor, Delivery, Job, RemoteObject
from server.services import delivery
from tests.support.nodes import Node, running_node

AP = {"Accept": "application/activity+json"}


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: the fan-out is run by the test, so nothing leaves 127.0.0.1."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _remote(node: Node, name: str) -> str:
    iri = f"https://peer.example/users/{name}"
    now = utc_now()
    async with node.sessions.begin() as session:
        session.add(
            Actor(
                iri=iri,
                local=False,
                type="Person",
                handle=name,
                host="peer.example",
                inbox_iri=f"{iri}/inbox",
                created_at=now,
                updated_at=now,
            )
        )
    return iri


async def _alice(node: Node) -> str:
    await node.create_association("demo")
    await node.add_member("alice", "demo")
    return await node.token("alice")


async def _stored(node: Node, object_iri: str) -> tuple[RemoteObject, Activity]:
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
    activity = await node.scalar(select(Activity).where(Activity.object_iri == object_iri))
    return row, activity


async def test_bto_and_bcc_are_delivered_but_never_stored_served_or_public(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    bob, carol = await _remote(node, "bob"), await _remote(node, "carol")
    created = await node.post_outbox(
        "/users/alice",
        token,
        {"type": "Create", "bcc": [bob], "object": {"type": "Note", "content": "secret", "bto": carol}},
    )
    row, activity = await _stored(node, created["object"])
    assert row.visibility == "direct"  # not public: the only recipients were blind
    for document in (row.document, activity.document):
        text = orjson.dumps(document).decode()
        assert "bto" not in text and "bcc" not in text and bob not in text and carol not in text
        assert AS_PUBLIC not in text
    path = urlsplit(created["object"]).path
    assert (await node.client.get(path, headers=AP)).status == 404
    job = await node.scalar(select(Job).where(Job.kind == delivery.FANOUT))
    assert job.payload["also"] == [carol, bob]
    await delivery.fanout(node.fed.node, activity.id, also=job.payload["also"])
    async with node.sessions() as session:
        inboxes = set(await session.scalars(select(Delivery.inbox_iri)))
    assert inboxes == {f"{bob}/inbox", f"{carol}/inbox"}


async def test_create_unites_the_recipients_of_the_activity_and_its_object(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    dave, erin = await _remote(node, "dave"), await _remote(node, "erin")
    created = await node.post_outbox(
        "/users/alice",
        token,
        {
            "type": "Create",
            "to": [AS_PUBLIC],
            "cc": [dave],
            "object": {"type": "Note", "content": "hello", "to": [erin], "cc": [dave]},
        },
    )
    row, activity = await _stored(node, created["object"])
    assert row.visibility == "public"
    assert row.document["to"] == [erin, AS_PUBLIC]
    assert row.document["cc"] == [dave]
    assert activity.document["to"] == row.document["to"]


async def test_audience_as_a_list_keeps_the_association_and_addresses_the_rest(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    dave = await _remote(node, "dave")
    group = node.uris.group("demo")
    created = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "into demo", "audience": [group, dave]}
    )
    row, _ = await _stored(node, created["object"])
    assert row.document["audience"] == group
    assert row.audience_id is not None
    assert dave in row.document["cc"] and group in row.document["cc"]
    # A value that names no association here is ordinary addressing, not a 400.
    other = await node.post_outbox(
        "/users/alice", token, {"type": "Note", "content": "to dave", "to": [dave], "audience": [dave]}
    )
    row, _ = await _stored(node, other["object"])
    assert row.visibility == "direct" and "audience" not in row.document


async def _update(node: Node, token: str, obj: dict[str, Any]) -> Any:
    return await node.client.post(
        "/users/alice/outbox",
        json={"type": "Update", "object": obj},
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_partial_update_with_null_removes_the_property(quiet_node: Node) -> None:
    node = quiet_node
    token = await _alice(node)
    created = await node.post_outbox(
        "/users/alice",
        token,
        {"type": "Article", "name": "Titre", "summary": "Résumé", "content": "<p>Texte</p>"},
    )
    iri = created["object"]
    response = await _update(node, token, {"id": iri, "name": None, "summary": None})
    assert response.status == 201, await response.text()
    row, _ = await _stored(node, iri)
    assert "name" not in row.document and "summary" not in row.document
    assert row.document["content"] == "<p>Texte</p>"
    refused = await _update(node, token, {"id": iri, "content": None})
    assert refused.status == 400
    assert (await refused.json())["field"] == "content"
