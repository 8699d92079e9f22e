"""RFC 9421 HTTP Message Signatures: round trips, Mastodon's policy, parsing and double knock."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signature_fixtures import (
    ALICE,
    ALICE_ED,
    ALICE_IRI,
    ALICE_ROTATED,
    FOLLOW_BODY,
    INBOX_URL,
    MALLORY,
    NOW,
    get,
    post,
    received,
    resolver,
)

from federation.errors import (
    DigestMismatch,
    InsufficientCoverage,
    MalformedHeader,
    SignatureError,
    SignatureExpired,
)
from federation.http import Headers, OutgoingRequest
from federation.keys import KeyAlgorithm, KeyPair
from federation.signatures import sign_request, verify_request
from federation.signatures.digest import compute_content_digest
from federation.signatures.rfc9421 import parse_signature_headers

# Pinned once from tests/fixtures/keys/rsa-alice.pem (deterministic RSA PKCS#1 v1.5).
PINNED_SIGNATURE_INPUT = (
    'sig1=("@method" "@target-uri" "@authority" "content-digest");created=1740830400;'
    'keyid="https://peer.example/users/alice#main-key";alg="rsa-v1_5-sha256"'
)
PINNED_SIGNATURE = (
    "sig1=:MAL2bh2HnfBEPc9oDVEY5YcvHSLQkDzf+1qQsfLJJLyOPTYdtDvo74giliTfwr3sh63TT9JqWgFAtW3jcln0GR/RKojBvDPI1"
    "2Z0H1zoa3E8BVwP9lqZSiaWmD355z4RlXxbN6wIO81PezJw+z9bBwj5NKLUfdKE3OxiHSnzQvJXRcYytmkaAKu/WtP34aFcoLb0ZOF"
    "t+IcFMftGISS9t/BcCgZrOw7j4TIznSJ6BVutUE5BSkQvxeujj5u8S5a1w8/on5zO11CmfRqloPqP6OFbjeW/iQMPKLH+YjyzHxh1S"
    "ZAYxYVWuPMKiAuM9FJnjdGkna/+aI25z6DTgbB3fg==:"
)


def craft(
    request: OutgoingRequest,
    pair: KeyPair,
    components: tuple[str, ...],
    *,
    params: str | None = None,
    label: str = "sig1",
    extra_input: str = "",
    extra_signature: str = "",
) -> OutgoingRequest:
    """Sign by hand with any components/parameters (the base built per RFC 9421 §2.5)."""
    headers = {"Content-Type": "application/activity+json", "Host": "entraide.test"}
    if request.body is not None:
        headers["Content-Digest"] = compute_content_digest(request.body)
    if params is None:
        params = f'created={int(NOW.timestamp())};keyid="{pair.key_id}"'
    values = {
        "@method": request.method.upper(),
        "@target-uri": request.url,
        "@authority": "entraide.test",
        "content-digest": headers.get("Content-Digest", ""),
    }
    inner = "(" + " ".join(f'"{name}"' for name in components) + ")" + (";" + params if params else "")
    base = "\n".join([*(f'"{name}": {values[name]}' for name in components), f'"@signature-params": {inner}'])
    signature = base64.b64encode(pair.sign(base.encode())).decode()
    headers["Signature-Input"] = f"{label}={inner}{extra_input}"
    headers["Signature"] = f"{label}=:{signature}:{extra_signature}"
    return OutgoingRequest(request.method, request.url, Headers(headers), request.body)


FULL = ("@method", "@target-uri", "content-digest")


def _ago(hours: int) -> int:
    return int((NOW - timedelta(hours=hours)).timestamp())


# --- round trips --------------------------------------------------------------------------


def test_signer_output_equals_the_pinned_literal() -> None:
    signed = sign_request(post(), ALICE, now=NOW, spec="rfc9421")
    assert signed.headers["Signature-Input"] == PINNED_SIGNATURE_INPUT
    assert signed.headers["Signature"] == PINNED_SIGNATURE
    assert signed.headers["Content-Digest"] == "sha-256=:1xvb2/1+KoBFnwZq1N+nULEkOyS1Eb7CWRppC3UEQwk=:"


@pytest.mark.parametrize(
    ("pair", "algorithm"), [(ALICE, KeyAlgorithm.RSA_V1_5_SHA256), (ALICE_ED, KeyAlgorithm.ED25519)]
)
async def test_round_trip_post(pair: KeyPair, algorithm: KeyAlgorithm) -> None:
    signed = sign_request(post(), pair, now=NOW, spec="rfc9421")
    signer = await verify_request(received(signed), resolve_key=resolver(pair), now=NOW)
    assert (signer.key_id, signer.owner, signer.algorithm, signer.spec) == (
        pair.key_id,
        ALICE_IRI,
        algorithm,
        "rfc9421",
    )


@pytest.mark.parametrize("pair", [ALICE, ALICE_ED])
async def test_round_trip_get_with_query(pair: KeyPair) -> None:
    signed = sign_request(get("https://entraide.test/groups/g/members?page=1"), pair, now=NOW, spec="rfc9421")
    assert "Content-Digest" not in signed.headers
    await verify_request(received(signed), resolve_key=resolver(pair), now=NOW)


async def test_hand_made_signature_with_the_minimal_required_set_is_accepted() -> None:
    await verify_request(received(craft(post(), ALICE, FULL)), resolve_key=resolver(ALICE), now=NOW)


async def test_fedify_key_fetch_signing_the_key_ids_fragment_is_accepted() -> None:
    """Fedify signs ``@target-uri`` as the URL it fetches, ``<actor>#main-key`` for a key, while
    only ``<actor>`` reaches us: a GET whose target carries one of our key fragments verifies."""
    for fragment in ("main-key", "ed25519-key"):
        signed = craft(get(f"https://entraide.test/groups/g#{fragment}"), ALICE, ("@method", "@target-uri"))
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


async def test_other_fragments_and_fragments_on_a_post_are_refused() -> None:
    signed = craft(get("https://entraide.test/groups/g#other"), ALICE, ("@method", "@target-uri"))
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)
    signed = craft(post(f"{INBOX_URL}#main-key"), ALICE, FULL)
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


async def test_double_knock_resigning_replaces_the_other_spec() -> None:
    cavage_signed = sign_request(post(), ALICE, now=NOW)
    rfc_signed = sign_request(cavage_signed, ALICE, now=NOW, spec="rfc9421")
    assert "Digest" not in rfc_signed.headers
    assert (
        await verify_request(received(rfc_signed), resolve_key=resolver(ALICE), now=NOW)
    ).spec == "rfc9421"
    back = sign_request(rfc_signed, ALICE, now=NOW, spec="cavage")
    assert "Signature-Input" not in back.headers
    assert (await verify_request(received(back), resolve_key=resolver(ALICE), now=NOW)).spec == "cavage"


async def test_key_rotation_refreshes_once() -> None:
    keys = resolver(ALICE)
    keys.rotate(ALICE_ROTATED.public)
    await verify_request(
        received(sign_request(post(), ALICE_ROTATED, now=NOW, spec="rfc9421")), resolve_key=keys, now=NOW
    )
    assert keys.refresh_count == 1


def test_unknown_spec_is_refused() -> None:
    with pytest.raises(ValueError):
        sign_request(post(), ALICE, now=NOW, spec="jws")  # type: ignore[arg-type]


# --- Mastodon's policy --------------------------------------------------------------------


async def test_missing_created_is_refused() -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, FULL, params=f'keyid="{ALICE.key_id}"')
    with pytest.raises(InsufficientCoverage, match="created"):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


@pytest.mark.parametrize(
    ("components", "missing"),
    [
        (("@target-uri", "content-digest"), "@method"),
        (("@method", "content-digest"), "@target-uri"),
        (("@method", "@authority", "content-digest"), "@target-uri"),
        (("@method", "@target-uri"), "content-digest"),
    ],
)
async def test_required_components_must_be_covered(components: tuple[str, ...], missing: str) -> None:
    keys = resolver(ALICE)
    with pytest.raises(InsufficientCoverage, match=missing):
        await verify_request(received(craft(post(), ALICE, components)), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_post_without_content_digest_header_is_refused() -> None:
    signed = sign_request(post(), ALICE, now=NOW, spec="rfc9421")
    with pytest.raises(InsufficientCoverage, match="Content-Digest"):
        await verify_request(
            received(signed, drop_headers=("Content-Digest",)), resolve_key=resolver(ALICE), now=NOW
        )


async def test_two_signatures_are_refused() -> None:
    second = f';created={int(NOW.timestamp())};keyid="{MALLORY.key_id}"'
    signed = craft(
        post(),
        ALICE,
        FULL,
        extra_input=f', sig2=("@method" "@target-uri" "content-digest"){second}',
        extra_signature=", sig2=:AAAA:",
    )
    with pytest.raises(SignatureError, match="exactly one"):
        await verify_request(received(signed), resolve_key=resolver(ALICE, MALLORY), now=NOW)


async def test_tampered_body_is_refused_without_fetching_the_key() -> None:
    keys = resolver(ALICE)
    signed = sign_request(post(), ALICE, now=NOW, spec="rfc9421")
    with pytest.raises(DigestMismatch):
        await verify_request(received(signed, body=b'{"type":"Delete"}'), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_changed_path_is_refused() -> None:
    signed = sign_request(post("https://entraide.test/groups/a/inbox"), ALICE, now=NOW, spec="rfc9421")
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed, target="/groups/b/inbox"), resolve_key=resolver(ALICE), now=NOW)


async def test_changed_method_is_refused() -> None:
    signed = sign_request(get("https://entraide.test/groups/a/outbox"), ALICE, now=NOW, spec="rfc9421")
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed, method="HEAD"), resolve_key=resolver(ALICE), now=NOW)


async def test_forged_signature_is_refused_after_one_refresh() -> None:
    keys = resolver(ALICE)
    signed = craft(post(), MALLORY, FULL, params=f'created={int(NOW.timestamp())};keyid="{ALICE.key_id}"')
    with pytest.raises(SignatureError):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.refresh_count == 1


@pytest.mark.parametrize(
    "params",
    [
        f"created={int((NOW + timedelta(hours=2)).timestamp())}",
        f"created={_ago(13)}",
        f"created={_ago(3)};expires={_ago(2)}",
        "created=99999999999999",
    ],
    ids=["future", "old", "expired", "out-of-range"],
)
async def test_times_outside_the_window_are_expired(params: str) -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, FULL, params=f'{params};keyid="{ALICE.key_id}"')
    with pytest.raises(SignatureExpired):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_alg_must_match_the_key_type() -> None:
    params = f'created={int(NOW.timestamp())};keyid="{ALICE.key_id}";alg="ed25519"'
    with pytest.raises(SignatureError, match="alg"):
        await verify_request(
            received(craft(post(), ALICE, FULL, params=params)), resolve_key=resolver(ALICE), now=NOW
        )


@pytest.mark.parametrize("alg", ["hmac-sha256", "rsa-pss-sha512", "ecdsa-p256-sha256"])
async def test_other_algorithms_are_refused(alg: str) -> None:
    keys = resolver(ALICE)
    params = f'created={int(NOW.timestamp())};keyid="{ALICE.key_id}";alg="{alg}"'
    with pytest.raises(SignatureError, match="unsupported"):
        await verify_request(received(craft(post(), ALICE, FULL, params=params)), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_acct_keyid_is_refused() -> None:
    from federation.errors import KeyUnavailable

    params = f'created={int(NOW.timestamp())};keyid="acct:alice@peer.example"'
    with pytest.raises(KeyUnavailable):
        await verify_request(
            received(craft(post(), ALICE, FULL, params=params)), resolve_key=resolver(ALICE), now=NOW
        )


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ("sig1=(", "sig1=:AAAA:"),
        ('sig1=("@method");keyid="k";created=1', "sig1=AAAA"),  # not a byte sequence
        ('sig1=("@method");keyid="k";created=1', "sig2=:AAAA:"),  # label mismatch
        ('sig1="@method";keyid="k";created=1', "sig1=:AAAA:"),  # not an inner list
        ("sig1=(@method);created=1", "sig1=:AAAA:"),
        ('sig1=("@method");created=1', "sig1=:AAAA:"),  # no keyid
        ('sig1=("@method");keyid="k";created="1"', "sig1=:AAAA:"),
        ('sig1=("@method");keyid="k";created=?1', "sig1=:AAAA:"),  # boolean, not integer
        ('sig1=(1);keyid="k";created=1', "sig1=:AAAA:"),
        ('sig1=("@method");keyid="k";created=1;alg=ed25519', "sig1=:AAAA:"),  # token, not string
        ('sig1=(method);keyid="k";created=1', "sig1=:AAAA:"),  # token component
        ('sig1=("@method");keyid=k;created=1', "sig1=:AAAA:"),  # token keyid
        ('sig1=("@method");keyid="ké";created=1', "sig1=:AAAA:"),
    ],
)
def test_malformed_headers_are_refused(signature_input: str, signature: str) -> None:
    with pytest.raises(MalformedHeader):
        parse_signature_headers(signature_input, signature)


async def test_signature_input_without_signature_is_malformed() -> None:
    signed = sign_request(post(), ALICE, now=NOW, spec="rfc9421")
    with pytest.raises(MalformedHeader):
        await verify_request(
            received(signed, drop_headers=("Signature",)), resolve_key=resolver(ALICE), now=NOW
        )


def test_parse_keeps_component_parameters_in_the_identifier() -> None:
    sig = parse_signature_headers(
        'sig1=("@method" "content-digest";sf);created=1;keyid="k";alg="ed25519"', "sig1=:AAAA:"
    )
    assert sig.components == ('"@method"', '"content-digest";sf')
    assert (sig.key_id, sig.created, sig.algorithm, sig.signature) == ("k", 1, "ed25519", b"\0\0\0")


@given(st.text(max_size=200), st.text(max_size=200))
def test_parser_raises_only_malformed_header_or_signature_error(signature_input: str, signature: str) -> None:
    try:
        parse_signature_headers(signature_input, signature)
    except (MalformedHeader, SignatureError):
        pass


def test_body_constant_is_what_the_pinned_literal_signed() -> None:
    assert post().body == FOLLOW_BODY and post().url == INBOX_URL
