"""federation.keys: signing, PEM and Multikey (FEP-521a) encodings, and refusal of unusable keys."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from federation.errors import KeyUnavailable, SignatureError
from federation.keys import (
    KeyAlgorithm,
    KeyPair,
    PrivateKeyType,
    _b58decode,
    _b58encode,
    algorithm_of,
    ed25519_from_multibase,
    ed25519_to_multibase,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
)
from federation.types import Iri

KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
ALICE = Iri("https://peer.example/users/alice")
MESSAGE = b"(request-target): post /groups/collectif/inbox\nhost: entraide.test"

# The W3C test key of vc-di-eddsa ("Representation: eddsa-jcs-2022"), also the example value of
# FEP-521a's Multikey (fep/521a/fep-521a.md): a published value another implementation produced.
W3C_PUBLIC_KEY_MULTIBASE = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
W3C_SECRET_KEY_MULTIBASE = "z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq"
W3C_PUBLIC_KEY_HEX = "b00d8d938e7f773d51565aad36a623f5344f7f5d1960f9cf3e8e12620ea2810f"


def fixed_key(file_name: str, kind: str) -> PrivateKeyType:
    """A fixed key from tests/fixtures/keys/ when present, else a fresh one of the same kind."""
    path = KEYS_DIR / file_name
    if path.exists():
        return private_key_from_pem(path.read_bytes())
    return generate_private_key("rsa" if kind == "rsa" else "ed25519")


RSA_ALICE = fixed_key("rsa-alice.pem", "rsa")
RSA_BOB = fixed_key("rsa-bob.pem", "rsa")
ED_ALICE = fixed_key("ed25519-alice.pem", "ed25519")


def raw_bytes(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pem_of(key: object) -> str:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


# --- signing ---------------------------------------------------------------------------------


def test_rsa_signature_verifies_with_the_public_half() -> None:
    pair = KeyPair(Iri(f"{ALICE}#main-key"), ALICE, RSA_ALICE)
    signature = pair.sign(MESSAGE)
    assert pair.public.verify(signature, MESSAGE)


def test_ed25519_signature_verifies_with_the_public_half() -> None:
    pair = KeyPair(Iri(f"{ALICE}#ed25519-key"), ALICE, ED_ALICE)
    signature = pair.sign(MESSAGE)
    assert len(signature) == 64
    assert pair.public.verify(signature, MESSAGE)


@pytest.mark.parametrize("private_key", [RSA_ALICE, ED_ALICE], ids=["rsa", "ed25519"])
def test_a_tampered_message_does_not_verify(private_key: PrivateKeyType) -> None:
    pair = KeyPair(Iri(f"{ALICE}#k"), ALICE, private_key)
    signature = pair.sign(MESSAGE)
    assert not pair.public.verify(signature, MESSAGE + b" ")
    assert not pair.public.verify(b"\0" * len(signature), MESSAGE)


def test_a_signature_by_another_key_does_not_verify() -> None:
    alice = KeyPair(Iri(f"{ALICE}#main-key"), ALICE, RSA_ALICE)
    bob = KeyPair(Iri(f"{ALICE}#main-key"), ALICE, RSA_BOB)
    assert not alice.public.verify(bob.sign(MESSAGE), MESSAGE)


def test_the_algorithm_is_derived_from_the_key_type() -> None:
    """Security case 9: a header never chooses the algorithm; the key's type does."""
    assert algorithm_of(RSA_ALICE) == KeyAlgorithm.RSA_V1_5_SHA256
    assert algorithm_of(RSA_ALICE.public_key()) == KeyAlgorithm.RSA_V1_5_SHA256
    assert algorithm_of(ED_ALICE) == KeyAlgorithm.ED25519
    assert algorithm_of(ED_ALICE.public_key()) == KeyAlgorithm.ED25519
    assert KeyPair(Iri(f"{ALICE}#k"), ALICE, RSA_ALICE).public.algorithm == KeyAlgorithm.RSA_V1_5_SHA256
    assert KeyAlgorithm.RSA_V1_5_SHA256.value == "rsa-v1_5-sha256"  # RFC 9421 registry name


def test_generated_keys_have_the_expected_type_and_size() -> None:
    rsa_key = generate_private_key("rsa")
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 2048
    assert isinstance(generate_private_key("ed25519"), ed25519.Ed25519PrivateKey)


