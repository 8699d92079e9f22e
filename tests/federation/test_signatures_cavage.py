"""draft-cavage-12: parsing, signing strings, coverage and the signer (verification flows are in
test_signatures_verify.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from signature_fixtures import (
    ALICE,
    ALICE_ED,
    FOLLOW_BODY,
    INBOX_URL,
    NOW,
    PINNED_SIGNATURE_HEADER,
    PINNED_SIGNING_STRING,
    get,
    post,
)

from federation.errors import InsufficientCoverage, MalformedHeader, SignatureError, SignatureExpired
from federation.http import Headers, OutgoingRequest
from federation.keys import KeyPair
from federation.signatures import _window, cavage, sign_request
from federation.signatures.cavage import (
    CavageSignature,
    build_signing_string,
    check_coverage,
    check_freshness,
    parse_http_date,
    parse_signature_header,
)
from federation.types import Iri


def _sig(**overrides: object) -> CavageSignature:
    fields: dict[str, object] = {
        "key_id": ALICE.key_id,
        "algorithm": "rsa-sha256",
        "headers": ("(request-target)", "host", "date", "digest"),
        "signature": b"x",
    }
    fields.update(overrides)
    return CavageSignature(**fields)  # type: ignore[arg-type]


# --- the signer ---------------------------------------------------------------------------


def test_signer_output_equals_the_pinned_mastodon_style_literal() -> None:
    signed = sign_request(post(), ALICE, now=NOW)
    assert signed.headers["Signature"] == PINNED_SIGNATURE_HEADER
    assert signed.headers["Date"] == "Sat, 01 Mar 2025 12:00:00 GMT"
    assert signed.headers["Host"] == "entraide.test"
    assert signed.headers["Digest"] == "SHA-256=1xvb2/1+KoBFnwZq1N+nULEkOyS1Eb7CWRppC3UEQwk="
    assert signed.body == FOLLOW_BODY


def test_pinned_literal_verifies_with_plain_cryptography_over_the_pinned_signing_string() -> None:
    # Independent of our verifier: the literal is a real RSA-SHA256 signature of that string.
    encoded = PINNED_SIGNATURE_HEADER.rsplit('signature="', 1)[1].rstrip('"')
    public = ALICE.public.key
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        base64.b64decode(encoded), PINNED_SIGNING_STRING.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_signing_string_of_the_pinned_request() -> None:
    signed = sign_request(post(), ALICE, now=NOW)
    sig = parse_signature_header(signed.headers["Signature"])
    text = build_signing_string(sig, method="POST", target="/groups/collectif/inbox", headers=signed.headers)
    assert text == PINNED_SIGNING_STRING


def test_get_is_signed_without_digest() -> None:
    signed = sign_request(get("https://entraide.test/groups/collectif/members?page=2"), ALICE, now=NOW)
    sig = parse_signature_header(signed.headers["Signature"])
    assert sig.headers == ("(request-target)", "host", "date")
    assert "Digest" not in signed.headers
    text = build_signing_string(
        sig, method="GET", target="/groups/collectif/members?page=2", headers=signed.headers
    )
    assert text.splitlines()[0] == "(request-target): get /groups/collectif/members?page=2"


def test_ed25519_keys_sign_with_the_hs2019_label() -> None:
    signed = sign_request(post(), ALICE_ED, now=NOW)
    sig = parse_signature_header(signed.headers["Signature"])
    assert sig.algorithm == "hs2019"
    assert sig.key_id == ALICE_ED.key_id
    assert len(sig.signature) == 64


def test_signing_does_not_change_the_original_and_replaces_stale_signature_headers() -> None:
    original = OutgoingRequest(
        "POST",
        INBOX_URL,
        Headers({"Signature-Input": "sig1=()", "Signature": "old", "Content-Digest": "x", "Date": "old"}),
        FOLLOW_BODY,
    )
    signed = sign_request(original, ALICE, now=NOW)
    assert original.headers["Signature"] == "old"
    assert "Signature-Input" not in signed.headers
    assert "Content-Digest" not in signed.headers
    assert signed.headers["Date"] == "Sat, 01 Mar 2025 12:00:00 GMT"


def test_signer_host_keeps_an_explicit_port_and_drops_userinfo() -> None:
    signed = sign_request(get("https://user:pw@Entraide.test:8443/actor"), ALICE, now=NOW)
    assert signed.headers["Host"] == "entraide.test:8443"


@pytest.mark.parametrize("url", ["/relative", "ftp://entraide.test/x", "https:///nohost"])
def test_signer_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ValueError):
        sign_request(get(url), ALICE, now=NOW)


def test_signer_refuses_a_naive_clock() -> None:
    with pytest.raises(ValueError):
        sign_request(post(), ALICE, now=NOW.replace(tzinfo=None))


def test_a_fanout_formats_its_date_once_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of requests signed in one second share one Date string, made once (issue 20)."""
    calls: list[datetime] = []

    def counting(value: datetime, usegmt: bool = False) -> str:
        calls.append(value)
        return format_datetime(value, usegmt=usegmt)

    monkeypatch.setattr(_window, "format_datetime", counting)
    start = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)  # a second no other test signs in
    for i in range(200):
        now = start + timedelta(milliseconds=10 * i)  # 2 seconds
        signed = sign_request(post(f"https://peer{i}.example/users/u{i}/inbox"), ALICE, now=now)
        assert signed.headers["Date"] == format_datetime(now, usegmt=True)
    assert len(calls) == 2


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(9000, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]),
    )
)
def test_http_date_is_format_datetime_in_utc(now: datetime) -> None:
    assert _window.http_date(now) == format_datetime(now.astimezone(UTC), usegmt=True)


