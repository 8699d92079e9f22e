"""Object integrity proofs (FEP-8b32) with the ``eddsa-jcs-2022`` cryptosuite.

An association endorses a proposal by publishing an object that carries a ``proof``: a Data
Integrity proof signed with the association's Ed25519 key (published as a Multikey in its
``assertionMethod``, FEP-521a). Anyone holding that public key can check the object later,
whoever relays it, independently of HTTP signatures.

The algorithms are those of W3C "Data Integrity EdDSA Cryptosuites v1.0" (Recommendation,
15 May 2025), §3.3 ``eddsa-jcs-2022``, as profiled by FEP-8b32:

- proof options: ``type``, ``cryptosuite``, ``created``, ``verificationMethod``,
  ``proofPurpose``, plus the document's ``@context`` when it has one (§3.3.1 step 2);
- ``hashData = SHA-256(JCS(proof options)) || SHA-256(JCS(document without proof))``, with JCS
  from RFC 8785 (the ``rfc8785`` package, never hand-rolled);
- ``proofValue = "z" + base58btc(Ed25519(hashData))``.

This module only proves *which key* signed an object. Resolving
:attr:`Proof.verification_method` to a key, and checking that the key's controller is the
actor the object speaks for, is the caller's job (FEP-8b32 "Activities").
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import FederationError, KeyUnavailable
from .keys import _b58decode, _b58encode

__all__ = [
    "ASSERTION_METHOD",
    "CRYPTOSUITE",
    "PROOF_TYPE",
    "InvalidProof",
    "Proof",
    "proof_of",
    "sign_object",
    "verify_object",
]

PROOF_TYPE: Final = "DataIntegrityProof"
"""The only proof ``type`` we produce and accept."""

CRYPTOSUITE: Final = "eddsa-jcs-2022"
"""The only cryptosuite we produce and accept (the one FEP-8b32 recommends)."""

ASSERTION_METHOD: Final = "assertionMethod"
"""The proof purpose FEP-8b32 requires."""

SIGNATURE_BYTES: Final = 64
"""An Ed25519 signature is exactly 64 bytes (RFC 8032)."""

MAX_PROOF_VALUE_CHARS: Final = 100
"""base58btc of 64 bytes is at most 88 characters; anything longer is refused before decoding."""

MAX_VERIFICATION_METHOD_CHARS: Final = 2048
"""Same bound as HTTP signature keyIds (``federation.signatures.MAX_KEY_ID_CHARS``)."""

MAX_PROOF_PURPOSE_CHARS: Final = 256
MAX_CREATED_CHARS: Final = 64

# XML Schema 1.1 dateTimeStamp (a dateTime whose time zone is mandatory), as Data Integrity
# requires for `created`. [0-9] rather than \d, which would also match non-ASCII digits.
_DATE_TIME_STAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:(Z)|([+-])([0-9]{2}):([0-9]{2}))"
)

# Members that are not part of the signed data. `signature` is a Linked Data signature added
# after the proof (FEP-8b32 "Backward compatibility": remove it before verifying); Fedify sends
# both.
_UNSIGNED_MEMBERS: Final = frozenset({"proof", "signature"})


class InvalidProof(FederationError):
    """The object's integrity proof is missing, malformed, unsupported or does not verify."""

    code = "invalid_proof"


@dataclass(frozen=True, slots=True)
class Proof:
    """The parsed ``proof`` member of an object (a ``DataIntegrityProof``, ``eddsa-jcs-2022``).

    ``verification_method`` is the IRI (or DID URL) of the key that signed; ``created`` is an
    aware UTC datetime (truncated to microseconds) or None when the proof has no ``created``;
    ``proof_value`` is the multibase base58btc signature exactly as sent (``"z..."``).
    A parsed Proof is well-formed, not verified: only :func:`verify_object` returns verified ones.
    """

    type: str
    cryptosuite: str
    verification_method: str
    proof_purpose: str
    created: datetime | None
    proof_value: str


