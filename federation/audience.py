"""Who may see an object: classify incoming addressing, and address outgoing activities.

Incoming (:func:`classify`) follows Mastodon's reading (docs/interop.md "Visibility as Mastodon
reads it"), extended with Entraide's members-only level (Mobilizon addresses members-only
content to the group's members collection, docs/interop.md "Group Announce wrapping"). Outgoing
(:func:`address`) produces the ``to``/``cc`` pair that makes Mastodon, Lemmy and Mobilizon
compute the same visibility, and never widens it: members-only and direct never name the
public collection or a followers collection (security cases 40 and 42).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from .types import AS_PUBLIC, PUBLIC_ALIASES, Iri

__all__ = ["PUBLICLY_READABLE", "Visibility", "address", "classify"]


class Visibility(StrEnum):
    """How widely an object may be shown, from widest to narrowest.

    - ``PUBLIC``: listed everywhere (public collection in ``to``);
    - ``UNLISTED``: readable by anyone with the link, not listed (public collection in ``cc``);
    - ``FOLLOWERS``: the author's followers (Mastodon "private");
    - ``MEMBERS``: the group's current members only (Entraide, Mobilizon);
    - ``DIRECT``: only the actors addressed (Mastodon "limited" and "direct").
    """

    PUBLIC = "public"
    UNLISTED = "unlisted"
    FOLLOWERS = "followers"
    MEMBERS = "members"
    DIRECT = "direct"


PUBLICLY_READABLE: Final[frozenset[Visibility]] = frozenset({Visibility.PUBLIC, Visibility.UNLISTED})
"""The levels anyone may read without signing in (served to anonymous readers and caches).

``Visibility`` is a ``StrEnum``, so a stored string tests against this set directly
(``row.visibility in PUBLICLY_READABLE``)."""


def _normalised(iris: Iterable[str]) -> set[str]:
    return {AS_PUBLIC if iri in PUBLIC_ALIASES else iri for iri in iris}


def classify(
    to: Iterable[str],
    cc: Iterable[str],
    *,
    followers_iri: str | None,
    members_iri: str | None = None,
) -> Visibility:
    """Classify an object's addressing, as Mastodon does, plus the members-only level.

    Rules, first match wins:

    1. the public collection in ``to`` → ``PUBLIC``;
    2. the public collection in ``cc`` → ``UNLISTED``;
    3. ``members_iri`` (the group's members collection) in ``to`` or ``cc`` → ``MEMBERS``, even
       when a followers collection is addressed too: the narrower reading wins, so content never
       shows to more people here than its author may have meant (security case 40);
    4. ``followers_iri`` (the author's followers collection) in ``to`` or ``cc`` → ``FOLLOWERS``;
    5. anything else (actors only) → ``DIRECT``.

    The three spellings of the public collection (full IRI, ``as:Public``, ``Public``) are all
    recognised (security case 42). ``followers_iri`` may be ``None`` when the author's
    followers collection is unknown; rule 4 then never applies.

    Guarantees: pure and total (never raises).
    """
    to_set, cc_set = _normalised(to), _normalised(cc)
    if AS_PUBLIC in to_set:
        return Visibility.PUBLIC
    if AS_PUBLIC in cc_set:
        return Visibility.UNLISTED
    addressed = to_set | cc_set
    if members_iri is not None and members_iri in addressed:
        return Visibility.MEMBERS
    if followers_iri is not None and followers_iri in addressed:
        return Visibility.FOLLOWERS
    return Visibility.DIRECT


def _unique(*groups: Iterable[Iri | None]) -> tuple[Iri, ...]:
    return tuple(dict.fromkeys(iri for group in groups for iri in group if iri is not None))


def address(
    visibility: Visibility,
    *,
    actor_followers: Iri,
    group: Iri | None = None,
    group_members: Iri | None = None,
    mentions: Iterable[Iri] = (),
) -> tuple[tuple[Iri, ...], tuple[Iri, ...]]:
    """Return ``(to, cc)`` for an outgoing object or activity of the given visibility.

    ``actor_followers`` is the sending actor's followers collection; ``group`` is the association
    the content belongs to (FEP-1b12 puts it in the addressing so that the group relays it);
    ``group_members`` is its members collection; ``mentions`` are actors mentioned in the
    content (they must also appear as ``Mention`` tags for Mastodon to notify them).

    ===========  =====================================  ==========================================
    visibility   to                                     cc
    ===========  =====================================  ==========================================
    PUBLIC       Public                                 followers, group, mentions
    UNLISTED     followers                              Public, group, mentions
    FOLLOWERS    followers                              group, mentions
    MEMBERS      group members collection               group, mentions
    DIRECT       mentions                               (nothing)
    ===========  =====================================  ==========================================

    Guarantees: no duplicates, order as in the table; only PUBLIC and UNLISTED name the public
    collection; MEMBERS never names a followers collection (Mobilizon's members-only addressing,
    docs/interop.md "Group Announce wrapping"), so a peer cannot classify it wider than members;
    DIRECT names nobody but the mentioned actors, never the public collection even when it is
    among them (security case 55).
    Mentioned actors in a MEMBERS object receive it: the caller mentions members only (the
    fan-out delivers members-only content to current members anyway).

    Raises:
        ValueError: ``MEMBERS`` without ``group_members``, or ``DIRECT`` without any mention.
    """
    mentioned = tuple(mentions)
    match visibility:
        case Visibility.PUBLIC:
            return (AS_PUBLIC,), _unique((actor_followers, group), mentioned)
        case Visibility.UNLISTED:
            return (actor_followers,), _unique((AS_PUBLIC, group), mentioned)
        case Visibility.FOLLOWERS:
            return (actor_followers,), _unique((group,), mentioned)
        case Visibility.MEMBERS:
            if group_members is None:
                raise ValueError("members-only addressing needs the group's members collection")
            return (group_members,), _unique((group,), mentioned)
        case Visibility.DIRECT:
            actors = [iri for iri in mentioned if iri not in PUBLIC_ALIASES]
            if not actors:
                raise ValueError("direct addressing needs at least one mentioned actor")
            return _unique(actors), ()
    raise ValueError(f"unknown visibility {visibility!r}")  # pragma: no cover
