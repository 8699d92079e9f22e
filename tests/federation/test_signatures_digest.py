"""Body digests: Digest (RFC 3230) and Content-Digest (RFC 9530). Security case 2."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.errors import DigestMismatch, MalformedHeader
from federation.http import Headers
from federation.signatures import digest as digest_module
from federation.signatures.digest import (
    MAX_CACHED_DIGEST_BODY_BYTES,
    check_body_digest,
    compute_content_digest,
    compute_digest,
    parse_content_digest,
    parse_digest,
)

EMPTY_SHA256_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
BODY = b'{"type":"Follow"}'
BODY_SHA256 = hashlib.sha256(BODY).digest()


def test_compute_digest_of_empty_body_is_the_well_known_value() -> None:
    assert compute_digest(b"") == f"SHA-256={EMPTY_SHA256_B64}"
    assert compute_content_digest(b"") == f"sha-256=:{EMPTY_SHA256_B64}:"


def _count_sha256(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> object:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(digest_module.hashlib, "sha256", counting)
    return calls


def test_a_body_signed_for_many_inboxes_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fan-out signs the same body for every inbox: Digest and Content-Digest hash it once."""
    body = b'{"type":"Create","id":"https://entraide.test/a/' + str(id(monkeypatch)).encode() + b'"}'
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    calls = _count_sha256(monkeypatch)
    for _ in range(100):
        assert compute_digest(body) == f"SHA-256={expected}"
        assert compute_content_digest(bytes(body)) == f"sha-256=:{expected}:"  # an equal body: a hit
    assert calls == [len(body)]


