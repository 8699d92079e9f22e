"""federation.integrity: FEP-8b32 object integrity proofs (``eddsa-jcs-2022``).

Published known-answer vectors (W3C vc-di-eddsa, FEP-8b32) and proofs recorded from a live Fedify
peer, then round trips, tampering, and hostile proofs that must only ever raise InvalidProof.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import FederationError
from federation.integrity import (
    InvalidProof,
    Proof,
    _hash_data,
    proof_of,
    sign_object,
    verify_object,
)
from federation.keys import _b58decode, _b58encode, ed25519_from_multibase, ed25519_to_multibase

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
VECTORS = FIXTURES / "integrity"
FEDIFY_PEER = FIXTURES / "fedify" / "peer"

CREATED = datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)  # the `created` of every published vector
KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ed25519.Ed25519PrivateKey.generate()
KEY_ID = "https://entraide.test/groups/collectif#ed25519-key"
ENDORSEMENT: dict[str, Any] = {
    "@context": [
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/data-integrity/v1",
        {"entraide": "https://entraide.test/ns#", "Endorsement": "entraide:Endorsement"},
    ],
    "id": "https://entraide.test/endorsements/7",
    "type": "Endorsement",
    "actor": "https://entraide.test/groups/collectif",
    "object": {"id": "https://peer.example/proposals/3", "type": "Proposal", "name": "Jardin partagé"},
    "published": "2026-03-01T10:00:00Z",
    "to": ["https://www.w3.org/ns/activitystreams#Public"],
}


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def secret_key_from_multibase(value: str) -> ed25519.Ed25519PrivateKey:
    """A Multikey secret key: ``z`` + base58btc(0x80 0x26 + 32-byte seed), as the W3C vectors print it."""
    data = _b58decode(value.removeprefix("z"))
    assert data[:2] == b"\x80\x26" and len(data) == 34
    return ed25519.Ed25519PrivateKey.from_private_bytes(data[2:])


def signed_endorsement() -> dict[str, Any]:
    return sign_object(ENDORSEMENT, key=KEY, verification_method=KEY_ID, created=CREATED)


# --- The vectors are pinned and documented ------------------------------------------------------


def test_the_vectors_are_pinned_byte_for_byte_and_documented() -> None:
    files = sorted(path.relative_to(VECTORS).as_posix() for path in VECTORS.glob("*/*.json"))
    sums = {}
    for line in (VECTORS / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    assert set(sums) == set(files)
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() == sums[name], name
        folder, file_name = name.split("/")
        assert f"`{folder}/`" in readme and f"`{file_name}`" in readme, name


# --- W3C vc-di-eddsa (Recommendation 2025-05-15), Appendix B.3 "Representation: eddsa-jcs-2022" ---


def test_the_w3c_secret_key_is_the_published_public_key() -> None:
    pair = load("w3c-vc-di-eddsa/key_pair.json")
    secret = secret_key_from_multibase(pair["secretKeyMultibase"])
    assert ed25519_to_multibase(secret.public_key()) == pair["publicKeyMultibase"]


def test_the_w3c_signed_credential_verifies_with_the_published_public_key() -> None:
    # Given the spec's signed credential (Example 39) and public key (Example 29)
    signed = load("w3c-vc-di-eddsa/signed_credential.json")
    public = ed25519_from_multibase(load("w3c-vc-di-eddsa/key_pair.json")["publicKeyMultibase"])
    # When it is verified, then the proof is accepted and parsed
    proof = verify_object(signed, public_key=public)
    assert proof == Proof(
        type="DataIntegrityProof",
        cryptosuite="eddsa-jcs-2022",
        verification_method=signed["proof"]["verificationMethod"],
        proof_purpose="assertionMethod",
        created=CREATED,
        proof_value=signed["proof"]["proofValue"],
    )


def test_signing_the_w3c_credential_reproduces_the_published_signed_credential() -> None:
    # Given the spec's unsigned credential (Example 30), secret key and proof options (Example 33)
    credential = load("w3c-vc-di-eddsa/credential.json")
    options = load("w3c-vc-di-eddsa/proof_options.json")
    secret = secret_key_from_multibase(load("w3c-vc-di-eddsa/key_pair.json")["secretKeyMultibase"])
    # When we sign it with the same verification method and `created`
    signed = sign_object(
        credential, key=secret, verification_method=options["verificationMethod"], created=CREATED
    )
    # Then we produce Example 39 exactly, proofValue byte for byte (Ed25519 is deterministic)
    assert signed == load("w3c-vc-di-eddsa/signed_credential.json")
    assert (
        signed["proof"]["proofValue"]
        == load("w3c-vc-di-eddsa/intermediates.json")["example_38_signature_base58btc"]
    )
    assert {k: v for k, v in signed["proof"].items() if k != "proofValue"} == options


def test_the_w3c_intermediate_values_match_step_by_step() -> None:
    """Pins each published intermediate, so a mismatch says which step is wrong."""
    steps = load("w3c-vc-di-eddsa/intermediates.json")
    credential = load("w3c-vc-di-eddsa/credential.json")
    options = load("w3c-vc-di-eddsa/proof_options.json")
    canonical_credential = rfc8785.dumps(credential)
    canonical_options = rfc8785.dumps(options)
    assert canonical_credential.decode() == steps["example_31_canonical_credential_without_proof"]
    assert (
        hashlib.sha256(canonical_credential).hexdigest()
        == steps["example_32_hash_of_canonical_credential_without_proof_hex"]
    )
    assert canonical_options.decode() == steps["example_34_canonical_proof_options"]
    assert (
        hashlib.sha256(canonical_options).hexdigest()
        == steps["example_35_hash_of_canonical_proof_options_hex"]
    )
    assert _hash_data(options, credential).hex() == steps["example_36_combined_hashes_hex"]
    signature = bytes.fromhex(steps["example_37_signature_hex"])
    assert "z" + _b58encode(signature) == steps["example_38_signature_base58btc"]


# --- FEP-8b32 fep-8b32.feature ---------------------------------------------------------------------


def _fep_actor_key(verification_method: str) -> ed25519.Ed25519PublicKey:
    actor = load("fep-8b32/actor.json")
    (method,) = [m for m in actor["assertionMethod"] if m["id"] == verification_method]
    assert method["controller"] == actor["id"]
    return ed25519_from_multibase(method["publicKeyMultibase"])


def test_signing_the_fep_8b32_document_reproduces_the_published_signed_document() -> None:
    # Given the feature's document, secret key, time and key id
    signing = load("fep-8b32/signing.json")
    # When we sign it
    signed = sign_object(
        load("fep-8b32/document.json"),
        key=secret_key_from_multibase(signing["secretKeyMultibase"]),
        verification_method=signing["keyId"],
        created=datetime.fromisoformat(signing["currentTime"]),
    )
    # Then we produce the feature's signed document exactly
    assert signed == load("fep-8b32/signed_document.json")


def test_the_fep_8b32_signed_document_verifies_with_the_actors_multikey() -> None:
    signed = load("fep-8b32/signed_document.json")
    proof = proof_of(signed)
    assert verify_object(signed, public_key=_fep_actor_key(proof.verification_method)) == proof


def test_an_earlier_fep_8b32_vector_without_a_proof_context_verifies() -> None:
    """Interop: peers that predate vc-di-eddsa §3.3.1 step 2 sign proofs without ``@context``."""
    signed = load("fep-8b32-earlier/signed_document.json")
    assert "@context" not in signed["proof"]
    proof = verify_object(signed, public_key=_fep_actor_key("https://server.example/users/alice#ed25519-key"))
    assert proof.created == CREATED


# --- Proofs recorded from a live Fedify 2.3.6 peer (tests/fixtures/payloads/fedify/peer/) ---------


def _fedify_recordings() -> list[str]:
    actor = json.loads((FEDIFY_PEER / "actor.json").read_text(encoding="utf-8"))
    own = {method["id"] for method in actor["assertionMethod"]}
    names = []
    for path in sorted(FEDIFY_PEER.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        # Only the activities of the run whose actor.json was recorded: keys differ per run.
        if isinstance(document.get("proof"), dict) and document["proof"]["verificationMethod"] in own:
            names.append(path.name)
    return names


@pytest.mark.parametrize("name", _fedify_recordings())
def test_proofs_recorded_from_fedify_verify(name: str) -> None:
    """Interop: real Fedify output, with nanosecond ``created`` and a Linked Data ``signature`` too."""
    actor = json.loads((FEDIFY_PEER / "actor.json").read_text(encoding="utf-8"))
    document = json.loads((FEDIFY_PEER / name).read_text(encoding="utf-8"))
    proof = proof_of(document)
    (method,) = [m for m in actor["assertionMethod"] if m["id"] == proof.verification_method]
    assert "signature" in document  # FEP-8b32: the LD signature is removed before verifying
    assert verify_object(document, public_key=ed25519_from_multibase(method["publicKeyMultibase"])) == proof
    assert proof.created is not None and proof.created.tzinfo is UTC


def test_the_fedify_recordings_include_proofs_of_the_recorded_actor() -> None:
    assert len(_fedify_recordings()) >= 3


# --- Round trips with a generated key --------------------------------------------------------------


def test_a_signed_endorsement_verifies_and_says_who_signed_it() -> None:
    signed = signed_endorsement()
    proof = verify_object(signed, public_key=KEY.public_key())
    assert proof.verification_method == KEY_ID
    assert proof.proof_purpose == "assertionMethod"
    assert proof.created == CREATED
    assert signed["proof"]["created"] == "2023-02-24T23:36:38Z"
    assert signed["proof"]["@context"] == ENDORSEMENT["@context"]
    assert proof_of(signed) == proof


def test_signing_copies_the_document_and_leaves_it_untouched() -> None:
    original = copy.deepcopy(ENDORSEMENT)
    signed = signed_endorsement()
    assert ENDORSEMENT == original
    signed["object"]["name"] = "changed"
    signed["@context"].append("https://example.org/ctx")
    assert ENDORSEMENT == original


def test_signing_is_deterministic() -> None:
    assert signed_endorsement() == signed_endorsement()


def test_created_is_written_in_utc_at_seconds_precision() -> None:
    paris = timezone(timedelta(hours=1))
    created = datetime(2026, 3, 1, 11, 0, 0, 987654, tzinfo=paris)
    signed = sign_object(ENDORSEMENT, key=KEY, verification_method=KEY_ID, created=created)
    assert signed["proof"]["created"] == "2026-03-01T10:00:00Z"
    assert verify_object(signed, public_key=KEY.public_key()).created == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_a_document_without_context_gets_a_proof_without_context() -> None:
    signed = sign_object(
        {"type": "Note", "content": "x"}, key=KEY, verification_method=KEY_ID, created=CREATED
    )
    assert "@context" not in signed["proof"]
    verify_object(signed, public_key=KEY.public_key())


def test_the_proof_survives_a_json_round_trip() -> None:
    signed = sign_object(
        {**ENDORSEMENT, "amount": 12.5, "count": 3, "tags": ["é", "\u2028", "😀"]},
        key=KEY,
        verification_method=KEY_ID,
        created=CREATED,
    )
    wire = json.loads(json.dumps(signed, indent=3, ensure_ascii=True))
    verify_object(wire, public_key=KEY.public_key())


def test_a_linked_data_signature_added_after_the_proof_is_ignored() -> None:
    """FEP-8b32 "Backward compatibility": remove ``signature`` before verifying the proof."""
    signed = signed_endorsement()
    signed["signature"] = {"type": "RsaSignature2017", "signatureValue": "abc"}
    verify_object(signed, public_key=KEY.public_key())


def test_our_proof_is_found_in_a_proof_set() -> None:
    signed = signed_endorsement()
    other = {"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022", "proofValue": "zxyz"}
    signed["proof"] = [other, signed["proof"]]
    proof = verify_object(signed, public_key=KEY.public_key())
    assert proof.cryptosuite == "eddsa-jcs-2022"


def test_another_proof_purpose_is_refused_unless_asked_for() -> None:
    signed = sign_object(
        ENDORSEMENT, key=KEY, verification_method=KEY_ID, created=CREATED, proof_purpose="authentication"
    )
    assert proof_of(signed).proof_purpose == "authentication"
    with pytest.raises(InvalidProof):
        verify_object(signed, public_key=KEY.public_key())
    assert verify_object(signed, public_key=KEY.public_key(), proof_purpose="authentication")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"created": datetime(2026, 3, 1)}, ValueError),  # naive: a programming error
        ({"verification_method": ""}, ValueError),
        ({"proof_purpose": ""}, ValueError),
        ({"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, TypeError),
    ],
    ids=["naive-created", "empty-method", "empty-purpose", "rsa-key"],
)
def test_signing_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    arguments: dict[str, Any] = {"key": KEY, "verification_method": KEY_ID, "created": CREATED, **kwargs}
    with pytest.raises(error):
        sign_object(ENDORSEMENT, **arguments)


@pytest.mark.parametrize(
    "extra",
    [{"proof": {"type": "DataIntegrityProof"}}, {"signature": {"type": "RsaSignature2017"}}, {"n": 2**60}],
    ids=["already-proved", "ld-signature-first", "integer-beyond-json"],
)
def test_signing_refuses_documents_it_cannot_prove(extra: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sign_object({**ENDORSEMENT, **extra}, key=KEY, verification_method=KEY_ID, created=CREATED)


# --- Tampering: every change to the document or the proof options breaks the proof ---------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[str, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[str, ...]) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for name in path[:-1]:
            target = target[name]
        del target[path[-1]]

    return mutate


def _flip_last_proof_value_character(document: dict[str, Any]) -> None:
    value = document["proof"]["proofValue"]
    document["proof"]["proofValue"] = value[:-1] + ("2" if value[-1] != "2" else "3")


def _proof_value_of_another_document(document: dict[str, Any]) -> None:
    other_document = {**ENDORSEMENT, "id": "https://entraide.test/endorsements/8"}
    other = sign_object(other_document, key=KEY, verification_method=KEY_ID, created=CREATED)
    document["proof"]["proofValue"] = other["proof"]["proofValue"]


def _append_context(document: dict[str, Any]) -> None:
    document["@context"].append({"content": "https://attacker.example/ns#content"})


TAMPERING: dict[str, Mutation] = {
    "top-level-field": _set(("actor",), "https://attacker.example/actor"),
    "nested-field": _set(("object", "name"), "Autre chose"),
    "added-field": _set(("cc",), ["https://attacker.example/followers"]),
    "removed-field": _delete(("published",)),
    "number-type": _set(("object", "name"), 1),
    "appended-context": _append_context,
    "replaced-context": _set(("@context",), "https://www.w3.org/ns/activitystreams"),
    "removed-context": _delete(("@context",)),
    "proof-created": _set(("proof", "created"), "2023-02-24T23:36:39Z"),
    "proof-created-removed": _delete(("proof", "created")),
    "proof-verification-method": _set(("proof", "verificationMethod"), "https://attacker.example/key"),
    "proof-added-option": _set(("proof", "expires"), "2099-01-01T00:00:00Z"),
    "proof-context": _set(("proof", "@context"), ["https://www.w3.org/ns/activitystreams"]),
    "proof-context-removed": _delete(("proof", "@context")),
    "proof-value-flipped": _flip_last_proof_value_character,
    "proof-value-of-another-document": _proof_value_of_another_document,
}


@pytest.mark.parametrize("mutate", list(TAMPERING.values()), ids=list(TAMPERING))
def test_tampering_breaks_the_proof(mutate: Mutation) -> None:
    signed = signed_endorsement()
    verify_object(signed, public_key=KEY.public_key())
    mutate(signed)
    with pytest.raises(InvalidProof):
        verify_object(signed, public_key=KEY.public_key())


def test_a_changed_proof_purpose_breaks_the_proof_even_when_asked_for() -> None:
    signed = signed_endorsement()
    signed["proof"]["proofPurpose"] = "authentication"
    with pytest.raises(InvalidProof):
        verify_object(signed, public_key=KEY.public_key(), proof_purpose="authentication")


def test_another_key_does_not_verify() -> None:
    with pytest.raises(InvalidProof):
        verify_object(signed_endorsement(), public_key=OTHER_KEY.public_key())


def test_an_rsa_key_is_refused_without_raising_anything_else() -> None:
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(InvalidProof):
        verify_object(signed_endorsement(), public_key=rsa_public)  # type: ignore[arg-type]


def test_the_w3c_vector_with_a_changed_field_fails() -> None:
    signed = load("w3c-vc-di-eddsa/signed_credential.json")
    signed["credentialSubject"]["alumniOf"] = "The School of Counterfeits"
    public = ed25519_from_multibase(load("w3c-vc-di-eddsa/key_pair.json")["publicKeyMultibase"])
    with pytest.raises(InvalidProof):
        verify_object(signed, public_key=public)


# --- Hostile proofs and documents: InvalidProof, never anything else ----------------------------------


def _with_proof(**changes: Any) -> dict[str, Any]:
    """The signed endorsement with its proof's members replaced (a value of ... deletes one)."""
    signed = signed_endorsement()
    for name, value in changes.items():
        if value is ...:
            del signed["proof"][name]
        else:
            signed["proof"][name] = value
    return signed


