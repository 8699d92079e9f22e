"""Inbound content objects and remote actors as frozen values.

These are what :mod:`federation.vocab.parse` produces from peers' JSON; nothing here reads a
dict. Every IRI field holds an absolute http(s) IRI of at most 2048 characters (the parser
refuses anything else), and every ``to``/``cc``/``audience`` tuple spells the public collection
as :data:`federation.types.AS_PUBLIC` only.

HTML is kept raw (``content``, ``summary``): sanitising is the server's job, at the single
place where remote HTML is stored (``server/services``, nh3).

The class tree follows how Mastodon treats types (docs/interop.md "Visibility as Mastodon
reads it"): :class:`Note` and :class:`Question` are "native"; :class:`Article`,
:class:`Page` (Lemmy posts, a subclass of :class:`Article` so that article handlers see them)
and :class:`Document` are "converted"; any other content type (``Event``, ``Video``, Mobilizon's
``ResourceCollection``) is a plain :class:`Content` with its ``type`` kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ..types import Iri

__all__ = [
    "ActorKey",
    "Article",
    "Attachment",
    "Content",
    "Document",
    "Image",
    "Member",
    "MemberRole",
    "Multikey",
    "Note",
    "Page",
    "PollOption",
    "ProfileField",
    "Question",
    "RemoteActor",
    "Tag",
    "Tombstone",
]


def _no_extra() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Tag:
    """One ``tag`` entry: a ``Mention`` (``href`` = the actor), a ``Hashtag`` or an ``Emoji``.

    ``href`` is the mentioned actor, the hashtag page, or the emoji's image URL; ``None`` when
    the peer sent no usable http(s) link. Notifications need a ``Mention`` (docs/interop.md
    "Visibility as Mastodon reads it").
    """

    type: str
    name: str | None = None
    href: Iri | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """A content object (Note, Article, Question, Page, Document, Event, ...), read defensively.

    Guarantees: ``id`` is an http(s) IRI, or ``None`` only for an anonymous object embedded in
    an activity; ``types`` lists every type name sent (``type`` is the one we recognised, or
    the first); ``attributed_to`` holds actor IRIs only (embedded actors reduced to their
    ids); ``content`` is the ``content`` HTML, or the first ``contentMap`` value when
    ``content`` is absent, and ``language`` is the first ``contentMap`` key (or Lemmy's
    ``language.identifier``); ``name`` and ``summary`` are truncated to
    :data:`~federation.vocab.parse.MAX_NAME_CHARS` and
    :data:`~federation.vocab.parse.MAX_SUMMARY_CHARS`; ``published``/``updated`` are aware UTC
    datetimes or ``None`` when absent or unreadable.

    ``extra`` carries the Entraide terms found on the object (``severity``, ``validUntil``,
    ``alertStatus``, ... as defined in ``schemas/contexts/entraide-v1.jsonld``), values as
    sent; typed Alert/Resource/Proposal values will be built from it. ``context`` is kept only
    when it is an http(s) IRI (Mastodon's ``tag:`` conversation ids are dropped), and ``url``
    is the first http(s) link found.
    """

    id: Iri | None
    type: str
    types: tuple[str, ...] = ()
    attributed_to: tuple[Iri, ...] = ()
    content: str | None = None
    summary: str | None = None
    name: str | None = None
    in_reply_to: Iri | None = None
    context: Iri | None = None
    audience: tuple[Iri, ...] = ()
    to: tuple[Iri, ...] = ()
    cc: tuple[Iri, ...] = ()
    published: datetime | None = None
    updated: datetime | None = None
    url: Iri | None = None
    tag: tuple[Tag, ...] = ()
    attachment: tuple[Attachment, ...] = ()
    sensitive: bool = False
    language: str | None = None
    media_type: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_no_extra, hash=False)

    @property
    def author(self) -> Iri | None:
        """The first ``attributedTo`` actor, which is what Mastodon shows as the author."""
        return self.attributed_to[0] if self.attributed_to else None

    @property
    def mentions(self) -> tuple[Iri, ...]:
        """The actors named by ``Mention`` tags (needed to tell "direct" from "limited")."""
        return tuple(t.href for t in self.tag if t.type == "Mention" and t.href is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(Content):
    """A ``Note``: a status, a comment, a discussion message, or a poll vote (``name`` only)."""

    type: str = "Note"


@dataclass(frozen=True, slots=True, kw_only=True)
class Article(Content):
    """An ``Article``: a long-form post (Mobilizon group posts, our resources' fallback)."""

    type: str = "Article"


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Article):
    """A Lemmy post (``Page``), treated like an :class:`Article` (see :mod:`federation.compat.lemmy`).

    Lemmy puts the post's link in an ``attachment`` of type ``Link`` (newer) or in ``url``
    (older); :attr:`Content.url` holds it either way.
    """

    type: str = "Page"
    comments_enabled: bool | None = None
    stickied: bool | None = None


@dataclass(frozen=True, slots=True)
class PollOption:
    """One poll option: its exact ``name`` and the vote count from ``replies.totalItems``.

    Votes match options by exact ``name`` (security case 45), so the name is never trimmed.
    """

    name: str
    votes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Question(Content):
    """A poll (``Question``): our proposals' fallback, and Mastodon polls.

    ``multiple`` is True for ``anyOf`` (several choices), False for ``oneOf``. At most
    :data:`~federation.vocab.parse.MAX_POLL_OPTIONS` options are kept (Mastodon truncates
    too). ``closed`` is True when the peer sent ``closed`` (a date or ``true``); ``closed_at``
    is that date when one was given. No ``endTime`` and no ``closed`` means an endless poll
    (GoToSocial's reading, docs/interop.md "Polls").
    """

    type: str = "Question"
    options: tuple[PollOption, ...] = ()
    multiple: bool = False
    end_time: datetime | None = None
    closed: bool = False
    closed_at: datetime | None = None
    voters_count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Document(Content):
    """A ``Document`` (or ``Audio``/``Video``/``Link``): an attachment, or a Mobilizon link resource.

    As an attachment it usually has no ``id``: ``url`` is the file, ``name`` its alt text and
    ``media_type`` its declared type (never trusted for processing: case 32). Lemmy's
    ``{"type": "Link", "href": ...}`` attachments are read as a ``Document`` of type ``Link``.
    """

    type: str = "Document"
    width: int | None = None
    height: int | None = None
    blurhash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Image(Document):
    """An ``Image`` attachment (or an actor's ``icon``/``image``)."""

    type: str = "Image"


Attachment = Document
"""What ``attachment`` entries are read as: :class:`Document` and its subclass :class:`Image`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    """A deleted object (``Tombstone``), as Mastodon embeds it in ``Delete`` or a peer serves it (410).

    ``former_type`` is ``formerType`` when sent; ``deleted`` is the deletion date when readable.
    """

    id: Iri
    type: str = "Tombstone"
    former_type: str | None = None
    deleted: datetime | None = None
    published: datetime | None = None
    updated: datetime | None = None


class MemberRole(StrEnum):
    """Mobilizon membership roles (docs/interop.md "Actors", Mobilizon Group extras)."""

    INVITED = "invited"
    NOT_APPROVED = "not_approved"
    MEMBER = "member"
    MODERATOR = "moderator"
    ADMINISTRATOR = "administrator"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A Mobilizon ``Member``: ``actor`` belongs to the group ``object`` with ``role``.

    ``role`` is ``None`` for a role we do not know (kept rather than guessed).
    """

    id: Iri | None
    actor: Iri
    object: Iri
    role: MemberRole | None
    type: str = "Member"


@dataclass(frozen=True, slots=True)
class ActorKey:
    """A ``publicKey`` entry of a remote actor: id, owner, and the PEM as published.

    The reader (:func:`federation.actors_remote.read_actor`) keeps only entries whose ``owner``
    is the actor itself and whose id is on the actor's origin, a ``#fragment`` id only on the
    actor's own document (security cases 1, 8, 9); the PEM is not loaded here (``federation.keys`` does that
    when a signature needs it).
    """

    key_id: Iri
    owner: Iri
    pem: str


@dataclass(frozen=True, slots=True)
class Multikey:
    """A FEP-521a ``Multikey`` from ``assertionMethod`` (controller = the actor)."""

    key_id: Iri
    controller: Iri
    public_key_multibase: str


@dataclass(frozen=True, slots=True)
class ProfileField:
    """A Mastodon profile field (``PropertyValue`` attachment); name and value truncated to 2047."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteActor:
    """A peer's actor document (Person, Group, Application, Service, Organization).

    Guarantees: every IRI field is an http(s) IRI; ``public_keys`` holds at most
    :data:`~federation.limits.MAX_PUBLIC_KEYS` entries, each owned by this actor and on its
    origin (:mod:`federation.actors_remote` states the rules); ``multikeys`` likewise
    (controller = this actor); ``also_known_as`` holds at most
    :data:`~federation.limits.MAX_ALSO_KNOWN_AS` IRIs; ``fields`` at most
    :data:`~federation.limits.MAX_PROFILE_FIELDS`. Keys from an *inbound* payload (an
    ``Update{Person}``) are never to be trusted: keys come from a direct fetch of the actor at
    its origin (security case 8).

    ``members`` is a group's members collection (Mobilizon and Entraide groups); ``attributed_to``
    is Lemmy's moderators collection on a Group.
    """

    id: Iri
    type: str
    types: tuple[str, ...] = ()
    preferred_username: str | None = None
    name: str | None = None
    summary: str | None = None
    inbox: Iri
    outbox: Iri | None = None
    followers: Iri | None = None
    following: Iri | None = None
    shared_inbox: Iri | None = None
    featured: Iri | None = None
    members: Iri | None = None
    attributed_to: Iri | None = None
    url: Iri | None = None
    icon_url: Iri | None = None
    public_keys: tuple[ActorKey, ...] = ()
    multikeys: tuple[Multikey, ...] = ()
    manually_approves_followers: bool = False
    discoverable: bool | None = None
    moved_to: Iri | None = None
    also_known_as: tuple[Iri, ...] = ()
    published: datetime | None = None
    fields: tuple[ProfileField, ...] = ()

    @property
    def is_group(self) -> bool:
        """True for ``Group`` actors (associations, Lemmy communities, Mobilizon groups)."""
        return self.type == "Group"

    @property
    def is_bot(self) -> bool:
        """True for ``Application`` and ``Service`` actors (Mastodon reads them as bots)."""
        return self.type in ("Application", "Service")