@pytest.mark.parametrize("private_key", [RSA_ALICE, ED_ALICE], ids=["rsa", "ed25519"])
def test_keypair_repr_shows_no_key_material(private_key: PrivateKeyType) -> None:
    """A KeyPair in a log line or traceback shows its id and algorithm, never the key."""
    pair = KeyPair(Iri(f"{ALICE}#main-key"), ALICE, private_key)
    text = repr(pair)
    assert "#main-key" in text
    assert pair.algorithm.value in text
    pem = private_key_to_pem(private_key).decode("ascii")
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert "PRIVATE" not in text
    assert not any(line[:16] in text for line in body_lines)
    assert "private_key" not in text


# --- PEM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("private_key", [RSA_ALICE, ED_ALICE], ids=["rsa", "ed25519"])
def test_private_key_pem_round_trip(private_key: PrivateKeyType) -> None:
    pem = private_key_to_pem(private_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    again = private_key_from_pem(pem)
    assert private_key_to_pem(again) == pem


@pytest.mark.parametrize("private_key", [RSA_ALICE, ED_ALICE], ids=["rsa", "ed25519"])
def test_public_key_pem_round_trip(private_key: PrivateKeyType) -> None:
    public = private_key.public_key()
    pem = public_key_to_pem(public)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    assert public_key_to_pem(public_key_from_pem(pem)) == pem


def test_a_pkcs1_rsa_public_key_pem_is_accepted() -> None:
    """Some older peers publish ``BEGIN RSA PUBLIC KEY`` (PKCS#1) rather than SPKI."""
    public = RSA_ALICE.public_key()
    pkcs1 = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode("ascii")
    assert public_key_to_pem(public_key_from_pem(pkcs1)) == public_key_to_pem(public)


def test_a_weak_1024_bit_rsa_public_key_is_refused() -> None:
    """Security case 9: an RSA key under 2048 bits is unusable, whoever publishes it."""
    # Given an actor publishing a 1024-bit key
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    # When we load it, then it is refused with a stable code
    with pytest.raises(KeyUnavailable, match="1024") as refused:
        public_key_from_pem(pem_of(weak.public_key()))
    assert refused.value.code == "key_unavailable"
    assert isinstance(refused.value, SignatureError)


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "garbage",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all !!\n-----END PUBLIC KEY-----\n",
        "clé publique",  # not ASCII
    ],
)
def test_garbage_public_key_pem_is_refused(pem: str) -> None:
    with pytest.raises(KeyUnavailable):
        public_key_from_pem(pem)


def test_a_public_key_with_an_unknown_algorithm_is_refused() -> None:
    """Regression: a well-formed SPKI with an unknown OID raised cryptography's UnsupportedAlgorithm.

    A remote actor controls its ``publicKeyPem``; anything it publishes must end as KeyUnavailable.
    """
    # Given an X25519 SPKI whose algorithm OID 1.3.101.110 is changed to the unassigned 1.3.101.127
    der = (
        x25519.X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    tampered = der.replace(bytes.fromhex("06032b656e"), bytes.fromhex("06032b657f"))
    assert tampered != der
    pem = (
        "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(tampered).decode() + "\n-----END PUBLIC KEY-----\n"
    )
    # Then loading it is refused like any other unusable key
    with pytest.raises(KeyUnavailable):
        public_key_from_pem(pem)


@pytest.mark.parametrize(
    "public_key",
    [
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        x25519.X25519PrivateKey.generate().public_key(),
    ],
    ids=["ecdsa-p256", "x25519"],
)
def test_supported_but_unusable_key_types_are_refused(public_key: object) -> None:
    with pytest.raises(KeyUnavailable, match="unsupported"):
        public_key_from_pem(pem_of(public_key))


def test_an_unsupported_private_key_type_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyUnavailable):
        private_key_from_pem(pem)


# --- Multikey (FEP-521a) ---------------------------------------------------------------------


def test_multikey_round_trip() -> None:
    public = ED_ALICE.public_key()
    encoded = ed25519_to_multibase(public)
    assert raw_bytes(ed25519_from_multibase(encoded)) == raw_bytes(public)


def test_multikey_of_an_ed25519_key_starts_with_z6mk() -> None:
    """``z`` is base58btc; ``6Mk`` is what the 0xed 0x01 multicodec prefix becomes."""
    for key in (ED_ALICE.public_key(), ed25519.Ed25519PrivateKey.generate().public_key()):
        encoded = ed25519_to_multibase(key)
        assert encoded.startswith("z6Mk")
        assert len(encoded) == 48