_VALID_VALUE = signed_endorsement()["proof"]["proofValue"]
_63_BYTES = "z" + _b58encode(b"\x01" * 63)
_65_BYTES = "z" + _b58encode(b"\x01" * 65)

HOSTILE: dict[str, Any] = {
    "no-proof": dict(ENDORSEMENT),
    "proof-null": {**ENDORSEMENT, "proof": None},
    "proof-string": {**ENDORSEMENT, "proof": "z3sXax"},
    "proof-number": {**ENDORSEMENT, "proof": 7},
    "proof-true": {**ENDORSEMENT, "proof": True},
    "proof-empty-list": {**ENDORSEMENT, "proof": []},
    "proof-list-of-junk": {**ENDORSEMENT, "proof": [1, "a", None, [], {}]},
    "proof-list-other-suites": {**ENDORSEMENT, "proof": [{"type": "DataIntegrityProof", "cryptosuite": "x"}]},
    "proof-empty-object": {**ENDORSEMENT, "proof": {}},
    "type-missing": _with_proof(type=...),
    "type-other": _with_proof(type="Ed25519Signature2020"),
    "type-list": _with_proof(type=["DataIntegrityProof"]),
    "type-null": _with_proof(type=None),
    "cryptosuite-missing": _with_proof(cryptosuite=...),
    "cryptosuite-rdfc": _with_proof(cryptosuite="eddsa-rdfc-2022"),
    "cryptosuite-legacy": _with_proof(cryptosuite="jcs-eddsa-2022"),
    "cryptosuite-number": _with_proof(cryptosuite=2022),
    "method-missing": _with_proof(verificationMethod=...),
    "method-empty": _with_proof(verificationMethod=""),
    "method-object": _with_proof(verificationMethod={"id": KEY_ID}),
    "method-huge": _with_proof(verificationMethod="https://a.example/" + "k" * 5000),
    "purpose-missing": _with_proof(proofPurpose=...),
    "purpose-list": _with_proof(proofPurpose=["assertionMethod"]),
    "purpose-other": _with_proof(proofPurpose="authentication"),
    "value-missing": _with_proof(proofValue=...),
    "value-null": _with_proof(proofValue=None),
    "value-number": _with_proof(proofValue=12345),
    "value-empty": _with_proof(proofValue=""),
    "value-z-only": _with_proof(proofValue="z"),
    "value-base64url-multibase": _with_proof(proofValue="u" + "A" * 86),
    "value-no-multibase-prefix": _with_proof(proofValue=_VALID_VALUE[1:]),
    "value-uppercase-prefix": _with_proof(proofValue="Z" + _VALID_VALUE[1:]),
    "value-not-base58": _with_proof(proofValue="z0OIl" + _VALID_VALUE[5:]),
    "value-non-ascii": _with_proof(proofValue="z" + "é" * 80),
    "value-63-bytes": _with_proof(proofValue=_63_BYTES),
    "value-65-bytes": _with_proof(proofValue=_65_BYTES),
    "value-huge": _with_proof(proofValue="z" + "2" * 100_000),
    "created-number": _with_proof(created=1677281798),
    "created-null": _with_proof(created=None),
    "created-no-time-zone": _with_proof(created="2023-02-24T23:36:38"),
    "created-date-only": _with_proof(created="2023-02-24"),
    "created-words": _with_proof(created="yesterday"),
    "created-month-13": _with_proof(created="2023-13-01T00:00:00Z"),
    "created-hour-25": _with_proof(created="2023-02-24T25:00:00Z"),
    "created-offset-25h": _with_proof(created="2023-02-24T23:36:38+25:00"),
    "created-year-zero": _with_proof(created="0000-01-01T00:00:00Z"),
    "created-overflows": _with_proof(created="9999-12-31T23:59:59-14:00"),
    "created-fullwidth-digits": _with_proof(created="\uff12\uff10\uff12\uff13-02-24T23:36:38Z"),
    "created-huge": _with_proof(created="2023-02-24T23:36:38." + "1" * 10_000 + "Z"),
    "document-huge-integer": {**signed_endorsement(), "n": 2**64},
    "document-nan": {**signed_endorsement(), "n": float("nan")},
    "document-non-string-key": {**signed_endorsement(), 1: "x"},
    "context-not-json": {**signed_endorsement(), "@context": {1, 2}},
}


