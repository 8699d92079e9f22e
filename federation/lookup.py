"""Resolving ``user@host`` handles to actors through WebFinger, and verifying the way back.

A handle is bound to an actor only through WebFinger (security case 36): never by reading a
``preferredUsername`` or a host out of a document. Two directions are checked, as Mastodon's
``ResolveAccountService`` and ``check_webfinger!`` do:

* :func:`resolve_handle`: ``acct:user@host`` → the ``self`` links of the JRD. When the JRD's
  ``subject`` names another account (``alice@example.org`` → ``alice@social.example.org``),
  that account is asked once more and must confirm itself: **at most one WebFinger redirect**.
* :func:`verify_handle`: an actor's ``preferredUsername@<its host>`` must WebFinger back to the
  same actor id (again with at most one subject redirect). This is what stops
  ``evil.example`` from presenting an actor as ``alice@peer.example``.

Requests are plain GETs over ``https`` (``http`` only when the caller allows it: loopback test
federation), through the :class:`~federation.ports.Transport`, which applies the SSRF guard,
the peer policy and its bounded redirect handling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

from .actors_remote import RemoteActorDoc
from .errors import ConnectionFailed, FetchTimeout, MalformedPayload, WebFingerError
from .fetch import parse_json_object, same_iri
from .http import Headers, OutgoingRequest, is_activitypub_media_type, media_type
from .netguard import canonical_host
from .ports import Transport
from .types import Iri
from .uris import UriScheme
from .webfinger import AS_TYPE_PROPERTY, AcctResource, parse_acct

JRD_ACCEPT: Final = "application/jrd+json, application/json;q=0.9"
MAX_JRD_DEPTH: Final = 16
MAX_SELF_LINKS: Final = 16  # Lemmy lists two (Person and Group); nobody needs more
_MAX_LINKS_SCANNED: Final = 200
_JSON_TYPES: Final = frozenset({"application/jrd+json", "application/json", "application/activity+json"})


class WebFingerNotFound(WebFingerError):
    """The host answered 404 or 410: no such account."""

    code = "webfinger_not_found"


class WebFingerTemporaryFailure(WebFingerError):
    """The host could not be reached or answered 5xx/429; try again later."""

    code = "webfinger_temporary"


class HandleMismatch(WebFingerError):
    """The WebFinger round trip does not bind this handle and this actor (security case 36)."""

    code = "handle_mismatch"


class LocalHandleRefused(WebFingerError):
    """The handle is on our own host: local accounts resolve from the database (case 17)."""

    code = "local_handle_refused"


class AmbiguousHandle(WebFingerError):
    """The handle names several actors (a Person and a Group); the caller must choose a type."""

    code = "handle_ambiguous"


@dataclass(frozen=True, slots=True)
class WebFingerCandidate:
    """One ActivityPub actor a WebFinger answer links to.

    ``subject`` is the account the (possibly redirected) JRD confirmed, in canonical form;
    ``actor_type`` is the ``https://www.w3.org/ns/activitystreams#type`` link property when
    the host gives it (Lemmy does, to tell its Person from its Group), else None.
    """

    actor: Iri
    actor_type: str | None
    subject: AcctResource


@dataclass(frozen=True, slots=True)
class _Jrd:
    subject: AcctResource
    actors: tuple[tuple[Iri, str | None], ...]


def _is_http_url(value: str) -> bool:
    """An absolute http(s) URL that parses (an unbalanced ``[`` in the host raises in ``urlsplit``)."""
    try:
        return urlsplit(value).scheme in ("http", "https")
    except ValueError:
        return False


def _canonical_acct(acct: AcctResource, scheme: str) -> AcctResource:
    """User lower-cased, host canonical (IDNA, no default port): the form accounts compare in."""
    try:
        host = canonical_host(acct.host, scheme)
    except ValueError as exc:
        raise WebFingerError(f"invalid host in handle: {exc}") from exc
    return AcctResource(user=acct.user.lower(), host=host)


def _check_not_local(acct: AcctResource, uris: UriScheme | None) -> None:
    if uris is not None and acct.host == canonical_host(uris.host, urlsplit(uris.origin).scheme):
        raise LocalHandleRefused(f"{acct} is a local account; look it up in the database")


def _check_scheme(scheme: str, allow_http: bool) -> None:
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    raise WebFingerError(f"WebFinger over {scheme!r} is not allowed")


def _read_jrd(body: bytes, scheme: str) -> _Jrd:
    try:
        doc = parse_json_object(body, max_depth=MAX_JRD_DEPTH)
    except MalformedPayload as exc:
        raise WebFingerError(f"malformed JRD: {exc.detail}") from exc
    subject = doc.get("subject")
    if not isinstance(subject, str) or not subject.startswith("acct:"):
        raise WebFingerError("the JRD has no acct: subject")
    confirmed = _canonical_acct(parse_acct(subject), scheme)
    links = doc.get("links")
    actors: list[tuple[Iri, str | None]] = []
    for link in links[:_MAX_LINKS_SCANNED] if isinstance(links, list) else ():
        if not isinstance(link, dict) or link.get("rel") != "self":
            continue
        link_type, href = link.get("type"), link.get("href")
        if not isinstance(link_type, str) or not is_activitypub_media_type(link_type):
            continue
        if not isinstance(href, str) or len(href) > 2048 or not _is_http_url(href):
            continue
        properties = link.get("properties")
        as_type = properties.get(AS_TYPE_PROPERTY) if isinstance(properties, dict) else None
        actors.append((Iri(href), as_type if isinstance(as_type, str) else None))
        if len(actors) >= MAX_SELF_LINKS:
            break
    return _Jrd(subject=confirmed, actors=tuple(actors))


async def _webfinger(acct: AcctResource, *, transport: Transport, scheme: str) -> _Jrd:
    resource = quote(str(acct), safe=":@")
    url = f"{scheme}://{acct.host}/.well-known/webfinger?resource={resource}"
    request = OutgoingRequest("GET", url, Headers({"Accept": JRD_ACCEPT}))
    try:
        # The transport bounds redirects, refuses https→http and checks every hop (case 24).
        response = await transport.send(request, follow_redirects=True)
    except (FetchTimeout, ConnectionFailed) as exc:
        raise WebFingerTemporaryFailure(f"WebFinger for {acct} failed: {exc.detail}") from exc
    if response.status in (404, 410):
        raise WebFingerNotFound(f"no account {acct}", resource=str(acct))
    if response.status >= 500 or response.status == 429:
        raise WebFingerTemporaryFailure(f"WebFinger for {acct} answered {response.status}")
    if response.status != 200:
        raise WebFingerError(f"WebFinger for {acct} answered {response.status}")
    kind, _ = media_type(response.headers.get("Content-Type"))
    if kind not in _JSON_TYPES:
        raise WebFingerError(f"WebFinger for {acct} did not answer JSON")
    return _read_jrd(response.body, scheme)


async def _confirmed_jrd(
    acct: AcctResource, *, transport: Transport, scheme: str, uris: UriScheme | None
) -> _Jrd:
    """WebFinger ``acct``; follow one subject redirect, which must confirm itself."""
    _check_not_local(acct, uris)
    jrd = await _webfinger(acct, transport=transport, scheme=scheme)
    if jrd.subject == acct:
        return jrd
    _check_not_local(jrd.subject, uris)
    redirected = await _webfinger(jrd.subject, transport=transport, scheme=scheme)
    if redirected.subject != jrd.subject:
        # Mastodon's Webfinger::RedirectError: a second redirect is never followed.
        raise HandleMismatch(f"too many WebFinger redirects for {acct} (stopped at {redirected.subject})")
    return redirected


async def resolve_handle(
    handle: str,
    *,
    transport: Transport,
    scheme: str = "https",
    allow_http: bool = False,
    uris: UriScheme | None = None,
) -> list[WebFingerCandidate]:
    """Every ActivityPub actor the WebFinger account ``handle`` links to, in JRD order.

    ``handle`` is ``user@host[:port]``, with or without ``acct:`` or a leading ``@``. Lemmy
    answers a name with both a Person and a Group (the Group last, for Mastodon): all are
    returned, and the caller chooses (see :func:`lookup_handle`).

    The actors are *candidates*: before binding the handle to one, fetch it and call
    :func:`verify_handle` with ``expected=handle`` (security case 36).

    Raises:
        WebFingerError: malformed handle, a scheme not allowed (``http`` needs ``allow_http``),
            a non-200 answer, a malformed JRD, or no ActivityPub ``self`` link.
        WebFingerNotFound: 404 or 410.
        WebFingerTemporaryFailure: timeout, connection failure, 5xx or 429.
        HandleMismatch: the subject redirected more than once.
        LocalHandleRefused: ``uris`` is given and the handle (or the subject it redirects to)
            is on our own host: we never WebFinger ourselves over HTTP (case 17).
        UnsafeAddress, PeerNotAllowed, FetchError: from the transport.
    """
    _check_scheme(scheme, allow_http)
    acct = _canonical_acct(parse_acct(handle), scheme)
    jrd = await _confirmed_jrd(acct, transport=transport, scheme=scheme, uris=uris)
    if not jrd.actors:
        raise WebFingerError(f"{acct} links to no ActivityPub actor")
    return [WebFingerCandidate(actor=iri, actor_type=kind, subject=jrd.subject) for iri, kind in jrd.actors]


async def lookup_handle(
    handle: str,
    *,
    transport: Transport,
    scheme: str = "https",
    allow_http: bool = False,
    actor_type: str | None = None,
    uris: UriScheme | None = None,
) -> Iri:
    """The actor IRI for ``handle``: the only candidate, or the one of type ``actor_type``.

    Raises:
        AmbiguousHandle: several candidates and ``actor_type`` does not single one out.
        WebFingerError: no candidate has ``actor_type``.
        Everything :func:`resolve_handle` raises.
    """
    candidates = await resolve_handle(
        handle, transport=transport, scheme=scheme, allow_http=allow_http, uris=uris
    )
    if actor_type is not None:
        candidates = [c for c in candidates if c.actor_type == actor_type]
        if not candidates:
            raise WebFingerError(f"{handle} has no {actor_type} actor")
    if len({c.actor for c in candidates}) > 1:
        raise AmbiguousHandle(f"{handle} names several actors; choose a type", handle=handle)
    return candidates[0].actor


async def verify_handle(
    actor: RemoteActorDoc,
    *,
    transport: Transport,
    allow_http: bool = False,
    expected: str | None = None,
    uris: UriScheme | None = None,
) -> AcctResource:
    """Confirm through WebFinger which handle ``actor`` answers to (security case 36).

    ``preferredUsername@<host of the actor id>`` is looked up (over the actor id's scheme); the
    confirmed subject, after at most one redirect, must list ``actor.id`` as a ``self`` link.
    With ``expected`` (the handle the user typed, or the one WebFinger was first asked about),
    the confirmed account must also be that one.

    Returns the confirmed account, canonical (user lower-cased, host IDNA and without default
    port): the only handle under which the actor may be shown.

    Raises:
        HandleMismatch: no ``preferredUsername``, the JRD does not link back to the actor, or
            the confirmed account differs from ``expected``.
        Everything :func:`resolve_handle` raises.
    """
    if not actor.preferred_username:
        raise HandleMismatch("the actor has no preferredUsername", actor=actor.id)
    try:
        parts = urlsplit(actor.id)
    except ValueError:
        raise HandleMismatch("the actor's id is not a valid IRI", actor=actor.id) from None
    scheme = parts.scheme
    _check_scheme(scheme, allow_http)
    acct = _canonical_acct(AcctResource(user=actor.preferred_username, host=parts.netloc), scheme)
    jrd = await _confirmed_jrd(acct, transport=transport, scheme=scheme, uris=uris)
    if not any(same_iri(iri, actor.id) for iri, _ in jrd.actors):
        raise HandleMismatch(f"WebFinger for {jrd.subject} does not link back to {actor.id}", actor=actor.id)
    if expected is not None and _canonical_acct(parse_acct(expected), scheme) != jrd.subject:
        raise HandleMismatch(f"{actor.id} answers to {jrd.subject}, not {expected}", actor=actor.id)
    return jrd.subject


__all__ = [
    "AmbiguousHandle",
    "HandleMismatch",
    "LocalHandleRefused",
    "WebFingerCandidate",
    "WebFingerNotFound",
    "WebFingerTemporaryFailure",
    "lookup_handle",
    "resolve_handle",
    "verify_handle",
]
