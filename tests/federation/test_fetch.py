"""fetch_document / fetch_actor / fetch_key against fake peers on 127.0.0.1.

Security cases 7, 9, 11, 12, 13, 17, 26, 28 and docs/interop.md "Content types and fetching"
and "Signed fetch". The peers are one aiohttp test server answering as ``peer.example``,
``evil.example`` and ``third.example`` (a StaticResolver maps those names to 127.0.0.1; every
other name and every IP literal stays refused by the transport's guard). Each peer checks our
signatures for real with ``verify_request``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from signature_fixtures import NOW, load_pair

from federation.actors_remote import read_actor
from federation.errors import InvalidDocument, KeyUnavailable, MalformedPayload, PeerNotAllowed, WrongOrigin
from federation.fetch import (
    MAX_REDIRECTS,
    DocumentGone,
    FetchedDocument,
    FetchForbidden,
    FetchTemporaryFailure,
    LocalIriRefused,
    NotActivityStreams,
    UnexpectedStatus,
    fetch_actor,
    fetch_document,
    fetch_key,
    parse_json_object,
    same_iri,
)
from federation.http import LD_CONTENT_TYPE
from federation.keys import KeyPair, ed25519_to_multibase
from federation.policy import PeerPolicy
from federation.transport import AiohttpTransport, InvalidUrl, RedirectLoop, TooManyRedirects
from federation.types import Iri
from federation.uris import UriScheme
from tests.support.fake_peers import FakePeers, actor_document, peer_transport

ServerFactory = Callable[..., Awaitable[TestServer]]

OUR_ORIGIN = "https://entraide.test"
URIS = UriScheme(OUR_ORIGIN)
APP_IRI = Iri(f"{OUR_ORIGIN}/actor")
INSTANCE = load_pair("rsa-mallory.pem", f"{APP_IRI}#main-key", APP_IRI)
"""Our Application actor's key in these tests (any fixed RSA-2048 key will do)."""


@pytest.fixture
async def peers(aiohttp_server: ServerFactory) -> FakePeers:
    fake = FakePeers(clock=lambda: NOW)
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.trust(INSTANCE)
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as t:
        yield t


def kwargs(transport: AiohttpTransport, **extra: Any) -> dict[str, Any]:
    """The common arguments of every fetch: signed as INSTANCE, at NOW, our origin URIS."""
    return {"transport": transport, "signer": INSTANCE, "now": NOW, "uris": URIS, **extra}


def alice_of(peers: FakePeers, file_name: str = "rsa-alice.pem", fragment: str = "main-key") -> KeyPair:
    actor = peers.iri("peer.example", "/users/alice")
    return load_pair(file_name, f"{actor}#{fragment}", actor)


def note(iri: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": iri,
        "type": "Note",
        "content": "x",
        **extra,
    }


# --- fetch_document: the happy path and signed fetch -----------------------------------------


async def test_fetch_returns_the_document_whose_id_is_the_url(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Given a note served at its own id
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri))
    # When we fetch it
    fetched = await fetch_document(iri, **kwargs(transport))
    # Then it comes back with its final URL, status and fetch time
    assert fetched.document["id"] == iri
    assert fetched.final_url == iri == fetched.id
    assert fetched.status == 200
    assert fetched.requested == iri
    assert fetched.fetched_at == NOW


async def test_signed_fetch_verifies_on_the_peer_as_our_application_actor(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri))
    await fetch_document(iri, **kwargs(transport))
    [hit] = peers.hits
    # The peer verified the signature with our Application key (Mastodon's authorized fetch).
    assert hit.signature_error is None
    assert hit.key_id == INSTANCE.key_id
    assert hit.signed_host == peers.authority("peer.example")


async def test_unsigned_fetch_when_no_signer(peers: FakePeers, transport: AiohttpTransport) -> None:
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri))
    await fetch_document(iri, **kwargs(transport, signer=None))
    [hit] = peers.hits
    assert hit.key_id is None and hit.signature_error is None


