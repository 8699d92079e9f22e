"""The single table of local IRI templates: it both builds and parses every local IRI.

No URL layout is promised to peers (they discover IRIs through WebFinger and actor
documents), but inside the node every route and every minted IRI comes from here, like
fedify's ``Router``/``Context``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from .iri import http_authority
from .types import Iri

APPLICATION_ACTOR: Final = "/actor"
SHARED_INBOX: Final = "/inbox"
GROUP: Final = "/groups/{handle}"
PERSON: Final = "/users/{handle}"
ACTOR_INBOX: Final = "{actor}/inbox"
ACTOR_OUTBOX: Final = "{actor}/outbox"
ACTOR_FOLLOWERS: Final = "{actor}/followers"
ACTOR_FOLLOWING: Final = "{actor}/following"
ACTOR_LIKED: Final = "{actor}/liked"
GROUP_MEMBERS: Final = "{actor}/members"
GROUP_FEATURED: Final = "{actor}/featured"
OBJECT: Final = "/objects/{id}"
ACTIVITY: Final = "/activities/{id}"
OBJECT_REPLIES: Final = "{object}/replies"
OBJECT_CONTEXT: Final = "{object}/context"  # FEP-7888/f228: the thread the object starts
OBJECT_HISTORY: Final = "{object}/history"  # FEP-bad1: Create and Updates of the object
OBJECT_ENDORSEMENTS: Final = "{object}/endorsements"  # co-signatures of a proposal
MEDIA: Final = "/media/{key}"
ACTOR_FEED: Final = "{actor}/feed.{format}"  # format: atom, rss or json
ACTOR_KIND_FEED: Final = "{actor}/feeds/{kind}.{format}"  # kind: alerts, resources, proposals, events
FEED_FORMATS: Final = ("atom", "rss", "json")
FEED_KINDS: Final = ("alerts", "resources", "proposals", "events")
EVENTS_CALENDAR_FORMAT: Final = "ics"  # {actor}/feeds/events.ics: the association's calendar (ICS)
MAIN_KEY_FRAGMENT: Final = "main-key"
ED25519_KEY_FRAGMENT: Final = "ed25519-key"
KEY_FRAGMENTS: Final = (MAIN_KEY_FRAGMENT, ED25519_KEY_FRAGMENT)
"""The fragments our key ids add to an actor IRI (``actor#main-key``)."""

# Route patterns for aiohttp (the same templates, with constrained placeholders).
HANDLE_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,62}"
ROUTE_GROUP: Final = "/groups/{handle:" + HANDLE_PATTERN + "}"
ROUTE_PERSON: Final = "/users/{handle:" + HANDLE_PATTERN + "}"

_HANDLE_RE = re.compile(rf"^{HANDLE_PATTERN}$")
_ACTOR_PATH_RE = re.compile(
    rf"^/(groups|users)/({HANDLE_PATTERN})(?:/(inbox|outbox|followers|following|liked|members|featured))?$"
)


def is_valid_handle(handle: str) -> bool:
    """Handles (association slugs and usernames) are lower-case ASCII, digits, ``-`` and ``_``."""
    # fullmatch, not match: ``$`` would also accept a trailing newline ("demo\n").
    return bool(_HANDLE_RE.fullmatch(handle))


_DEFAULT_PORTS = {"http": 80, "https": 443}


# IRIs up to this length have their origin memoised: ``is_local`` asks for the same few IRIs
# (our origin, the sender, the public collection) several times per inbound activity.
_MEMO_MAX_CHARS: Final = 2048


def normalized_origin(iri: str) -> str | None:
    """``scheme://host[:port]`` of an IRI, lower-cased, trailing dot and default port dropped.

    None for IRIs that are not absolute http(s) IRIs or that contain whitespace or control
    characters (``urlsplit`` silently strips some of those, which would hide them).
    """
    if len(iri) <= _MEMO_MAX_CHARS:
        return _memoised_origin(iri)
    return _origin(iri)


@lru_cache(maxsize=4096)
def _memoised_origin(iri: str) -> str | None:
    return _origin(iri)


def _origin(iri: str) -> str | None:
    # Every str.isspace() character but U+0020 is non-printable: these two checks are exactly
    # "no whitespace and no control character", in C instead of a generator per character.
    if not iri.isprintable() or " " in iri:
        return None
    authority = http_authority(iri)
    if authority is not None:
        return _authority_origin(*authority)
    return _origin_parts(iri)


@lru_cache(maxsize=1024)
def _authority_origin(scheme: str, netloc: str) -> str | None:
    return _origin_parts(f"{scheme}://{netloc}")


def _origin_parts(iri: str) -> str | None:
    try:
        parts = urlsplit(iri)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True, slots=True)
