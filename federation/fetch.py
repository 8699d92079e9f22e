"""Fetching ActivityPub documents, actors and keys from their origin, signed as our node.

Every dereference of a remote IRI goes through :func:`fetch_document`, which applies the rules
of docs/interop.md "Content types and fetching" and security.md cases 7, 11, 12, 13, 17, 26,
27 and 28:

* our own origin is never fetched over HTTP: local IRIs resolve from the database (case 17);
* the GET is signed (docs/interop.md "Signed fetch") as the node's Application actor, and
  re-signed on every redirect hop for that hop's host: the transport is asked not to follow
  redirects, so no signature is ever carried to another host (case 26);
* at most :data:`MAX_REDIRECTS` hops, a visited set, no https→http downgrade, and the peer
  policy on every hop (cases 7, 13, 47);
* the final response must be 200 with a strict ActivityStreams Content-Type (case 12) and a
  JSON object no deeper than :data:`MAX_JSON_DEPTH` (case 28);
* the document's ``id`` must equal the final URL. When it differs but is on the final URL's
  origin, the document is refetched once from its ``id`` (Mastodon ``FetchResourceService``,
  Lemmy ``FetchWrongId``) and must then match exactly (cases 11, 13).

:func:`fetch_actor` and :func:`fetch_key` build on it; :func:`fetch_key` enforces the
bidirectional key/owner claim (case 9, fedify #963).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import urldefrag, urljoin, urlsplit

from .actors_remote import RemoteActorDoc, is_actor_document, read_actor, read_key_document
from .errors import (
    ConnectionFailed,
    FetchError,
    FetchTimeout,
    InsecureRedirect,
    InvalidDocument,
    InvalidUrl,
    KeyUnavailable,
    MalformedPayload,
    RedirectLoop,
    TooManyRedirects,
    WrongOrigin,
)
from .http import AP_ACCEPT, Headers, OutgoingRequest, PeerResponse, is_strict_activitypub_content_type
from .keys import KeyPair, PublicKey, public_key_to_pem
from .netguard import canonical_host
from .policy import HostPolicy
from .ports import Transport
from .signatures import SignatureSpec, sign_request
from .types import Iri, JsonObject
from .uris import UriScheme, normalized_origin
from .vocab.parse import decode_json_object

MAX_REDIRECTS: Final = 3
"""Redirect hops followed per fetch (Mastodon ``follow: {max_hops: 3}``; security case 13)."""

MAX_JSON_DEPTH: Final = 64
"""Deepest nesting accepted in a fetched document (security case 28)."""

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_TEMPORARY_STATUSES: Final = frozenset({408, 425, 429})
_GONE_STATUSES: Final = frozenset({404, 410})
_FORBIDDEN_STATUSES: Final = frozenset({401, 403})


# ---------------------------------------------------------------------------------------------
# Errors (all FetchError subclasses, with stable codes)
# ---------------------------------------------------------------------------------------------


class LocalIriRefused(FetchError):
    """The IRI is on our own origin: local objects resolve from the database, never over HTTP."""

    code = "local_iri_refused"


class DocumentGone(FetchError):
    """The origin answered 404 or 410: the document does not exist (any more)."""

    code = "document_gone"

    def __init__(self, detail: str = "", *, status: int, **context: object) -> None:
        super().__init__(detail, status=status, **context)
        self.status = status


class FetchForbidden(FetchError):
    """The origin answered 401 or 403 to our (signed) fetch."""

    code = "fetch_forbidden"

    def __init__(self, detail: str = "", *, status: int, **context: object) -> None:
        super().__init__(detail, status=status, **context)
        self.status = status


class FetchTemporaryFailure(FetchError):
    """A transient failure worth retrying later: timeout, connection error, 5xx, 408 or 429."""

    code = "fetch_temporary"


class UnexpectedStatus(FetchError):
    """The origin answered a status we do not accept (another 4xx, a 2xx other than 200, a 3xx
    without ``Location``)."""

    code = "fetch_unexpected_status"

    def __init__(self, detail: str = "", *, status: int, **context: object) -> None:
        super().__init__(detail, status=status, **context)
        self.status = status


class NotActivityStreams(FetchError):
    """The response's Content-Type is not a strict ActivityStreams type (security case 12)."""

    code = "not_activitystreams"


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