async def test_rfc9421_signed_fetch_verifies_too(peers: FakePeers, transport: AiohttpTransport) -> None:
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri))
    await fetch_document(iri, **kwargs(transport, spec="rfc9421"))
    [hit] = peers.hits
    assert hit.key_id == INSTANCE.key_id and hit.signature_error is None


async def test_ld_json_with_activitystreams_profile_is_accepted(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri), content_type=LD_CONTENT_TYPE)
    assert (await fetch_document(iri, **kwargs(transport))).id == iri


async def test_each_redirect_hop_is_re_signed_for_its_own_host(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Given peer.example redirecting to third.example, which serves the document under its own id
    start = peers.iri("peer.example", "/go")
    final = peers.iri("third.example", "/notes/9")
    peers.redirect(start, final)
    peers.serve_json(final, note(final))
    # When we fetch the first URL
    fetched = await fetch_document(start, **kwargs(transport))
    # Then the document is the final host's, and each hop carried a valid signature for its host
    assert fetched.final_url == final and fetched.requested == start
    assert [(h.host, h.key_id, h.signed_host) for h in peers.hits] == [
        ("peer.example", INSTANCE.key_id, peers.authority("peer.example")),
        ("third.example", INSTANCE.key_id, peers.authority("third.example")),
    ]
    assert all(h.signature_error is None for h in peers.hits)


# --- origin checks (cases 11, 13) ----------------------------------------------------------


async def test_document_claiming_another_hosts_id_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Case 11: evil.example serves "alice" with mallory's key under alice's id
    url = peers.iri("evil.example", "/x")
    alice = peers.iri("peer.example", "/users/alice")
    peers.serve_json(url, actor_document(alice, username="alice"))
    with pytest.raises(WrongOrigin):
        await fetch_document(url, **kwargs(transport))
    # Nothing is asked of peer.example on evil's word.
    assert peers.hits_on("peer.example") == []


async def test_same_origin_id_mismatch_is_refetched_from_the_id(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Mastodon's profile URL serves the actor without redirect; the id is the canonical IRI.
    profile = peers.iri("peer.example", "/@alice")
    actor = peers.iri("peer.example", "/users/alice")
    peers.serve_json(profile, actor_document(actor, username="alice"))
    peers.serve_json(actor, actor_document(actor, username="alice"))
    fetched = await fetch_document(profile, **kwargs(transport))
    assert fetched.id == actor and fetched.requested == profile
    assert peers.count(profile) == 1 and peers.count(actor) == 1


async def test_refetched_document_must_match_its_id_exactly(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    a, b, c = (peers.iri("peer.example", p) for p in ("/a", "/b", "/c"))
    peers.serve_json(a, note(b))
    peers.serve_json(b, note(c))
    peers.serve_json(c, note(c))
    with pytest.raises(WrongOrigin):
        await fetch_document(a, **kwargs(transport))
    assert peers.count(c) == 0  # one refetch, never a chain


async def test_cross_host_redirect_cannot_launder_the_origin(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Case 13: peer.example's proxy redirects to evil.example, which claims a peer.example id.
    proxy = peers.iri("peer.example", "/proxy")
    forged = peers.iri("evil.example", "/forged")
    peers.redirect(proxy, forged)
    peers.serve_json(forged, note(peers.iri("peer.example", "/notes/1")))
    with pytest.raises(WrongOrigin):
        await fetch_document(proxy, **kwargs(transport))
    assert peers.count(peers.iri("peer.example", "/notes/1")) == 0


async def test_same_host_redirect_is_fine(peers: FakePeers, transport: AiohttpTransport) -> None:
    old, new = peers.iri("peer.example", "/old"), peers.iri("peer.example", "/new")
    peers.redirect(old, new, status=301)
    peers.serve_json(new, note(new))
    assert (await fetch_document(old, **kwargs(transport))).final_url == new


async def test_document_without_id_is_refused(peers: FakePeers, transport: AiohttpTransport) -> None:
    iri = peers.iri("peer.example", "/anon")
    peers.serve_json(iri, {"type": "Note", "content": "x"})
    with pytest.raises(WrongOrigin):
        await fetch_document(iri, **kwargs(transport))


# --- content type and body (cases 12, 28) -----------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/html", "application/octet-stream", None, "application/ld+json"],
)
async def test_non_activitystreams_content_type_is_refused(
    peers: FakePeers, transport: AiohttpTransport, content_type: str | None
) -> None:
    # Case 12: an uploaded tract.json served as application/json must not become a Note.
    iri = peers.iri("peer.example", "/media/ab12.json")
    peers.serve_json(iri, note(iri), content_type=content_type)
    with pytest.raises(NotActivityStreams):
        await fetch_document(iri, **kwargs(transport))


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b"{" + b'"a":{' * 100 + b"}" * 101,
    ],
    ids=["array", "text", "binary", "recursion", "too-deep"],
)
async def test_malformed_bodies_are_refused(
    peers: FakePeers, transport: AiohttpTransport, body: bytes
) -> None:
    iri = peers.iri("peer.example", "/bad")
    peers.serve("peer.example", "/bad", body)
    with pytest.raises(MalformedPayload):
        await fetch_document(iri, **kwargs(transport))


def test_json_depth_limit_is_inclusive() -> None:
    nested: dict[str, Any] = {}
    for _ in range(63):
        nested = {"a": nested}
    assert parse_json_object(json.dumps(nested).encode())  # 64 levels: accepted
    with pytest.raises(MalformedPayload):
        parse_json_object(json.dumps({"a": nested}).encode())


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
async def test_404_and_410_are_document_gone(
    peers: FakePeers, transport: AiohttpTransport, status: int
) -> None:
    iri = peers.iri("peer.example", "/users/gone")
    peers.status(iri, status)
    with pytest.raises(DocumentGone) as caught:
        await fetch_document(iri, **kwargs(transport))
    assert caught.value.status == status


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_are_temporary(
    peers: FakePeers, transport: AiohttpTransport, status: int
) -> None:
    iri = peers.iri("peer.example", "/busy")
    peers.status(iri, status, headers={"Retry-After": "120"})
    with pytest.raises(FetchTemporaryFailure) as caught:
        await fetch_document(iri, **kwargs(transport))
    assert not isinstance(caught.value, DocumentGone)


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_forbidden(peers: FakePeers, transport: AiohttpTransport, status: int) -> None:
    iri = peers.iri("peer.example", "/private")
    peers.status(iri, status)
    with pytest.raises(FetchForbidden):
        await fetch_document(iri, **kwargs(transport))


async def test_other_statuses_are_unexpected(peers: FakePeers, transport: AiohttpTransport) -> None:
    iri = peers.iri("peer.example", "/teapot")
    peers.status(iri, 418)
    with pytest.raises(UnexpectedStatus):
        await fetch_document(iri, **kwargs(transport))


async def test_unreachable_host_is_temporary(transport: AiohttpTransport) -> None:
    # Nothing listens on port 9 of 127.0.0.1: connection refused.
    with pytest.raises(FetchTemporaryFailure):
        await fetch_document("http://peer.example:9/x", **kwargs(transport))


# --- local IRIs (case 17), redirects (cases 7, 13, 26), policy (case 47) ---------------------


async def test_local_iri_is_never_fetched(peers: FakePeers, transport: AiohttpTransport) -> None:
    # Our origin is, for this test, the fake peer itself: a fetch would reach it.
    uris = UriScheme(f"http://peer.example:{peers.port}")
    iri = peers.iri("peer.example", "/groups/asso")
    peers.serve_json(iri, note(iri))
    with pytest.raises(LocalIriRefused):
        await fetch_document(iri, **kwargs(transport, uris=uris))
    with pytest.raises(LocalIriRefused):
        await fetch_document(iri.replace("peer.example", "PEER.EXAMPLE."), **kwargs(transport, uris=uris))
    assert peers.hits == []


async def test_redirect_to_our_origin_is_refused(peers: FakePeers, transport: AiohttpTransport) -> None:
    uris = UriScheme(f"http://peer.example:{peers.port}")
    bounce = peers.iri("evil.example", "/bounce")
    peers.redirect(bounce, peers.iri("peer.example", "/alerts/999"))
    with pytest.raises(LocalIriRefused):
        await fetch_document(bounce, **kwargs(transport, uris=uris))
    assert peers.hits_on("peer.example") == []


async def test_redirects_are_capped(peers: FakePeers, transport: AiohttpTransport) -> None:
    hops = [peers.iri("peer.example", f"/r{n}") for n in range(MAX_REDIRECTS + 2)]
    for here, there in itertools.pairwise(hops):
        peers.redirect(here, there)
    peers.serve_json(hops[-1], note(hops[-1]))
    with pytest.raises(TooManyRedirects):
        await fetch_document(hops[0], **kwargs(transport))
    assert len(peers.hits) == MAX_REDIRECTS + 1


async def test_redirect_loops_are_detected(peers: FakePeers, transport: AiohttpTransport) -> None:
    a, b = peers.iri("evil.example", "/k/1"), peers.iri("evil.example", "/k/2")
    peers.redirect(a, b)
    peers.redirect(b, a)
    with pytest.raises(RedirectLoop):
        await fetch_document(a, **kwargs(transport))
    assert len(peers.hits) == 2


async def test_policy_is_checked_on_every_hop(peers: FakePeers, transport: AiohttpTransport) -> None:
    start = peers.iri("peer.example", "/go")
    peers.redirect(start, peers.iri("evil.example", "/x"))
    policy = PeerPolicy.open_network(blocked=["evil.example"])
    with pytest.raises(PeerNotAllowed):
        await fetch_document(start, **kwargs(transport, policy=policy))
    assert peers.hits_on("evil.example") == []


async def test_fragment_and_non_http_iris_are_refused(transport: AiohttpTransport) -> None:
    for iri in (
        "data:application/json,{}",
        "file:///etc/passwd",
        "acct:alice@peer.example",
        "http://peer.example/#x",
    ):
        with pytest.raises(InvalidUrl):
            await fetch_document(iri, **kwargs(transport))


def test_fetched_documents_cannot_be_forged() -> None:
    # Only federation.fetch creates FetchedDocument: it is the proof of a fetch at the origin.
    with pytest.raises(TypeError):
        FetchedDocument(
            document={"id": "https://peer.example/x"},
            final_url=Iri("https://peer.example/x"),
            status=200,
            requested=Iri("https://peer.example/x"),
            fetched_at=NOW,
        )


def test_same_iri_ignores_spelling_of_the_origin_only() -> None:
    assert same_iri("https://Peer.Example:443/a?b=1", "https://peer.example/a?b=1")
    assert not same_iri("https://peer.example/a", "https://peer.example/A")
    assert not same_iri("https://peer.example/a#x", "https://peer.example/a#x")
    assert not same_iri("http://peer.example/a", "https://peer.example/a")
    assert not same_iri(None, "https://peer.example/a")


# --- fetch_actor ----------------------------------------------------------------------------


async def test_fetch_actor_reads_the_actor(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = alice_of(peers)
    peers.serve_json(alice.owner, actor_document(alice.owner, username="alice", keys=(alice.public,)))
    fetched = await fetch_actor(alice.owner, **kwargs(transport))
    assert fetched.doc.id == alice.owner
    assert fetched.doc.preferred_username == "alice"
    assert fetched.doc.public_key(alice.key_id).to_pem() == alice.public.to_pem()
    assert fetched.source.final_url == alice.owner


async def test_fetch_actor_requires_the_asked_id_unless_told_otherwise(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    profile = peers.iri("peer.example", "/@alice")
    actor = peers.iri("peer.example", "/users/alice")
    peers.serve_json(profile, actor_document(actor, username="alice"))
    peers.serve_json(actor, actor_document(actor, username="alice"))
    with pytest.raises(WrongOrigin):
        await fetch_actor(profile, **kwargs(transport))
    fetched = await fetch_actor(profile, **kwargs(transport, require_exact_id=False))
    assert fetched.doc.id == actor


async def test_fetch_actor_refuses_non_actors(peers: FakePeers, transport: AiohttpTransport) -> None:
    iri = peers.iri("peer.example", "/notes/1")
    peers.serve_json(iri, note(iri))
    with pytest.raises(InvalidDocument):
        await fetch_actor(iri, **kwargs(transport))


# --- fetch_key (case 9) ----------------------------------------------------------------------


async def test_fragment_key_is_selected_from_the_actor(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = alice_of(peers)
    second = alice_of(peers, "rsa-bob.pem", "second-key")
    peers.serve_json(
        alice.owner, actor_document(alice.owner, username="alice", keys=(second.public, alice.public))
    )
    fetched = await fetch_key(alice.key_id, **kwargs(transport))
    assert fetched.key.key_id == alice.key_id
    assert fetched.key.owner == alice.owner
    assert fetched.key.to_pem() == alice.public.to_pem()
    assert fetched.owner.doc.id == alice.owner
    assert peers.count(alice.owner) == 1


async def test_fragment_key_not_listed_is_unavailable(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = alice_of(peers)
    peers.serve_json(alice.owner, actor_document(alice.owner, username="alice", keys=(alice.public,)))
    with pytest.raises(KeyUnavailable):
        await fetch_key(f"{alice.owner}#other-key", **kwargs(transport))


async def test_ed25519_multikey_can_be_fetched_by_id(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = alice_of(peers)
    ed = alice_of(peers, "ed25519-alice.pem", "ed25519-key")
    assert isinstance(ed.public.key, Ed25519PublicKey)
    method = {
        "id": ed.key_id,
        "type": "Multikey",
        "controller": alice.owner,
        "publicKeyMultibase": ed25519_to_multibase(ed.public.key),
    }
    doc = actor_document(alice.owner, username="alice", keys=(alice.public,), assertionMethod=[method])
    peers.serve_json(alice.owner, doc)
    fetched = await fetch_key(ed.key_id, **kwargs(transport))
    assert fetched.key.to_pem() == ed.public.to_pem()


async def test_standalone_key_document_with_owner_listing_it(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    actor = peers.iri("peer.example", "/users/carol")
    key_id = peers.iri("peer.example", "/keys/carol")
    carol = load_pair("rsa-alice.pem", key_id, actor)
    peers.serve_json(
        key_id,
        {"id": key_id, "type": "CryptographicKey", "owner": actor, "publicKeyPem": carol.public.to_pem()},
    )
    peers.serve_json(actor, actor_document(actor, username="carol", keys=(carol.public,)))
    fetched = await fetch_key(key_id, **kwargs(transport))
    assert fetched.key.key_id == key_id and fetched.key.owner == actor
    assert fetched.owner.doc.id == actor


async def test_gotosocial_stub_actor_at_the_key_url(peers: FakePeers, transport: AiohttpTransport) -> None:
    # GoToSocial serves a stub of the actor (id = actor) at /users/x/main-key.
    actor = peers.iri("peer.example", "/users/dave")
    key_id = peers.iri("peer.example", "/users/dave/main-key")
    dave = load_pair("rsa-alice.pem", key_id, actor)
    stub = {
        "id": actor,
        "type": "Person",
        "preferredUsername": "dave",
        "publicKey": {"id": key_id, "owner": actor, "publicKeyPem": dave.public.to_pem()},
    }
    peers.serve_json(key_id, stub)
    peers.serve_json(actor, actor_document(actor, username="dave", keys=(dave.public,)))
    fetched = await fetch_key(key_id, **kwargs(transport))
    assert fetched.key.key_id == key_id and fetched.owner.doc.id == actor


async def test_key_document_whose_id_is_not_the_key_id_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Case 9 / fedify #963: evil's key URL serves alice's key id with mallory's key.
    alice = alice_of(peers)
    mallory_pem = load_pair("rsa-mallory.pem", "https://x/k", Iri("https://x/a")).public.to_pem()
    key_url = peers.iri("evil.example", "/keys/alice")
    peers.serve_json(key_url, {"id": alice.key_id, "owner": alice.owner, "publicKeyPem": mallory_pem})
    with pytest.raises(WrongOrigin):
        await fetch_key(key_url, **kwargs(transport))
    assert peers.hits_on("peer.example") == []


async def test_same_origin_key_document_under_another_id_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    actor = peers.iri("peer.example", "/users/erin")
    asked, other = peers.iri("peer.example", "/keys/1"), peers.iri("peer.example", "/keys/2")
    erin = load_pair("rsa-alice.pem", other, actor)
    key_doc = {"id": other, "owner": actor, "publicKeyPem": erin.public.to_pem()}
    peers.serve_json(asked, key_doc)
    peers.serve_json(other, key_doc)
    with pytest.raises(WrongOrigin):
        await fetch_key(asked, **kwargs(transport))


async def test_key_whose_owner_does_not_list_it_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # The bidirectional claim: the key says "owner alice", alice does not list it.
    alice = alice_of(peers)
    key_id = peers.iri("peer.example", "/keys/stray")
    stray = load_pair("rsa-bob.pem", key_id, alice.owner)
    peers.serve_json(key_id, {"id": key_id, "owner": alice.owner, "publicKeyPem": stray.public.to_pem()})
    peers.serve_json(alice.owner, actor_document(alice.owner, username="alice", keys=(alice.public,)))
    with pytest.raises(KeyUnavailable):
        await fetch_key(key_id, **kwargs(transport))


async def test_key_whose_owner_lists_other_material_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    actor = peers.iri("peer.example", "/users/frank")
    key_id = peers.iri("peer.example", "/keys/frank")
    served = load_pair("rsa-bob.pem", key_id, actor)
    listed = load_pair("rsa-alice.pem", key_id, actor)
    peers.serve_json(key_id, {"id": key_id, "owner": actor, "publicKeyPem": served.public.to_pem()})
    peers.serve_json(actor, actor_document(actor, username="frank", keys=(listed.public,)))
    with pytest.raises(KeyUnavailable):
        await fetch_key(key_id, **kwargs(transport))


async def test_key_owned_by_an_actor_on_another_origin_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    alice = alice_of(peers)
    key_id = peers.iri("evil.example", "/keys/alice")
    fake = load_pair("rsa-mallory.pem", key_id, alice.owner)
    peers.serve_json(key_id, {"id": key_id, "owner": alice.owner, "publicKeyPem": fake.public.to_pem()})
    with pytest.raises(KeyUnavailable):
        await fetch_key(key_id, **kwargs(transport))
    assert peers.hits_on("peer.example") == []


@pytest.mark.parametrize(
    "key_id", ["acct:alice@peer.example", "did:key:z6Mk", "data:text/plain,k", "/relative#k"]
)
async def test_non_http_key_ids_are_refused_without_a_request(
    peers: FakePeers, transport: AiohttpTransport, key_id: str
) -> None:
    with pytest.raises(KeyUnavailable):
        await fetch_key(key_id, **kwargs(transport))
    assert peers.hits == []


async def test_weak_keys_are_refused(peers: FakePeers, transport: AiohttpTransport) -> None:
    actor = peers.iri("peer.example", "/users/old")
    weak = load_pair("rsa-weak-1024.pem", f"{actor}#main-key", actor)
    peers.serve_json(actor, actor_document(actor, username="old", keys=(weak.public,)))
    with pytest.raises(KeyUnavailable):
        await fetch_key(weak.key_id, **kwargs(transport))


async def test_local_key_ids_are_never_fetched(peers: FakePeers, transport: AiohttpTransport) -> None:
    with pytest.raises(LocalIriRefused):
        await fetch_key(f"{APP_IRI}#main-key", **kwargs(transport))


# --- read_actor (the one remote-actor reader) ------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "mastodon/actor.json",
        "lemmy/person.json",
        "lemmy/group.json",
        "mobilizon/group.json",
        "fedify/actor.json",
    ],
)
def test_read_actor_on_recorded_payloads(payload: str) -> None:
    doc = json.loads((Path(__file__).parents[1] / "fixtures" / "payloads" / payload).read_text())
    actor = read_actor(doc)
    assert actor.id == doc["id"]
    assert actor.type == doc["type"]
    assert actor.preferred_username == doc["preferredUsername"]
    assert actor.inbox == doc["inbox"]
    assert actor.public_keys and actor.public_keys[0].id == doc["publicKey"]["id"]
    assert actor.usable_keys()
    assert actor.shared_inbox == doc["endpoints"]["sharedInbox"]


def _key(key_id: str, owner: str) -> dict[str, str]:
    pem = load_pair("rsa-alice.pem", key_id, Iri(owner)).public.to_pem()
    return {"id": key_id, "owner": owner, "publicKeyPem": pem}


def test_read_actor_drops_keys_it_does_not_own() -> None:
    bob = "https://peer.example/users/bob"
    doc = actor_document(bob, username="bob")
    doc["publicKey"] = [
        _key(f"{bob}#main-key", bob),
        _key("https://peer.example/users/alice#main-key", bob),  # alice's fragment key in bob's doc
        _key(f"{bob}#k2", "https://peer.example/users/alice"),  # owner is someone else
        _key("https://evil.example/keys/1", bob),  # another origin
    ]
    assert [k.id for k in read_actor(doc).public_keys] == [f"{bob}#main-key"]


def test_read_actor_caps_lists_and_texts() -> None:
    iri = "https://peer.example/users/many"
    doc = actor_document(iri, username="many", name="n" * 5000, summary="s" * 30_000)
    doc["publicKey"] = [_key(f"{iri}#k{n}", iri) for n in range(15)]
    doc["alsoKnownAs"] = [f"https://peer.example/old/{n}" for n in range(300)]
    actor = read_actor(doc)
    assert len(actor.public_keys) == 10
    assert len(actor.also_known_as) == 256
    assert len(actor.name) == 2048 and len(actor.summary) == 20 * 1024  # the published table's 20 kB


def test_read_actor_keeps_collections_on_its_origin_only() -> None:
    iri = "https://peer.example/users/x"
    doc = actor_document(iri, username="x", followers="https://entraide.test/groups/asso/followers")
    assert read_actor(doc).followers is None


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"id": "acct:x@peer.example"},
        {"type": "Note"},
        {"inbox": None},
        {"inbox": "ftp://peer.example/inbox"},
        {"preferredUsername": "a@b"},
        {"preferredUsername": "x" * 300},
        {"preferredUsername": 7},
    ],
)
def test_read_actor_refuses_unusable_identity(change: dict[str, Any]) -> None:
    doc = actor_document("https://peer.example/users/x", username="x")
    doc.update(change)
    with pytest.raises(InvalidDocument):
        read_actor(doc)


def test_read_actor_takes_the_first_actor_type_of_a_list() -> None:
    doc = actor_document("https://peer.example/users/x", username="x", type=["Object", "Service"])
    assert read_actor(doc).type == "Service"


def test_unknown_key_raises_key_unavailable() -> None:
    actor = read_actor(actor_document("https://peer.example/users/x", username="x"))
    with pytest.raises(KeyUnavailable):
        actor.public_key("https://peer.example/users/x#main-key")
    assert actor.usable_keys() == ()