class LocalActorRef:
    """What a local actor IRI names: its kind (``group``/``person``), handle and sub-resource."""

    kind: str
    handle: str
    part: str | None = None


@dataclass(frozen=True, slots=True)
class UriScheme:
    """Builds and parses IRIs under one public origin (``https://host[:port]``)."""

    origin: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.origin)
        normalized = normalized_origin(self.origin)
        if (
            normalized is None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ValueError(f"origin must be scheme://host[:port], got {self.origin!r}")
        object.__setattr__(self, "origin", normalized)

    @property
    def host(self) -> str:
        """The authority as it appears in handles: ``host`` or ``host:port``."""
        return urlsplit(self.origin).netloc

    def iri(self, path: str) -> Iri:
        return Iri(self.origin + path)

    def application_actor(self) -> Iri:
        return self.iri(APPLICATION_ACTOR)

    def shared_inbox(self) -> Iri:
        return self.iri(SHARED_INBOX)

    def group(self, handle: str) -> Iri:
        return self.iri(GROUP.format(handle=handle))

    def person(self, handle: str) -> Iri:
        return self.iri(PERSON.format(handle=handle))

    def actor(self, kind: str, handle: str) -> Iri:
        return self.group(handle) if kind == "group" else self.person(handle)

    def inbox(self, actor: Iri) -> Iri:
        return Iri(ACTOR_INBOX.format(actor=actor))

    def outbox(self, actor: Iri) -> Iri:
        return Iri(ACTOR_OUTBOX.format(actor=actor))

    def followers(self, actor: Iri) -> Iri:
        return Iri(ACTOR_FOLLOWERS.format(actor=actor))

    def following(self, actor: Iri) -> Iri:
        return Iri(ACTOR_FOLLOWING.format(actor=actor))

    def liked(self, actor: Iri) -> Iri:
        return Iri(ACTOR_LIKED.format(actor=actor))

    def likes(self, object_iri: str) -> Iri:
        return Iri(f"{object_iri}/likes")

    def members(self, actor: Iri) -> Iri:
        return Iri(GROUP_MEMBERS.format(actor=actor))

    def featured(self, actor: Iri) -> Iri:
        return Iri(GROUP_FEATURED.format(actor=actor))

    def object(self, object_id: str) -> Iri:
        return self.iri(OBJECT.format(id=object_id))

    def activity(self, activity_id: str) -> Iri:
        return self.iri(ACTIVITY.format(id=activity_id))

    def replies(self, object_iri: Iri) -> Iri:
        return Iri(OBJECT_REPLIES.format(object=object_iri))

    def context(self, object_iri: Iri) -> Iri:
        return Iri(OBJECT_CONTEXT.format(object=object_iri))

    def history(self, object_iri: Iri) -> Iri:
        return Iri(OBJECT_HISTORY.format(object=object_iri))

    def endorsements(self, object_iri: Iri) -> Iri:
        return Iri(OBJECT_ENDORSEMENTS.format(object=object_iri))

    def media(self, key: str) -> Iri:
        return self.iri(MEDIA.format(key=key))

    def feed(self, actor: Iri, fmt: str, kind: str | None = None) -> Iri:
        """An actor's public feed (``fmt``: atom, rss, json), optionally of one content kind."""
        if kind is None:
            return Iri(ACTOR_FEED.format(actor=actor, format=fmt))
        return Iri(ACTOR_KIND_FEED.format(actor=actor, kind=kind, format=fmt))

    def main_key(self, actor: Iri) -> Iri:
        """The RSA key's id, ``actor#main-key`` as Mastodon, Lemmy and Mobilizon expect."""
        return Iri(f"{actor}#{MAIN_KEY_FRAGMENT}")

    def ed25519_key(self, actor: Iri) -> Iri:
        return Iri(f"{actor}#{ED25519_KEY_FRAGMENT}")

    def is_local(self, iri: str) -> bool:
        """True when ``iri`` is on our own origin (never fetch those over HTTP: case 17).

        Spellings of the same origin (``:443`` on https, a trailing dot, upper case) count as ours.
        """
        return normalized_origin(iri) == self.origin

    def local_actor_ref(self, iri: str) -> LocalActorRef | None:
        """Which of our actors (and which of its collections) a local IRI names; None if none.

        Not to be confused with reading a remote actor document: that is
        :func:`federation.actors_remote.read_actor`.
        """
        if not self.is_local(iri):
            return None
        parts = urlsplit(iri)
        if parts.query or parts.fragment:
            return None
        match = _ACTOR_PATH_RE.fullmatch(parts.path)
        if not match:
            return None
        kind = "group" if match.group(1) == "groups" else "person"
        return LocalActorRef(kind, match.group(2), match.group(3))
