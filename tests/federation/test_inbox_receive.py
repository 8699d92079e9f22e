"""federation.inbox.receive: the ordered checks of docs/architecture.md ("Receiving"), with really
signed requests.

Requests are signed with the fixed keys of tests/fixtures/keys (alice and bob on peer.example,
mallory on evil.example), verified through a MemoryKeyResolver whose calls are recorded, at the
fixed time NOW. Each attack test asserts what must *not* happen too: no key lookup, no handler.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

import pytest

from federation.errors import (
    DigestMismatch,
    InvalidDocument,
    KeyOwnerMismatch,
    KeyUnavailable,
    MalformedPayload,
    PayloadTooLarge,
    PeerNotAllowed,
    SignatureMissing,
)
from federation.http import IncomingRequest
from federation.inbox import Ignored, InboundActivity, InboxDeps, InboxRouter, dispatch, receive
from federation.keys import KeyPair
from federation.memory import MemoryKeyResolver
from federation.policy import PeerPolicy
from federation.signatures import sign_request
from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab.activities import Accept, Activity, Announce, Create, Follow, UnknownActivity
from federation.vocab.objects import Note
from tests.federation.signature_fixtures import (
    ALICE,
    ALICE_IRI,
    BOB,
    INBOX_URL,
    MALLORY,
    MALLORY_IRI,
    NOW,
    post,
    received,
    resolver,
)
from tests.schemas.helpers import load_payload

URIS = UriScheme("https://entraide.test")
GROUP = Iri("https://entraide.test/groups/collectif")


class SeenIds:
    """An in-memory ReplayGuard: answers from a set and records every question."""

    def __init__(self, seen: Iterable[str] = ()) -> None:
        self.ids = set(seen)
        self.calls: list[str] = []

    async def seen(self, activity_id: Iri) -> bool:
        self.calls.append(activity_id)
        return activity_id in self.ids


class Spy:
    """A router with one handler per tested type that records what it was called with."""

    def __init__(self) -> None:
        self.router: InboxRouter[str] = InboxRouter()
        self.calls: list[tuple[str, Activity]] = []

        @self.router.on(Create)
        async def on_create(ctx: str, activity: Create, inbound: InboundActivity) -> None:
            self.calls.append((ctx, activity))

        @self.router.on(Follow)
        async def on_follow(ctx: str, activity: Follow, inbound: InboundActivity) -> None:
            self.calls.append((ctx, activity))


def deps(
    keys: MemoryKeyResolver | None = None,
    *,
    policy: PeerPolicy | None = None,
    replay: SeenIds | None = None,
) -> InboxDeps:
    return InboxDeps(
        resolve_key=keys if keys is not None else resolver(ALICE, BOB, MALLORY),
        policy=policy if policy is not None else PeerPolicy.open_network(),
        replay=replay if replay is not None else SeenIds(),
        uris=URIS,
        clock=lambda: NOW,
    )


def signed(
    document: dict[str, Any] | bytes,
    key: KeyPair = ALICE,
    *,
    spec: Literal["cavage", "rfc9421"] = "cavage",
) -> IncomingRequest:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return received(sign_request(post(INBOX_URL, body), key, now=NOW, spec=spec))


def mastodon_create_by_alice() -> dict[str, Any]:
    """The recorded Mastodon Create{Note}, re-hosted so that alice (whose key we hold) is its author."""
    text = json.dumps(load_payload("mastodon/create_note.json"))
    text = text.replace("https://mastodon.madrid/users/felix", ALICE_IRI).replace(
        "https://mastodon.madrid/", "https://peer.example/"
    )
    doc: dict[str, Any] = json.loads(text)
    return doc


def activity(
    kind: str, obj: object, *, actor: str = ALICE_IRI, id: str = "https://peer.example/a/1", **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": id,
        "type": kind,
        "actor": actor,
        "object": obj,
    }
    doc.update(extra)
    return doc


def note(id: str = "https://peer.example/notes/1", author: str = ALICE_IRI, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": id,
        "type": "Note",
        "attributedTo": author,
        "content": "<p>Alerte</p>",
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
    }
    doc.update(extra)
    return doc


async def receive_and_dispatch(
    request: IncomingRequest, inbox: InboxDeps, spy: Spy
) -> InboundActivity | Ignored:
    """The server's path in one call: receive, then dispatch what was accepted."""
    verdict = await receive(request, inbox)
    if isinstance(verdict, InboundActivity):
        await dispatch(spy.router, verdict, "ctx")
    return verdict


