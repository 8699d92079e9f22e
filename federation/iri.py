"""General IRI predicates shared by the whole library: is this an http(s) IRI we can use, and
what is its host.

They sit apart from :mod:`federation.vocab.parse` because the signature, inbox and delivery
code needs them without the vocabulary reader; the predicates are memoised because a signed
inbox POST asks them a dozen times about the same few IRIs.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, TypeGuard
from urllib.parse import urlsplit

from .netguard import canonical_host

__all__ = ["MAX_IRI_CHARS", "host_of", "http_authority", "is_http_iri"]

MAX_IRI_CHARS: Final = 2048
"""Any IRI: longer ones are rejected (security case 28, Mastodon's published table)."""


def is_http_iri(value: object) -> TypeGuard[str]:
    """True for an absolute http(s) IRI of at most :data:`MAX_IRI_CHARS` characters that we can use.

    It must have a host that canonicalises (:func:`federation.netguard.canonical_host`), a valid
    port if any, no user info (``https://peer.example@evil.example/`` names evil.example), and
    no whitespace or control characters.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IRI_CHARS:
        return False
    return _is_http_iri_text(value)


_WHITESPACE: Final = re.compile(r"\s")  # exactly str.isspace() on str patterns


# Pure functions of short strings, called a dozen times per inbound activity on the same few
# actor and object IRIs: their answers are memoised (bounded: MAX_IRI_CHARS x maxsize).
@lru_cache(maxsize=4096)
def _is_http_iri_text(value: str) -> bool:
    # Once printable, the only whitespace left to find is U+0020 (every other str.isspace()
    # character is non-printable); the regex is the same predicate, kept for clarity.
    if not value.isprintable() or " " in value or _WHITESPACE.search(value) is not None:
        return False
    authority = http_authority(value)
    if authority is not None:
        return _is_http_authority(*authority)
    return _is_http_iri_parts(value)


@lru_cache(maxsize=1024)
def _is_http_authority(scheme: str, netloc: str) -> bool:
    return _is_http_iri_parts(f"{scheme}://{netloc}")


def _is_http_iri_parts(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return False
    try:
        canonical_host(parts.netloc, parts.scheme)
    except ValueError:
        return False
    return True


def host_of(iri: str) -> str:
    """The canonical ``host[:port]`` of an IRI (default port dropped), the unit of every origin check.

    The scheme is ignored on purpose: Lemmy mixes ``http://`` and ``https://`` ids of one host
    (``group_outbox.json``), and Mastodon compares hosts, not origins (security case 14).

    Raises:
        ValueError: ``iri`` has no usable host (callers pass IRIs that :func:`is_http_iri` accepted).
    """
    if len(iri) <= MAX_IRI_CHARS:
        return _host_of_iri(iri)
    parts = urlsplit(iri)
    return canonical_host(parts.netloc, parts.scheme)


@lru_cache(maxsize=4096)
def _host_of_iri(iri: str) -> str:
    authority = http_authority(iri)
    if authority is not None:
        return _canonical_authority(*authority)
    parts = urlsplit(iri)
    return canonical_host(parts.netloc, parts.scheme)


@lru_cache(maxsize=1024)
def _canonical_authority(scheme: str, netloc: str) -> str:
    return canonical_host(netloc, scheme)


# What urlsplit reads as the scheme and the authority of a printable "http(s)://…" IRI: the
# authority ends at the first "/", "?" or "#", and nothing after it changes either. Unique
# IRIs (every new activity and object has its own) share a few authorities, so the checks
# that depend on the authority only run once per authority, not once per IRI.
_HTTP_AUTHORITY: Final = re.compile(r"(https?)://([^/?#]*)")


def http_authority(iri: str) -> tuple[str, str] | None:
    """``(scheme, authority)`` of a printable IRI starting ``http://`` or ``https://`` (lower
    case), exactly as :func:`urllib.parse.urlsplit` reads them; ``None`` for anything else,
    which callers check the long way (urlsplit also drops some characters a printable IRI
    cannot hold)."""
    if not iri.isprintable():
        return None
    match = _HTTP_AUTHORITY.match(iri)
    return (match[1], match[2]) if match is not None else None
