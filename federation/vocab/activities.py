"""Inbound activities as frozen values, and references to the objects they act on.

An activity's ``object`` (and ``target``) is an :class:`ObjectRef`: always the IRI when the
peer gave one, plus the embedded value when the payload carried one *and* the inbox kept it.
:func:`federation.inbox.receive` reduces an embedded value to a bare reference when it comes
from another host than the actor, or claims to be one of ours (security cases 16 and 17), so a
handler that finds ``ref.value is None`` must resolve ``ref.id`` itself: from the database for
local ids, by a fetch from the id's origin otherwise.

Addressing: ``to``, ``cc`` and ``audience`` are tuples of IRIs with the public collection
spelled :data:`~federation.types.AS_PUBLIC` only; ``bto`` and ``bcc`` are never kept
(ActivityPub §6, security case 44). :class:`Addressing` bundles them for
:func:`federation.audience.classify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final

from ..types import AS_PUBLIC, Iri
from .objects import Content, Member, RemoteActor, Tombstone

__all__ = [
    "ACTIVITY_CLASSES",
    "Accept",
    "Activity",
    "Add",
    "Addressing",
    "Announce",
    "Block",
    "Create",
    "Delete",
    "EmbeddedValue",
    "Flag",
    "Follow",
    "Join",
    "Leave",
    "Like",
    "Move",
    "ObjectRef",
    "Reject",
    "Remove",
    "Undo",
    "UnknownActivity",
    "Update",
]


@dataclass(frozen=True, slots=True)
class Addressing:
    """The recipients of an activity or object: ``to``, ``cc`` and ``audience``.

    ``bto``/``bcc`` are not part of it: they are stripped when parsing and never forwarded.
    """

    to: tuple[Iri, ...] = ()
    cc: tuple[Iri, ...] = ()
    audience: tuple[Iri, ...] = ()

    @property
    def is_public(self) -> bool:
        """True when the public collection appears in ``to`` or ``cc``."""
        return AS_PUBLIC in self.to or AS_PUBLIC in self.cc

    @property
    def recipients(self) -> tuple[Iri, ...]:
        """``to`` then ``cc`` then ``audience``, without duplicates, first occurrence kept."""
        return tuple(dict.fromkeys((*self.to, *self.cc, *self.audience)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    """Fields common to every activity.

    Guarantees: ``id`` and ``actor`` are http(s) IRIs (an activity naming several distinct
    actors is refused by the parser); ``object``/``target`` are ``None`` when absent; the
    addressing tuples hold http(s) IRIs and :data:`~federation.types.AS_PUBLIC`; ``published``
    is an aware datetime or ``None``; ``summary`` and ``content`` are raw text/HTML (Lemmy's
    ``Remove`` reason, a ``Flag`` comment), truncated like an object's.
    """

    TYPE: ClassVar[str] = ""

    id: Iri
    actor: Iri
    object: ObjectRef | None = None
    target: ObjectRef | None = None
    to: tuple[Iri, ...] = ()
    cc: tuple[Iri, ...] = ()
    audience: tuple[Iri, ...] = ()
    published: datetime | None = None
    summary: str | None = None
    content: str | None = None
    types: tuple[str, ...] = ()

    @property
    def type(self) -> str:
        """The ActivityStreams type name this value stands for (``"Create"``, ...)."""
        return self.TYPE

    @property
    def addressing(self) -> Addressing:
        """``to``/``cc``/``audience`` as one value."""
        return Addressing(self.to, self.cc, self.audience)

    @property
    def object_id(self) -> Iri | None:
        """The object's IRI, whether the object was embedded or referenced."""
        return self.object.id if self.object is not None else None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A reference to an object: its IRI, and the embedded value when one may be used.

    ``value`` is ``None`` for a bare IRI, for an embedded object the inbox refused to trust
    (another origin, or one of our own ids) and for an embedded object of a kind we do not
    model. ``id`` is ``None`` only for an anonymous embedded object (no ``id``), which then has
    a ``value``. ``type_hint`` is the embedded object's type name as sent, even when ``value``
    was dropped, for logging and routing; it is never authoritative.

    Raises:
        ValueError: on construction with neither ``id`` nor ``value``.
    """

    id: Iri | None
    value: EmbeddedValue | None = None
    type_hint: str | None = None

    def __post_init__(self) -> None:
        if self.id is None and self.value is None:
            raise ValueError("an ObjectRef needs an id or an embedded value")

    @property
    def is_embedded(self) -> bool:
        """True when an embedded value is available."""
        return self.value is not None

    def as_reference(self) -> ObjectRef:
        """The same reference without its embedded value (the object must be resolved by id).

        Raises:
            ValueError: the object is anonymous (no id), so it cannot be referenced.
        """
        return ObjectRef(self.id, None, self.type_hint)


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(Activity):
    """``Create``: a new object (Note, Article, Question, a vote Note, ...)."""

    TYPE: ClassVar[str] = "Create"


@dataclass(frozen=True, slots=True, kw_only=True)
class Update(Activity):
    """``Update``: a new version of an object, or of the actor itself (``object`` = the actor)."""

    TYPE: ClassVar[str] = "Update"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Activity):
    """``Delete``: an object (often a :class:`Tombstone`), or the actor when ``object == actor``."""

    TYPE: ClassVar[str] = "Delete"

    @property
    def is_self_delete(self) -> bool:
        """True for an actor deleting itself (docs/interop.md "Delete, Tombstone, Undo")."""
        return self.object_id == self.actor


@dataclass(frozen=True, slots=True, kw_only=True)
class Follow(Activity):
    """``Follow``: ``actor`` asks to follow ``object``."""

    TYPE: ClassVar[str] = "Follow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept(Activity):
    """``Accept`` of a Follow/Join: ``object`` is the embedded activity or its IRI (both are seen)."""

    TYPE: ClassVar[str] = "Accept"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(Activity):
    """``Reject`` of a Follow/Join: ``object`` is the embedded activity or its IRI."""

    TYPE: ClassVar[str] = "Reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class Undo(Activity):
    """``Undo`` of an earlier activity (Follow, Like, Announce, Block, Delete), embedded or by IRI."""

    TYPE: ClassVar[str] = "Undo"


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce(Activity):
    """``Announce``: a boost, or a Group relaying an activity (FEP-1b12; ``object`` is then an activity)."""

    TYPE: ClassVar[str] = "Announce"

    @property
    def announced_activity(self) -> Activity | None:
        """The embedded activity when this is a FEP-1b12 group relay (Lemmy ``Announce{Create{Page}}``)."""
        value = self.object.value if self.object is not None else None
        return value if isinstance(value, Activity) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Like(Activity):
    """``Like`` of an object (Lemmy upvote, Mastodon favourite)."""

    TYPE: ClassVar[str] = "Like"


@dataclass(frozen=True, slots=True, kw_only=True)
class Block(Activity):
    """``Block``: ``actor`` blocks ``object`` (Mastodon sends it to the blocked actor, best effort)."""

    TYPE: ClassVar[str] = "Block"


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag(Activity):
    """``Flag`` (a report): ``objects`` lists every reported account/object; ``object`` is the first.

    ``content`` is the comment (Mastodon), ``summary`` the reason (Lemmy).
    """

    TYPE: ClassVar[str] = "Flag"

    objects: tuple[ObjectRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Move(Activity):
    """``Move {actor: old, object: old, target: new}``; valid only if new lists old in ``alsoKnownAs``."""

    TYPE: ClassVar[str] = "Move"


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(Activity):
    """``Join`` a group or event (Mobilizon membership requests)."""

    TYPE: ClassVar[str] = "Join"


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave(Activity):
    """``Leave`` a group or event."""

    TYPE: ClassVar[str] = "Leave"


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Activity):
    """``Add`` ``object`` to the collection ``target`` (Lemmy featured posts and moderators)."""

    TYPE: ClassVar[str] = "Add"


@dataclass(frozen=True, slots=True, kw_only=True)
class Remove(Activity):
    """``Remove`` ``object`` from ``target``; Lemmy's moderator removals (``summary`` = the reason)."""

    TYPE: ClassVar[str] = "Remove"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownActivity(Activity):
    """An activity of a type we do not model (``EmojiReact``, ``Read``, ...); ``type`` says which.

    It goes through every inbox check like the others, and :func:`federation.inbox.dispatch`
    ignores it unless a handler was registered for :class:`UnknownActivity`.
    """

    unknown_type: str

    @property
    def type(self) -> str:
        """The type name as sent."""
        return self.unknown_type


EmbeddedValue = Content | Tombstone | Member | RemoteActor | Activity
"""What an :class:`ObjectRef` may carry: content, a tombstone, a Mobilizon membership, an actor
(``Update{Person}``; its keys are never trusted, case 8) or another activity (``Undo{Follow}``,
``Accept{Follow}``, Lemmy's ``Announce{Create{Page}}``)."""

ACTIVITY_CLASSES: Final[dict[str, type[Activity]]] = {
    cls.TYPE: cls
    for cls in (
        Create,
        Update,
        Delete,
        Follow,
        Accept,
        Reject,
        Undo,
        Announce,
        Like,
        Block,
        Flag,
        Move,
        Join,
        Leave,
        Add,
        Remove,
    )
}
"""Type name → class for every activity type we model."""