# ---------------------------------------------------------------------------------------------
# Happy path
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_mastodon_create_note_is_received_and_dispatched(spec: Literal["cavage", "rfc9421"]) -> None:
    # Given alice's Create{Note} as Mastodon sends it, signed with alice's key
    document = mastodon_create_by_alice()
    request = signed(document, spec=spec)
    replay = SeenIds()
    spy = Spy()
    # When it reaches our inbox
    verdict = await receive_and_dispatch(request, deps(replay=replay), spy)
    # Then it is accepted with the signer and the document
    assert isinstance(verdict, InboundActivity)
    assert isinstance(verdict.activity, Create)
    assert verdict.signer.owner == verdict.activity.actor == ALICE_IRI
    assert verdict.signer.spec == spec
    assert verdict.document == document
    assert verdict.received_at == NOW
    # and the same-origin embedded Note is kept as delivered
    assert verdict.activity.object is not None
    assert isinstance(verdict.activity.object.value, Note)
    assert verdict.activity.object.value.mentions == ("https://mamot.fr/users/retiolus",)
    # and the replay guard was asked once, and the handler called once
    assert replay.calls == [verdict.activity.id]
    assert spy.calls == [("ctx", verdict.activity)]


# ---------------------------------------------------------------------------------------------
# Size, JSON and JSON-LD (cases 20, 21, 27, 28): refused before any key lookup
# ---------------------------------------------------------------------------------------------


async def test_oversized_body_is_413_before_anything_else() -> None:
    keys = resolver(ALICE)
    body = b'{"x":"' + b"a" * (1024 * 1024) + b'"}'
    with pytest.raises(PayloadTooLarge):
        await receive(signed(body), deps(keys))
    assert keys.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b'[{"type": "Follow"}]',
        b'{"type":"Create","object":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b"[" * 100_000,
    ],
    ids=["not-json", "array", "10000-deep", "unterminated-100000-deep"],
)
async def test_malformed_bodies_are_refused_without_recursion_error(body: bytes) -> None:
    keys = resolver(ALICE)
    with pytest.raises(MalformedPayload):
        await receive(signed(body), deps(keys))
    assert keys.calls == []


@pytest.mark.parametrize("keyword", ["@included", "@reverse", "@graph"])
async def test_case_20_graph_restructuring_is_refused(keyword: str) -> None:
    # Given the restructured Undo{Announce} of security.md case 20
    undo = {
        "id": "https://peer.example/u/1",
        "type": "Undo",
        "actor": ALICE_IRI,
        "object": "https://peer.example/a/1",
    }
    document: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": "https://peer.example/a/1",
        "type": "Announce",
        "actor": ALICE_IRI,
        "object": "https://peer.example/notes/1",
    }
    if keyword == "@reverse":
        document["@reverse"] = {"https://www.w3.org/ns/activitystreams#object": undo}
    elif keyword == "@included":
        document["@included"] = [undo]
    else:
        document = {"@context": document["@context"], "@graph": [document, undo]}
    keys = resolver(ALICE)
    with pytest.raises(InvalidDocument):
        await receive(signed(document), deps(keys))
    assert keys.calls == []


async def test_case_21_context_swapping_follow_is_refused() -> None:
    document = {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            "https://w3id.org/security/v1",
            {"actor": {"@id": "as:object", "@type": "@id"}, "object": {"@id": "as:actor", "@type": "@id"}},
        ],
        "id": "https://evil.example/f/1",
        "type": "Follow",
        "actor": ALICE_IRI,
        "object": MALLORY_IRI,
    }
    keys = resolver(ALICE, MALLORY)
    with pytest.raises(InvalidDocument, match="redefines"):
        await receive(signed(document, MALLORY), deps(keys))
    assert keys.calls == []


async def test_unreadable_actor_is_refused_before_the_key_lookup() -> None:
    keys = resolver(ALICE)
    with pytest.raises(InvalidDocument, match="actor"):
        await receive(signed(activity("Follow", GROUP, actor="acct:alice@peer.example")), deps(keys))
    assert keys.calls == []


