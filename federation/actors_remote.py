"""The one reader of *remote* actor and key documents.

Every path that reads a peer's actor goes through :func:`read_actor`: the fetcher
(:mod:`federation.fetch`), the handle check (:mod:`federation.lookup`) and the vocabulary
reader (:func:`federation.vocab.parse.parse_actor`, which adds the profile fields it shows
on top of what is read here). It reads identity, endpoints, keys and a few profile fields,
with the published size limits of :mod:`federation.limits` (security case 28) and the
ownership rules that keep one actor from claiming another's key (security cases 1, 8, 9):

* every ``publicKey`` entry must name this actor as ``owner`` (a missing ``owner`` does not
  mean "this actor") and sit on the actor's origin (scheme, host and port, not the host alone);
  a ``#fragment`` key must hang off this very document (``<actor id>#...``);
* every ``assertionMethod`` Multikey must name this actor as ``controller``, same rules;
* ``outbox``, ``followers`` and ``following`` are kept only on the actor's origin;
* entries that break a rule are dropped, not trusted; the document itself is refused only when
  its identity (``id``, ``type``, ``inbox``, ``preferredUsername``) is unusable.

Nothing here touches the network, and no key material is trusted merely because it was read:
callers use keys only from documents fetched at their origin (:mod:`federation.fetch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from .errors import InvalidDocument, KeyUnavailable
from .iri import is_http_iri
from .keys import PublicKey, ed25519_from_multibase, public_key_from_pem
from .limits import (
    MAX_ALSO_KNOWN_AS,
    MAX_MULTIBASE_CHARS,
    MAX_MULTIKEYS,
    MAX_NAME_CHARS,
    MAX_PEM_CHARS,
    MAX_PREFERRED_USERNAME_CHARS,
    MAX_PUBLIC_KEYS,
    MAX_SUMMARY_CHARS,
)
from .types import Iri, JsonObject
from .uris import normalized_origin

ACTOR_TYPES: Final = frozenset({"Application", "Group", "Organization", "Person", "Service"})
"""AS2 actor types we store (the ``actors.type`` check constraint lists the same five)."""

_MAX_LIST_SCAN: Final = 1000  # bounds the work spent on hostile arrays before truncation


@dataclass(frozen=True, slots=True)
class PublicKeyEntry:
    """One ``publicKey`` entry of an actor: ``{id, owner, publicKeyPem}``, not yet parsed."""

    id: Iri
    owner: Iri
    public_key_pem: str


@dataclass(frozen=True, slots=True)
class MultikeyEntry:
    """One ``assertionMethod`` Multikey (FEP-521a): ``{id, controller, publicKeyMultibase}``."""

    id: Iri
    controller: Iri
    public_key_multibase: str


@dataclass(frozen=True, slots=True)
class RemoteActorDoc:
    """What we keep of a peer's actor document.

    ``public_keys`` and ``assertion_methods`` hold only entries owned by this actor and on its
    origin (see the module docstring); key material is parsed lazily by :meth:`public_key`, so
    a weak or unreadable key costs nothing until someone tries to verify with it.
    """

    id: Iri
    type: str
    preferred_username: str | None
    name: str
    summary: str
    inbox: Iri
    outbox: Iri | None
    followers: Iri | None
    following: Iri | None
    shared_inbox: Iri | None
    url: Iri | None
    public_keys: tuple[PublicKeyEntry, ...]
    assertion_methods: tuple[MultikeyEntry, ...]
    manually_approves_followers: bool
    moved_to: Iri | None
    also_known_as: tuple[Iri, ...]

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the actor's id, normalised."""
        origin = normalized_origin(self.id)
        assert origin is not None  # read_actor guarantees an absolute http(s) id
        return origin

    def key_ids(self) -> tuple[Iri, ...]:
        """Ids of every key entry this actor lists (publicKey first, then Multikeys)."""
        return tuple(e.id for e in self.public_keys) + tuple(m.id for m in self.assertion_methods)

    def public_key(self, key_id: str) -> PublicKey:
        """The key this actor lists under ``key_id``, parsed and checked.

        Raises:
            KeyUnavailable: the actor lists no key with this id, or the key is unreadable,
                unsupported, or too weak (RSA below 2048 bits; security case 9).
        """
        for entry in self.public_keys:
            if entry.id == key_id:
                return PublicKey(entry.id, self.id, public_key_from_pem(entry.public_key_pem))
        for method in self.assertion_methods:
            if method.id == key_id:
                return PublicKey(method.id, self.id, ed25519_from_multibase(method.public_key_multibase))
        raise KeyUnavailable("the actor does not list this key", key_id=key_id, actor=self.id)

    def usable_keys(self) -> tuple[PublicKey, ...]:
        """Every listed key that parses and is strong enough; the rest are skipped."""
        keys: list[PublicKey] = []
        for key_id in self.key_ids():
            try:
                keys.append(self.public_key(key_id))
            except KeyUnavailable:
                continue
        return tuple(keys)


