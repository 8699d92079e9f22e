"""WebFinger handle resolution and the round trip that binds a handle to an actor (case 36).

Fake peers on 127.0.0.1 play ``peer.example``, ``evil.example`` and ``third.example``; their
handles carry the test server's port (``alice@peer.example:PORT``), so the lookups run over
plain http with ``allow_http=True``, as the server does for loopback federation only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from federation.actors_remote import RemoteActorDoc, read_actor
from federation.errors import WebFingerError
from federation.lookup import (
    AmbiguousHandle,
    HandleMismatch,
    LocalHandleRefused,
    WebFingerNotFound,
    WebFingerTemporaryFailure,
    lookup_handle,
    resolve_handle,
    verify_handle,
)
from federation.transport import AiohttpTransport
from federation.uris import UriScheme
from federation.webfinger import AcctResource
from tests.support.fake_peers import FakePeers, actor_document, jrd, peer_transport

ServerFactory = Callable[..., Awaitable[TestServer]]
JRD = "application/jrd+json"


@pytest.fixture
async def peers(aiohttp_server: ServerFactory) -> FakePeers:
    fake = FakePeers()
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as t:
        yield t


def handle(peers: FakePeers, user: str, host: str) -> str:
    return f"{user}@{peers.authority(host)}"


def serve_webfinger(
    peers: FakePeers, user: str, host: str, body: dict[str, object], *, status: int = 200
) -> None:
    """Answer ``acct:user@host:port`` on ``host`` with ``body``."""
    target = f"/.well-known/webfinger?resource=acct:{handle(peers, user, host)}"
    peers.serve(host, target, body, status=status, content_type=JRD)


def subject(peers: FakePeers, user: str, host: str) -> str:
    return f"acct:{handle(peers, user, host)}"


def actor(
    peers: FakePeers, host: str, path: str, username: str, actor_type: str = "Person"
) -> RemoteActorDoc:
    return read_actor(actor_document(peers.iri(host, path), username=username, actor_type=actor_type))


# --- resolve_handle / lookup_handle ---------------------------------------------------------


async def test_handle_resolves_to_its_self_link(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = peers.iri("peer.example", "/users/alice")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "peer.example"), (alice, None))
    )
    [candidate] = await resolve_handle(
        handle(peers, "alice", "peer.example"), transport=transport, scheme="http", allow_http=True
    )
    assert candidate.actor == alice
    assert candidate.actor_type is None
    assert candidate.subject == AcctResource("alice", peers.authority("peer.example"))


async def test_handle_forms_are_tolerated(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = peers.iri("peer.example", "/users/alice")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "peer.example"), (alice, None))
    )
    for form in (
        f"@{handle(peers, 'Alice', 'PEER.example')}",
        f"acct:{handle(peers, 'alice', 'peer.example')}",
    ):
        assert await lookup_handle(form, transport=transport, scheme="http", allow_http=True) == alice


async def test_person_and_group_are_both_returned(peers: FakePeers, transport: AiohttpTransport) -> None:
    # Lemmy answers one name with a Person and a Group (the Group last, for Mastodon).
    person = peers.iri("peer.example", "/u/sante")
    group = peers.iri("peer.example", "/c/sante")
    body = jrd(subject(peers, "sante", "peer.example"), (person, "Person"), (group, "Group"))
    serve_webfinger(peers, "sante", "peer.example", body)
    name = handle(peers, "sante", "peer.example")
    candidates = await resolve_handle(name, transport=transport, scheme="http", allow_http=True)
    assert [(c.actor, c.actor_type) for c in candidates] == [(person, "Person"), (group, "Group")]
    with pytest.raises(AmbiguousHandle):
        await lookup_handle(name, transport=transport, scheme="http", allow_http=True)
    chosen = await lookup_handle(
        name, transport=transport, scheme="http", allow_http=True, actor_type="Group"
    )
    assert chosen == group
    with pytest.raises(WebFingerError):
        await lookup_handle(name, transport=transport, scheme="http", allow_http=True, actor_type="Service")


async def test_links_that_are_not_activitypub_are_ignored(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    body = {
        "subject": subject(peers, "bob", "peer.example"),
        "links": [
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": "http://x/@bob"},
            {"rel": "self", "type": "text/html", "href": peers.iri("peer.example", "/@bob")},
            {"rel": "self", "type": "application/activity+json", "href": "javascript:alert(1)"},
        ],
    }
    serve_webfinger(peers, "bob", "peer.example", body)
    with pytest.raises(WebFingerError):
        await resolve_handle(
            handle(peers, "bob", "peer.example"), transport=transport, scheme="http", allow_http=True
        )


async def test_plain_http_needs_allow_http(peers: FakePeers, transport: AiohttpTransport) -> None:
    with pytest.raises(WebFingerError):
        await resolve_handle(handle(peers, "alice", "peer.example"), transport=transport, scheme="http")
    assert peers.hits == []


async def test_unknown_account_is_not_found(peers: FakePeers, transport: AiohttpTransport) -> None:
    with pytest.raises(WebFingerNotFound):
        await resolve_handle(
            handle(peers, "nobody", "peer.example"), transport=transport, scheme="http", allow_http=True
        )


async def test_unreachable_host_is_temporary(transport: AiohttpTransport) -> None:
    with pytest.raises(WebFingerTemporaryFailure):
        await resolve_handle("alice@peer.example:9", transport=transport, scheme="http", allow_http=True)


async def test_one_subject_redirect_is_followed_and_must_confirm(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # alice@peer.example delegates to alice@third.example, which confirms itself.
    alice = peers.iri("third.example", "/users/alice")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "third.example"), (alice, None))
    )
    serve_webfinger(
        peers, "alice", "third.example", jrd(subject(peers, "alice", "third.example"), (alice, None))
    )
    [candidate] = await resolve_handle(
        handle(peers, "alice", "peer.example"), transport=transport, scheme="http", allow_http=True
    )
    assert candidate.actor == alice
    assert candidate.subject == AcctResource("alice", peers.authority("third.example"))


async def test_a_second_subject_redirect_is_refused(peers: FakePeers, transport: AiohttpTransport) -> None:
    target = peers.iri("evil.example", "/users/alice")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "third.example"), (target, None))
    )
    serve_webfinger(
        peers, "alice", "third.example", jrd(subject(peers, "alice", "evil.example"), (target, None))
    )
    serve_webfinger(
        peers, "alice", "evil.example", jrd(subject(peers, "alice", "evil.example"), (target, None))
    )
    with pytest.raises(HandleMismatch):
        await resolve_handle(
            handle(peers, "alice", "peer.example"), transport=transport, scheme="http", allow_http=True
        )
    assert peers.hits_on("evil.example") == []


# --- verify_handle: the round trip (case 36) -----------------------------------------------


async def test_actor_that_webfingers_back_is_verified(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = actor(peers, "peer.example", "/users/alice", "alice")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "peer.example"), (alice.id, None))
    )
    confirmed = await verify_handle(
        alice, transport=transport, allow_http=True, expected=handle(peers, "alice", "peer.example")
    )
    assert confirmed == AcctResource("alice", peers.authority("peer.example"))


async def test_webfinger_pointing_to_another_hosts_actor_does_not_bind_the_handle(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # Given acct:asso@peer.example answered with evil.example's actor
    evil_asso = actor(peers, "evil.example", "/users/asso", "asso", "Group")
    serve_webfinger(
        peers, "asso", "peer.example", jrd(subject(peers, "asso", "peer.example"), (evil_asso.id, None))
    )
    serve_webfinger(
        peers, "asso", "evil.example", jrd(subject(peers, "asso", "evil.example"), (evil_asso.id, None))
    )
    name = handle(peers, "asso", "peer.example")
    [candidate] = await resolve_handle(name, transport=transport, scheme="http", allow_http=True)
    assert candidate.actor == evil_asso.id  # only a candidate…
    # When the fetched actor is verified against the handle that was asked for
    # Then it answers to asso@evil.example, not asso@peer.example: no binding
    with pytest.raises(HandleMismatch):
        await verify_handle(evil_asso, transport=transport, allow_http=True, expected=name)


async def test_actor_claiming_a_handle_on_another_host_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    # evil.example's WebFinger says its alice is alice@peer.example; peer.example disagrees.
    evil_alice = actor(peers, "evil.example", "/users/alice", "alice")
    real_alice = peers.iri("peer.example", "/users/alice")
    peer_subject = subject(peers, "alice", "peer.example")
    serve_webfinger(peers, "alice", "evil.example", jrd(peer_subject, (evil_alice.id, None)))
    serve_webfinger(peers, "alice", "peer.example", jrd(peer_subject, (real_alice, None)))
    with pytest.raises(HandleMismatch):
        await verify_handle(evil_alice, transport=transport, allow_http=True)


async def test_webfinger_that_does_not_link_back_is_refused(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    alice = actor(peers, "peer.example", "/users/alice", "alice")
    other = peers.iri("peer.example", "/users/someone-else")
    serve_webfinger(
        peers, "alice", "peer.example", jrd(subject(peers, "alice", "peer.example"), (other, None))
    )
    with pytest.raises(HandleMismatch):
        await verify_handle(alice, transport=transport, allow_http=True)


async def test_actor_without_preferred_username_has_no_handle(
    peers: FakePeers, transport: AiohttpTransport
) -> None:
    doc = actor_document(peers.iri("peer.example", "/users/x"), username="x")
    del doc["preferredUsername"]
    with pytest.raises(HandleMismatch):
        await verify_handle(read_actor(doc), transport=transport, allow_http=True)
    assert peers.hits == []


async def test_http_actor_needs_allow_http(peers: FakePeers, transport: AiohttpTransport) -> None:
    alice = actor(peers, "peer.example", "/users/alice", "alice")
    with pytest.raises(WebFingerError):
        await verify_handle(alice, transport=transport)
    assert peers.hits == []


async def test_our_own_handles_are_never_webfingered(peers: FakePeers, transport: AiohttpTransport) -> None:
    # Case 17: with our origin on peer.example, its accounts come from the database only.
    uris = UriScheme(f"http://peer.example:{peers.port}")
    name = handle(peers, "asso", "peer.example")
    with pytest.raises(LocalHandleRefused):
        await resolve_handle(name, transport=transport, scheme="http", allow_http=True, uris=uris)
    # Nor may a remote WebFinger redirect us to one of our own accounts.
    serve_webfinger(
        peers, "asso", "evil.example", jrd(subject(peers, "asso", "peer.example"), ("http://x/", None))
    )
    with pytest.raises(LocalHandleRefused):
        await resolve_handle(
            handle(peers, "asso", "evil.example"),
            transport=transport,
            scheme="http",
            allow_http=True,
            uris=uris,
        )
    assert peers.hits_on("peer.example") == []
