"""verify_request end to end with draft-cavage signatures: security cases 2, 3, 4, 8, 9 and 10.

Every request is really signed with a fixed key (tests/fixtures/keys/) and checked against the
fixed clock NOW; the in-memory resolver records each key lookup, so tests can assert that a
refused request never reached the key fetch.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from email.utils import format_datetime

import pytest
from signature_fixtures import (
    ALICE,
    ALICE_ED,
    ALICE_IRI,
    ALICE_ROTATED,
    BOB,
    FOLLOW_BODY,
    MALLORY,
    NOW,
    PINNED_SIGNATURE_HEADER,
    WEAK,
    get,
    load_pair,
    post,
    received,
    resolver,
)

from federation.errors import (
    DigestMismatch,
    InsufficientCoverage,
    KeyUnavailable,
    MalformedHeader,
    SignatureError,
    SignatureExpired,
    SignatureMissing,
)
from federation.http import Headers, IncomingRequest, OutgoingRequest
from federation.keys import KeyAlgorithm, KeyPair, PublicKey
from federation.memory import MemoryKeyResolver
from federation.signatures import VerifiedSigner, sign_request, verify_request
from federation.signatures.cavage import CavageSignature, build_signing_string
from federation.signatures.digest import compute_content_digest, compute_digest
from federation.types import Iri


def craft(
    request: OutgoingRequest,
    pair: KeyPair,
    covered: tuple[str, ...],
    *,
    algorithm: str | None = "rsa-sha256",
    created: int | None = None,
    expires: int | None = None,
    date: str | None = None,
    target: str | None = None,
    key_id: str | None = None,
) -> OutgoingRequest:
    """Sign ``request`` by hand with any coverage/algorithm, the way a peer (or attacker) could."""
    headers = dict(sign_request(request, pair, now=NOW).headers.items())
    headers.pop("Signature")
    if date is not None:
        headers["Date"] = date
    sig = CavageSignature(
        key_id=key_id or pair.key_id,
        algorithm=algorithm,
        headers=covered,
        signature=b"",
        created=None if created is None else str(created),
        expires=None if expires is None else str(expires),
    )
    raw_target = target or request.url.split("entraide.test", 1)[1]
    text = build_signing_string(sig, method=request.method, target=raw_target, headers=Headers(headers))
    params = [f'keyId="{sig.key_id}"']
    if algorithm is not None:
        params.append(f'algorithm="{algorithm}"')
    if created is not None:
        params.append(f"created={created}")
    if expires is not None:
        params.append(f"expires={expires}")
    params.append(f'headers="{" ".join(covered)}"')
    params.append(f'signature="{base64.b64encode(pair.sign(text.encode())).decode()}"')
    headers["Signature"] = ",".join(params)
    return OutgoingRequest(request.method, request.url, Headers(headers), request.body)


POST_COVERAGE = ("(request-target)", "host", "date", "digest")


# --- accepted requests --------------------------------------------------------------------


async def test_valid_post_is_verified_and_names_the_key_owner() -> None:
    keys = resolver(ALICE)
    signer = await verify_request(received(sign_request(post(), ALICE, now=NOW)), resolve_key=keys, now=NOW)
    assert signer == VerifiedSigner(ALICE.key_id, ALICE_IRI, KeyAlgorithm.RSA_V1_5_SHA256, "cavage")
    assert keys.calls == [(ALICE.key_id, False)]


async def test_pinned_mastodon_style_request_verifies() -> None:
    # Verification of fixed bytes, independent of what the signer produces today.
    request = IncomingRequest(
        "POST",
        "https://entraide.test/groups/collectif/inbox",
        "/groups/collectif/inbox",
        Headers(
            {
                "Host": "entraide.test",
                "Date": "Sat, 01 Mar 2025 12:00:00 GMT",
                "Digest": "SHA-256=1xvb2/1+KoBFnwZq1N+nULEkOyS1Eb7CWRppC3UEQwk=",
                "Content-Type": "application/activity+json",
                "Signature": PINNED_SIGNATURE_HEADER,
            }
        ),
        FOLLOW_BODY,
    )
    signer = await verify_request(request, resolve_key=resolver(ALICE), now=NOW)
    assert signer.key_id == ALICE.key_id


async def test_valid_get_is_verified() -> None:
    request = received(sign_request(get("https://entraide.test/groups/collectif/outbox"), ALICE, now=NOW))
    assert (await verify_request(request, resolve_key=resolver(ALICE), now=NOW)).spec == "cavage"


async def test_ed25519_hs2019_post_is_verified() -> None:
    signer = await verify_request(
        received(sign_request(post(), ALICE_ED, now=NOW)), resolve_key=resolver(ALICE_ED), now=NOW
    )
    assert signer.algorithm is KeyAlgorithm.ED25519


async def test_get_signed_with_its_query_is_accepted() -> None:
    url = "https://entraide.test/groups/collectif/members?page=1"
    request = received(sign_request(get(url), ALICE, now=NOW))
    await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_get_signed_without_its_query_is_accepted() -> None:
    # GoToSocial/Mastodon compatibility: the signature covers the path without the query.
    signed = sign_request(get("https://entraide.test/groups/collectif/members"), ALICE, now=NOW)
    request = received(signed, target="/groups/collectif/members?page=1")
    await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_hs2019_with_signed_created_instead_of_date_is_accepted() -> None:
    created = int((NOW - timedelta(minutes=1)).timestamp())
    signed = craft(
        post(),
        ALICE,
        ("(request-target)", "host", "(created)", "digest"),
        algorithm="hs2019",
        created=created,
    )
    request = received(signed, drop_headers=("Date",))
    await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_absent_algorithm_is_read_as_hs2019() -> None:
    signed = craft(post(), ALICE, POST_COVERAGE, algorithm=None)
    await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


async def test_date_inside_the_window_is_accepted() -> None:
    for offset in (timedelta(minutes=-59), timedelta(minutes=-1), timedelta(minutes=59)):
        signed = sign_request(post(), ALICE, now=NOW + offset)
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


# --- target, method and query confusion (security case 10) -------------------------------


async def test_mismatching_path_is_refused() -> None:
    signed = sign_request(post("https://entraide.test/groups/a/inbox"), ALICE, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed, target="/groups/b/inbox"), resolve_key=resolver(ALICE), now=NOW)


async def test_mismatching_method_is_refused() -> None:
    signed = sign_request(get("https://entraide.test/groups/collectif/outbox"), ALICE, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(signed, method="HEAD"), resolve_key=resolver(ALICE), now=NOW)


async def test_mismatching_query_is_refused() -> None:
    signed = sign_request(get("https://entraide.test/groups/g/members?page=1"), ALICE, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(
            received(signed, target="/groups/g/members?page=2"), resolve_key=resolver(ALICE), now=NOW
        )


async def test_post_replayed_to_another_inbox_with_a_query_is_refused() -> None:
    signed = sign_request(post("https://entraide.test/groups/a/inbox"), ALICE, now=NOW)
    with pytest.raises(SignatureError):
        await verify_request(received(signed, target="/inbox?x=1"), resolve_key=resolver(ALICE), now=NOW)


async def test_percent_encoded_newline_in_the_target_cannot_inject_a_header() -> None:
    # Given a naive signer that decoded "%0A" before building its signing string, so that the
    # signed text contains a forged "date:" line (w3c-ccg/http-signatures#26)
    raw_target = "/inbox%0Adate:%20Sat,%2001%20Mar%202025%2012:00:00%20GMT"
    forged_date = "Sat, 01 Mar 2025 12:00:00 GMT"
    decoded = f"(request-target): get /inbox\ndate: {forged_date}\nhost: entraide.test"
    headers = {
        "Host": "entraide.test",
        "Date": "Sat, 01 Mar 2025 11:30:00 GMT",
        "Signature": (
            f'keyId="{ALICE.key_id}",algorithm="rsa-sha256",headers="(request-target) host date",'
            f'signature="{base64.b64encode(ALICE.sign(decoded.encode())).decode()}"'
        ),
    }
    request = IncomingRequest("GET", f"https://entraide.test{raw_target}", raw_target, Headers(headers))
    # When it is verified, Then the raw target is used and nothing verifies
    with pytest.raises(SignatureError):
        await verify_request(request, resolve_key=resolver(ALICE), now=NOW)
    # And a literal newline in the target is refused before any key lookup
    keys = resolver(ALICE)
    literal = IncomingRequest("GET", "https://entraide.test/inbox", "/inbox\ndate: x", Headers(headers))
    with pytest.raises(SignatureError):
        await verify_request(literal, resolve_key=keys, now=NOW)
    assert keys.calls == []


# --- body digest (security case 2) --------------------------------------------------------


async def test_tampered_body_is_refused_without_fetching_the_key() -> None:
    keys = resolver(ALICE)
    signed = sign_request(post(), ALICE, now=NOW)
    with pytest.raises(DigestMismatch):
        await verify_request(received(signed, body=b'{"type":"Delete"}'), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_recomputed_but_unsigned_digest_is_refused() -> None:
    # The attacker recomputes Digest for a new body; the signed Digest no longer matches.
    signed = sign_request(post(), ALICE, now=NOW)
    body = b'{"type":"Delete"}'
    request = received(signed, body=body, set_headers={"Digest": compute_digest(body)})
    with pytest.raises(SignatureError):
        await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_malformed_content_digest_is_a_malformed_header() -> None:
    signed = sign_request(post(), ALICE, now=NOW)
    request = received(signed, set_headers={"Content-Digest": "sha-256=not-a-byte-sequence"})
    with pytest.raises(MalformedHeader):
        await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_wrong_content_digest_next_to_a_good_digest_is_refused() -> None:
    signed = sign_request(post(), ALICE, now=NOW)
    request = received(signed, set_headers={"Content-Digest": compute_content_digest(b"other")})
    with pytest.raises(DigestMismatch):
        await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_body_without_digest_header_is_refused() -> None:
    signed = sign_request(post(), ALICE, now=NOW)
    with pytest.raises(SignatureError, match="digest"):
        await verify_request(received(signed, drop_headers=("Digest",)), resolve_key=resolver(ALICE), now=NOW)


# --- coverage (security case 3) -----------------------------------------------------------


async def test_digest_not_signed_is_insufficient_coverage() -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, ("(request-target)", "host", "date"))
    with pytest.raises(InsufficientCoverage, match="Digest header to be signed when doing a POST"):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_host_and_date_only_is_insufficient_coverage() -> None:
    signed = craft(post(), ALICE, ("host", "date"))
    with pytest.raises(InsufficientCoverage):
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)
    signed_get = craft(get("https://entraide.test/groups/g/members"), ALICE, ("host", "date"))
    with pytest.raises(InsufficientCoverage):
        await verify_request(received(signed_get), resolve_key=resolver(ALICE), now=NOW)


async def test_get_without_host_is_insufficient_coverage() -> None:
    signed = craft(get("https://entraide.test/groups/g/members"), ALICE, ("(request-target)", "date"))
    with pytest.raises(InsufficientCoverage, match="Host"):
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


async def test_missing_headers_parameter_defaults_to_date_only_and_is_refused() -> None:
    signed = sign_request(get("https://entraide.test/actor"), ALICE, now=NOW)
    sig_value = signed.headers["Signature"].replace(',headers="(request-target) host date"', "")
    with pytest.raises(InsufficientCoverage):
        await verify_request(
            received(signed, set_headers={"Signature": sig_value}), resolve_key=resolver(ALICE), now=NOW
        )


# --- time window (security case 4) --------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        format_datetime(NOW + timedelta(hours=2), usegmt=True),
        format_datetime(NOW - timedelta(hours=13), usegmt=True),
        "yesterday",
    ],
    ids=["2h-future", "13h-past", "yesterday"],
)
async def test_date_outside_the_window_is_expired(date: str) -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, POST_COVERAGE, date=date)
    with pytest.raises(SignatureExpired):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_window_limits_are_parameters() -> None:
    signed = sign_request(post(), ALICE, now=NOW - timedelta(hours=2))
    with pytest.raises(SignatureExpired):  # the default window is 1 h (security case 4)
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)
    await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW, max_age=timedelta(hours=3))
    future = sign_request(post(), ALICE, now=NOW + timedelta(minutes=10))
    with pytest.raises(SignatureExpired):
        await verify_request(
            received(future), resolve_key=resolver(ALICE), now=NOW, max_future_skew=timedelta(minutes=5)
        )


async def test_hs2019_created_signed_without_created_parameter_is_refused() -> None:
    keys = resolver(ALICE)
    signed = sign_request(post(), ALICE, now=NOW)
    header = (
        f'keyId="{ALICE.key_id}",algorithm="hs2019",headers="(request-target) host (created) digest",'
        'signature="AAAA"'
    )
    with pytest.raises(SignatureError, match=r"\(created\) is signed but its parameter is missing"):
        await verify_request(received(signed, set_headers={"Signature": header}), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_created_with_rsa_sha256_is_refused() -> None:
    created = int(NOW.timestamp())
    signed = craft(
        post(),
        ALICE,
        ("(request-target)", "host", "(created)", "digest"),
        algorithm="hs2019",
        created=created,
    )
    relabelled = signed.headers["Signature"].replace('algorithm="hs2019"', 'algorithm="rsa-sha256"')
    with pytest.raises(SignatureError, match=r"Invalid pseudo-header \(created\) for rsa-sha256"):
        await verify_request(
            received(signed, set_headers={"Signature": relabelled}), resolve_key=resolver(ALICE), now=NOW
        )


async def test_signed_created_outside_the_window_is_expired() -> None:
    created = int((NOW - timedelta(hours=13)).timestamp())
    signed = craft(
        post(),
        ALICE,
        ("(request-target)", "host", "(created)", "digest"),
        algorithm="hs2019",
        created=created,
    )
    with pytest.raises(SignatureExpired):
        await verify_request(received(signed), resolve_key=resolver(ALICE), now=NOW)


# --- algorithms and keys (security cases 8 and 9) -----------------------------------------


@pytest.mark.parametrize("label", ["hmac-sha256", "rsa-sha512", "ecdsa-sha256", "ed25519"])
async def test_algorithm_labels_other_than_rsa_sha256_and_hs2019_are_refused(label: str) -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, POST_COVERAGE, algorithm=label)
    with pytest.raises(SignatureError, match="unsupported signature algorithm"):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_rsa_sha256_label_with_an_ed25519_key_is_refused() -> None:
    signed = craft(post(), ALICE_ED, POST_COVERAGE, algorithm="rsa-sha256")
    with pytest.raises(SignatureError, match="not an RSA key"):
        await verify_request(received(signed), resolve_key=resolver(ALICE_ED), now=NOW)


@pytest.mark.parametrize(
    "key_id",
    ["acct:alice@peer.example", "did:key:z6Mk", "/users/alice#main-key", "ftp://peer.example/k", "https://"],
)
async def test_non_http_key_ids_are_refused_without_lookup(key_id: str) -> None:
    keys = resolver(ALICE)
    signed = craft(post(), ALICE, POST_COVERAGE, key_id=key_id)
    with pytest.raises(KeyUnavailable):
        await verify_request(received(signed), resolve_key=keys, now=NOW)
    assert keys.calls == []


async def test_weak_1024_bit_key_is_unavailable() -> None:
    signed = sign_request(post(), WEAK, now=NOW)
    with pytest.raises(KeyUnavailable, match="too weak"):
        await verify_request(received(signed), resolve_key=resolver(WEAK), now=NOW)


async def test_unknown_key_is_unavailable() -> None:
    with pytest.raises(KeyUnavailable):
        await verify_request(
            received(sign_request(post(), ALICE, now=NOW)), resolve_key=resolver(BOB), now=NOW
        )


async def test_resolved_key_with_another_id_is_refused() -> None:
    class LyingResolver:
        async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
            return BOB.public

    with pytest.raises(KeyUnavailable, match="differs"):
        await verify_request(
            received(sign_request(post(), ALICE, now=NOW)), resolve_key=LyingResolver(), now=NOW
        )


async def test_key_rotation_refreshes_once_and_succeeds() -> None:
    # Given a cache holding alice's old key, while her origin now serves the rotated one
    keys = resolver(ALICE)
    keys.rotate(ALICE_ROTATED.public)
    # When a request signed with the new key arrives
    signer = await verify_request(
        received(sign_request(post(), ALICE_ROTATED, now=NOW)), resolve_key=keys, now=NOW
    )
    # Then it verifies after exactly one refresh
    assert signer.owner == ALICE_IRI
    assert keys.calls == [(ALICE.key_id, False), (ALICE.key_id, True)]
    assert keys.refresh_count == 1


async def test_forged_signature_refreshes_once_then_fails() -> None:
    # Mallory signs with her key but claims alice's keyId (security case 1/9).
    keys = resolver(ALICE)
    forged = craft(post(), MALLORY, POST_COVERAGE, key_id=ALICE.key_id)
    with pytest.raises(SignatureError, match="does not verify"):
        await verify_request(received(forged), resolve_key=keys, now=NOW)
    assert keys.refresh_count == 1


async def test_signer_is_the_key_owner_not_the_claimed_actor() -> None:
    # verify_request does not look at the body's actor; the inbox compares it with .owner.
    signer = await verify_request(
        received(sign_request(post(), BOB, now=NOW)), resolve_key=resolver(BOB), now=NOW
    )
    assert signer.owner == BOB.owner != ALICE_IRI


# --- headers ------------------------------------------------------------------------------


async def test_unsigned_request_is_signature_missing() -> None:
    with pytest.raises(SignatureMissing):
        await verify_request(received(post()), resolve_key=resolver(ALICE), now=NOW)


async def test_malformed_signature_header_is_malformed() -> None:
    request = received(sign_request(post(), ALICE, now=NOW), set_headers={"Signature": 'keyId="unterminated'})
    with pytest.raises(MalformedHeader):
        await verify_request(request, resolve_key=resolver(ALICE), now=NOW)


async def test_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        await verify_request(
            received(sign_request(post(), ALICE, now=NOW)),
            resolve_key=resolver(ALICE),
            now=NOW.replace(tzinfo=None),
        )


async def test_memory_resolver_reports_unknown_keys_on_refresh_too() -> None:
    keys = MemoryKeyResolver()
    with pytest.raises(KeyUnavailable):
        await keys.resolve(ALICE.key_id, refresh=True)
    keys.add(ALICE.public)
    keys.forget(ALICE.key_id)
    with pytest.raises(KeyUnavailable):
        await keys.resolve(ALICE.key_id)


def test_fixture_keys_have_the_expected_types() -> None:
    assert ALICE.algorithm is KeyAlgorithm.RSA_V1_5_SHA256
    assert ALICE_ED.algorithm is KeyAlgorithm.ED25519
    assert load_pair("rsa-weak-1024.pem", WEAK.key_id, WEAK.owner).public.key.key_size == 1024
