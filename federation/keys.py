"""Key pairs of our actors and public keys of remote ones.

RSA-2048 keys sign HTTP requests (draft-cavage and RFC 9421, what every peer verifies);
Ed25519 keys are published as Multikey (FEP-521a) and sign object integrity proofs
(FEP-8b32, ``eddsa-jcs-2022``). The signing algorithm is always derived from the key type,
never from a header (security case 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .errors import KeyUnavailable
from .types import Iri

RSA_KEY_BITS = 2048
MIN_RSA_KEY_BITS = 2048
_MULTICODEC_ED25519_PUB = b"\xed\x01"
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

PublicKeyType = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKeyType = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyAlgorithm(StrEnum):
    """The algorithms we sign and verify with, named as in RFC 9421's registry."""

    RSA_V1_5_SHA256 = "rsa-v1_5-sha256"
    ED25519 = "ed25519"


def algorithm_of(key: PublicKeyType | PrivateKeyType) -> KeyAlgorithm:
    """The only algorithm a key may be used with."""
    # Remembered per class: the ABC checks cost a microsecond, and every signature asks.
    kind = type(key)
    algorithm = _ALGORITHM_OF_CLASS.get(kind)
    if algorithm is None:
        if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
            algorithm = KeyAlgorithm.RSA_V1_5_SHA256
        else:
            algorithm = KeyAlgorithm.ED25519
        if len(_ALGORITHM_OF_CLASS) < 16:  # a handful of key classes exist
            _ALGORITHM_OF_CLASS[kind] = algorithm
    return algorithm


_ALGORITHM_OF_CLASS: dict[type, KeyAlgorithm] = {}


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A remote or local public key with the actor that owns it.

    ``key_id`` is the IRI the key is known by (``actor#main-key`` for RSA on Mastodon-likes,
    ``actor#ed25519-key`` for our Multikey); ``owner`` is the actor IRI.
    """

    key_id: Iri
    owner: Iri
    key: PublicKeyType

    @property
    def algorithm(self) -> KeyAlgorithm:
        return algorithm_of(self.key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Verify ``signature`` over ``message`` with the key's own algorithm."""
        try:
            if isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> str:
        return public_key_to_pem(self.key)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """One of our actors' key pairs. ``repr`` never shows the private half."""

    key_id: Iri
    owner: Iri
    private_key: PrivateKeyType

    def __repr__(self) -> str:
        return f"KeyPair(key_id={self.key_id!r}, algorithm={self.algorithm.value})"

    @property
    def algorithm(self) -> KeyAlgorithm:
        return algorithm_of(self.private_key)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.owner, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (PKCS#1 v1.5 SHA-256 for RSA, pure Ed25519 otherwise)."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(message)


def generate_private_key(kind: Literal["rsa", "ed25519"]) -> PrivateKeyType:
    """Generate a fresh RSA-2048 or Ed25519 private key."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return ed25519.Ed25519PrivateKey.generate()


def private_key_to_pem(key: PrivateKeyType) -> bytes:
    """PKCS#8 PEM, unencrypted: callers encrypt it at rest (see server/services/actors/keys.py)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_pem(data: bytes, *, trusted: bool = False) -> PrivateKeyType:
    """Load a PKCS#8 (or PKCS#1) private key.

    ``trusted``: the PEM is one this node wrote itself and kept under authenticated encryption
    (a Fernet token, see ``server/services/actors/keys.py``), so OpenSSL's RSA consistency check
    (≈95 ms per RSA-2048 key on the project machine, paid at the first delivery of every local
    actor in every process) proves nothing it does not already know and is skipped. Keys from
    anywhere else are checked.
    """
    key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=trusted)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyUnavailable("unsupported private key type")
    return key


def public_key_to_pem(key: PublicKeyType) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_from_pem(pem: str) -> PublicKeyType:
    """Load a SubjectPublicKeyInfo (or PKCS#1 RSA) PEM; refuse weak or unsupported keys."""
    try:
        data = pem.encode("ascii")
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnicodeEncodeError, TypeError, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm: a well-formed SubjectPublicKeyInfo with an unknown algorithm OID.
        raise KeyUnavailable("unreadable public key PEM") from exc
    return _checked_public_key(key)


def _checked_public_key(key: object) -> PublicKeyType:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise KeyUnavailable(f"RSA key of {key.key_size} bits is too weak")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise KeyUnavailable("unsupported public key type")


def _b58encode(data: bytes) -> str:
    # Multibase base58btc; small enough that a dependency is not worth it.
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = _B58_ALPHABET[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        idx = _B58_ALPHABET.find(ch)
        if idx < 0:
            raise KeyUnavailable("invalid base58 character in multibase key")
        n = n * 58 + idx
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def ed25519_to_multibase(key: ed25519.Ed25519PublicKey) -> str:
    """``publicKeyMultibase`` of a Multikey (FEP-521a): ``z`` + base58btc(0xed01 + 32 bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "z" + _b58encode(_MULTICODEC_ED25519_PUB + raw)


def ed25519_from_multibase(value: str) -> ed25519.Ed25519PublicKey:
    """Parse a ``publicKeyMultibase`` value; only base58btc Ed25519 keys are accepted."""
    if not value.startswith("z") or len(value) > 128:
        raise KeyUnavailable("only base58btc multibase keys are supported")
    data = _b58decode(value[1:])
    if not data.startswith(_MULTICODEC_ED25519_PUB) or len(data) != 34:
        raise KeyUnavailable("multibase key is not an Ed25519 public key")
    return ed25519.Ed25519PublicKey.from_public_bytes(data[2:])
