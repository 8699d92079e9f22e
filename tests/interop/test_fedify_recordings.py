"""What the Fedify peer sent and served, kept under ``tests/fixtures/payloads/fedify/peer/``.

Offline (no Node needed): the recordings are pinned byte for byte, satisfy our lenient schemas,
pass (or, for the Linked-Data-signed activities, document why they do not yet pass) our JSON-LD
screening, and the recorded signed requests verify with our own HTTP signature verifier.
Re-record with ``ENTRAIDE_RECORD_FEDIFY=1 pytest tests/interop`` (see that folder's README).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from federation import validation
from federation.actors_remote import read_actor
from federation.http import Headers, IncomingRequest
from federation.keys import PublicKey
from federation.signatures import verify_request
from federation.signatures.cavage import parse_http_date
from federation.types import Iri
from federation.vocab.parse import check_json_ld
from tests.interop.support import RECORD_DIR

# recording -> lenient schema it must satisfy
KIND: dict[str, str] = {
    "accept_follow.json": "activitystreams/activity",
    "actor.json": "activitystreams/actor",
    "announce.json": "activitystreams/activity",
    "create_note.json": "activitystreams/activity",
    "create_reply.json": "activitystreams/activity",
    "create_vote.json": "activitystreams/activity",
    "delete_note.json": "activitystreams/activity",
    "follow.json": "activitystreams/activity",
    "like.json": "activitystreams/activity",
    "note.json": "activitystreams/object",
    "outbox.json": "activitystreams/collection",
    "undo_like.json": "activitystreams/activity",
    "update_note.json": "activitystreams/activity",
}
# signed requests: {method, url, headers, body (exact text), signer (the peer's actor, as served)}
ENVELOPES = ("request_get_rfc9421.json", "request_post_cavage.json", "request_post_rfc9421.json")


def _load(name: str) -> Any:
    return json.loads((RECORD_DIR / name).read_text(encoding="utf-8"))


def _sums() -> dict[str, str]:
    lines = (RECORD_DIR / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    return {
        name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())
    }


def _screening_cases() -> list[Any]:
    cases = []
    for name in sorted(KIND):
        cases.append(pytest.param(name))
    return cases


def test_every_recording_is_classified_documented_and_pinned() -> None:
    files = {path.name for path in RECORD_DIR.glob("*.json")}
    assert files == set(KIND) | set(ENVELOPES)
    assert set(_sums()) == files
    readme = (RECORD_DIR.parent / "README.md").read_text(encoding="utf-8")
    for name in sorted(files):
        assert f"peer/{name}" in readme, f"fedify/README.md does not describe peer/{name}"


@pytest.mark.parametrize("name", sorted(set(KIND) | set(ENVELOPES)))
def test_recordings_are_byte_faithful(name: str) -> None:
    digest = hashlib.sha256((RECORD_DIR / name).read_bytes()).hexdigest()
    assert _sums()[name] == digest, f"{name} changed: re-record, never edit (and update SHA256SUMS)"


@pytest.mark.parametrize("name", sorted(KIND))
def test_recordings_satisfy_the_lenient_schemas(name: str) -> None:
    validation.validate(_load(name), KIND[name])


@pytest.mark.parametrize("name", _screening_cases())
def test_recordings_pass_our_json_ld_screening(name: str) -> None:
    check_json_ld(_load(name))


class _SignerKeys:
    """Resolves keys from the peer's actor document recorded with the request."""

    def __init__(self, actor_document: str) -> None:
        self.actor = read_actor(json.loads(actor_document))

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
        return self.actor.public_key(key_id)


@pytest.mark.parametrize("name", ENVELOPES)
async def test_our_verifier_accepts_fedifys_signed_requests(name: str) -> None:
    envelope = _load(name)
    url = urlsplit(envelope["url"])
    body = envelope["body"]
    request = IncomingRequest(
        method=envelope["method"],
        url=envelope["url"],
        target=url.path + (f"?{url.query}" if url.query else ""),
        headers=Headers(envelope["headers"]),
        body=b"" if body is None else body.encode("utf-8"),
    )
    signed_at = parse_http_date(envelope["headers"]["date"])
    signer = await verify_request(request, resolve_key=_SignerKeys(envelope["signer"]), now=signed_at)
    assert signer.spec == ("rfc9421" if "rfc9421" in name else "cavage")
    assert signer.owner == json.loads(envelope["signer"])["id"]
    assert signer.key_id.endswith("#main-key")
