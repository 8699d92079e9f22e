"""HTTP signatures: sign outgoing requests and verify incoming ones.

Two specs are spoken (docs/interop.md "HTTP signatures"):

- ``"cavage"``: draft-cavage-http-signatures-12, what every peer verifies; our default.
- ``"rfc9421"``: RFC 9421 HTTP Message Signatures, verified by Mastodon ≥ 4.5 and Fedify.

:mod:`.cavage` is public too: its ``prepare`` builds a request up to its signature, so that a
batch's RSA operations can be made elsewhere (``federation.signing_pool``).

Delivery double-knocks by calling :func:`sign_request` again with the other ``spec`` after a
401, and remembers per host what worked (that memory lives with the delivery code).

:func:`verify_request` establishes *which key* signed a request. It does not compare the key's
owner with the activity's actor: the inbox does that with :attr:`VerifiedSigner.owner`
(security case 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import KeyUnavailable, SignatureError, SignatureMissing
from ..http import IncomingRequest, OutgoingRequest
from ..keys import MIN_RSA_KEY_BITS, KeyAlgorithm, KeyPair, PublicKey
from ..ports import KeyResolver
from ..types import Iri
from . import cavage, rfc9421
from ._window import DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW, require_aware
from .digest import check_body_digest

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_FUTURE_SKEW",
    "MAX_KEY_ID_CHARS",
    "SignatureSpec",
    "VerifiedSigner",
    "cavage",
    "sign_request",
    "verify_request",
]

SignatureSpec = Literal["cavage", "rfc9421"]
"""Which HTTP signature spec a request is signed with."""

MAX_KEY_ID_CHARS = 2048
"""Longer keyIds are refused without a lookup."""


@dataclass(frozen=True, slots=True)
class VerifiedSigner:
    """Who signed a request whose signature verified.

    ``key_id`` is the keyId as sent (an http(s) IRI); ``owner`` is the actor IRI that the
    :class:`~federation.ports.KeyResolver` says owns that key, the value the inbox compares
    with the activity's ``actor``. ``algorithm`` is the one the key type imposed; ``spec``
    says which header format carried the signature.
    """

    key_id: Iri
    owner: Iri
    algorithm: KeyAlgorithm
    spec: SignatureSpec


def sign_request(
    request: OutgoingRequest, key_pair: KeyPair, *, now: datetime, spec: SignatureSpec = "cavage"
) -> OutgoingRequest:
    """Return a signed copy of ``request``; the original is not changed.

    ``cavage`` adds ``Host``, ``Date``, ``Digest`` (with a body) and a ``Signature`` covering
    ``(request-target) host date [digest]``, labelled ``rsa-sha256`` for RSA keys and
    ``hs2019`` for Ed25519. ``rfc9421`` adds ``Date``, ``Content-Digest`` (with a body),
    ``Signature-Input`` and ``Signature`` covering ``@method @target-uri @authority
    [content-digest]`` with ``created``, ``keyid`` and ``alg``. Earlier signature and digest
    headers are replaced, so the same request can be re-signed with the other spec.
    The result is deterministic for a given request, key and ``now``.

    Raises:
        ValueError: ``now`` is naive, the URL is not absolute http(s), or ``spec`` is unknown.
    """
    if spec == "cavage":
        return cavage.sign(request, key_pair, now=now)
    if spec == "rfc9421":
        return rfc9421.sign(request, key_pair, now=now)
    raise ValueError(f"unknown signature spec {spec!r}")


class _PreparedVerification(Protocol):
    @property
    def key_id(self) -> str: ...

    def verify(self, key: PublicKey) -> None: ...


async def verify_request(
    request: IncomingRequest,
    *,
    resolve_key: KeyResolver,
    now: datetime,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> VerifiedSigner:
    """Verify the HTTP signature of ``request`` and say which key made it.

    RFC 9421 is used when ``Signature-Input`` is present, draft-cavage otherwise. The order of
    checks is chosen so that no key is fetched for a request that would be refused anyway
    (security cases 2 and 7): parse → algorithm label → required coverage → time window →
    keyId shape → body digest against the raw bytes → key lookup → cryptography.

    Guarantees on success: the signature covers the method and full target, the host (cavage)
    and a signed time inside ``[now - max_age, now + max_future_skew]``; when the request has
    a body or is a POST, a signed digest header matches ``request.body`` byte for byte; the key
    has the id that was asked for, is RSA ≥ 2048 bits or Ed25519, and its type alone chose the
    algorithm (security case 9).

    Key rotation (security case 8c): when the first key does not verify, the key is resolved
    once more with ``refresh=True`` and the check is repeated; rate-limiting those refreshes is
    the resolver's job.

    Raises:
        SignatureMissing: neither ``Signature`` nor ``Signature-Input`` is present.
        MalformedHeader: a signature or digest header cannot be parsed (HTTP 400).
        InsufficientCoverage: a required component is not signed.
        SignatureExpired: the signed time is outside the window or unparsable.
        DigestMismatch: a digest header does not match the body.
        KeyUnavailable: the keyId is not an http(s) IRI (``acct:``…), the resolver cannot find
            the key, or the key is unusable (too weak, unsupported, wrong id).
        KeyFetchTemporaryFailure: from the resolver, on a transient network error (HTTP 503).
        SignatureError: any other verification failure (unsupported algorithm label, misused
            pseudo-header, bad signature), with a detail naming the reason.
        ValueError: ``now`` is naive (a programming error).
    """
    now = require_aware(now)
    prepared: _PreparedVerification
    spec: SignatureSpec
    if "signature-input" in request.headers:
        spec = "rfc9421"
        prepared = rfc9421.prepare_verification(
            request, now=now, max_future_skew=max_future_skew, max_age=max_age
        )
    elif "signature" in request.headers:
        spec = "cavage"
        prepared = cavage.prepare_verification(
            request, now=now, max_future_skew=max_future_skew, max_age=max_age
        )
    else:
        raise SignatureMissing("the request carries no Signature or Signature-Input header")
    key_id = _checked_key_id(prepared.key_id)
    # The digest is compared before any key lookup: a tampered body costs us no fetch.
    check_body_digest(request.headers, request.body)
    key = await resolve_key.resolve(key_id)
    try:
        _check_usable(key, key_id)
        prepared.verify(key)
    except SignatureError:
        # Maybe the actor rotated its key and ours is stale (Mastodon refetches once too).
        key = await resolve_key.resolve(key_id, refresh=True)
        _check_usable(key, key_id)
        prepared.verify(key)
    return VerifiedSigner(key_id=key_id, owner=key.owner, algorithm=key.algorithm, spec=spec)


def _checked_key_id(key_id: str) -> Iri:
    # Security case 9: only http(s) IRIs name keys; acct: (Misskey refuses it too), did:,
    # data: and friends are refused before anything is looked up.
    if len(key_id) > MAX_KEY_ID_CHARS or not key_id.isascii() or not key_id.isprintable() or " " in key_id:
        raise KeyUnavailable("the keyId is not a usable IRI", key_id=key_id[:200])
    try:
        parts = urlsplit(key_id)
        host = parts.hostname
    except ValueError as exc:
        raise KeyUnavailable("the keyId is not a usable IRI", key_id=key_id[:200]) from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        kind = f"{parts.scheme}:" if parts.scheme else "relative"
        raise KeyUnavailable(f"keyId must be an http(s) IRI; {kind} keyIds are refused", key_id=key_id)
    return Iri(key_id)


def _check_usable(key: PublicKey, key_id: Iri) -> None:
    # The resolver should already refuse these; checking again keeps verification safe with
    # any resolver (security case 9: id must equal keyId, no RSA below 2048 bits).
    if key.key_id != key_id:
        raise KeyUnavailable("the resolved key's id differs from the keyId", key_id=key_id)
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_KEY_BITS:
        raise KeyUnavailable(f"RSA key of {key.key.key_size} bits is too weak", key_id=key_id)