# ---------------------------------------------------------------------------------------------
# Signatures and key ownership (cases 1, 2)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [MALLORY, BOB], ids=["mallory-on-another-host", "bob-on-the-same-host"])
async def test_signer_other_than_the_actor_is_refused_and_no_handler_runs(key: KeyPair) -> None:
    # Given alice's Create, signed with someone else's valid key (security.md case 1)
    spy = Spy()
    with pytest.raises(KeyOwnerMismatch):
        await receive_and_dispatch(signed(mastodon_create_by_alice(), key), deps(), spy)
    # Then no handler ran
    assert spy.calls == []


async def test_tampered_body_is_a_digest_mismatch_without_key_lookup() -> None:
    request = signed(activity("Follow", GROUP))
    tampered = replace(
        request, body=json.dumps(activity("Follow", "https://entraide.test/groups/autre")).encode()
    )
    keys = resolver(ALICE)
    with pytest.raises(DigestMismatch):
        await receive(tampered, deps(keys))
    assert keys.calls == []


async def test_unsigned_request_is_refused() -> None:
    request = received(post(INBOX_URL, json.dumps(activity("Follow", GROUP)).encode()))
    with pytest.raises(SignatureMissing):
        await receive(request, deps())


# ---------------------------------------------------------------------------------------------
# Peer policy (case 47): decided before any key lookup
# ---------------------------------------------------------------------------------------------


async def test_blocked_key_host_is_refused_with_zero_resolver_calls() -> None:
    keys = resolver(ALICE, MALLORY)
    policy = PeerPolicy.open_network(blocked=["evil.example"])
    with pytest.raises(PeerNotAllowed):
        await receive(signed(activity("Follow", GROUP), MALLORY), deps(keys, policy=policy))
    assert keys.calls == []


async def test_blocked_actor_host_is_refused_with_zero_resolver_calls() -> None:
    keys = resolver(ALICE, MALLORY)
    policy = PeerPolicy.open_network(blocked=["peer.example"])
    with pytest.raises(PeerNotAllowed):
        await receive(signed(activity("Follow", GROUP), MALLORY), deps(keys, policy=policy))
    assert keys.calls == []


async def test_allowlist_refuses_an_actor_on_an_unlisted_host() -> None:
    # Given a closed network that lists peer.example only, and an actor on other.example
    keys = resolver(ALICE)
    policy = PeerPolicy.closed_network(["peer.example"])
    document = activity(
        "Follow", GROUP, actor="https://other.example/users/zed", id="https://other.example/a/1"
    )
    # When alice's key (on a listed host) signs it
    with pytest.raises(PeerNotAllowed):
        await receive(signed(document), deps(keys, policy=policy))
    # Then nothing was looked up
    assert keys.calls == []


async def test_allowlist_accepts_a_listed_peer() -> None:
    policy = PeerPolicy.closed_network(["peer.example"])
    verdict = await receive(signed(activity("Follow", GROUP)), deps(policy=policy))
    assert isinstance(verdict, InboundActivity) and isinstance(verdict.activity, Follow)


@pytest.mark.parametrize(
    "document",
    [
        activity("Create", note(inReplyTo="https://other.example/notes/9")),
        activity("Create", note(author=ALICE_IRI, attributedTo=[ALICE_IRI, "https://other.example/users/z"])),
        activity("Announce", "https://other.example/notes/9"),
        activity("Add", "https://peer.example/notes/1", target="https://other.example/collections/featured"),
    ],
    ids=["inReplyTo", "attributedTo", "announced-object", "target"],
)
async def test_allowlist_applies_to_every_host_involved(document: dict[str, Any]) -> None:
    policy = PeerPolicy.closed_network(["peer.example"])
    with pytest.raises(PeerNotAllowed):
        await receive(signed(document), deps(policy=policy))


# ---------------------------------------------------------------------------------------------
# Origin rules (cases 14, 16, 17)
# ---------------------------------------------------------------------------------------------


async def test_activity_id_on_another_host_is_ignored() -> None:
    # Decision: 202 and drop (security.md §0), like Mastodon's reject_payload!: no retry storm
    # from a buggy honest peer, no oracle for an attacker.
    replay = SeenIds()
    spy = Spy()
    document = activity("Create", note(), id="https://other-asso.example/a/9")
    verdict = await receive_and_dispatch(signed(document), deps(replay=replay), spy)
    assert verdict == Ignored("foreign_activity_id", Iri("https://other-asso.example/a/9"))
    assert spy.calls == [] and replay.calls == []