@dataclass(frozen=True, slots=True)
class KeyDocument:
    """A standalone key document (``{id, owner, publicKeyPem}``), as served at a non-fragment keyId."""

    id: Iri
    owner: Iri
    public_key_pem: str

    def public_key(self) -> PublicKey:
        """Parse the key.

        Raises:
            KeyUnavailable: unreadable, unsupported or weak key.
        """
        return PublicKey(self.id, self.owner, public_key_from_pem(self.public_key_pem))


# ---------------------------------------------------------------------------------------------
# Small typed readers of raw JSON values
# ---------------------------------------------------------------------------------------------


def _iri(value: object) -> Iri | None:
    """An absolute http(s) IRI (a string, or an object/link with ``id``/``href``), else None."""
    if isinstance(value, dict):
        value = value.get("id", value.get("href"))
    if not is_http_iri(value) or normalized_origin(value) is None:
        return None
    return Iri(value)


def _items(value: object) -> Iterator[Any]:
    """A JSON value as a bounded sequence of items (a single value counts as one)."""
    if isinstance(value, list):
        yield from value[:_MAX_LIST_SCAN]
    elif value is not None:
        yield value


def _first_iri(value: object) -> Iri | None:
    for item in _items(value):
        iri = _iri(item)
        if iri is not None:
            return iri
    return None


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _same_origin(a: str, b: str) -> bool:
    origin = normalized_origin(a)
    return origin is not None and origin == normalized_origin(b)


def _belongs_to(key_id: Iri, actor_id: Iri) -> bool:
    """A key id is acceptable for an actor when on its origin; a ``#fragment`` id must be the
    actor's own document plus a fragment (``<actor>#main-key``), so bob's document cannot list
    ``alice#main-key`` on a shared host (security cases 1 and 8)."""
    if not _same_origin(key_id, actor_id):
        return False
    base, sep, fragment = key_id.partition("#")
    if sep:
        return base == actor_id and bool(fragment)
    return key_id != actor_id


def _actor_type(value: object) -> str | None:
    for item in _items(value):
        if isinstance(item, str) and item in ACTOR_TYPES:
            return item
    return None


def is_actor_document(doc: JsonObject) -> bool:
    """True when ``doc``'s ``type`` names one of :data:`ACTOR_TYPES`."""
    return _actor_type(doc.get("type")) is not None


def _preferred_username(value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_PREFERRED_USERNAME_CHARS
        or any(c.isspace() or not c.isprintable() or c in "@/\\?#:" for c in value)
    ):
        # Mastodon rejects the actor too: the name is part of the account's identity.
        raise InvalidDocument("preferredUsername is not a usable name")
    return value


def _public_keys(value: object, actor_id: Iri) -> tuple[PublicKeyEntry, ...]:
    entries: list[PublicKeyEntry] = []
    for item in _items(value):
        if len(entries) >= MAX_PUBLIC_KEYS:
            break
        if not isinstance(item, dict):
            continue
        key_id, owner, pem = _iri(item.get("id")), _iri(item.get("owner")), item.get("publicKeyPem")
        if key_id is None or owner != actor_id or not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
            continue
        if _belongs_to(key_id, actor_id):
            entries.append(PublicKeyEntry(key_id, owner, pem))
    return tuple(entries)


def _assertion_methods(value: object, actor_id: Iri) -> tuple[MultikeyEntry, ...]:
    entries: list[MultikeyEntry] = []
    for item in _items(value):
        if len(entries) >= MAX_MULTIKEYS:
            break
        if not isinstance(item, dict) or item.get("type") != "Multikey":
            continue
        key_id, controller = _iri(item.get("id")), _iri(item.get("controller"))
        multibase = item.get("publicKeyMultibase")
        if key_id is None or controller != actor_id:
            continue
        if not isinstance(multibase, str) or not multibase.isascii() or len(multibase) > MAX_MULTIBASE_CHARS:
            continue
        if _belongs_to(key_id, actor_id):
            entries.append(MultikeyEntry(key_id, controller, multibase))
    return tuple(entries)


