"""Reads of stored objects (``objects``) on hot paths."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.queries import bare


async def documents_by_iri(session: bare.Source, iris: Collection[str]) -> dict[str, Any]:
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

_FACTS = f"""
 EXISTS (SELECT 1 FROM objects WHERE iri = {{iri}}),
 EXISTS (SELECT 1 FROM follows f JOIN actors l ON l.id = f.follower_id
         WHERE f.followed_id = {{author}} AND f.state = 'accepted' AND l.local = ?),
 EXISTS (SELECT 1 FROM actors a JOIN domain_blocks d ON d.severity = 'silence' AND {_HOST_UNDER}
         WHERE a.id = {{author}} AND a.local = ?),
 EXISTS (SELECT 1 FROM actors a JOIN domain_blocks d ON d.reject_media = ? AND {_HOST_UNDER}
         WHERE a.id = {{author}} AND a.local = ?)"""
"""The four facts of :class:`StoringFacts` for one object IRI and author id (``{iri}``, ``{author}``)."""

_STORING_FACTS = "SELECT" + _FACTS.format(iri="?", author="?")

_MANY_FACTS = (
    "SELECT v.column1," + _FACTS.format(iri="v.column2", author="v.column3") + " FROM (VALUES {rows}) AS v"
)
"""The facts of several (object, author) pairs in one statement (typed for PostgreSQL, whose
``VALUES`` would otherwise read the parameters as text; both engines name its columns
``column1``…)."""
_MANY_ROW = "(CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS BIGINT))"
_MANY_FACTS_POSTGRESQL = (
    "SELECT v.column1,"
    + _FACTS.format(iri="v.column2", author="v.column3")
    + " FROM unnest(CAST(? AS INTEGER[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]))"
    + " AS v(column1, column2, column3)"
)
""":data:`_MANY_FACTS` on PostgreSQL: one statement text whatever the number of pairs, prepared once
by asyncpg (decision 102; see :func:`server.db.queries.bare.any_of`)."""


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


class FactsReader:
    """:func:`storing_facts` for concurrent runs, read together: the requests made while a read is
    under way, or in the same turn of the event loop, go in one statement on a session of its own
    (decision 95). The inbox lane runs several handlers at once, and a ``Create`` nobody here
    follows costs one such read and nothing else: each was a session, a hand-off to SQLite's
    thread (or, on PostgreSQL, a checkout ping, the read and a reset) of its own.

    Each request is still read after it is made, from committed state, as a read on the caller's
    own session would be when that session has not begun (:func:`server.services.content.remote.
    store_object_in` asks only then: a session that wrote would see its own uncommitted rows).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._waiting: list[tuple[str, int, asyncio.Future[StoringFacts]]] = []
        self._reading: asyncio.Task[None] | None = None

    async def facts(self, object_iri: str, author_id: int) -> StoringFacts:
        """The facts of ``object_iri`` by ``author_id``, read with the requests made meanwhile."""
        future: asyncio.Future[StoringFacts] = asyncio.get_running_loop().create_future()
        self._waiting.append((object_iri, author_id, future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_all())
        return await future

    async def _read_all(self) -> None:
        batch: list[tuple[str, int, asyncio.Future[StoringFacts]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    found = await self._read(batch)
                except Exception as exc:  # every request of the batch fails, as its own read would
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for n, (_, _, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(found[n])
        except asyncio.CancelledError:
            for _, _, future in (*batch, *self._waiting):
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._reading = None

    async def _read(self, batch: list[tuple[str, int, asyncio.Future[StoringFacts]]]) -> list[StoringFacts]:
        async with self._sessions() as session:
            if len(batch) == 1:
                ((object_iri, author_id, _),) = batch
                return [await storing_facts(session, object_iri, author_id)]
            params: list[Any]
            if bare.on_postgresql(session):
                sql = _MANY_FACTS_POSTGRESQL
                params = [list(range(len(batch))), [iri for iri, _, _ in batch], [a for _, a, _ in batch]]
            else:
                sql = _MANY_FACTS.format(rows=", ".join([_MANY_ROW] * len(batch)))
                params = [value for n, (iri, author, _) in enumerate(batch) for value in (n, iri, author)]
            rows = await bare.fetch(session, sql, [True, False, True, False, *params])  # the pairs come last
        found = {int(n): StoringFacts(bool(k), bool(f), bool(s), bool(m)) for n, k, f, s, m in rows}
        return [found[n] for n in range(len(batch))]
