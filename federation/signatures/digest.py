"""Body digests: the legacy ``Digest`` header (RFC 3230) and RFC 9530 ``Content-Digest``.

A signature covers the digest header, not the body, so a signature is only worth something once
the digest has been compared with the bytes actually received (security case 2, Misskey
CVE-2023-49079). Both headers carry SHA-256 only: it is what every peer sends, and Mastodon
refuses anything else (docs/interop.md "HTTP signatures").

The parsers are total: on any input they either return a 32-byte digest or raise
:class:`~federation.errors.MalformedHeader` (HTTP 400), never anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache

from http_sfv.dictionary import Dictionary
from http_sfv.item import Item

from ..errors import DigestMismatch, MalformedHeader
from ..http import Headers

SHA256_DIGEST_BYTES = 32
MAX_DIGEST_HEADER_CHARS = 4096
"""Longer digest headers are refused before parsing (a real one is under 200 characters)."""


MAX_CACHED_DIGEST_BODY_BYTES = 64 * 1024
"""Bodies up to this size have their digest remembered (:func:`compute_digest`)."""


def compute_digest(body: bytes) -> str:
    """The ``Digest`` header value for ``body``: ``SHA-256=<base64>``.

    The algorithm name is spelled in upper case, as Mastodon sends it. A fan-out signs the same
    body for every inbox: the digests of the last few bodies (up to
    :data:`MAX_CACHED_DIGEST_BODY_BYTES` each) are remembered, so it is computed once per body.
    """
    return "SHA-256=" + _sha256_base64(body)


def compute_content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` header value for ``body``: ``sha-256=:<base64>:``
    (remembered like :func:`compute_digest`'s)."""
    return "sha-256=:" + _sha256_base64(body) + ":"


def _sha256_base64(body: bytes) -> str:
    # bytes only: a bytearray is mutable (and unhashable), its digest cannot be remembered.
    if type(body) is bytes and len(body) <= MAX_CACHED_DIGEST_BODY_BYTES:
        return _remembered_sha256_base64(body)
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


# Keyed by the body itself (equal bodies, equal digests): a bytes object keeps its hash, and the
# fan-out passes the same object each time, so a hit costs no pass over the body. Bounded: at
# most 16 bodies of 64 KiB are kept alive by the cache.
@lru_cache(maxsize=16)
def _remembered_sha256_base64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def parse_digest(value: str) -> bytes:
    """Return the SHA-256 digest carried by a ``Digest`` header value.

    The header is a comma-separated list of ``algorithm=base64`` pairs. Algorithm names are
    compared case-insensitively (Mastodon does the same); other algorithms may be listed but
    are ignored, and a SHA-256 entry is required.

    Raises:
        MalformedHeader: on any syntax error, a missing or repeated SHA-256 entry, invalid
            base64, or a decoded digest that is not 32 bytes. Nothing else is ever raised.
    """
    if len(value) > MAX_DIGEST_HEADER_CHARS or not value.isascii():
        raise MalformedHeader("Digest header is too long or not ASCII")
    found: bytes | None = None
    offered: list[str] = []
    for element in value.split(","):
        element = element.strip(" \t")
        if not element:
            continue
        algorithm, sep, encoded = element.partition("=")
        if not sep or not algorithm.strip():
            raise MalformedHeader("Digest header entries must look like algorithm=value")
        algorithm = algorithm.strip().lower()
        offered.append(algorithm)
        if algorithm != "sha-256":
            continue
        if found is not None:
            raise MalformedHeader("Digest header lists SHA-256 more than once")
        found = _decode_sha256(encoded.strip(), header="Digest")
    if found is None:
        raise MalformedHeader(
            "Only SHA-256 is supported in the Digest header; offered: " + (", ".join(offered) or "nothing")
        )
    return found


def parse_content_digest(value: str) -> bytes:
    """Return the SHA-256 digest carried by an RFC 9530 ``Content-Digest`` header value.

    The value is parsed as a Structured Field Dictionary (RFC 8941); the ``sha-256`` member
    must be a Byte Sequence of 32 bytes. Other members (e.g. ``sha-512``) are ignored.

    Raises:
        MalformedHeader: when the value is not a valid Dictionary, has no ``sha-256`` member,
            or that member is not a 32-byte Byte Sequence. Nothing else is ever raised.
    """
    if len(value) > MAX_DIGEST_HEADER_CHARS or not value.isascii():
        raise MalformedHeader("Content-Digest header is too long or not ASCII")
    parsed = Dictionary()
    try:
        parsed.parse(value.encode("ascii"))
    except (ValueError, IndexError, TypeError, UnicodeError) as exc:
        # http_sfv signals syntax errors with ValueError; the other types are a guard in case a
        # corner of the third-party parser is less tidy (the property test checks totality).
        raise MalformedHeader("Content-Digest is not a valid structured field dictionary") from exc
    member = parsed.get("sha-256")
    if member is None:
        raise MalformedHeader(
            "Only sha-256 is supported in Content-Digest; offered: " + (", ".join(parsed) or "nothing")
        )
    raw = getattr(member, "value", None)
    if not isinstance(member, Item) or not isinstance(raw, bytes):
        raise MalformedHeader("Content-Digest sha-256 member must be a byte sequence")
    if len(raw) != SHA256_DIGEST_BYTES:
        raise MalformedHeader("Content-Digest sha-256 member is not a SHA-256 digest (32 bytes)")
    return raw


def check_body_digest(headers: Headers, body: bytes) -> frozenset[str]:
    """Compare every digest header present with the SHA-256 of the raw ``body`` bytes.

    ``body`` must be the bytes exactly as received, before any JSON decoding: re-serialised
    JSON would not hash the same. The comparison uses :func:`hmac.compare_digest`.

    Returns:
        The lower-case names of the headers that were checked (``"digest"``,
        ``"content-digest"``; empty when neither is present). Whether a digest was *required*,
        and whether it is covered by the signature, is the signature verifier's decision.

    Raises:
        MalformedHeader: a digest header is present but cannot be parsed (HTTP 400).
        DigestMismatch: a digest header does not match the body (HTTP 401).
    """
    actual = hashlib.sha256(body).digest()
    checked: set[str] = set()
    if "digest" in headers:
        if not hmac.compare_digest(parse_digest(headers["digest"]), actual):
            raise DigestMismatch("the Digest header does not match the request body")
        checked.add("digest")
    if "content-digest" in headers:
        if not hmac.compare_digest(parse_content_digest(headers["content-digest"]), actual):
            raise DigestMismatch("the Content-Digest header does not match the request body")
        checked.add("content-digest")
    return frozenset(checked)


def _decode_sha256(encoded: str, *, header: str) -> bytes:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedHeader(f"{header} SHA-256 value is not valid base64") from exc
    if len(raw) != SHA256_DIGEST_BYTES:
        # Mastodon: "Invalid Digest value. The provided Digest value is not a SHA-256 digest".
        raise MalformedHeader(f"{header} value is not a SHA-256 digest (32 bytes)")
    return raw
