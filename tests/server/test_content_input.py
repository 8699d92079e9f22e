"""Bad content through the C2S outbox: 400 problem+json naming the field, nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.types import AS_PUBLIC
from tests.support.nodes import Node

ALERT = {
    "to": [AS_PUBLIC],
    "type": "Note",
    "entraideKind": "Alert",
    "name": "Titre",
    "content": "<p>x</p>",
    "severity": "info",
    "category": "safety",
}
PROPOSAL = {"to": [AS_PUBLIC], "type": "Question", "name": "Titre", "oneOf": ["a", "b"]}
RESOURCE = {"to": [AS_PUBLIC], "type": "Article", "name": "Titre", "content": "<p>x</p>"}
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no severity", {**ALERT, "severity": None}, "severity"),
    ("unknown severity", {**ALERT, "severity": "apocalyptic"}, "severity"),
    ("unknown category", {**ALERT, "category": "weather"}, "category"),
    ("bad area code", {**ALERT, "areaCode": "France"}, "areaCode"),
    ("naive validUntil", {**ALERT, "validUntil": "2030-01-01T00:00:00"}, "validUntil"),
    ("alert without headline", {**ALERT, "name": None}, "name"),
    ("superseding a stranger", {**ALERT, "supersedes": "http://127.0.0.1:1/objects/x"}, "supersedes"),
    ("unknown kind", {**ALERT, "entraideKind": "Petition"}, "entraideKind"),
    ("alert as an Article", {**ALERT, "type": "Article"}, "type"),
    ("one option", {**PROPOSAL, "oneOf": ["a"]}, "oneOf"),
    ("duplicate options", {**PROPOSAL, "oneOf": ["a", "a"]}, "oneOf"),
    ("both option lists", {**PROPOSAL, "anyOf": ["c", "d"]}, "oneOf"),
    ("end in the past", {**PROPOSAL, "endTime": PAST}, "endTime"),
    ("unknown eligibility", {**PROPOSAL, "eligibility": "everybody"}, "eligibility"),
    ("oversized content", {**RESOURCE, "content": "x" * 100_001}, "content"),
    ("oversized name", {**RESOURCE, "name": "x" * 501}, "name"),
    ("content not a string", {**RESOURCE, "content": ["x"]}, "content"),
    ("licence not an IRI", {**RESOURCE, "license": "CC-BY"}, "license"),
    ("bad language", {**RESOURCE, "language": "fr_FR!"}, "language"),
    ("too many tags", {**RESOURCE, "tag": [f"t{i}" for i in range(21)]}, "tag"),
    ("unknown attachment", {**RESOURCE, "attachment": ["0" * 32]}, "attachment"),
    ("unknown visibility", {**RESOURCE, "visibility": "friends"}, "visibility"),
    (
        "reply to nothing here",
        {"to": [AS_PUBLIC], "type": "Note", "content": "x", "inReplyTo": "http://127.0.0.1:1/objects/none"},
        "inReplyTo",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), CASES, ids=[c[0] for c in CASES])
async def test_bad_content_is_refused_naming_the_field_and_nothing_is_stored(
    node: Node, case: str, body: dict[str, Any], field: str
) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    token = await node.token("alice")
    if case == "reply to nothing here":
        body = {**body, "inReplyTo": f"{node.uris.origin}/objects/{'0' * 32}"}
    before = await node.row_counts()
    response = await node.client.post(
        "/groups/alpha/outbox",
        json={k: v for k, v in body.items() if v is not None},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 400, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["field"] == field, problem
    assert await node.row_counts() == before


async def test_only_associations_publish_alerts_and_resources(node: Node) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("mia", "alpha", role="member")
    token = await node.token("mia")
    before = await node.row_counts()
    for body in (ALERT, {**RESOURCE, "entraideKind": "Resource"}):
        response = await node.client.post(
            "/users/mia/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 403
    assert await node.row_counts() == before


async def test_nul_characters_are_refused_before_anything_is_stored(node: Node) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    token = await node.token("alice")
    before = await node.row_counts()
    for body in (
        {**RESOURCE, "content": "a\x00b"},
        {"to": [AS_PUBLIC], "type": "Note", "content": "x", "inReplyTo": f"{node.uris.origin}/objects/\x00"},
        {"to": [AS_PUBLIC], "type": "Note", "content": "x", "tag": ["\x00"]},
    ):
        response = await node.client.post(
            "/groups/alpha/outbox", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 400, await response.text()
    assert await node.row_counts() == before


async def test_members_only_content_gets_no_public_reply_and_no_vote_from_non_members(node: Node) -> None:
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    await node.add_member("mia", "alpha", role="member")
    await node.create_association("beta", "Beta")
    await node.add_member("olga", "beta", role="member")  # not a member of alpha
    alice, mia, olga = await node.token("alice"), await node.token("mia"), await node.token("olga")
    internal = (
        await node.post_outbox(
            "/groups/alpha",
            alice,
            {
                "type": "Question",
                "name": "Interne",
                "oneOf": ["a", "b"],
                "eligibility": "anyone",
                "visibility": "members",
            },
        )
    )["object"]
    before = await node.row_counts()
    public_reply = await node.client.post(
        "/users/mia/outbox",
        json={"to": [AS_PUBLIC], "type": "Note", "content": "<p>fuite</p>", "inReplyTo": internal},
        headers={"Authorization": f"Bearer {mia}"},
    )
    assert public_reply.status == 400 and (await public_reply.json())["field"] == "visibility"
    stranger_vote = await node.client.post(
        "/users/olga/outbox",
        json={"type": "Note", "name": "a", "inReplyTo": internal},
        headers={"Authorization": f"Bearer {olga}"},
    )
    assert stranger_vote.status == 400  # exactly as for a missing question (security case 54)
    assert await node.row_counts() == before
    # a member votes
    await node.post_outbox("/users/mia", mia, {"type": "Note", "name": "a", "inReplyTo": internal})
