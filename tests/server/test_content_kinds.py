"""The content kinds' registry: every kind follows its rules, and a client's object gets the kind
it asks for (``entraideKind``) or has the shape of, checked before anything is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from sqlalchemy import select

from federation import uris
from federation.vocab import entraide as wire
from federation.vocab.entraide import Kind
from server.db.models import Actor, Job, RemoteObject
from server.services.content import kinds
from server.services.content.kinds.base import ContentKind
from server.services.content.kinds.proposal import POLL_CLOSE
from server.services.errors import Forbidden, InvalidInput
from tests.support.nodes import Node

ASSOCIATION = Actor(type="Group", iri="https://example.test/groups/alpha")
PERSON = Actor(type="Person", iri="https://example.test/users/mia")


def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((resources.files("schemas") / "openapi.json").read_text())
    return document


def test_every_kind_has_a_distinct_kind_and_types() -> None:
    registered = list(kinds.registered())
    assert len({k.kind for k in registered}) == len(registered)
    assert all(k.types for k in registered)
    assert {Kind.POST, Kind.REPLY, Kind.RESOURCE, Kind.ALERT, Kind.PROPOSAL} <= {k.kind for k in registered}


def test_every_wire_term_is_one_the_protocol_library_reads_back_as_the_same_kind() -> None:
    for kind in kinds.registered():
        if kind.wire_term is not None:
            assert wire.WIRE_KINDS[kind.wire_term] is kind.kind


def test_every_feed_path_is_a_feed_of_the_uri_scheme_and_every_listed_kind_is_in_the_main_feed() -> None:
    from server.services.reading import feeds

    for kind in kinds.registered():
        if kind.feed_path is not None:
            assert kind.listed and kind.feed_path in uris.FEED_KINDS
            assert feeds.OBJECT_KINDS[kind.feed_path] == (kind.kind.value,)
    assert set(feeds.OBJECT_KINDS[None]) == {k.kind.value for k in kinds.listed()}
    assert Kind.REPLY.value not in feeds.OBJECT_KINDS[None]


def test_every_api_collection_is_declared_in_the_openapi_document_with_its_request_schema() -> None:
    paths, schemas = _openapi()["paths"], _openapi()["components"]["schemas"]
    for kind in kinds.registered():
        if kind.api_path is None:
            continue
        post = paths[f"/api/associations/{{slug}}/{kind.api_path}"]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(kind.api_schema)
        assert kind.api_schema in schemas


def test_a_kind_is_registered_once_and_its_wire_term_names_no_other() -> None:
    with pytest.raises(ValueError, match="twice"):
        kinds.register(kinds.get("alert"))  # type: ignore[arg-type]

    class Another(ContentKind):
        kind = Kind.VOTE
        types = ("Note",)
        wire_term = "Alert"

    with pytest.raises(ValueError, match="two kinds"):
        kinds.register(Another())


@pytest.mark.parametrize(
    ("obj", "author", "expected"),
    [
        ({"type": "Note", "content": "x"}, PERSON, Kind.POST),
        ({"content": "x"}, PERSON, Kind.POST),
        ({"type": "Article", "content": "x"}, PERSON, Kind.POST),
        ({"type": "Article", "content": "x"}, ASSOCIATION, Kind.RESOURCE),
        ({"type": "Question", "name": "?"}, PERSON, Kind.PROPOSAL),
        ({"type": "Question", "name": "?", "inReplyTo": "https://a.test/o/1"}, PERSON, Kind.PROPOSAL),
        ({"type": "Note", "inReplyTo": "https://a.test/o/1"}, PERSON, Kind.REPLY),
        ({"type": "Article", "inReplyTo": "https://a.test/o/1"}, ASSOCIATION, Kind.REPLY),
        ({"type": "Note", "entraideKind": "Alert"}, ASSOCIATION, Kind.ALERT),
        ({"type": "Article", "entraideKind": "Resource"}, ASSOCIATION, Kind.RESOURCE),
        ({"entraideKind": "Proposal"}, PERSON, Kind.PROPOSAL),
    ],
)
def test_a_client_object_gets_the_kind_it_asks_for_or_has_the_shape_of(
    obj: dict[str, Any], author: Actor, expected: Kind
) -> None:
    assert kinds.requested(obj, author).kind is expected


@pytest.mark.parametrize(
    ("obj", "author", "error", "field"),
    [
        ({"type": "Note", "entraideKind": "Petition"}, ASSOCIATION, InvalidInput, "entraideKind"),
        ({"type": "Note", "entraideKind": ["Alert"]}, ASSOCIATION, InvalidInput, "entraideKind"),
        ({"type": "Article", "entraideKind": "Alert"}, ASSOCIATION, InvalidInput, "type"),
        ({"type": "Note", "entraideKind": "Proposal"}, PERSON, InvalidInput, "type"),
        ({"type": "Note", "entraideKind": "Alert"}, PERSON, Forbidden, None),
        ({"type": "Article", "entraideKind": "Resource"}, PERSON, Forbidden, None),
    ],
)
def test_a_kind_asked_for_wrongly_is_refused_naming_the_field(
    obj: dict[str, Any], author: Actor, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as raised:
        kinds.requested(obj, author)
    if field is not None:
        assert isinstance(raised.value, InvalidInput) and raised.value.context["field"] == field


def test_votes_and_endorsements_are_no_kind_a_client_publishes_through_the_pipeline() -> None:
    assert kinds.get(Kind.VOTE.value) is None and kinds.get(Kind.ENDORSEMENT.value) is None
    assert kinds.get("no-such-kind") is None
    assert kinds.by_kind(Kind.VOTE.value) is kinds.DEFAULT


@pytest.mark.parametrize(
    ("kind", "field", "applies"),
    [
        ("resource", "license", True),
        ("post", "license", False),
        ("alert", "severity", True),
        ("proposal", "severity", False),
        ("alert", "summary", False),
        ("post", "summary", True),
        ("vote", "license", False),
    ],
)
def test_a_field_of_another_kind_is_refused_naming_it(kind: str, field: str, applies: bool) -> None:
    from server.services.content import local

    if applies:
        local.check_fields_apply(kind, {field: "x"})
        return
    with pytest.raises(InvalidInput) as raised:
        local.check_fields_apply(kind, {field: "x"})
    assert raised.value.context["field"] == field


def test_each_kind_says_its_status_in_one_word() -> None:
    from server.services.content import local

    now = datetime(2026, 3, 1, tzinfo=UTC)
    before, after = wire.iso(now - timedelta(days=1)), wire.iso(now + timedelta(days=1))

    def status(kind: str, document: dict[str, Any], deleted: bool = False) -> str:
        row = RemoteObject(kind=kind, document=document, deleted_at=now if deleted else None)
        return local.status_of(row, now)

    assert status("post", {}) == "published"
    assert status("post", {}, deleted=True) == "deleted"
    assert status("alert", {"alertStatus": "active", "validUntil": after}) == "active"
    assert status("alert", {"alertStatus": "active", "validUntil": before}) == "expired"
    assert status("alert", {"alertStatus": "retracted", "validUntil": before}) == "retracted"
    assert status("proposal", {"endTime": after}) == "open"
    assert status("proposal", {"endTime": before}) == "closed"
    assert status("proposal", {"endTime": after, "proposalStatus": "closed"}) == "closed"


async def test_a_kinds_hooks_commit_with_its_create(node: Node) -> None:
    # Given an association's admin
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    token = await node.token("alice")
    # When it publishes a proposal, then an alert, then the alert's successor
    end = datetime.now(UTC) + timedelta(days=3)
    proposal = await node.post_outbox(
        "/groups/alpha",
        token,
        {"type": "Question", "name": "Q ?", "oneOf": ["a", "b"], "endTime": end.isoformat()},
    )
    alert = {
        "type": "Note",
        "entraideKind": "Alert",
        "name": "Rupture",
        "severity": "warning",
        "category": "shortage",
    }
    first = await node.post_outbox("/groups/alpha", token, {**alert, "content": "<p>x</p>"})
    second = await node.post_outbox(
        "/groups/alpha", token, {**alert, "content": "<p>y</p>", "supersedes": first["object"]}
    )
    # Then the proposal's closing job is queued for its end, and the first alert is superseded by the second
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == proposal["object"]))
    job = await node.scalar(select(Job).where(Job.kind == POLL_CLOSE))
    assert job.payload == {"object_id": row.id}
    assert job.run_at == wire.parse_time(row.document["endTime"])
    old = await node.scalar(select(RemoteObject).where(RemoteObject.iri == first["object"]))
    assert old.document["alertStatus"] == "superseded"
    assert old.document["supersededBy"] == second["object"]