def sign_object(
    document: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey,
    verification_method: str,
    created: datetime,
    proof_purpose: str = ASSERTION_METHOD,
) -> dict[str, Any]:
    """Return a copy of ``document`` with a ``proof`` added (FEP-8b32, ``eddsa-jcs-2022``).

    Follows vc-di-eddsa §3.3.1: the proof carries the document's ``@context`` when it has one,
    and ``created`` is written in UTC at seconds precision (``2023-02-24T23:36:38Z``). Ed25519 is
    deterministic, so the same document, key, method and time always give the same proof.
    ``document`` is not modified; the result shares no mutable value with it.

    Raises:
        ValueError: ``created`` is naive, ``verification_method`` or ``proof_purpose`` is empty,
            the document already has a ``proof`` (proof sets and chains are not supported) or a
            Linked Data ``signature`` (FEP-8b32: the integrity proof must come first), or the
            document cannot be canonicalized (RFC 8785: e.g. an integer beyond 2**53 - 1, a NaN).
        TypeError: ``key`` is not an Ed25519 private key.
    """
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("integrity proofs are signed with an Ed25519 key")
    if not verification_method or not proof_purpose:
        raise ValueError("verification_method and proof_purpose must be non-empty")
    if "proof" in document:
        raise ValueError("the document already carries a proof")
    if "signature" in document:
        raise ValueError("add the integrity proof before the Linked Data signature (FEP-8b32)")
    unsecured = _plain_json(document)
    proof: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": _render_created(created),
        "verificationMethod": verification_method,
        "proofPurpose": proof_purpose,
    }
    if "@context" in unsecured:
        proof["@context"] = copy.deepcopy(unsecured["@context"])
    signature = key.sign(_hash_data(proof, unsecured))
    proof["proofValue"] = "z" + _b58encode(signature)
    return {**unsecured, "proof": proof}


def proof_of(document: Mapping[str, Any]) -> Proof:
    """Parse the document's ``eddsa-jcs-2022`` proof, without verifying it.

    ``proof`` may be one object or a list (a proof set): from a list, the first member whose
    ``cryptosuite`` is ``eddsa-jcs-2022`` is taken. Use it to learn which key to resolve
    (:attr:`Proof.verification_method`) before calling :func:`verify_object`.

    Raises:
        InvalidProof: no proof; not an object; no ``eddsa-jcs-2022`` member in a list; a
            ``type`` other than ``DataIntegrityProof``; a missing or non-string
            ``verificationMethod``, ``proofPurpose`` or ``proofValue``; a ``created`` that is not
            an XML Schema dateTimeStamp; a ``proofValue`` that is not base58btc multibase (``z``)
            of exactly 64 bytes. Nothing else is raised, whatever the input.
    """
    return _select_proof(document)[1]


def verify_object(
    document: Mapping[str, Any],
    *,
    public_key: Ed25519PublicKey,
    proof_purpose: str = ASSERTION_METHOD,
) -> Proof:
    """Verify the document's ``eddsa-jcs-2022`` proof with ``public_key``; return it parsed.

    The signed data is the document without ``proof`` (and without a Linked Data
    ``signature``, which FEP-8b32 says to remove first) plus the proof without ``proofValue``,
    so changing any member of either, ``created`` and ``verificationMethod`` included, breaks
    the proof. The proof's ``proofPurpose`` must equal ``proof_purpose`` (FEP-8b32 requires
    ``assertionMethod``, the default).

    The caller must have resolved ``public_key`` from :attr:`Proof.verification_method` (see
    :func:`proof_of`) and checked that its controller is the actor the object speaks for.

    Raises:
        InvalidProof: for every reason the proof is not acceptable, and only that, whatever the
            input: see :func:`proof_of`, plus: another proof purpose; ``public_key`` is not an
            Ed25519 key; the proof's ``@context`` differs from the document's; the document
            cannot be canonicalized; the signature does not verify.
    """
    raw, proof = _select_proof(document)
    if proof.proof_purpose != proof_purpose:
        raise InvalidProof(f"the proof purpose is not {proof_purpose}")
    if not isinstance(public_key, Ed25519PublicKey):
        # e.g. the verificationMethod resolved to an RSA Multikey (Fedify publishes both).
        raise InvalidProof("eddsa-jcs-2022 proofs are verified with an Ed25519 key")
    options = {name: value for name, value in raw.items() if name != "proofValue"}
    unsecured = {name: value for name, value in document.items() if name not in _UNSIGNED_MEMBERS}
    try:
        if "@context" in options:
            # vc-di-eddsa §3.3.2 step 4 accepts a document whose @context merely *starts with*
            # the proof's, then hashes the proof's. We require them to be equal: contexts
            # appended after signing could redefine signed terms for a JSON-LD reader, and the
            # caller keeps using the document as received. Fedify and our signer write the same
            # @context in both.
            if "@context" not in unsecured or _jcs(unsecured["@context"]) != _jcs(options["@context"]):
                raise InvalidProof("the proof's @context differs from the document's")
        hash_data = _hash_data(options, unsecured)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise InvalidProof("the document cannot be canonicalized (RFC 8785)") from exc
    try:
        public_key.verify(_decode_proof_value(proof.proof_value), hash_data)
    except InvalidSignature as exc:
        raise InvalidProof("the integrity proof does not verify") from exc
    return proof