async def test_embedded_object_on_a_foreign_host_is_reduced_to_a_reference() -> None:
    # security.md case 14: alice cannot create or overwrite other-asso.example's resource
    document = activity("Create", note(id="https://other-asso.example/resources/42", type="Article"))
    verdict = await receive(signed(document), deps())
    assert isinstance(verdict, InboundActivity)
    assert verdict.activity.object is not None
    assert verdict.activity.object.id == "https://other-asso.example/resources/42"
    assert verdict.activity.object.value is None
    assert verdict.activity.object.type_hint == "Article"


async def test_announce_of_a_forged_foreign_note_keeps_only_the_reference() -> None:
    # security.md case 16: mallory announces a fake alert "by alice"; the body is ignored
    document = activity(
        "Announce",
        note(content="ALERTE : lot X rappelé"),
        actor=MALLORY_IRI,
        id="https://evil.example/a/1",
    )
    verdict = await receive(signed(document, MALLORY), deps())
    assert isinstance(verdict, InboundActivity)
    assert verdict.activity.object is not None
    assert verdict.activity.object.id == "https://peer.example/notes/1"
    assert verdict.activity.object.value is None


async def test_same_host_object_attributed_to_another_host_is_reduced_to_a_reference() -> None:
    document = activity("Create", note(author="https://other.example/users/victim"))
    verdict = await receive(signed(document), deps())
    assert isinstance(verdict, InboundActivity)
    assert verdict.activity.object is not None and verdict.activity.object.value is None


async def test_local_ids_are_never_taken_from_payloads() -> None:
    # security.md case 17: an object claiming to be ours is a reference, resolved from our DB only
    document = activity("Create", note(id="https://entraide.test/objects/new-1", author=ALICE_IRI))
    verdict = await receive(signed(document), deps())
    assert isinstance(verdict, InboundActivity)
    assert verdict.activity.object is not None
    assert verdict.activity.object.id == "https://entraide.test/objects/new-1"
    assert verdict.activity.object.value is None


async def test_activity_claiming_a_local_actor_is_ignored_without_lookup() -> None:
    keys = resolver(ALICE)
    document = activity(
        "Follow", GROUP, actor="https://entraide.test/users/admin", id="https://entraide.test/a/1"
    )
    verdict = await receive(signed(document), deps(keys))
    assert isinstance(verdict, Ignored) and verdict.reason == "claims_local_actor"
    assert keys.calls == []


async def test_announce_of_an_embedded_announce_is_ignored() -> None:
    inner = activity("Announce", "https://peer.example/notes/1", id="https://peer.example/a/0")
    verdict = await receive(signed(activity("Announce", inner)), deps())
    assert isinstance(verdict, Ignored) and verdict.reason == "announce_of_announce"


async def test_lemmy_style_group_relay_keeps_same_host_inner_activity() -> None:
    # A group on peer.example relays bob's Create (both on peer.example): kept as delivered.
    inner = activity(
        "Create",
        note(author="https://peer.example/users/bob"),
        actor="https://peer.example/users/bob",
        id="https://peer.example/a/0",
        cc=[ALICE_IRI],
    )
    verdict = await receive(signed(activity("Announce", inner)), deps())
    assert isinstance(verdict, InboundActivity)
    assert isinstance(verdict.activity, Announce)
    relayed = verdict.activity.announced_activity
    assert isinstance(relayed, Create)
    assert relayed.object is not None and isinstance(relayed.object.value, Note)


async def test_group_relay_of_another_hosts_activity_is_a_reference() -> None:
    inner = activity(
        "Create",
        note(id="https://other.example/n/1", author="https://other.example/u/z"),
        actor="https://other.example/u/z",
        id="https://other.example/a/0",
    )
    verdict = await receive(signed(activity("Announce", inner)), deps())
    assert isinstance(verdict, InboundActivity)
    assert verdict.activity.object is not None
    assert verdict.activity.object.id == "https://other.example/a/0"
    assert verdict.activity.object.value is None


# ---------------------------------------------------------------------------------------------
# Accept with an embedded Follow or an IRI (docs/interop.md "Flag, Block, Move, Follow")
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded-follow", "follow-iri"])
async def test_accept_of_our_follow_parses_either_way(embedded: bool) -> None:
    our_follow = "https://entraide.test/activities/f-1"
    follow = {"id": our_follow, "type": "Follow", "actor": GROUP, "object": ALICE_IRI}
    verdict = await receive(signed(activity("Accept", follow if embedded else our_follow)), deps())
    assert isinstance(verdict, InboundActivity)
    assert isinstance(verdict.activity, Accept)
    # Our own Follow is never taken from the payload (case 17): the handler looks it up by id.
    assert verdict.activity.object is not None
    assert verdict.activity.object.id == our_follow
    assert verdict.activity.object.value is None


