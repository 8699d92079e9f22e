"""RFC 9421 HTTP Message Signatures, through the ``http-message-signatures`` library.

Mastodon ≥ 4.5 verifies these by default and Fedify signs them first when double-knocking
(docs/interop.md "HTTP signatures"). Our policy is Mastodon's: exactly one signature, a
``created`` parameter, ``@method`` and ``@target-uri`` covered, and ``content-digest`` present
and covered whenever there is a body.

What the library does and what we do by hand, and why:

- The library builds the signature base and checks the cryptography. That is the delicate part,
  and the reason to use it.
- Policy checks (one signature, ``created``, coverage, time window) run here, on our own parse
  of ``Signature-Input``, *before* the key is resolved, so that a request we will refuse anyway
  never triggers a key fetch (security case 7). After the library verifies, its result is
  cross-checked against that parse, so a disagreement between the two parsers cannot slip a
  signature past the policy.
- The time window is ours: the library compares with ``datetime.now()``, and R3 (docs/architecture.md)
  wants the injected clock. Its own check is switched off in :class:`_ClockFreeVerifier`.
- The body digest is ours (:mod:`.digest`), checked by the caller before the key is resolved;
  the library only checks a digest when handed the body after verification.
- The library's key resolver is synchronous, so the caller resolves the key asynchronously
  first and hands the library a one-entry :class:`~http_message_signatures.MappingKeyResolver`.
- Signing uses the library's ``prepare``/``apply`` split, so the private key never leaves
  :class:`~federation.keys.KeyPair` (it signs the prepared base itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureComponentResolver,
    MappingKeyResolver,
)
from http_message_signatures.algorithms import ED25519, RSA_V1_5_SHA256
from http_message_signatures.structures import VerifyResult
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item

from ..errors import InsufficientCoverage, MalformedHeader, SignatureError
from ..http import Headers, IncomingRequest, OutgoingRequest
from ..keys import KeyAlgorithm, KeyPair, PublicKey
from ..uris import KEY_FRAGMENTS
from ._window import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_FUTURE_SKEW,
    check_time_window,
    from_unix,
    http_date,
    require_aware,
)
from .digest import compute_content_digest

SIGNATURE_LABEL = "sig1"
"""The label we sign under (labels are not signed; verifiers must not rely on them)."""

MAX_SIGNATURE_HEADER_CHARS = 8192
"""Longer ``Signature``/``Signature-Input`` headers are refused before parsing."""

METHOD = '"@method"'
TARGET_URI = '"@target-uri"'
AUTHORITY = '"@authority"'
CONTENT_DIGEST = '"content-digest"'

_LIBRARY_ALGORITHMS: dict[KeyAlgorithm, type[HTTPSignatureAlgorithm]] = {
    KeyAlgorithm.RSA_V1_5_SHA256: RSA_V1_5_SHA256,
    KeyAlgorithm.ED25519: ED25519,
}


@dataclass(frozen=True, slots=True)
class Rfc9421Signature:
    """The one signature of a request, parsed from ``Signature-Input`` and ``Signature``.

    ``components`` holds each covered component identifier serialised as a Structured Field
    item, parameters included (``'"@method"'``, ``'"content-digest";sf'``), in signing order.
    ``algorithm`` is the ``alg`` parameter when sent; it is only ever compared with the key
    type, never used to choose an algorithm (security case 9).
    """

    label: str
    key_id: str
    components: tuple[str, ...]
    created: int | None
    expires: int | None
    algorithm: str | None
    signature: bytes


def parse_signature_headers(signature_input: str, signature: str) -> Rfc9421Signature:
    """Parse the ``Signature-Input`` and ``Signature`` Dictionaries (RFC 8941) of a request.

    Guarantees: exactly one label, present in both headers; the input is an Inner List of
    String items; ``keyid`` is a non-empty String; ``created``/``expires`` are Integers when
    present; the signature is a Byte Sequence.

    Raises:
        MalformedHeader: either header is not a valid Dictionary or lacks a required shape
            (HTTP 400).
        SignatureError: the headers carry more than one signature; Mastodon and we accept
            exactly one.
    """
    inputs = _parse_dictionary(signature_input, "Signature-Input")
    values = _parse_dictionary(signature, "Signature")
    if len(inputs) != 1 or len(values) != 1:
        raise SignatureError("exactly one HTTP message signature is accepted per request")
    (label, members), (value_label, value) = next(iter(inputs.items())), next(iter(values.items()))
    if label != value_label:
        raise MalformedHeader("Signature-Input and Signature use different labels")
    if not isinstance(members, InnerList):
        raise MalformedHeader("Signature-Input member must be an inner list")
    if not isinstance(value, Item) or not isinstance(value.value, bytes) or not value.value:
        raise MalformedHeader("Signature member must be a byte sequence")
    components: list[str] = []
    for item in members:
        # ``type(...) is str`` throughout: http_sfv's Token and DisplayString subclass str, and
        # RFC 9421 wants Strings here (``(method)`` is not ``("@method")``).
        if not isinstance(item, Item) or type(item.value) is not str:
            raise MalformedHeader("Signature-Input components must be strings")
        components.append(str(item))
    params = members.params
    key_id = params.get("keyid")
    if type(key_id) is not str or not key_id:
        raise MalformedHeader("Signature-Input has no keyid parameter")
    created, expires = params.get("created"), params.get("expires")
    # ``type(...) is int``: a Structured Field Boolean (``?1``) is a Python bool, an int subclass.
    if any(value is not None and type(value) is not int for value in (created, expires)):
        raise MalformedHeader("Signature-Input created/expires must be integers")
    algorithm = params.get("alg")
    if algorithm is not None and type(algorithm) is not str:
        raise MalformedHeader("Signature-Input alg must be a string")
    return Rfc9421Signature(label, key_id, tuple(components), created, expires, algorithm, value.value)


def _parse_dictionary(value: str, name: str) -> Dictionary:
    if len(value) > MAX_SIGNATURE_HEADER_CHARS or not value.isascii():
        raise MalformedHeader(f"{name} header is too long or not ASCII")
    parsed = Dictionary()
    try:
        parsed.parse(value.encode("ascii"))
    except (ValueError, IndexError, TypeError, UnicodeError) as exc:
        raise MalformedHeader(f"{name} is not a valid structured field dictionary") from exc
    return parsed


def target_uri(request: IncomingRequest) -> str:
    """``@target-uri`` of an incoming request: our public origin plus the raw target as sent.

    The origin comes from ``request.url`` (rebuilt by the server from its configured origin,
    never from ``Host``); path and query come from ``request.target``, undecoded (security
    case 10), exactly as for cavage's ``(request-target)``.

    Raises:
        SignatureError: the URL has no origin or the target is not an origin-form path.
    """
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not request.target.startswith("/"):
        raise SignatureError("cannot compute @target-uri for this request")
    return f"{parts.scheme}://{parts.netloc}{request.target}"


def target_fragments(request: IncomingRequest) -> tuple[str, ...]:
    """The fragments a signed ``@target-uri`` of ``request`` may carry, none (``""``) first.

    Fedify signs ``@target-uri`` as the URL it was asked to fetch, fragment included: the fetch
    of our key by its id signs ``<actor>#main-key`` while only ``<actor>`` reaches us (a
    fragment is never sent). For a GET or HEAD without a body, the target with each of our key
    fragments is also a candidate: it names the same resource and method, so nothing else
    becomes acceptable (security case 10), and the candidates are a fixed, short list.
    """
    if request.method.upper() not in ("GET", "HEAD") or request.body:
        return ("",)
    return ("", *KEY_FRAGMENTS)


@dataclass(slots=True)
class _MessageView:
    """The duck-typed request the library reads (``method``, ``url``, ``headers.items()``)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    fragment: str = ""
    """Appended to ``@target-uri`` by :class:`_FragmentResolver` when not empty."""