def _also_known_as(value: object) -> tuple[Iri, ...]:
    found: list[Iri] = []
    for item in _items(value):
        iri = _iri(item)
        if iri is not None and iri not in found:
            found.append(iri)
            if len(found) >= MAX_ALSO_KNOWN_AS:
                break
    return tuple(found)


def same_origin_iri(value: object, actor_id: Iri) -> Iri | None:
    """``value`` as an http(s) IRI on ``actor_id``'s origin, else None."""
    # Collections are taken only from the actor's own origin: a followers IRI pointing at one
    # of *our* collections would otherwise widen an audience computed from it (section G).
    iri = _iri(value)
    return iri if iri is not None and _same_origin(iri, actor_id) else None


# ---------------------------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------------------------


def read_actor(doc: JsonObject) -> RemoteActorDoc:
    """Read a peer's actor document into a :class:`RemoteActorDoc`.

    Guarantees: ``id`` and ``inbox`` are absolute http(s) IRIs without userinfo; ``type`` is
    one of :data:`ACTOR_TYPES` (the first one listed when ``type`` is an array); texts and lists
    are truncated to Mastodon's limits (security case 28); ``outbox``, ``followers`` and
    ``following`` are kept only when on the actor's origin; key entries follow the ownership
    rules of the module docstring. The function is pure and total on any JSON object.

    Raises:
        InvalidDocument: ``doc`` is not an object, or its ``id``, ``type``, ``inbox`` or
            ``preferredUsername`` is missing or unusable.
    """
    if not isinstance(doc, dict):
        raise InvalidDocument("an actor document must be a JSON object")
    actor_id = _iri(doc.get("id")) if isinstance(doc.get("id"), str) else None
    if actor_id is None:
        raise InvalidDocument("the actor has no usable id")
    actor_type = _actor_type(doc.get("type"))
    if actor_type is None:
        raise InvalidDocument("the document is not an actor", id=actor_id)
    inbox = _iri(doc.get("inbox"))
    if inbox is None:
        raise InvalidDocument("the actor has no usable inbox", id=actor_id)
    endpoints = doc.get("endpoints")
    shared_inbox = _iri(endpoints.get("sharedInbox")) if isinstance(endpoints, dict) else None
    manually = doc.get("manuallyApprovesFollowers")
    return RemoteActorDoc(
        id=actor_id,
        type=actor_type,
        preferred_username=_preferred_username(doc.get("preferredUsername")),
        name=_text(doc.get("name"), MAX_NAME_CHARS),
        summary=_text(doc.get("summary"), MAX_SUMMARY_CHARS),
        inbox=inbox,
        outbox=same_origin_iri(doc.get("outbox"), actor_id),
        followers=same_origin_iri(doc.get("followers"), actor_id),
        following=same_origin_iri(doc.get("following"), actor_id),
        shared_inbox=shared_inbox,
        url=_first_iri(doc.get("url")),
        public_keys=_public_keys(doc.get("publicKey"), actor_id),
        assertion_methods=_assertion_methods(doc.get("assertionMethod"), actor_id),
        manually_approves_followers=manually if isinstance(manually, bool) else False,
        moved_to=_iri(doc.get("movedTo")),
        also_known_as=_also_known_as(doc.get("alsoKnownAs")),
    )


def read_key_document(doc: JsonObject) -> KeyDocument:
    """Read a standalone key document (``CryptographicKey``/``Key`` or untyped).

    Only the shape is checked here; :func:`federation.fetch.fetch_key` checks that ``id``
    equals the keyId it fetched and that the owner lists the key (security case 9).

    Raises:
        InvalidDocument: ``id``, ``owner`` or ``publicKeyPem`` is missing or unusable.
    """
    key_id, owner = _iri(doc.get("id")), _iri(doc.get("owner"))
    pem = doc.get("publicKeyPem")
    if key_id is None or owner is None or not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
        raise InvalidDocument("not a key document: id, owner and publicKeyPem are required")
    return KeyDocument(key_id, owner, pem)


__all__ = [
    "ACTOR_TYPES",
    "KeyDocument",
    "MultikeyEntry",
    "PublicKeyEntry",
    "RemoteActorDoc",
    "is_actor_document",
    "read_actor",
    "read_key_document",
    "same_origin_iri",
]
