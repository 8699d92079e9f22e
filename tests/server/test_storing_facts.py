"""What storing a peer's object decides on, read for many runs at once (decision 95).

The inbox lane's runs read the facts of ``store_object`` (object held, author followed here,
author's domain silenced or rejecting media) together, in one statement: every request gets the
same answer its own read would give, on both engines, and a session that has begun (it may hold
rows of its own not yet committed) still reads on its own connection.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Actor, DomainBlock, Follow, RemoteObject
from server.db.queries import objects as object_queries
from server.services.content import remote
from tests.support.nodes import Node

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _remote(handle: str, host: str) -> Actor:
    return Actor(
        iri=f"https://{host}/users/{handle}",
        local=False,
        type="Person",
        handle=handle,
        host=host,
        created_at=NOW,
        updated_at=NOW,
    )


async def _world(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Authors: followed here, on a silenced domain, on a domain whose media are rejected, and
    a plain one; one object of the plain author is held."""
    async with sessions.begin() as session:
        local = await session.scalar(select(Actor).where(Actor.local.is_(True)))
        assert local is not None
        authors = {
            "followed": _remote("ann", "followed.example"),
            "silenced": _remote("bob", "sub.silenced.example"),
            "media": _remote("cat", "media.example:8443"),
            "plain": _remote("dan", "plain.example"),
        }
        session.add_all(authors.values())
        await session.flush()
        session.add(
            Follow(follower_id=local.id, followed_id=authors["followed"].id, state="accepted", created_at=NOW)
        )
        session.add(DomainBlock(domain="silenced.example", severity="silence", created_at=NOW))
        session.add(
            DomainBlock(domain="media.example", severity="suspend", reject_media=True, created_at=NOW)
        )
        session.add(
            RemoteObject(
                iri="https://plain.example/notes/held",
                local=False,
                type="Note",
                kind="post",
                attributed_to_id=authors["plain"].id,
                visibility="public",
                document={},
                published=NOW,
                received_at=NOW,
            )
        )
        return {name: actor.id for name, actor in authors.items()}


async def test_facts_read_together_are_those_each_read_alone(node: Node) -> None:
    ids = await _world(node.sessions)
    asked = [
        ("https://followed.example/notes/1", ids["followed"]),
        ("https://sub.silenced.example/notes/2", ids["silenced"]),
        ("https://media.example:8443/notes/3", ids["media"]),
        ("https://plain.example/notes/held", ids["plain"]),
        ("https://plain.example/notes/new", ids["plain"]),
    ]
    alone = []
    async with node.sessions() as session:
        for iri, author in asked:
            alone.append(await object_queries.storing_facts(session, iri, author))
    assert [tuple(_flags(f)) for f in alone] == [
        (False, True, False, False),
        (False, False, True, False),
        (False, False, False, True),
        (True, False, False, False),
        (False, False, False, False),
    ]

    reader = object_queries.FactsReader(node.sessions)
    together = await asyncio.gather(*(reader.facts(iri, author) for iri, author in asked))
    assert together == alone
    # Requests made while a read is under way go in the next one, with the same answers.
    first = asyncio.ensure_future(reader.facts(*asked[0]))
    await asyncio.sleep(0)
    later = await asyncio.gather(*(reader.facts(iri, author) for iri, author in asked[1:]))
    assert [await first, *later] == alone


def _flags(facts: object_queries.StoringFacts) -> list[bool]:
    return [facts.known, facts.followed, facts.silenced, facts.rejects_media]


async def test_a_session_that_has_begun_reads_on_its_own_connection(node: Node) -> None:
    ids = await _world(node.sessions)
    asked: list[tuple[str, int]] = []

    class Spy(object_queries.FactsReader):
        async def facts(self, object_iri: str, author_id: int) -> Any:
            asked.append((object_iri, author_id))
            return await super().facts(object_iri, author_id)

    reader = Spy(node.sessions)
    with remote.facts_read_together(reader):
        async with node.sessions() as session:
            fresh = await remote._storing_facts(session, "https://plain.example/notes/new", ids["plain"])
        async with node.sessions.begin() as session:
            # An uncommitted row of this session: only its own connection sees it.
            session.add(
                RemoteObject(
                    iri="https://plain.example/notes/mine",
                    local=False,
                    type="Note",
                    kind="post",
                    attributed_to_id=ids["plain"],
                    visibility="public",
                    document={},
                    published=NOW,
                    received_at=NOW,
                )
            )
            mine = await remote._storing_facts(session, "https://plain.example/notes/mine", ids["plain"])
            await session.rollback()
    assert asked == [("https://plain.example/notes/new", ids["plain"])]
    assert (fresh.known, mine.known) == (False, True)