class _FragmentResolver(HTTPSignatureComponentResolver):
    """The library's resolver, with the fragment of a candidate target (which the library's URL
    parsing drops) put back into ``@target-uri``; see :func:`target_fragments`."""

    def get_target_uri(self) -> str:
        uri: str = super().get_target_uri()  # type: ignore[no-untyped-call]
        fragment = getattr(self.message, "fragment", "")
        return f"{uri}#{fragment}" if fragment else uri


class _ClockFreeVerifier(HTTPMessageVerifier):
    """The library's verifier without its wall-clock time check.

    ``validate_created_and_expires`` reads ``datetime.now()``; we check the same parameters
    against the injected clock in :func:`prepare_verification` instead (docs/architecture.md R3).
    """

    require_created = False

    def validate_created_and_expires(self, sig_input: object, max_age: object = None) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Rfc9421Verification:
    """An RFC 9421 signature that passed every check that needs no key."""

    signature: Rfc9421Signature
    messages: tuple[_MessageView, ...] = field(repr=False)
    """The request as the library reads it, one per candidate ``@target-uri`` fragment (see
    :func:`target_fragments`); the first is the target exactly as received."""

    @property
    def key_id(self) -> str:
        """The ``keyid`` parameter exactly as sent (checked by the caller before any lookup)."""
        return self.signature.key_id

    def verify(self, key: PublicKey) -> None:
        """Check the signature with ``key``; the key type alone decides the algorithm.

        Raises:
            SignatureError: ``alg`` disagrees with the key type, the library refuses the
                signature, or its result disagrees with our own parse.
        """
        sig = self.signature
        if sig.algorithm is not None and sig.algorithm != key.algorithm.value:
            raise SignatureError(f"alg {sig.algorithm!r} does not match the key type of {key.key_id}")
        verifier = _ClockFreeVerifier(
            signature_algorithm=_LIBRARY_ALGORITHMS[key.algorithm],
            key_resolver=MappingKeyResolver(public_keys={sig.key_id: key.key}, private_keys={}),
            component_resolver_class=_FragmentResolver,
        )
        results: list[VerifyResult] = []
        failure: HTTPMessageSignaturesException | None = None
        for message in self.messages:
            try:
                results = verifier.verify(
                    message, max_age=None, require_components=("@method", "@target-uri")
                )
                break
            except HTTPMessageSignaturesException as exc:
                failure = failure or exc
        else:
            raise SignatureError(f"the signature does not verify with the key {key.key_id}: {failure}")
        if len(results) != 1:
            raise SignatureError("exactly one HTTP message signature is accepted per request")
        result = results[0]
        covered = tuple(name for name in result.covered_components if name != '"@signature-params"')
        if (
            result.parameters.get("keyid") != sig.key_id
            or result.parameters.get("created") != sig.created
            or covered != sig.components
        ):
            raise SignatureError("the verified signature differs from the parsed Signature-Input")