async def test_recorded_lemmy_accept_parses_through_the_inbox() -> None:
    # The recorded Lemmy Accept, re-hosted onto peer.example so that alice's key signs it
    text = json.dumps(load_payload("lemmy/accept_follow.json"))
    text = text.replace("http://enterprise.lemmy.ml/c/main", ALICE_IRI).replace(
        "http://enterprise.lemmy.ml/", "https://peer.example/"
    )
    verdict = await receive(signed(json.loads(text)), deps())
    assert isinstance(verdict, InboundActivity) and isinstance(verdict.activity, Accept)
    # The embedded Follow's id is on ds9.lemmy.ml, not the signer's host: a reference.
    assert verdict.activity.object is not None and verdict.activity.object.value is None


# ---------------------------------------------------------------------------------------------
# Duplicates and unverifiable self-Deletes (cases 5, 6)
# ---------------------------------------------------------------------------------------------


async def test_duplicate_is_ignored() -> None:
    document = activity("Follow", GROUP)
    replay = SeenIds()
    first = await receive(signed(document), deps(replay=replay))
    assert isinstance(first, InboundActivity)
    replay.ids.add(first.activity.id)  # the server stored it
    second = await receive(signed(document), deps(replay=replay))
    assert second == Ignored("duplicate", first.activity.id)


async def test_unknown_actor_self_delete_with_unresolvable_key_is_ignored() -> None:
    # Given a deleted actor whose key can no longer be found (its origin answers 410)
    dead = Iri("https://dead.example/users/x")
    dead_key = KeyPair(Iri(f"{dead}#main-key"), dead, MALLORY.private_key)
    keys = resolver(ALICE)
    document = activity("Delete", dead, actor=dead, id=f"{dead}#delete")
    # When its self-Delete arrives
    verdict = await receive(signed(document, dead_key), deps(keys))
    # Then it is answered 202 and dropped, without raising
    assert verdict == Ignored("actor_delete_unverifiable", Iri(f"{dead}#delete"))


async def test_delete_of_an_object_with_unresolvable_key_is_still_refused() -> None:
    dead = Iri("https://dead.example/users/x")
    dead_key = KeyPair(Iri(f"{dead}#main-key"), dead, MALLORY.private_key)
    document = activity("Delete", "https://dead.example/notes/1", actor=dead, id=f"{dead}#delete")
    with pytest.raises(KeyUnavailable):
        await receive(signed(document, dead_key), deps(resolver(ALICE)))


async def test_tampered_self_delete_is_still_refused() -> None:
    document = activity("Delete", ALICE_IRI, id=f"{ALICE_IRI}#delete")
    request = signed(document)
    tampered = replace(request, body=request.body.replace(b"#delete", b"#delete2"))
    with pytest.raises(DigestMismatch):
        await receive(tampered, deps(resolver()))


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------


async def test_unknown_activity_types_are_a_no_op_in_dispatch() -> None:
    spy = Spy()
    verdict = await receive_and_dispatch(
        signed(activity("EmojiReact", "https://peer.example/notes/1", content="🔥")), deps(), spy
    )
    assert isinstance(verdict, InboundActivity) and isinstance(verdict.activity, UnknownActivity)
    assert spy.calls == []


async def test_catch_all_handler_on_activity_receives_unhandled_types() -> None:
    router: InboxRouter[None] = InboxRouter()
    seen: list[str] = []

    @router.on(Activity)
    async def anything(ctx: None, activity: Activity, inbound: InboundActivity) -> None:
        seen.append(activity.type)

    verdict = await receive(signed(activity("EmojiReact", "https://peer.example/notes/1")), deps())
    assert isinstance(verdict, InboundActivity)
    await dispatch(router, verdict, None)
    assert seen == ["EmojiReact"]


def test_registering_two_handlers_for_one_type_is_an_error() -> None:
    router: InboxRouter[None] = InboxRouter()

    @router.on(Follow)
    async def first(ctx: None, activity: Follow, inbound: InboundActivity) -> None: ...

    with pytest.raises(ValueError, match="Follow"):

        @router.on(Follow)
        async def second(ctx: None, activity: Follow, inbound: InboundActivity) -> None: ...