def test_http_date_refuses_a_naive_clock() -> None:
    with pytest.raises(ValueError):
        _window.http_date(NOW.replace(tzinfo=None))


def test_a_key_id_that_cannot_be_quoted_is_refused_every_time() -> None:
    """The per-key preparation is remembered; a refusal is not."""
    bad = KeyPair(Iri('https://peer.example/users/alice#"x'), ALICE.owner, ALICE.private_key)
    for _ in range(2):
        with pytest.raises(ValueError):
            sign_request(post(), bad, now=NOW)


_TARGET_CHARS = st.text(st.sampled_from("/azAZ09-._~%?=&+ \t\x7f\u00e9"), max_size=20)


@given(
    host=st.sampled_from(
        ["entraide.test", "Entraide.TEST:8443", "u:p@peer.example", "[::1]:80", "xn--bcher-kva.de"]
    ),
    path=_TARGET_CHARS,
    method=st.sampled_from(["POST", "GET", "post", "PUT"]),
    body=st.sampled_from([None, b"", FOLLOW_BODY]),
    stale=st.booleans(),
)
def test_prepared_signing_string_is_the_generic_builders(
    host: str, path: str, method: str, body: bytes | None, stale: bool
) -> None:
    """prepare writes the signing string directly: byte for byte what build_signing_string makes
    of the same headers, and the same refusals."""
    stale_headers = {"Host": "old", "Digest": "x"} if stale else {}
    headers = Headers({"Accept": "application/activity+json", **stale_headers})
    request = OutgoingRequest(method, f"https://{host}/{path}", headers, body)
    parts = urlsplit(request.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        unsigned = cavage.prepare(request, ALICE, now=NOW)
    except SignatureError:
        with pytest.raises(SignatureError):
            build_signing_string(_sig(), method=method, target=target, headers=Headers({}))
        return
    expected = build_signing_string(unsigned.draft, method=method, target=target, headers=unsigned.headers)
    assert unsigned.message == expected.encode()
    assert unsigned.draft == CavageSignature(
        ALICE.key_id,
        "rsa-sha256",
        ("(request-target)", "host", "date", "digest")
        if body is not None or method.upper() == "POST"
        else ("(request-target)", "host", "date"),
        b"",
    )
    signed = unsigned.signed(b"sig")
    assert signed.headers["Signature"] == (
        f'keyId="{ALICE.key_id}",algorithm="rsa-sha256",headers="{" ".join(unsigned.draft.headers)}",'
        f'signature="{base64.b64encode(b"sig").decode()}"'
    )


# --- the parser ---------------------------------------------------------------------------


def test_parse_a_mastodon_header() -> None:
    sig = parse_signature_header(PINNED_SIGNATURE_HEADER)
    assert sig.key_id == "https://peer.example/users/alice#main-key"
    assert sig.algorithm == "rsa-sha256"
    assert sig.headers == ("(request-target)", "host", "date", "digest")
    assert len(sig.signature) == 256


def test_parse_accepts_spaces_case_insensitive_names_bare_numbers_and_escapes() -> None:
    sig = parse_signature_header(
        ' KeyId = "https://peer.example/k\\"1" , Algorithm="HS2019", created=1740830400,'
        ' expires="1740830700.5", headers="(Request-Target) (created) Host", signature="AAAA", extra=token'
    )
    assert sig.key_id == 'https://peer.example/k"1'
    assert sig.algorithm == "hs2019"
    assert sig.created == "1740830400"
    assert sig.expires == "1740830700.5"
    assert sig.headers == ("(request-target)", "(created)", "host")


def test_missing_headers_defaults_to_created_for_hs2019_and_date_otherwise() -> None:
    assert parse_signature_header('keyId="k",algorithm="hs2019",signature="AAAA"').headers == ("(created)",)
    assert parse_signature_header('keyId="k",signature="AAAA"').headers == ("(created)",)
    assert parse_signature_header('keyId="k",algorithm="rsa-sha256",signature="AAAA"').headers == ("date",)


@pytest.mark.parametrize(
    "value",
    [
        "",
        'algorithm="rsa-sha256",signature="AAAA"',  # no keyId
        'keyId="k",algorithm="rsa-sha256"',  # no signature
        'keyId="",signature="AAAA"',
        'keyId="k",signature="not base64!"',
        'keyId="k",keyId="other",signature="AAAA"',  # repeated parameter
        'keyId="k",signature="AAAA",signature="BBBB"',
        'keyId="k,signature="AAAA"',  # unterminated quote
        'keyId="k" signature="AAAA"',  # missing comma
        'keyId,signature="AAAA"',
        'keyId="k",signature="AAAA",headers="date date"',
        'keyId="k",signature="AAAA",headers="da:te"',
        'keyId="k",signature="AAAA",created="yesterday"',
        'keyId="k",signature="AAAA",expires="1e9"',
        'keyId="k\n",signature="AAAA"',
        'keyId="ké",signature="AAAA"',
        'keyId="k",signature="AAAA",' + "x" * 9000,
    ],
)
def test_malformed_headers_are_refused(value: str) -> None:
    with pytest.raises(MalformedHeader):
        parse_signature_header(value)


_PIECES = st.sampled_from(
    [
        "keyId",
        "algorithm",
        "headers",
        "signature",
        "created",
        "expires",
        "=",
        '"',
        "\\",
        ",",
        " ",
        "\t",
        "(request-target)",
        "AAAA",
        "==",
        "hs2019",
        "1740830400",
        ".5",
        "é",
        "\n",
    ]
)


@given(st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=40).map("".join)))
def test_signature_header_parser_raises_only_malformed_header(value: str) -> None:
    try:
        sig = parse_signature_header(value)
    except MalformedHeader:
        return
    assert sig.key_id and isinstance(sig.signature, bytes)


