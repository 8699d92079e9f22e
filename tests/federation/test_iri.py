"""federation.iri: the predicates every origin check relies on, and their per-authority fast path."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import iri, uris
from federation.netguard import canonical_host

# Pieces real and hostile IRIs are made of: schemes in several cases, user info, ports, IPv6
# brackets, delimiters, whitespace and control characters, non-ASCII hosts.
_PIECES = st.sampled_from(
    [
        "http", "https", "HTTP", "Https", "httpx", "://", ":/", "//", ":", "@", "[", "]", "::1",
        "/", "?", "#", ".", "..", "peer.example", "PEER.Example.", "xn--bcher-kva.example",
        "bücher.example", "127.0.0.1", "0177.0.0.1", ":443", ":80", ":8443", ":99999", ":x",
        "users/a", "%2F", " ", "\t", "\n", "\x00", "\u200b", "a", "-", "_", "\\",
    ]
)  # fmt: skip
_IRIS = st.lists(_PIECES, min_size=1, max_size=10).map("".join)


def _is_http_iri_the_long_way(value: str) -> bool:
    if not value.isprintable() or " " in value:
        return False
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


def _host_the_long_way(value: str) -> str | Exception:
    parts = urlsplit(value)
    try:
        return canonical_host(parts.netloc, parts.scheme)
    except ValueError as exc:
        return exc


def _outcome(function, value: str) -> object:  # type: ignore[no-untyped-def]
    try:
        return function(value)
    except ValueError as exc:
        return exc


@settings(max_examples=3000, deadline=None)
@given(_IRIS)
def test_the_authority_fast_path_answers_like_urlsplit(value: str) -> None:
    authority = iri.http_authority(value)
    if authority is not None:
        parts = urlsplit(value)
        assert authority == (parts.scheme, parts.netloc)
    assert iri.is_http_iri(value) == _is_http_iri_the_long_way(value)
    fast, slow = _outcome(iri.host_of, value), _outcome(_host_the_long_way, value)
    assert type(fast) is type(slow) and (isinstance(fast, Exception) or fast == slow)
    long_way_origin = uris._origin_parts(value) if value.isprintable() and " " not in value else None
    assert uris.normalized_origin(value) == long_way_origin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://peer.example/users/a", ("https", "peer.example")),
        ("http://peer.example:8080?x#y", ("http", "peer.example:8080")),
        ("https://a@evil.example/", ("https", "a@evil.example")),
        ("HTTPS://peer.example/", None),  # urlsplit lower-cases it: the long way
        ("https://peer.example/\tx", None),  # urlsplit drops the tab: the long way
        ("mailto:a@peer.example", None),
    ],
)
def test_http_authority(value: str, expected: tuple[str, str] | None) -> None:
    assert iri.http_authority(value) == expected


def test_iris_of_one_authority_share_its_checks() -> None:
    iri._is_http_authority.cache_clear()
    for n in range(5):
        assert iri.is_http_iri(f"https://shared.example/notes/{n}")
    assert iri._is_http_authority.cache_info().misses == 1