def _select_proof(document: object) -> tuple[Mapping[str, Any], Proof]:
    """The raw proof member that is ours (it is what gets hashed) and its parsed form."""
    if not isinstance(document, Mapping):
        raise InvalidProof("the document is not a JSON object")
    if "proof" not in document:
        raise InvalidProof("the document carries no proof")
    value = document["proof"]
    if isinstance(value, list):
        for candidate in value:
            if isinstance(candidate, Mapping) and candidate.get("cryptosuite") == CRYPTOSUITE:
                return candidate, _parse_proof(candidate)
        raise InvalidProof(f"no {CRYPTOSUITE} proof in the proof set")
    if not isinstance(value, Mapping):
        raise InvalidProof("the proof is not a JSON object")
    return value, _parse_proof(value)


def _parse_proof(raw: Mapping[str, Any]) -> Proof:
    if raw.get("type") != PROOF_TYPE:
        raise InvalidProof(f"the proof type is not {PROOF_TYPE}")
    if raw.get("cryptosuite") != CRYPTOSUITE:
        raise InvalidProof(f"the cryptosuite is not {CRYPTOSUITE}")
    verification_method = _required_string(raw, "verificationMethod", MAX_VERIFICATION_METHOD_CHARS)
    proof_purpose = _required_string(raw, "proofPurpose", MAX_PROOF_PURPOSE_CHARS)
    proof_value = _required_string(raw, "proofValue", MAX_PROOF_VALUE_CHARS)
    _decode_proof_value(proof_value)
    created = _parse_created(raw["created"]) if "created" in raw else None
    return Proof(
        type=PROOF_TYPE,
        cryptosuite=CRYPTOSUITE,
        verification_method=verification_method,
        proof_purpose=proof_purpose,
        created=created,
        proof_value=proof_value,
    )


def _required_string(raw: Mapping[str, Any], name: str, max_chars: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidProof(f"the proof's {name} is missing or not a string")
    if len(value) > max_chars:
        raise InvalidProof(f"the proof's {name} is longer than {max_chars} characters")
    return value


def _decode_proof_value(proof_value: str) -> bytes:
    if not proof_value.startswith("z"):
        raise InvalidProof("the proofValue is not multibase base58btc ('z')")
    try:
        signature = _b58decode(proof_value[1:])
    except KeyUnavailable as exc:
        raise InvalidProof("the proofValue is not valid base58btc") from exc
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidProof(f"the proofValue does not decode to {SIGNATURE_BYTES} bytes")
    return signature


def _parse_created(value: object) -> datetime:
    """An XML Schema dateTimeStamp as an aware UTC datetime (fractions beyond µs are dropped)."""
    if not isinstance(value, str) or len(value) > MAX_CREATED_CHARS:
        raise InvalidProof("the proof's created is not a date-time string")
    match = _DATE_TIME_STAMP.fullmatch(value)
    if match is None:
        raise InvalidProof("the proof's created is not an XML Schema dateTimeStamp")
    year, month, day, hour, minute, second, fraction, zulu, sign, tz_hours, tz_minutes = match.groups()
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        if zulu:
            tzinfo = UTC
        else:
            if int(tz_hours) > 14 or int(tz_minutes) > 59:
                raise ValueError("time zone offset out of range")
            offset = timedelta(hours=int(tz_hours), minutes=int(tz_minutes))
            tzinfo = timezone(-offset if sign == "-" else offset)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond, tzinfo
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidProof("the proof's created is not a valid date-time") from exc


def _render_created(created: datetime) -> str:
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValueError("created must be an aware datetime (use federation.types.utc_now)")
    return created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_data(proof_options: Mapping[str, Any], unsecured: Mapping[str, Any]) -> bytes:
    # vc-di-eddsa §3.3.4: the proof configuration's hash comes first.
    return hashlib.sha256(_jcs(proof_options)).digest() + hashlib.sha256(_jcs(unsecured)).digest()


def _jcs(value: Any) -> bytes:
    """RFC 8785 canonical bytes; raises rfc8785.CanonicalizationError (a ValueError)."""
    return rfc8785.dumps(_plain_json(value))


def _plain_json(value: Any) -> Any:
    """A deep copy with every Mapping as a dict and every tuple as a list (what rfc8785 takes)."""
    if isinstance(value, Mapping):
        return {name: _plain_json(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(item) for item in value]
    return value