# --- signing strings ----------------------------------------------------------------------


def test_request_target_uses_lower_case_method_and_raw_target() -> None:
    sig = _sig(headers=("(request-target)", "host"))
    text = build_signing_string(
        sig, method="POST", target="/inbox%0Adate:%20Mon", headers=Headers({"Host": "entraide.test"})
    )
    # %0A stays three characters: no injected "date:" line (security case 10).
    assert text == "(request-target): post /inbox%0Adate:%20Mon\nhost: entraide.test"


@pytest.mark.parametrize("target", ["/inbox\ndate: Mon", "/inbox\r", "/in box", ""])
def test_targets_with_whitespace_or_control_characters_are_refused(target: str) -> None:
    with pytest.raises(SignatureError):
        build_signing_string(
            _sig(headers=("(request-target)",)), method="GET", target=target, headers=Headers()
        )


def test_absent_signed_header_is_refused() -> None:
    with pytest.raises(SignatureError, match="absent"):
        build_signing_string(_sig(headers=("date",)), method="GET", target="/", headers=Headers())


def test_created_pseudo_header_rules() -> None:
    headers = Headers()
    ok = _sig(algorithm="hs2019", headers=("(created)",), created="1740830400")
    assert build_signing_string(ok, method="GET", target="/", headers=headers) == "(created): 1740830400"
    with pytest.raises(SignatureError, match="Invalid pseudo-header"):
        build_signing_string(
            _sig(headers=("(created)",), created="1"), method="GET", target="/", headers=headers
        )
    with pytest.raises(SignatureError, match="parameter is missing"):
        build_signing_string(
            _sig(algorithm="hs2019", headers=("(created)",)), method="GET", target="/", headers=headers
        )
    with pytest.raises(SignatureError, match="unsupported pseudo-header"):
        build_signing_string(_sig(headers=("(foo)",)), method="GET", target="/", headers=headers)


