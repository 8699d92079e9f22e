"""Shared helpers for the HTTP signature tests: fixed keys, a fixed clock, request builders.

Not a test module. The keys are the PEM files in tests/fixtures/keys/ (see its README).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from federation.http import Headers, IncomingRequest, OutgoingRequest
from federation.keys import KeyPair, PublicKey, private_key_from_pem
from federation.memory import MemoryKeyResolver
from federation.types import Iri

KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "keys"

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
"""The injected clock of every signature test."""

ALICE_IRI = Iri("https://peer.example/users/alice")
BOB_IRI = Iri("https://peer.example/users/bob")
MALLORY_IRI = Iri("https://evil.example/users/mallory")

INBOX_URL = "https://entraide.test/groups/collectif/inbox"
FOLLOW_BODY = (
    b'{"@context":"https://www.w3.org/ns/activitystreams","id":"https://peer.example/activities/1",'
    b'"type":"Follow","actor":"https://peer.example/users/alice","object":"https://entraide.test/groups/collectif"}'
)

# Pinned once from the fixed key tests/fixtures/keys/rsa-alice.pem (RSA PKCS#1 v1.5 is
# deterministic), like Mastodon's spec fixtures: a change to the signer that alters a single
# byte of what goes on the wire fails here instead of silently changing what the other tests see.
PINNED_SIGNING_STRING = (
    "(request-target): post /groups/collectif/inbox\n"
    "host: entraide.test\n"
    "date: Sat, 01 Mar 2025 12:00:00 GMT\n"
    "digest: SHA-256=1xvb2/1+KoBFnwZq1N+nULEkOyS1Eb7CWRppC3UEQwk="
)
PINNED_SIGNATURE_HEADER = (
    'keyId="https://peer.example/users/alice#main-key",algorithm="rsa-sha256",'
    'headers="(request-target) host date digest",'
    'signature="qzfGsr7/GzmBwQB0qd2scItLsMd7A4EWwnksgpp6SOOfEA0JcC5dRj0wnM1RudnRP/1DVq4TtExhUs+QTS2oTOOSr'
    "AYgK5KRv2VUVuN1FqRK55Gu1LUaWEtm3N1VF5MUHYy7YOML94jXrjyxD64U1xPAZLP2kcEYnPzu+KQ2/5AiCbtI+PsOS4RAX+QBb4"
    "kXzF7/8bG8BiMNT7DWUJ+pFugs6a/cYintTAQ0l0mot+/mLTTbZrcjTnkrIur8INfTcu2Ccp9sTGkEk20FoRpudA9piIGyuU8Q7o1U"
    'oejD0ggr2CdGvuqfyFDeJP1mQs7ta94Cq8uOMUrhQkgmcaG4xA=="'
)


def load_pair(file_name: str, key_id: str, owner: Iri) -> KeyPair:
    """A KeyPair from one of the fixed PEM files."""
    return KeyPair(Iri(key_id), owner, private_key_from_pem((KEYS_DIR / file_name).read_bytes()))


ALICE = load_pair("rsa-alice.pem", f"{ALICE_IRI}#main-key", ALICE_IRI)
ALICE_ED = load_pair("ed25519-alice.pem", f"{ALICE_IRI}#ed25519-key", ALICE_IRI)
BOB = load_pair("rsa-bob.pem", f"{BOB_IRI}#main-key", BOB_IRI)
MALLORY = load_pair("rsa-mallory.pem", f"{MALLORY_IRI}#main-key", MALLORY_IRI)
WEAK = load_pair(
    "rsa-weak-1024.pem", "https://weak.example/users/old#main-key", Iri("https://weak.example/users/old")
)
ALICE_ROTATED = KeyPair(ALICE.key_id, ALICE_IRI, BOB.private_key)
"""Alice after a key rotation: same keyId, new key material (bob's fixture key)."""


def resolver(*pairs: KeyPair | PublicKey) -> MemoryKeyResolver:
    """A MemoryKeyResolver knowing the public halves of ``pairs``."""
    return MemoryKeyResolver(p.public if isinstance(p, KeyPair) else p for p in pairs)


def post(url: str = INBOX_URL, body: bytes = FOLLOW_BODY) -> OutgoingRequest:
    """An unsigned inbox POST as delivery would build it."""
    return OutgoingRequest("POST", url, Headers({"Content-Type": "application/activity+json"}), body)


def get(url: str) -> OutgoingRequest:
    """An unsigned signed-fetch GET."""
    return OutgoingRequest("GET", url, Headers({"Accept": "application/activity+json"}))


def received(
    request: OutgoingRequest,
    *,
    method: str | None = None,
    target: str | None = None,
    body: bytes | None = None,
    set_headers: dict[str, str] | None = None,
    drop_headers: tuple[str, ...] = (),
) -> IncomingRequest:
    """What our server would see for ``request``, optionally tampered with on the way.

    ``target`` replaces the raw path+query (and the URL is rebuilt from it); ``set_headers``
    replaces or adds headers; ``drop_headers`` removes them.
    """
    parts = urlsplit(request.url)
    raw_target = (
        target if target is not None else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    )
    changes = {k.lower(): v for k, v in (set_headers or {}).items()}
    dropped = {name.lower() for name in drop_headers}
    items = [
        (name, request.headers[name])
        for name in request.headers
        if name.lower() not in changes and name.lower() not in dropped
    ]
    items += list((set_headers or {}).items())
    return IncomingRequest(
        method=method or request.method,
        url=f"{parts.scheme}://{parts.netloc}{raw_target}",
        target=raw_target,
        headers=Headers(items),
        body=(request.body or b"") if body is None else body,
    )
