"""What we publish for each content kind validates against its strict schema in ``schemas/entraide``.

The documents come from the real publishing path (C2S outbox of a running node), both as
stored/served and as embedded in the ``Create``/``Update`` activities that peers receive.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from federation import validation
from federation.errors import InvalidDocument
from federation.types import AS_PUBLIC
from server.db.models import Activity, RemoteObject
from tests.support.nodes import Node

AP = "application/activity+json"


async def _published(
    node: Node, token: str, actor: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    created = await node.post_outbox(actor, token, body)
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == created["object"]))
        activity = await session.scalar(select(Activity).where(Activity.iri == created["id"]))
    assert row is not None and activity is not None
    served = await node.client.get(created["object"].removeprefix(node.uris.origin), headers={"Accept": AP})
    assert served.status == 200
    return await served.json(content_type=None), activity.document["object"]


async def test_each_kind_validates_against_its_strict_schema(node: Node) -> None:
    await node.create_association("alpha", "Alpha")
    await node.create_association("beta", "Beta")
    await node.add_member("alice", "alpha", role="admin")
    await node.add_member("bob", "beta", role="admin")
    alice, bob = await node.token("alice"), await node.token("bob")
    alert = {
        "to": [AS_PUBLIC],
        "type": "Note",
        "entraideKind": "Alert",
        "name": "Rupture",
        "content": "<p>Texte</p>",
        "severity": "warning",
        "category": "access-to-care",
        "area": "Bretagne",
        "areaCode": "FR-BRE",
        "validUntil": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "language": "fr",
    }
    resource = {
        "to": [AS_PUBLIC],
        "type": "Article",
        "name": "Guide",
        "summary": "<p>Résumé</p>",
        "content": "<p>Corps</p>",
        "license": "https://creativecommons.org/licenses/by/4.0/",
        "tag": ["guide"],
    }
    proposal = {
        "to": [AS_PUBLIC],
        "type": "Question",
        "name": "Position",
        "content": "<p>Texte</p>",
        "anyOf": ["A", "B", "C"],
    }
    for body, schema in (
        (alert, "entraide/alert"),
        (resource, "entraide/resource"),
        (proposal, "entraide/proposal"),
    ):
        served, embedded = await _published(node, alice, "/groups/alpha", body)
        validation.validate(served, schema)
        validation.validate({"@context": served["@context"], **embedded}, schema)
        if schema == "entraide/proposal":
            endorsement = await node.post_outbox(
                "/groups/beta", bob, {"type": "Endorsement", "object": served["id"]}
            )
            response = await node.client.get(
                endorsement["object"].removeprefix(node.uris.origin), headers={"Accept": AP}
            )
            validation.validate(await response.json(content_type=None), "entraide/endorsement")


@pytest.mark.parametrize(
    ("schema", "change"),
    [
        ("entraide/alert", {"severity": "apocalyptic"}),
        ("entraide/alert", {"summary": "a content warning would hide the headline"}),
        ("entraide/proposal", {"eligibility": "everybody"}),
        ("entraide/resource", {"entraideKind": "Alert"}),
    ],
)
async def test_the_strict_schemas_refuse_what_we_never_publish(
    node: Node, schema: str, change: dict[str, Any]
) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    bodies = {
        "entraide/alert": {
            "to": [AS_PUBLIC],
            "type": "Note",
            "entraideKind": "Alert",
            "name": "x",
            "content": "y",
            "severity": "info",
            "category": "safety",
        },
        "entraide/proposal": {"to": [AS_PUBLIC], "type": "Question", "name": "x", "oneOf": ["a", "b"]},
        "entraide/resource": {"to": [AS_PUBLIC], "type": "Article", "name": "x", "content": "y"},
    }
    served, _ = await _published(node, await node.token("alice"), "/groups/alpha", bodies[schema])
    validation.validate(served, schema)
    with pytest.raises(InvalidDocument):
        validation.validate({**served, **change}, schema)