def prepare_verification(
    request: IncomingRequest,
    *,
    now: datetime,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> Rfc9421Verification:
    """Run every key-independent check on a request carrying ``Signature-Input``.

    The body digest itself is checked by the caller (once, for both specs); this function
    requires that ``Content-Digest`` is present and covered whenever the request has a body or
    is a POST.

    Raises:
        MalformedHeader: ``Signature-Input``/``Signature`` cannot be parsed, or ``Signature``
            is absent (HTTP 400).
        SignatureError: more than one signature, or an ``alg`` we never accept.
        InsufficientCoverage: no ``created`` parameter; ``@method``, ``@target-uri`` or
            ``content-digest`` not covered; or ``Content-Digest`` absent with a body.
        SignatureExpired: ``created``/``expires`` outside the window.
    """
    now = require_aware(now)
    if "signature" not in request.headers:
        raise MalformedHeader("Signature-Input is present but Signature is not")
    sig = parse_signature_headers(request.headers["signature-input"], request.headers["signature"])
    if sig.algorithm is not None and sig.algorithm not in {alg.value for alg in KeyAlgorithm}:
        raise SignatureError(f"unsupported signature algorithm {sig.algorithm!r}")
    if sig.created is None:
        raise InsufficientCoverage("RFC 9421 signatures must carry a created parameter")
    for required in (METHOD, TARGET_URI):
        if required not in sig.components:
            raise InsufficientCoverage(f"the signature must cover {required}")
    if request.body or request.method.upper() == "POST":
        if CONTENT_DIGEST not in sig.components:
            raise InsufficientCoverage("the signature must cover content-digest on a request with a body")
        if "content-digest" not in request.headers:
            raise InsufficientCoverage("a request with a body must carry a Content-Digest header")
    check_time_window(
        created=from_unix(sig.created, what="created"),
        expires=None if sig.expires is None else from_unix(sig.expires, what="expires"),
        now=now,
        max_future_skew=max_future_skew,
        max_age=max_age,
        what="created parameter",
    )
    method, uri, headers = request.method.upper(), target_uri(request), dict(request.headers.items())
    messages = tuple(_MessageView(method, uri, headers, fragment) for fragment in target_fragments(request))
    return Rfc9421Verification(sig, messages)


def sign(request: OutgoingRequest, key_pair: KeyPair, *, now: datetime) -> OutgoingRequest:
    """Return a copy of ``request`` signed with RFC 9421 under the label ``sig1``.

    Covers ``@method``, ``@target-uri``, ``@authority`` and, when there is a body or the
    method is POST, ``content-digest`` (a ``Content-Digest`` header is added). Parameters:
    ``created`` (from ``now``), ``keyid`` and ``alg`` (from the key type). A ``Date`` header
    is added for peers that log it; it is not covered. Earlier signature and digest headers
    are dropped. The output is deterministic for a given key, request and ``now``.

    Raises:
        ValueError: ``now`` is naive, the URL is not absolute http(s), or the library refuses
            the message (for example a URL with unencoded characters).
    """
    now = require_aware(now)
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only absolute http(s) URLs can be signed")
    has_body = request.body is not None or request.method.upper() == "POST"
    body = request.body or b""
    replaced = {"date", "digest", "content-digest", "signature", "signature-input"}
    headers = {name: request.headers[name] for name in request.headers if name.lower() not in replaced}
    headers["Date"] = http_date(now)
    covered = ["@method", "@target-uri", "@authority"]
    if has_body:
        headers["Content-Digest"] = compute_content_digest(body)
        covered.append("content-digest")
    message = _MessageView(request.method.upper(), request.url, headers)
    signer = HTTPMessageSigner(signature_algorithm=_LIBRARY_ALGORITHMS[key_pair.algorithm])
    try:
        prepared = signer.prepare(
            message,
            key_id=key_pair.key_id,
            created=now,
            label=SIGNATURE_LABEL,
            covered_component_ids=covered,
            # The digest was added above from our own helper; the library re-checks it.
            body=body if has_body else None,
            use_existing_digest=has_body,
        )
        signer.apply(message, prepared, key_pair.sign(prepared.signature_base))
    except HTTPMessageSignaturesException as exc:
        raise ValueError(f"cannot sign this request with RFC 9421: {exc}") from exc
    return OutgoingRequest(
        method=request.method, url=request.url, headers=Headers(message.headers), body=request.body
    )
