"""JSON-LD pitfalls (security.md §C, cases 20-23).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`): the database is the oracle. Entraide follows model (a)
of case 21: documents are read as plain JSON, nothing is granted on a Linked Data signature, and
``@context`` documents are never fetched (``federation/jsonld.py``).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from federation.types import JsonObject
from tests.support.fake_peers import actor_document
from tests.support.signed_inbox import (
    AS_CONTEXT,
    AS_PUBLIC,
    RemoteAccount,
    changed,
    fixed_key,
    processed,
)
from tests.support.world import (
    GROUP_INBOX,
    HandlerSpy,
    World,
    activity,
    assert_refused,
    create,
    note,
    object_row,
)

SECURITY_V1 = "https://w3id.org/security/v1"
LD_SIGNATURE = {
    "type": "RsaSignature2017",
    "creator": "https://peer.example/users/alice#main-key",
    "created": "2025-03-01T12:00:00Z",
    "signatureValue": "c2lnbmF0dXJl",
}


async def _refused_before_any_lookup(world: World, doc: JsonObject, spy: HandlerSpy, shape: str = "") -> None:
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, doc, world.alice)
    assert (reply.status, reply.code) == (400, "invalid_document"), (shape, reply)
    assert reply.is_problem, shape
    assert changed(before, await world.counts()) == {}, shape
    assert world.peers.hits == [], shape
    assert spy.calls == [], shape


async def test_sec_20_restructured_json_ld_is_400(world: World, handler_spy: HandlerSpy) -> None:
    """A signed Undo{Announce} rearranged with @included/@reverse/@graph or an alias: 400, no lookup."""
    for shape in ("included", "reverse", "graph", "alias_of_included", "nested_included"):
        await _refused_before_any_lookup(world, _restructured(world, shape), handler_spy, shape)


def _restructured(world: World, shape: str) -> JsonObject:
    announce_id = world.alice.new_id()
    undo = {"id": world.alice.new_id(), "type": "Undo", "actor": world.alice.iri, "object": announce_id}
    base = activity("Announce", world.alice, world.alice.iri_on_host("/notes/1")) | {
        "@context": [AS_CONTEXT, SECURITY_V1],
        "id": announce_id,
        "signature": LD_SIGNATURE,
    }
    doc: JsonObject
    if shape == "included":
        doc = base | {"@included": [undo]}
    elif shape == "reverse":
        doc = base | {"@reverse": {"https://www.w3.org/ns/activitystreams#object": undo}}
    elif shape == "graph":
        top = {k: v for k, v in base.items() if k != "@context"}
        doc = {"@context": [AS_CONTEXT, SECURITY_V1], "@graph": [top, undo]}
    elif shape == "alias_of_included":
        doc = base | {"@context": [AS_CONTEXT, SECURITY_V1, {"also": "@included"}], "also": [undo]}
    else:
        inner = note(world.alice, to=[world.group]) | {"@included": [undo]}
        doc = create(world.alice, inner)
    return doc


def _follow_with_context(world: World, extra: Any) -> JsonObject:
    # The catalogue's exact shape: a JSON reader sees actor = alice, an LD reader sees the swap.
    return activity("Follow", world.alice, world.mallory.iri) | {"@context": [AS_CONTEXT, SECURITY_V1, extra]}


CONTEXT_INJECTIONS: dict[str, Any] = {
    "swap_actor_and_object": {
        "actor": {"@id": "as:object", "@type": "@id"},
        "object": {"@id": "as:actor", "@type": "@id"},
    },
    "type_name_redefined": {"Follow": "as:Undo"},
    "keyword_alias": {"kind": "@type"},
    "second_name_for_actor": {"sender": {"@id": "as:actor", "@type": "@id"}},
    "actor_undefined": {"actor": None},
    "base_changed": {"@base": "https://evil.example/"},
}


async def test_sec_21_context_redefining_what_we_read_is_400(world: World, handler_spy: HandlerSpy) -> None:
    """An inline @context making the JSON and JSON-LD readings differ: 400, nothing looked up or stored."""
    for shape, extra in CONTEXT_INJECTIONS.items():
        await _refused_before_any_lookup(world, _follow_with_context(world, extra), handler_spy, shape)
    # An embedded object's own context may not redefine its authorship either
    inner = note(world.alice, to=[world.group]) | {
        "@context": {"attributedTo": {"@id": "as:audience", "@type": "@id"}},
    }
    await _refused_before_any_lookup(world, create(world.alice, inner), handler_spy, "embedded")


async def test_sec_21_restating_terms_with_their_own_meaning_is_accepted(world: World) -> None:
    """(control) Mastodon's context (toot: terms, restated alsoKnownAs and Public) is read as plain JSON."""
    mastodon = {
        "ostatus": "http://ostatus.org#",
        "toot": "http://joinmastodon.org/ns#",
        "sensitive": "as:sensitive",
        "Hashtag": "as:Hashtag",
        "Public": "as:Public",
        "alsoKnownAs": {"@id": "as:alsoKnownAs", "@type": "@id"},
        "atomUri": "ostatus:atomUri",
        "votersCount": "toot:votersCount",
    }
    obj = note(world.alice, to=[world.group], sensitive=False, atomUri="x")
    create_ = create(world.alice, obj) | {"@context": [AS_CONTEXT, SECURITY_V1, mastodon]}
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    assert await processed(world.node, create_["id"]) == "processed"
    assert await object_row(world.node, obj["id"]) is not None