def test_the_published_w3c_fep_521a_example_decodes_to_32_bytes() -> None:
    """Interop: the example value of FEP-521a / vc-di-eddsa, produced by another implementation."""
    key = ed25519_from_multibase(W3C_PUBLIC_KEY_MULTIBASE)
    assert len(raw_bytes(key)) == 32
    assert raw_bytes(key).hex() == W3C_PUBLIC_KEY_HEX
    assert ed25519_to_multibase(key) == W3C_PUBLIC_KEY_MULTIBASE


def test_the_w3c_secret_key_derives_the_published_public_key() -> None:
    """Cross-check of our base58btc against the spec's key pair (secret multicodec is 0x8026)."""
    secret = _b58decode(W3C_SECRET_KEY_MULTIBASE[1:])
    assert secret[:2] == b"\x80\x26"
    private = ed25519.Ed25519PrivateKey.from_private_bytes(secret[2:])
    assert ed25519_to_multibase(private.public_key()) == W3C_PUBLIC_KEY_MULTIBASE


@pytest.mark.parametrize(
    "value",
    [
        "u7QGwDY2Tjn93PVFWWq02piP1NE9_XRlg-c8-jhJiDqKBDw",  # base64url multibase (FEP-521b draft)
        "6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",  # no multibase prefix at all
        "Z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",  # wrong-case prefix
        "",
    ],
)
def test_a_multibase_that_is_not_base58btc_is_refused(value: str) -> None:
    with pytest.raises(KeyUnavailable):
        ed25519_from_multibase(value)


def test_a_multikey_with_another_multicodec_is_refused() -> None:
    """An X25519 key (multicodec 0xec 0x01, ``z6LS…``) is not an Ed25519 signing key."""
    x25519_multikey = "z" + _b58encode(b"\xec\x01" + bytes(range(32)))
    assert x25519_multikey.startswith("z6LS")
    with pytest.raises(KeyUnavailable, match="not an Ed25519"):
        ed25519_from_multibase(x25519_multikey)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xed\x01" + b"\x01" * 31,  # one byte short
        b"\xed\x01" + b"\x01" * 33,  # one byte long
        b"\xed\x01",
        b"\x01" * 34,  # right length, no prefix
    ],
    ids=["short", "long", "prefix-only", "no-prefix"],
)
def test_a_multikey_of_the_wrong_length_or_prefix_is_refused(payload: bytes) -> None:
    with pytest.raises(KeyUnavailable):
        ed25519_from_multibase("z" + _b58encode(payload))


@pytest.mark.parametrize("value", ["z0OIl", "z6Mk+/", "z" + "1" * 200, "z"])
def test_invalid_base58_or_oversized_multikey_is_refused(value: str) -> None:
    """``0``, ``O``, ``I`` and ``l`` are not in the base58 alphabet; length is capped."""
    with pytest.raises(KeyUnavailable):
        ed25519_from_multibase(value)


# --- base58btc --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x00", "111"),
        (b"\x00\x00\x01", "112"),
        (b"\x01", "2"),
        (b"\x39", "z"),  # 57, the last digit
        (b"\x3a", "21"),  # 58
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),  # the IETF base58 draft's example
        (b"\x00\x00\x28\x7f\xb4\xcd", "11233QC4"),  # ditto, two leading zero bytes
    ],
)
def test_base58_known_values_and_leading_zeros(data: bytes, text: str) -> None:
    """Each leading zero byte is one leading ``1``, both ways (draft-msporny-base58)."""
    assert _b58encode(data) == text
    assert _b58decode(text) == data


@pytest.mark.parametrize("data", [b"\x00" * n + b"\xff\x00" for n in range(5)])
def test_base58_round_trip_keeps_every_leading_zero(data: bytes) -> None:
    assert _b58decode(_b58encode(data)) == data


def test_a_trusted_private_key_loads_to_the_same_key_without_the_rsa_check() -> None:
    """The node's own keys (from its authenticated vault) skip OpenSSL's 95 ms consistency check."""
    from federation.keys import generate_private_key, private_key_from_pem, private_key_to_pem

    pem = private_key_to_pem(generate_private_key("rsa"))
    trusted, checked = private_key_from_pem(pem, trusted=True), private_key_from_pem(pem)
    assert private_key_to_pem(trusted) == private_key_to_pem(checked) == pem