_PROOF: Final = object()


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    """A document read from its origin, whose ``id`` equals :attr:`final_url`.

    Only this module creates these values (the constructor refuses any other caller), so a
    ``FetchedDocument`` is proof that the JSON came from a direct fetch at the document's own
    origin, at :attr:`fetched_at`. Storage code requires one before it changes key material
    (security case 8).

    ``requested`` is the IRI the caller asked for; it may differ from ``final_url`` after
    redirects or a same-origin refetch by ``id``.
    """

    document: JsonObject
    final_url: Iri
    status: int
    requested: Iri
    fetched_at: datetime
    _proof: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._proof is not _PROOF:
            raise TypeError("FetchedDocument values are created by federation.fetch only")

    @property
    def id(self) -> Iri:
        """The document's ``id``: equal to :attr:`final_url`."""
        return self.final_url


@dataclass(frozen=True, slots=True)
class FetchedActor:
    """An actor read from a :class:`FetchedDocument`; ``doc`` is always derived from ``source``.

    Build one with ``FetchedActor(source)``: the actor cannot be paired with a document it was
    not read from, so ``doc.public_keys`` are exactly what the origin served.

    Raises (constructor):
        InvalidDocument: the document is not a usable actor (see :func:`read_actor`).
    """

    source: FetchedDocument
    doc: RemoteActorDoc = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "doc", read_actor(self.source.document))


