"""Reads of stored objects (``objects``) on hot paths."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.queries import bare


async def documents_by_iri(session: AsyncSession, iris: Collection[str]) -> dict[str, Any]:
    """The stored document of each of ``iris`` that we hold (one statement through the bare driver,
    decision 84); IRIs we do not hold are absent."""
    if not iris:
        return {}
    ordered = sorted(iris)
    rows = await bare.fetch(
        session, f"SELECT iri, document FROM objects WHERE iri IN ({bare.marks(len(ordered))})", ordered
    )
    return {iri: bare.document(document) for iri, document in rows}


_HOST_UNDER = (
    "(a.host = d.domain OR a.host LIKE '%.' || d.domain OR a.host LIKE d.domain || ':%'"
    " OR a.host LIKE '%.' || d.domain || ':%')"
)
"""``blocks._host_under`` in SQL: the actor's host is the blocked domain or under it, with or
without a port (LIKE, as SQLAlchemy's ``.like`` emits it on both engines)."""

_STORING_FACTS = f"""SELECT
 EXISTS (SELECT 1 FROM objects WHERE iri = ?),
 EXISTS (SELECT 1 FROM follows f JOIN actors l ON l.id = f.follower_id
         WHERE f.followed_id = ? AND f.state = 'accepted' AND l.local = ?),
 EXISTS (SELECT 1 FROM actors a JOIN domain_blocks d ON d.severity = 'silence' AND {_HOST_UNDER}
         WHERE a.id = ? AND a.local = ?),
 EXISTS (SELECT 1 FROM actors a JOIN domain_blocks d ON d.reject_media = ? AND {_HOST_UNDER}
         WHERE a.id = ? AND a.local = ?)"""


@dataclass(frozen=True, slots=True)
class StoringFacts:
    """What storing a peer's object needs to know before it writes (``store_object``)."""

    known: bool
    """An object with this IRI is stored already (ours, the author's, or a tombstone)."""
    followed: bool
    """A local actor follows the author (accepted)."""
    silenced: bool
    """The author is a remote actor under a domain blocked with ``silence``."""
    rejects_media: bool
    """The author is a remote actor under a domain blocked with ``reject_media``."""


async def storing_facts(session: AsyncSession, object_iri: str, author_id: int) -> StoringFacts:
    """:class:`StoringFacts` in one statement through the bare driver (decision 89): the same
    conditions as the ORM reads they replace (``is_relevant``'s follow, ``blocks.is_silenced``,
    ``blocks.rejects_media`` and the existing row), one hand-off instead of about sixteen."""
    params = [object_iri, author_id, True, author_id, False, True, author_id, False]
    ((known, followed, silenced, media),) = await bare.fetch(session, _STORING_FACTS, params)
    return StoringFacts(bool(known), bool(followed), bool(silenced), bool(media))
