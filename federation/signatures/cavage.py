"""draft-cavage-http-signatures-12: what Mastodon and nearly every peer send and verify.

Wire shape (docs/interop.md "HTTP signatures")::

    Signature: keyId="https://peer.example/users/alice#main-key",algorithm="rsa-sha256",
               headers="(request-target) host date digest",signature="<base64>"

Verification here is split in two so that nothing reaches the network for a request that is
already known to be bad: :func:`prepare_verification` does every check that needs no key
(syntax, algorithm label, coverage, time window, signing strings), and
:meth:`CavageVerification.verify` does the cryptography once the key is known. The orchestration
(digest, key resolution, rotation) lives in :func:`federation.signatures.verify_request`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import urlsplit

from ..errors import InsufficientCoverage, MalformedHeader, SignatureError, SignatureExpired
from ..http import Headers, IncomingRequest, OutgoingRequest
from ..keys import KeyAlgorithm, KeyPair, PublicKey
from ._window import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_FUTURE_SKEW,
    check_time_window,
    from_unix,
    http_date,
    require_aware,
)
from .digest import compute_digest

MAX_SIGNATURE_HEADER_CHARS = 8192
"""Longer ``Signature`` headers are refused before parsing (a real one is under 1 KiB)."""

ACCEPTED_ALGORITHM_LABELS = frozenset({"rsa-sha256", "hs2019"})
"""Mastodon accepts exactly these (security case 9). The label never chooses the algorithm:
the key type does; ``rsa-sha256`` merely requires the key to be RSA."""

REQUEST_TARGET = "(request-target)"
CREATED = "(created)"
EXPIRES = "(expires)"

_PARAM_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN_VALUE = re.compile(r"[!#$%&'*+./^_`|~0-9A-Za-z:-]+")
_COVERED_NAME = re.compile(r"\([a-z-]+\)|[!#$%&'*+.^_`|~0-9a-z-]+")
_CREATED_VALUE = re.compile(r"[0-9]{1,15}")
_EXPIRES_VALUE = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True)
class CavageSignature:
    """A parsed ``Signature`` header.

    ``algorithm`` is the lower-cased label as sent (``None`` when absent, which Mastodon reads
    as hs2019). ``headers`` is the covered list, lower-cased and in signing order; when the
    parameter is absent it holds the spec default (``(created)`` for hs2019, else ``date``).
    ``created`` and ``expires`` keep the exact text sent, because ``(created)``/``(expires)``
    lines must reproduce it byte for byte.
    """

    key_id: str
    algorithm: str | None
    headers: tuple[str, ...]
    signature: bytes
    created: str | None = None
    expires: str | None = None

    @property
    def effective_algorithm(self) -> str:
        """The label that rules apply to: ``hs2019`` when none was sent."""
        return self.algorithm or "hs2019"


# The inbox parses each request's header twice (its keyId is checked against the peer policy
# before verification parses it again); the second parse is a hit. Only results are kept (a
# malformed header raises every time) and they are frozen values.
@lru_cache(maxsize=256)
def parse_signature_header(value: str) -> CavageSignature:
    """Parse a draft-cavage ``Signature`` header value.

    The parser is total: it returns a :class:`CavageSignature` or raises
    :class:`~federation.errors.MalformedHeader`, on any input. Parameter names are matched
    case-insensitively, unknown parameters are ignored, and values may be quoted strings (with
    backslash escapes) or bare tokens.

    Guarantees: ``key_id`` is non-empty; ``signature`` is decoded base64; covered names are
    lower-case, unique and syntactically valid; ``created``/``expires`` (when present) are
    decimal Unix times.

    Raises:
        MalformedHeader: on a syntax error, a repeated parameter, a missing ``keyId`` or
            ``signature``, invalid base64, or a malformed ``headers``/``created``/``expires``.
    """
    params = _parse_params(value)
    key_id = params.get("keyid", "")
    if not key_id:
        raise MalformedHeader("Signature header has no keyId")
    encoded = params.get("signature")
    if not encoded:
        raise MalformedHeader("Signature header has no signature")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedHeader("Signature header's signature is not valid base64") from exc
    algorithm = params["algorithm"].lower() if "algorithm" in params else None
    created = params.get("created")
    if created is not None and not _CREATED_VALUE.fullmatch(created):
        raise MalformedHeader("Signature header's created parameter is not a Unix time")
    expires = params.get("expires")
    if expires is not None and not _EXPIRES_VALUE.fullmatch(expires):
        raise MalformedHeader("Signature header's expires parameter is not a Unix time")
    if "headers" in params:
        covered = tuple(params["headers"].lower().split())
    else:
        # Mastodon's default (docs/interop.md "HTTP signatures"): "(created)" for hs2019, else "date".
        covered = (CREATED,) if (algorithm or "hs2019") == "hs2019" else ("date",)
    if len(set(covered)) != len(covered):
        raise MalformedHeader("Signature header covers the same header twice")
    if not all(_COVERED_NAME.fullmatch(name) for name in covered):
        raise MalformedHeader("Signature header's headers parameter has an invalid name")
    return CavageSignature(key_id, algorithm, covered, signature, created, expires)


def _parse_params(value: str) -> dict[str, str]:
    if len(value) > MAX_SIGNATURE_HEADER_CHARS:
        raise MalformedHeader("Signature header is too long")
    if not value.isascii() or _CONTROL_CHARS.search(value) is not None:
        raise MalformedHeader("Signature header contains non-ASCII or control characters")
    fast = _parse_params_fast(value)
    return fast if fast is not None else _parse_params_exact(value)


# One list element: empty elements and OWS first, then name = (quoted-string | token), then OWS
# and the ',' or the end. The same grammar as _parse_params_exact, matched by one regex.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_ELEMENT = re.compile(
    r"[ \t,]*(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*"
    r'(?:"(?P<quoted>[^"\\]*(?:\\.[^"\\]*)*)"|(?P<token>[!#$%&\'*+./^_`|~0-9A-Za-z:-]+))'
    r"[ \t]*(?:,|\Z)"
)
_REST = re.compile(r"[ \t,]*")
_ESCAPE = re.compile(r"\\(.)")


def _parse_params_fast(value: str) -> dict[str, str] | None:
    """The parameters of a well-formed header in one regex pass; None when anything is off.

    ``None`` sends the header to :func:`_parse_params_exact`, which gives the same answer for
    every header this function accepts and the precise error for every other one. A repeated
    parameter is such a case (the exact parser names it).
    """
    params: dict[str, str] = {}
    pos, end = 0, len(value)
    while pos < end:
        match = _ELEMENT.match(value, pos)
        if match is None:
            return params if _REST.fullmatch(value, pos) else None
        name = match.group("name").lower()
        if name in params:
            return None
        quoted = match.group("quoted")
        if quoted is None:
            params[name] = match.group("token")
        else:
            params[name] = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = match.end()
    return params


def _parse_params_exact(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        pos = _skip_ows(value, pos)
        # Empty list elements (",,") are allowed, as in any RFC 9110 list.
        if pos < end and value[pos] == ",":
            pos += 1
            continue
        if pos >= end:
            return params
        match = _PARAM_NAME.match(value, pos)
        if match is None:
            raise MalformedHeader("Signature header: expected a parameter name")
        name = match.group().lower()
        pos = _skip_ows(value, match.end())
        if pos >= end or value[pos] != "=":
            raise MalformedHeader(f"Signature header: parameter {name!r} has no value")
        pos = _skip_ows(value, pos + 1)
        if pos < end and value[pos] == '"':
            text, pos = _read_quoted(value, pos)
        else:
            token = _TOKEN_VALUE.match(value, pos)
            if token is None:
                raise MalformedHeader(f"Signature header: parameter {name!r} has an invalid value")
            text, pos = token.group(), token.end()
        if name in params:
            # Two keyIds or two signatures would make the header mean whatever a parser picks.
            raise MalformedHeader(f"Signature header repeats the {name!r} parameter")
        # Unknown parameters are kept only so that repeats are detected; nothing reads them.
        params[name] = text
        pos = _skip_ows(value, pos)
        if pos < end and value[pos] != ",":
            raise MalformedHeader("Signature header: expected ',' between parameters")


def _skip_ows(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    return pos


def _read_quoted(value: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while pos < len(value):
        ch = value[pos]
        if ch == "\\":
            if pos + 1 >= len(value):
                break
            out.append(value[pos + 1])
            pos += 2
        elif ch == '"':
            return "".join(out), pos + 1
        else:
            out.append(ch)
            pos += 1
    raise MalformedHeader("Signature header: unterminated quoted string")


def build_signing_string(signature: CavageSignature, *, method: str, target: str, headers: Headers) -> str:
    """Build the string the signature is computed over (draft-cavage-12 §2.3).

    ``target`` must be the raw path and query as sent, never percent-decoded: decoding would
    let ``%0A`` in a path forge extra header lines (security case 10, w3c-ccg/http-signatures#26).
    ``host`` and every other header come from ``headers`` as the client sent them.

    Raises:
        SignatureError: a covered header is absent, a pseudo-header cannot be used with this
            algorithm (``(created)``/``(expires)`` only with hs2019, and only when the matching
            parameter is present), or a value contains CR/LF or other control characters.
    """
    lines: list[str] = []
    for name in signature.headers:
        if name == REQUEST_TARGET:
            if not target.isascii() or not target.isprintable() or " " in target or not target:
                raise SignatureError("the request target contains whitespace or control characters")
            value = f"{method.lower()} {target}"
        elif name in (CREATED, EXPIRES):
            value = _pseudo_time_value(signature, name)
        elif name.startswith("("):
            raise SignatureError(f"unsupported pseudo-header {name}")
        elif name in headers:
            value = headers[name].strip(" \t")
        else:
            raise SignatureError(f"the signed header {name!r} is absent from the request")
        if "\r" in value or "\n" in value:
            raise SignatureError(f"the signed component {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _pseudo_time_value(signature: CavageSignature, name: str) -> str:
    if signature.effective_algorithm != "hs2019":
        # Mastodon: "Invalid pseudo-header (created) for rsa-sha256" (security case 4).
        raise SignatureError(f"Invalid pseudo-header {name} for {signature.effective_algorithm}")
    value = signature.created if name == CREATED else signature.expires
    if value is None:
        raise SignatureError(f"the pseudo-header {name} is signed but its parameter is missing")
    return value


def check_coverage(signature: CavageSignature, *, method: str, has_body: bool) -> None:
    """Refuse signatures that do not cover what we need to trust the request (security case 3).

    Required: ``(request-target)``, ``host``, and ``date`` (or ``(created)`` with hs2019);
    plus ``digest`` on every POST and on any request that carries a body. That is Mastodon's
    ``verify_signature_strength!`` made stricter: Mastodon accepts ``digest`` in place of
    ``(request-target)`` and only asks for ``host`` on GET, which would let a POST signed for
    one inbox be replayed to another.

    Raises:
        InsufficientCoverage: with a detail naming the missing component.
    """
    covered = set(signature.headers)
    if (has_body or method.upper() == "POST") and "digest" not in covered:
        raise InsufficientCoverage(
            "Mastodon requires the Digest header to be signed when doing a POST request "
            "(and Entraide on any request with a body)"
        )
    if "date" not in covered and CREATED not in covered:
        raise InsufficientCoverage("the Date header or the (created) pseudo-header must be signed")
    if REQUEST_TARGET not in covered:
        raise InsufficientCoverage("the (request-target) pseudo-header must be signed")
    if "host" not in covered:
        raise InsufficientCoverage("the Host header must be signed")


def check_freshness(
    signature: CavageSignature,
    headers: Headers,
    *,
    now: datetime,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> None:
    """Check every *signed* time against the window (security case 4).

    Only values the signature covers are trusted: an unsigned ``created`` parameter or an
    unsigned ``Date`` header could be refreshed by whoever replays the request. When both
    ``date`` and ``(created)`` are signed, both must be inside the window.

    Raises:
        SignatureExpired: a signed time is outside the window, or the signed Date header
            cannot be parsed (Mastodon answers 401 to "an unparsable date" too).
        SignatureError: ``(created)``/``(expires)`` used without hs2019 or without its parameter.
    """
    now = require_aware(now)
    covered = set(signature.headers)
    expires: datetime | None = None
    if EXPIRES in covered:
        expires = from_unix(float(_pseudo_time_value(signature, EXPIRES)), what="expires")
    if CREATED in covered:
        created = from_unix(int(_pseudo_time_value(signature, CREATED)), what="created")
        check_time_window(
            created=created,
            expires=expires,
            now=now,
            max_future_skew=max_future_skew,
            max_age=max_age,
            what="created parameter",
        )
    if "date" in covered and "date" in headers:
        check_time_window(
            created=parse_http_date(headers["date"]),
            expires=expires,
            now=now,
            max_future_skew=max_future_skew,
            max_age=max_age,
            what="Date header",
        )


# A Date header changes once a second and every request of that second carries the same one.
@lru_cache(maxsize=64)
def parse_http_date(value: str) -> datetime:
    """Parse an HTTP ``Date`` value (IMF-fixdate or the obsolete forms) as an aware UTC time.

    Raises:
        SignatureExpired: the value is not a date (e.g. ``"yesterday"``).
    """
    if len(value) > 64:
        raise SignatureExpired("the Date header is not a valid HTTP date")
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            # "-0000" parses as naive; HTTP dates are always GMT.
            parsed = parsed.replace(tzinfo=UTC)
        # Inside the try: "31 Dec 9999 23:00:00 -0200" is past datetime.max once in UTC.
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise SignatureExpired("the Date header is not a valid HTTP date") from exc


@dataclass(frozen=True, slots=True)
class CavageVerification:
    """A cavage signature that passed every check that needs no key.

    ``signing_strings`` holds the candidate strings: the one built from the full target and,
    when the target has a query, the one without it (see :func:`prepare_verification`).
    """

    signature: CavageSignature
    signing_strings: tuple[bytes, ...] = field(repr=False)

    @property
    def key_id(self) -> str:
        """The keyId exactly as sent (checked by the caller before any lookup)."""
        return self.signature.key_id

    def verify(self, key: PublicKey) -> None:
        """Check the signature with ``key``, whose type alone decides the algorithm.

        Raises:
            SignatureError: the label ``rsa-sha256`` names a non-RSA key, or the signature does
                not match any candidate signing string.
        """
        if self.signature.algorithm == "rsa-sha256" and key.algorithm is not KeyAlgorithm.RSA_V1_5_SHA256:
            raise SignatureError(f"algorithm rsa-sha256 was announced but {key.key_id} is not an RSA key")
        for candidate in self.signing_strings:
            if key.verify(self.signature.signature, candidate):
                return
        raise SignatureError(f"the signature does not verify with the key {key.key_id}")


def prepare_verification(
    request: IncomingRequest,
    *,
    now: datetime,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> CavageVerification:
    """Run every key-independent check on a request carrying a cavage ``Signature`` header.

    In order: parse, algorithm label, coverage, time window, signing strings. The body digest
    is *not* checked here (the caller does it once for both specs, before resolving the key).

    Query strings: the signing string is built from the full raw target; when the target has a
    query, a second candidate without it is kept, because Mastodon and GoToSocial verify both
    ways (docs/interop.md "HTTP signatures", security case 10; superseriousbusiness/gotosocial#2591). A
    signature over ``?page=1`` therefore never verifies for ``?page=2``.

    Raises:
        MalformedHeader: the header cannot be parsed (HTTP 400).
        SignatureError: unsupported algorithm label (``hmac-sha256``…), misused pseudo-header,
            absent signed header, or control characters in a signed value.
        InsufficientCoverage: a required component is not signed.
        SignatureExpired: a signed time is outside the window or unparsable.
    """
    signature = parse_signature_header(request.headers["signature"])
    if signature.algorithm is not None and signature.algorithm not in ACCEPTED_ALGORITHM_LABELS:
        raise SignatureError(
            f"unsupported signature algorithm {signature.algorithm!r}: only rsa-sha256 and hs2019"
        )
    for name in (CREATED, EXPIRES):
        if name in signature.headers:
            _pseudo_time_value(signature, name)
    check_coverage(signature, method=request.method, has_body=bool(request.body))
    check_freshness(signature, request.headers, now=now, max_future_skew=max_future_skew, max_age=max_age)
    targets = [request.target]
    if "?" in request.target and REQUEST_TARGET in signature.headers:
        targets.append(request.target.split("?", 1)[0])
    strings: list[bytes] = []
    for target in targets:
        text = build_signing_string(signature, method=request.method, target=target, headers=request.headers)
        try:
            strings.append(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise SignatureError("a signed header value cannot be encoded") from exc
    return CavageVerification(signature, tuple(strings))


def signature_label(algorithm: KeyAlgorithm) -> str:
    """The ``algorithm=`` label we send: ``rsa-sha256`` for RSA (what Mastodon expects), else
    ``hs2019`` (the only label Mastodon accepts for other key types)."""
    return "rsa-sha256" if algorithm is KeyAlgorithm.RSA_V1_5_SHA256 else "hs2019"


_REPLACED_HEADERS = frozenset({"host", "date", "digest", "content-digest", "signature", "signature-input"})


def sign(request: OutgoingRequest, key_pair: KeyPair, *, now: datetime) -> OutgoingRequest:
    """Return a copy of ``request`` with ``Host``, ``Date``, ``Digest`` and ``Signature`` set.

    The signature covers ``(request-target) host date`` plus ``digest`` when there is a body
    or the method is POST (an empty POST body is signed as the digest of ``b""``). Any earlier
    signature or digest headers are dropped, so a request can be re-signed for a double knock.
    The output is deterministic for a given key, request and ``now``.

    Raises:
        ValueError: ``now`` is naive, the URL is not absolute http(s), or the keyId contains
            characters that cannot appear in a quoted string.
    """
    unsigned = prepare(request, key_pair, now=now)
    return unsigned.signed(key_pair.sign(unsigned.message))


@dataclass(frozen=True, slots=True)
class UnsignedRequest:
    """A request with every header of its signature but the signature itself (:func:`prepare`).

    The RSA operation is most of a signature's cost (1.15 ms for RSA-2048 on the project machine
    of 2026-12-07); splitting it out lets a caller have many :attr:`message` values signed at
    once elsewhere (:mod:`federation.signing_pool`) and finish each request with :meth:`signed`.
    """

    request: OutgoingRequest
    headers: Headers
    draft: CavageSignature
    message: bytes
    """The signing string, UTF-8: what the key signs."""
    header_prefix: str = field(default="", repr=False)
    """The ``Signature`` header up to its ``signature="`` (built from :attr:`draft` when empty)."""

    def signed(self, signature: bytes) -> OutgoingRequest:
        """The request with its ``Signature`` header, ``signature`` being the key's over :attr:`message`."""
        prefix = self.header_prefix or _header_prefix(self.draft)
        header = f'{prefix}{base64.b64encode(signature).decode("ascii")}"'
        request = self.request
        return OutgoingRequest(
            method=request.method,
            url=request.url,
            headers=self.headers.extended((("Signature", header),)),
            body=request.body,
        )


def _header_prefix(draft: CavageSignature) -> str:
    covered = " ".join(draft.headers)
    return f'keyId="{draft.key_id}",algorithm="{draft.algorithm}",headers="{covered}",signature="'


@dataclass(frozen=True, slots=True)
class _Drafts:
    """What a key's signatures share, whatever the request: the draft and ``Signature`` prefix
    with and without ``digest`` covered."""

    with_digest: CavageSignature
    without_digest: CavageSignature
    prefix_with_digest: str
    prefix_without_digest: str


# Keyed by keyId and algorithm, not by the key pair: no private key is kept alive here.
@lru_cache(maxsize=64)
def _drafts(key_id: str, algorithm: KeyAlgorithm) -> _Drafts:
    """Raises ValueError (not cached) when the keyId cannot be carried in a quoted string."""
    if any(ch in key_id for ch in '"\\\r\n'):
        raise ValueError("the keyId cannot be carried in a Signature header")
    label = signature_label(algorithm)
    with_digest = CavageSignature(key_id, label, (REQUEST_TARGET, "host", "date", "digest"), b"")
    without_digest = CavageSignature(key_id, label, (REQUEST_TARGET, "host", "date"), b"")
    return _Drafts(with_digest, without_digest, _header_prefix(with_digest), _header_prefix(without_digest))


def prepare(request: OutgoingRequest, key_pair: KeyPair, *, now: datetime) -> UnsignedRequest:
    """:func:`sign` up to the signature: the headers, and the signing string the key must sign.

    What does not depend on the request (the keyId's check, the algorithm label, the start of the
    ``Signature`` header) is prepared once per key; the Date string once per second and the
    digest once per body (:func:`~federation.signatures.digest.compute_digest`). The signing
    string is the one :func:`build_signing_string` builds from the same headers, written directly.

    Raises:
        ValueError: as :func:`sign`.
        SignatureError: the path or query contains whitespace or characters that are not
            printable ASCII (as :func:`build_signing_string`).
    """
    date = http_date(now)  # ValueError when naive, before anything else
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only absolute http(s) URLs can be signed")
    drafts = _drafts(key_pair.key_id, key_pair.algorithm)
    host = parts.netloc.rpartition("@")[2].lower()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii() or not target.isprintable() or " " in target:
        raise SignatureError("the request target contains whitespace or control characters")
    method = request.method
    if "\r" in method or "\n" in method:
        raise SignatureError("the signed component '(request-target)' contains a line break")
    signed_host = host.strip(" \t")
    if "\r" in signed_host or "\n" in signed_host:
        raise SignatureError("the signed component 'host' contains a line break")
    pairs = [(k, v) for k, v in request.headers.items() if k.lower() not in _REPLACED_HEADERS]
    pairs.append(("Host", host))
    pairs.append(("Date", date))
    lines = f"(request-target): {method.lower()} {target}\nhost: {signed_host}\ndate: {date}"
    if request.body is not None or method.upper() == "POST":
        digest = compute_digest(request.body or b"")
        pairs.append(("Digest", digest))
        lines += f"\ndigest: {digest}"
        draft, prefix = drafts.with_digest, drafts.prefix_with_digest
    else:
        draft, prefix = drafts.without_digest, drafts.prefix_without_digest
    return UnsignedRequest(request, Headers(pairs), draft, lines.encode("utf-8"), prefix)