def test_large_bodies_and_bytearrays_are_hashed_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only bytes up to the size limit are remembered, so the cache holds little memory."""
    large = b"x" * (MAX_CACHED_DIGEST_BODY_BYTES + 1)
    mutable = bytearray(b"abc")
    expected = {
        value: "SHA-256=" + base64.b64encode(hashlib.sha256(value).digest()).decode()
        for value in (large, b"abc", b"zbc")
    }
    calls = _count_sha256(monkeypatch)
    for _ in range(2):
        assert compute_digest(large) == expected[large]
        assert compute_digest(mutable) == expected[b"abc"]
    mutable[0:1] = b"z"
    assert compute_digest(mutable) == expected[b"zbc"]
    assert len(calls) == 5


def test_remembered_digests_are_bounded() -> None:
    for i in range(100):
        compute_digest(b"body %d" % i)
    assert digest_module._remembered_sha256_base64.cache_info().currsize <= 16


@pytest.mark.parametrize("name", ["SHA-256", "sha-256", "Sha-256"])
def test_digest_algorithm_name_is_case_insensitive(name: str) -> None:
    value = f"{name}={base64.b64encode(BODY_SHA256).decode()}"
    assert parse_digest(value) == BODY_SHA256


def test_digest_ignores_other_algorithms_listed_next_to_sha256() -> None:
    value = f"MD5=AAAA, SHA-256={base64.b64encode(BODY_SHA256).decode()}"
    assert parse_digest(value) == BODY_SHA256


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SHA-512=" + base64.b64encode(hashlib.sha512(BODY).digest()).decode(),  # only sha-256 is accepted
        "SHA-256",
        "=abc",
        "SHA-256=not base64!",
        "SHA-256=" + base64.b64encode(b"short").decode(),  # not 32 bytes
        "SHA-256=" + EMPTY_SHA256_B64 + ",SHA-256=" + EMPTY_SHA256_B64,
        "SHA-256=" + EMPTY_SHA256_B64 + "é",
    ],
)
def test_malformed_or_unsupported_digest_is_refused(value: str) -> None:
    with pytest.raises(MalformedHeader):
        parse_digest(value)


def test_content_digest_round_trip_and_extra_members_ignored() -> None:
    assert parse_content_digest(compute_content_digest(BODY)) == BODY_SHA256
    sha512 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    assert parse_content_digest(f"sha-512=:{sha512}:, {compute_content_digest(BODY)}") == BODY_SHA256


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha-256=abc",  # a token, not a byte sequence
        "sha-256=:!!!!:",
        "sha-256=:AAAA:",  # 3 bytes
        "SHA-256=:" + EMPTY_SHA256_B64 + ":",  # dictionary keys are lower case
        "sha-512=:" + base64.b64encode(hashlib.sha512(b"").digest()).decode() + ":",
        "sha-256=:" + EMPTY_SHA256_B64,  # unterminated
        "sha-256=(:" + EMPTY_SHA256_B64 + ":)",  # inner list
        "sha-256=:" + EMPTY_SHA256_B64 + ":,",  # trailing comma
    ],
)
def test_malformed_content_digest_is_refused_as_malformed_header(value: str) -> None:
    # Security case 2: a malformed Content-Digest is a 400 (MalformedHeader), as in Mastodon.
    with pytest.raises(MalformedHeader):
        parse_content_digest(value)


def test_check_body_digest_reports_which_headers_it_checked() -> None:
    assert check_body_digest(Headers(), BODY) == frozenset()
    assert check_body_digest(Headers({"Digest": compute_digest(BODY)}), BODY) == {"digest"}
    both = Headers({"Digest": compute_digest(BODY), "Content-Digest": compute_content_digest(BODY)})
    assert check_body_digest(both, BODY) == {"digest", "content-digest"}


def test_tampered_body_is_a_digest_mismatch() -> None:
    # Given a genuine digest, When the body is replaced, Then the mismatch is detected.
    with pytest.raises(DigestMismatch):
        check_body_digest(Headers({"Digest": compute_digest(BODY)}), b'{"type":"Delete"}')
    with pytest.raises(DigestMismatch):
        check_body_digest(Headers({"Content-Digest": compute_content_digest(BODY)}), b'{"type":"Delete"}')


def test_digest_is_compared_with_raw_bytes_not_reserialised_json() -> None:
    # Same JSON value, different bytes: the digest must not match.
    with pytest.raises(DigestMismatch):
        check_body_digest(Headers({"Digest": compute_digest(BODY)}), b'{"type": "Follow"}')


def test_one_bad_header_fails_even_when_the_other_matches() -> None:
    headers = Headers({"Digest": compute_digest(BODY), "Content-Digest": compute_content_digest(b"other")})
    with pytest.raises(DigestMismatch):
        check_body_digest(headers, BODY)


@given(st.binary(max_size=2048))
def test_computed_digests_parse_back_to_the_sha256(body: bytes) -> None:
    expected = hashlib.sha256(body).digest()
    assert parse_digest(compute_digest(body)) == expected
    assert parse_content_digest(compute_content_digest(body)) == expected


_DIGESTY = st.text(alphabet=st.sampled_from(list('sha-256SHA=:,; \t()"?*AZaz09+/é\x00')), max_size=80)
# Near-valid values reach the byte-sequence, length and multi-member branches.
_NEAR_VALID = st.builds(
    lambda name, data, sep, tail: f"{name}={sep}{base64.b64encode(data).decode()}{sep}{tail}",
    st.sampled_from(["sha-256", "SHA-256", "sha-512", "md5", "x"]),
    st.binary(max_size=40),
    st.sampled_from([":", "", '"']),
    st.sampled_from(["", ";a=1", ",", ", sha-256=:AAAA:", " x", ", sha-256=" + EMPTY_SHA256_B64]),
)


@given(st.one_of(st.text(max_size=300), _DIGESTY, _NEAR_VALID))
def test_digest_parser_raises_only_malformed_header(value: str) -> None:
    try:
        assert len(parse_digest(value)) == 32
    except MalformedHeader:
        pass


@given(st.one_of(st.text(max_size=300), _DIGESTY, _NEAR_VALID))
def test_content_digest_parser_raises_only_malformed_header(value: str) -> None:
    try:
        assert len(parse_content_digest(value)) == 32
    except MalformedHeader:
        pass


@given(st.text(max_size=200), st.binary(max_size=64))
def test_check_body_digest_raises_only_documented_errors(value: str, body: bytes) -> None:
    try:
        check_body_digest(Headers({"Digest": value, "Content-Digest": value}), body)
    except (MalformedHeader, DigestMismatch):
        pass