@dataclass(frozen=True, slots=True)
class FetchedKey:
    """A public key whose owner was fetched from its origin and lists it (security case 9)."""

    key: PublicKey
    owner: FetchedActor


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def parse_json_object(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> JsonObject:
    """Decode ``body`` as a JSON object nested at most ``max_depth`` levels.

    The inbox's own decoder (:func:`federation.vocab.parse.decode_json_object`): the depth is
    checked before decoding, and NUL characters and lone surrogates, which no database stores
    (PostgreSQL refuses the row, and the job would fail at every retry: security case 32), are
    replaced by U+FFFD, as they are in delivered activities.

    Raises:
        MalformedPayload: not UTF-8 JSON, not an object, or nested too deeply (case 28).
    """
    return decode_json_object(body, max_depth=max_depth)


def _iri_key(iri: str) -> tuple[str, str, str] | None:
    """Comparison key of an IRI: normalised origin, path (``/`` when empty) and query.

    None when the IRI is not absolute http(s) or carries a fragment (a fetched document's id
    never has one: fragments are not sent over HTTP).
    """
    origin = normalized_origin(iri)
    if origin is None:
        return None
    try:
        parts = urlsplit(iri)
    except ValueError:
        return None
    if parts.fragment or "#" in iri:
        return None
    return origin, parts.path or "/", parts.query


def same_iri(a: object, b: object) -> bool:
    """True when ``a`` and ``b`` are the same fragment-less http(s) IRI.

    Scheme and host compare case-insensitively, a default port equals no port, a trailing dot
    on the host is ignored; path and query compare byte for byte (as Mastodon's exact match).
    """
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    key = _iri_key(a)
    return key is not None and key == _iri_key(b)


def _check_hop(url: str, *, uris: UriScheme, policy: HostPolicy | None) -> None:
    """Checks that apply to the first URL and to every redirect target."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host: "Invalid IPv6 URL"
        raise InvalidUrl(f"not a valid URL: {exc}", url=url[:300]) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl("only absolute http(s) IRIs are fetched", url=url[:300])
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("URLs with userinfo are not fetched", url=url[:300])
    if uris.is_local(url):
        # Security case 17: anything "found" on our origin over HTTP would be a counterfeit.
        raise LocalIriRefused("local IRIs are resolved from the database, never fetched", url=url)
    if policy is not None:
        try:
            host = canonical_host(parts.netloc, parts.scheme)
        except ValueError as exc:
            raise InvalidUrl(f"invalid host: {exc}", url=url[:300]) from exc
        policy.check(host)


PEER_SAID_CHARS: Final = 300
"""How much of a refusal's explanation is kept (shown to operators, e.g. by ``entraide follow``)."""


def peer_said(body: bytes) -> str:
    """What a peer's error body says, as one line of printable text: a problem document's
    ``detail`` or ``title`` (or an ``error`` field), else the body's text; bounded, and never
    markup or control characters (it ends up in logs and terminals)."""
    text = body[: 4 * PEER_SAID_CHARS].decode("utf-8", "replace")
    try:
        document = decode_json_object(body) if body.lstrip().startswith(b"{") else {}
    except MalformedPayload:  # shown as text
        document = {}
    said = [document[k] for k in ("detail", "title", "error") if isinstance(document.get(k), str)]
    text = said[0] if said else text
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(printable.replace("<", " ").replace(">", " ").split())[:PEER_SAID_CHARS]


def _classify_status(response: PeerResponse, url: str) -> None:
    status = response.status
    if status == 200:
        return
    if status in _GONE_STATUSES:
        raise DocumentGone(f"the origin answered {status}", status=status, url=url)
    if status in _FORBIDDEN_STATUSES:
        said = peer_said(response.body)
        detail = f"the origin answered {status}" + (f": {said}" if said else "")
        raise FetchForbidden(detail, status=status, url=url)
    if status >= 500 or status in _TEMPORARY_STATUSES:
        retry_after = response.headers.get("Retry-After")
        raise FetchTemporaryFailure(
            f"the origin answered {status}", status=status, url=url, retry_after=retry_after
        )
    raise UnexpectedStatus(f"the origin answered {status}", status=status, url=url)


async def _fetch_once(
    iri: str,
    *,
    transport: Transport,
    signer: KeyPair | None,
    now: datetime,
    uris: UriScheme,
    policy: HostPolicy | None,
    spec: SignatureSpec,
) -> tuple[JsonObject, str, int]:
    """One fetch with our own redirect walk; returns (document, final URL, status)."""
    current = iri
    visited: set[tuple[str, str, str]] = set()
    # Bounded: MAX_REDIRECTS + 1 requests at most (case 7).
    for hop in range(MAX_REDIRECTS + 1):
        _check_hop(current, uris=uris, policy=policy)
        key = _iri_key(current)
        if key is None:
            raise InvalidUrl("not a fetchable IRI", url=current[:300])
        if key in visited:
            raise RedirectLoop("redirect loop", url=current)
        visited.add(key)
        request = OutgoingRequest("GET", current, Headers({"Accept": AP_ACCEPT}))
        if signer is not None:
            # Signed for this hop's host only; never reused on another hop (case 26).
            request = sign_request(request, signer, now=now, spec=spec)
        try:
            response = await transport.send(request, follow_redirects=False)
        except (FetchTimeout, ConnectionFailed) as exc:
            raise FetchTemporaryFailure(str(exc.detail), url=current) from exc
        if response.status in _REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                raise UnexpectedStatus("redirect without Location", status=response.status, url=current)
            if hop == MAX_REDIRECTS:
                break
            try:
                target, _ = urldefrag(urljoin(current, location.strip()))
                insecure = urlsplit(current).scheme == "https" and urlsplit(target).scheme == "http"
            except ValueError as exc:
                raise InvalidUrl(f"redirect to an invalid URL: {exc}", url=location[:300]) from exc
            if insecure:
                raise InsecureRedirect("redirect from https to http", url=target[:300])
            current = target
            continue
        _classify_status(response, current)
        if not is_strict_activitypub_content_type(response.headers.get("Content-Type")):
            # Case 12: JSON served as application/json (uploads, media proxies) is not AS2.
            raise NotActivityStreams(
                "the response is not application/activity+json or AS2 ld+json",
                url=current,
                content_type=response.headers.get("Content-Type", "")[:100],
            )
        return parse_json_object(response.body), current, response.status
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", url=iri, limit=MAX_REDIRECTS)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


async def fetch_document(
    iri: str,
    *,
    transport: Transport,
    signer: KeyPair | None,
    now: datetime,
    uris: UriScheme,
    policy: HostPolicy | None = None,
    spec: SignatureSpec = "cavage",
) -> FetchedDocument:
    """Fetch the ActivityStreams document at ``iri`` from its origin.

    The GET carries ``Accept: application/activity+json, application/ld+json; profile=…`` and,
    when ``signer`` is given (the node's Application actor), an HTTP signature made with
    ``spec`` at ``now``, re-made for every redirect hop.

    Guarantees on success: the returned document is a JSON object (depth ≤
    :data:`MAX_JSON_DEPTH`) served with status 200 and a strict AS2 Content-Type, and its
    ``id`` equals ``final_url`` (see :func:`same_iri`). No URL on our own origin was requested.
    At most two fetches (the second only for a same-origin ``id`` mismatch), each with at most
    :data:`MAX_REDIRECTS` redirects.

    Raises:
        LocalIriRefused: ``iri``, a redirect target or the ``id`` to refetch is ours (case 17).
        InvalidUrl: not an absolute http(s) IRI, or it carries userinfo.
        PeerNotAllowed: ``policy`` refuses a host on the way (also raised by the transport).
        UnsafeAddress: from the transport's SSRF guard.
        TooManyRedirects, RedirectLoop, InsecureRedirect: redirect rules (cases 7, 13).
        DocumentGone: 404 or 410 (``status`` attribute).
        FetchForbidden: 401 or 403 (``status`` attribute).
        FetchTemporaryFailure: timeout, connection failure, 5xx, 408, 425 or 429.
        UnexpectedStatus: any other status.
        NotActivityStreams: the Content-Type is not strict AS2 (case 12).
        MalformedPayload: not a JSON object, or too deep.
        WrongOrigin: the document's ``id`` does not equal the URL it was served from, even
            after one same-origin refetch (cases 11, 13).
        ResponseTooLarge, ContentDecodingFailed: from the transport (case 27).
    """

    async def once(url: str) -> tuple[JsonObject, str, int]:
        return await _fetch_once(
            url, transport=transport, signer=signer, now=now, uris=uris, policy=policy, spec=spec
        )

    document, final_url, status = await once(iri)
    doc_id = document.get("id")
    if not same_iri(doc_id, final_url):
        if (
            not isinstance(doc_id, str)
            or _iri_key(doc_id) is None
            or normalized_origin(doc_id) != normalized_origin(final_url)
        ):
            # Case 11/13: a document may only speak for its own URL; the origin's copy wins.
            raise WrongOrigin("the document's id does not match the URL it was fetched from", url=final_url)
        # Same origin, other URL: that origin vouches for doc_id; ask it there, once.
        document, final_url, status = await once(doc_id)
        if not same_iri(document.get("id"), final_url):
            raise WrongOrigin("the document's id does not match its own URL either", url=final_url)
    return FetchedDocument(
        document=document,
        final_url=Iri(final_url),
        status=status,
        requested=Iri(iri),
        fetched_at=now,
        _proof=_PROOF,
    )


async def fetch_actor(
    iri: str,
    *,
    transport: Transport,
    signer: KeyPair | None,
    now: datetime,
    uris: UriScheme,
    policy: HostPolicy | None = None,
    spec: SignatureSpec = "cavage",
    require_exact_id: bool = True,
) -> FetchedActor:
    """Fetch and read the actor at ``iri``.

    With ``require_exact_id`` (the default, Mastodon's ``id_is_known``), the actor's ``id`` must
    be ``iri`` itself, so the actor can be stored and looked up under the IRI that was asked
    for. Pass False to follow a profile URL (``https://host/@alice``) to its actor.

    Raises:
        Everything :func:`fetch_document` raises, and
        InvalidUrl: ``iri`` has a fragment.
        WrongOrigin: ``require_exact_id`` and the actor's id differs from ``iri``.
        InvalidDocument: the document is not a usable actor.
    """
    if "#" in iri:
        raise InvalidUrl("actor IRIs have no fragment", url=iri[:300])
    fetched = await fetch_document(
        iri, transport=transport, signer=signer, now=now, uris=uris, policy=policy, spec=spec
    )
    if require_exact_id and not same_iri(fetched.id, iri):
        raise WrongOrigin("the actor's id differs from the IRI asked for", url=iri, id=fetched.id)
    return FetchedActor(fetched)


def _check_key_id(key_id: str, uris: UriScheme) -> None:
    try:
        parts = urlsplit(key_id)
    except ValueError:
        raise KeyUnavailable("keyId is not a valid IRI", key_id=key_id[:300]) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        # Case 9: acct:, did:, data: … keyIds name no fetchable key (Misskey refuses acct: too).
        raise KeyUnavailable("keyId must be an http(s) IRI", key_id=key_id[:300])
    if uris.is_local(key_id):
        raise LocalIriRefused("our own keys are read from the database", url=key_id)


def _same_key_material(a: PublicKey, b: PublicKey) -> bool:
    return public_key_to_pem(a.key) == public_key_to_pem(b.key)


async def fetch_key(
    key_id: str,
    *,
    transport: Transport,
    signer: KeyPair | None,
    now: datetime,
    uris: UriScheme,
    policy: HostPolicy | None = None,
    spec: SignatureSpec = "cavage",
) -> FetchedKey:
    """Fetch the public key named ``key_id`` together with its owner actor (security case 9).

    * ``actor#fragment`` keyIds (Mastodon, Lemmy, Mobilizon): fetch the actor (its id must be
      the keyId without fragment) and take the ``publicKey``/``assertionMethod`` entry whose
      id equals the keyId.
    * Other keyIds: fetch the key document. If it is a key (``{id, owner, publicKeyPem}``), its
      ``id`` must equal the keyId (fedify #963), its owner must be on the same origin, and the
      owner actor, fetched at its own IRI, must list a key with this id and the same material
      (the bidirectional claim of docs/interop.md "HTTP signatures"). If the keyId serves the owner actor
      (GoToSocial's ``actor/main-key`` stub, refetched by its same-origin ``id``), that actor
      must list the keyId.

    The owner is returned too, so the caller can store it (keys are only ever stored with an
    actor fetched from its origin: case 8). Weak or unsupported keys are refused.

    Raises:
        KeyUnavailable: ``acct:`` or other non-http(s) keyIds; the owner does not list the key;
            owner or material mismatch; weak, unsupported or unreadable key.
        LocalIriRefused: the keyId is on our origin (read our keys from the database).
        WrongOrigin: a key document whose id is not the keyId.
        InvalidDocument: neither a key document nor an actor.
        Everything :func:`fetch_document` raises.
    """
    _check_key_id(key_id, uris)

    async def actor_at(iri: str) -> FetchedActor:
        return await fetch_actor(
            iri, transport=transport, signer=signer, now=now, uris=uris, policy=policy, spec=spec
        )

    base, fragment = urldefrag(key_id)
    if fragment or key_id.endswith("#"):
        if not fragment:
            raise KeyUnavailable("empty keyId fragment", key_id=key_id)
        owner = await actor_at(base)
        return FetchedKey(owner.doc.public_key(key_id), owner)

    fetched = await fetch_document(
        key_id, transport=transport, signer=signer, now=now, uris=uris, policy=policy, spec=spec
    )
    if is_actor_document(fetched.document):
        # The keyId (or, after a same-origin refetch, its id) serves the owner actor itself.
        owner = FetchedActor(fetched)
        return FetchedKey(owner.doc.public_key(key_id), owner)
    if not same_iri(fetched.id, key_id):
        # Case 9 / fedify #963: never cache a key under another URL than its own id.
        raise WrongOrigin("the key document's id differs from the keyId", url=key_id, id=fetched.id)
    try:
        key_doc = read_key_document(fetched.document)
    except InvalidDocument as exc:
        raise InvalidDocument("the keyId serves neither a key nor an actor", key_id=key_id) from exc
    if normalized_origin(key_doc.owner) != normalized_origin(key_id):
        raise KeyUnavailable("the key's owner is on another origin", key_id=key_id, owner=key_doc.owner)
    served = key_doc.public_key()
    owner = await actor_at(key_doc.owner)
    listed = owner.doc.public_key(key_id)  # KeyUnavailable unless the owner lists the key
    if not _same_key_material(listed, served):
        raise KeyUnavailable("the owner lists other key material under this keyId", key_id=key_id)
    return FetchedKey(listed, owner)


__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_REDIRECTS",
    "DocumentGone",
    "FetchForbidden",
    "FetchTemporaryFailure",
    "FetchedActor",
    "FetchedDocument",
    "FetchedKey",
    "LocalIriRefused",
    "NotActivityStreams",
    "UnexpectedStatus",
    "fetch_actor",
    "fetch_document",
    "fetch_key",
    "parse_json_object",
    "same_iri",
]