async def test_sec_22_terms_outside_our_reading_grant_nothing(world: World, handler_spy: HandlerSpy) -> None:
    """Undefined or unsigned terms (votesFor, a "visibility" claim, an LD signature) decide nothing."""
    # Given a note addressed to the group only (not public), claiming to be public through terms, and
    # carrying an LD signature "by" someone else
    obj = note(world.alice, to=[world.group], votesFor="option-B", visibility="public", entraideKind="vote")
    create_ = create(world.alice, obj) | {"signature": LD_SIGNATURE}
    assert (await world.send(GROUP_INBOX, create_, world.alice)).status == 202
    assert await processed(world.node, create_["id"]) == "processed"
    # Then its audience comes from its addressing, and the bogus kind is not taken
    row = await object_row(world.node, obj["id"])
    assert row is not None
    assert row.visibility != "public" and row.kind == "post"
    # And an LD signature never stands in for the actor's HTTP signature
    forwarded = create(world.alice, note(world.alice, to=[world.group])) | {"signature": LD_SIGNATURE}
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, forwarded, world.bob)
    assert_refused(reply, 401, "key_owner_mismatch")
    assert changed(before, await world.counts()) == {}
    assert handler_spy.ran_for(forwarded["id"]) == []


@pytest.mark.parametrize("where", ["activity", "embedded_object", "fetched_actor"])
async def test_sec_23_remote_contexts_are_never_fetched(world: World, where: str) -> None:
    """Contexts on evil.example or a private address are never loaded; the document is read as plain JSON."""
    # Given a hostile context served on evil.example (it would swap actor and object)
    ctx = world.peers.iri("evil.example", f"/ctx?sleep=60&n={secrets.token_hex(3)}")
    world.peers.serve_json(
        ctx,
        {"@context": {"actor": {"@id": "as:object", "@type": "@id"}}},
        content_type="application/ld+json",
    )
    remote_contexts = [AS_CONTEXT, "http://169.254.169.254/latest/meta-data/", ctx]
    author = world.alice
    key = world.alice.key
    if where == "fetched_actor":
        # A new actor whose own document (fetched for its key) names those contexts
        iri = world.peers.iri("evil.example", "/users/dave")
        key = fixed_key("rsa-mallory.pem", f"{iri}#main-key", iri)
        doc = actor_document(iri, username="dave", keys=(key.public,))
        world.peers.serve_json(iri, doc | {"@context": [*remote_contexts, SECURITY_V1]})
        author = RemoteAccount(iri, key, world.peers)
    obj = note(author, to=[world.group, AS_PUBLIC])
    if where == "embedded_object":
        obj["@context"] = remote_contexts[1:]
    create_ = create(author, obj)
    if where != "embedded_object":
        create_["@context"] = remote_contexts
    # When it is delivered and processed
    reply = await world.sender.send(GROUP_INBOX, create_, key)
    assert reply.status == 202, reply
    assert await processed(world.node, create_["id"]) == "processed"
    # Then no context was ever requested (the socket guard fails any non-loopback connection)
    assert world.peers.count(ctx) == 0
    row = await object_row(world.node, obj["id"])
    assert row is not None and row.document["attributedTo"] == author.iri


async def test_sec_23_a_context_importing_an_unknown_one_is_refused_unfetched(
    world: World, handler_spy: HandlerSpy
) -> None:
    """An inline context @importing one on evil.example: 400 (it could hide an alias), nothing fetched."""
    ctx = world.peers.iri("evil.example", "/ctx/import")
    world.peers.serve_json(ctx, {"@context": {"inc": "@included"}}, content_type="application/ld+json")
    doc = create(world.alice, note(world.alice, to=[world.group])) | {
        "@context": [AS_CONTEXT, {"@import": ctx, "extra": "https://example.org/extra"}]
    }
    await _refused_before_any_lookup(world, doc, handler_spy)
    assert world.peers.count(ctx) == 0