# --- coverage and freshness ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("covered", "method", "has_body", "message"),
    [
        (("(request-target)", "host", "date"), "POST", True, "Digest header to be signed"),
        (("(request-target)", "host", "date"), "POST", False, "Digest header to be signed"),
        (("(request-target)", "host", "date"), "PUT", True, "Digest header to be signed"),
        (("host", "date"), "GET", False, r"\(request-target\)"),
        (("(request-target)", "date", "digest"), "POST", True, "Host"),
        (("(request-target)", "host", "digest"), "POST", True, "Date"),
    ],
)
def test_insufficient_coverage(covered: tuple[str, ...], method: str, has_body: bool, message: str) -> None:
    with pytest.raises(InsufficientCoverage, match=message):
        check_coverage(_sig(headers=covered), method=method, has_body=has_body)


def test_sufficient_coverage() -> None:
    check_coverage(_sig(), method="POST", has_body=True)
    check_coverage(_sig(headers=("(request-target)", "host", "date")), method="GET", has_body=False)
    check_coverage(
        _sig(algorithm="hs2019", headers=("(request-target)", "host", "(created)", "digest")),
        method="POST",
        has_body=True,
    )


def test_unsigned_created_parameter_is_not_trusted_for_freshness() -> None:
    # The Date header is signed and stale; a fresh but unsigned created= must not rescue it.
    sig = _sig(algorithm="hs2019", created=str(int(NOW.timestamp())))
    stale = Headers({"Date": "Fri, 28 Feb 2025 12:00:00 GMT"})
    with pytest.raises(SignatureExpired):
        check_freshness(sig, stale, now=NOW)


def test_signed_expires_in_the_past_is_refused() -> None:
    sig = _sig(
        algorithm="hs2019",
        headers=("(request-target)", "host", "(created)", "(expires)"),
        created=str(int((NOW - timedelta(hours=3)).timestamp())),
        expires=str(int((NOW - timedelta(hours=2)).timestamp())),
    )
    with pytest.raises(SignatureExpired, match="expired"):
        check_freshness(sig, Headers(), now=NOW, max_age=timedelta(hours=12))


@pytest.mark.parametrize("value", ["yesterday", "", "Sat, 01 Mar 99999 12:00:00 GMT", "x" * 100])
def test_unparsable_date_is_signature_expired(value: str) -> None:
    with pytest.raises(SignatureExpired):
        parse_http_date(value)


def test_date_forms() -> None:
    assert parse_http_date("Sat, 01 Mar 2025 12:00:00 GMT") == NOW
    assert parse_http_date("Sat, 01 Mar 2025 12:00:00 -0000") == NOW
    assert parse_http_date("Sat, 01 Mar 2025 13:00:00 +0100") == NOW