@pytest.mark.parametrize("document", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_proofs_raise_invalid_proof_only(document: dict[str, Any]) -> None:
    with pytest.raises(InvalidProof) as raised:
        verify_object(document, public_key=KEY.public_key())
    assert raised.value.code == "invalid_proof"


@pytest.mark.parametrize("document", [None, "proof", 3, [], [{"proof": {}}], b"{}"], ids=repr)
def test_a_document_that_is_not_an_object_raises_invalid_proof(document: Any) -> None:
    with pytest.raises(InvalidProof):
        proof_of(document)
    with pytest.raises(InvalidProof):
        verify_object(document, public_key=KEY.public_key())


def test_a_deeply_nested_document_raises_invalid_proof() -> None:
    signed = signed_endorsement()
    nested: Any = "leaf"
    for _ in range(5000):
        nested = {"a": [nested]}
    signed["object"]["attachment"] = nested
    with pytest.raises(InvalidProof):
        verify_object(signed, public_key=KEY.public_key())


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2023-02-24T23:36:38Z", datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)),
        ("2023-02-24T23:36:38.5Z", datetime(2023, 2, 24, 23, 36, 38, 500000, tzinfo=UTC)),
        ("2026-11-22T19:33:32.473012189Z", datetime(2026, 11, 22, 19, 33, 32, 473012, tzinfo=UTC)),
        ("2023-02-25T01:36:38+02:00", datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)),
        ("2023-02-24T20:06:38-03:30", datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)),
    ],
)
def test_created_is_parsed_as_an_xml_schema_date_time_stamp(created: str, expected: datetime) -> None:
    parsed = proof_of(_with_proof(created=created)).created
    assert parsed == expected and parsed is not None and parsed.tzinfo is UTC


