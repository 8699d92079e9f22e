"""Served activities carry their object as held now (issue 13), and a signed object stays whole."""

from __future__ import annotations

from sqlalchemy import select

from federation.types import utc_now
from server.db.models import Actor, RemoteObject
from server.services.content.current import current_documents
from tests.support.nodes import Node

CONTEXT = ["https://www.w3.org/ns/activitystreams", {"endorsement": "https://example.org/ns#endorsement"}]


async def test_embedded_objects_are_served_as_stored_and_signed_ones_whole(node: Node) -> None:
    group_iri = await node.create_association("demo")
    now = utc_now()
    plain, signed = node.uris.object("a" * 32), node.uris.object("b" * 32)
    proof = {"type": "DataIntegrityProof", "proofValue": "z123"}
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        for iri, document in (
            (plain, {"@context": CONTEXT, "id": plain, "type": "Note", "content": "v2"}),
            (signed, {"@context": CONTEXT, "id": signed, "type": "Note", "proof": proof}),
        ):
            session.add(
                RemoteObject(
                    iri=iri,
                    local=True,
                    type="Note",
                    attributed_to_id=group.id,
                    visibility="public",
                    document=document,
                    published=now,
                    received_at=now,
                )
            )
    first = {"id": "x:1", "type": "Create", "actor": group_iri, "object": {"id": plain, "content": "v1"}}
    relayed = {"id": "x:2", "type": "Announce", "actor": group_iri, "object": {**first, "id": "x:3"}}
    endorsed = {"id": "x:4", "type": "Create", "actor": group_iri, "object": {"id": signed}}
    async with node.sessions() as session:
        served = await current_documents(session, [first, relayed, endorsed, {"id": "x:5", "object": "iri"}])
    assert served[0]["object"] == {"id": plain, "type": "Note", "content": "v2"}
    assert served[1]["object"]["object"] == {"id": plain, "type": "Note", "content": "v2"}
    assert served[2]["object"] == {"@context": CONTEXT, "id": signed, "type": "Note", "proof": proof}
    assert served[3] == {"id": "x:5", "object": "iri"}