def test_a_proof_without_created_parses_with_created_none() -> None:
    assert proof_of(_with_proof(created=...)).created is None


def test_invalid_proof_is_a_federation_error_with_its_own_code() -> None:
    assert issubclass(InvalidProof, FederationError)
    assert InvalidProof.code == "invalid_proof" != FederationError.code


# --- Properties ------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
PROOF_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "type": st.just("DataIntegrityProof") | JSON_VALUES,
        "cryptosuite": st.just("eddsa-jcs-2022") | JSON_VALUES,
        "verificationMethod": st.just(KEY_ID) | JSON_VALUES,
        "proofPurpose": st.just("assertionMethod") | JSON_VALUES,
        "created": st.just("2023-02-24T23:36:38Z") | st.text(max_size=40) | JSON_VALUES,
        "proofValue": st.just(_VALID_VALUE) | st.text(max_size=100).map(lambda s: "z" + s) | JSON_VALUES,
        "@context": st.just(ENDORSEMENT["@context"]) | JSON_VALUES,
        "expires": JSON_VALUES,
    },
)


@settings(max_examples=300, deadline=None)
@given(proof=JSON_VALUES | PROOF_LIKE | st.lists(PROOF_LIKE, max_size=3))
def test_any_json_as_proof_raises_nothing_but_invalid_proof(proof: Any) -> None:
    document = {**ENDORSEMENT, "proof": proof}
    try:
        verify_object(document, public_key=KEY.public_key())
    except InvalidProof:
        return
    pytest.fail("a proof made of arbitrary JSON verified")  # pragma: no cover


@settings(max_examples=200, deadline=None)
@given(document=JSON_VALUES | st.dictionaries(st.sampled_from(["proof", "@context", "type"]), JSON_VALUES))
def test_any_json_as_document_raises_nothing_but_invalid_proof(document: Any) -> None:
    with pytest.raises(InvalidProof):
        verify_object(document, public_key=KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(
    document=st.dictionaries(
        st.text(max_size=8).filter(lambda name: name not in {"proof", "signature"}), JSON_VALUES, max_size=6
    )
)
def test_any_json_object_signs_and_verifies_across_the_wire(document: dict[str, Any]) -> None:
    signed = sign_object(document, key=KEY, verification_method=KEY_ID, created=CREATED)
    wire = json.loads(json.dumps(signed))
    assert verify_object(wire, public_key=KEY.public_key()).verification_method == KEY_ID
    with pytest.raises(InvalidProof):
        verify_object(wire, public_key=OTHER_KEY.public_key())
