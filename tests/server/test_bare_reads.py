"""Reads through the bare driver (server/db/queries/bare.py): the session's transaction, on both engines."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db.models import Actor
from server.db.queries import bare
from tests.support.nodes import Node

NAME = "SELECT name FROM actors WHERE iri = ?"


async def test_only_reads_are_run(node: Node) -> None:
    """On SQLite the statements run in the event loop's thread, where a write could wait for a lock."""
    async with node.sessions() as session:
        with pytest.raises(ValueError, match="reads only"):
            await bare.fetch(session, "DELETE FROM actors", [])


async def test_a_read_sees_its_transaction_and_the_next_one_after_a_commit(node: Node) -> None:
    group_iri = await node.create_association("demo")
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        group.name = "Renamed"  # pending: flushed before the read, as the ORM's autoflush does
        assert await bare.fetch(session, NAME, [group_iri]) == [("Renamed",)]
        assert await bare.fetch(session, NAME, [group_iri]) == [("Renamed",)]  # the kept connection
        await session.commit()
        async with node.sessions.begin() as other:
            changed = await other.scalar(select(Actor).where(Actor.iri == group_iri))
            assert changed is not None
            changed.name = "Again"
        # A new transaction, and the connection asked for again: it sees the other session's commit.
        assert await bare.fetch(session, NAME, [group_iri]) == [("Again",)]
        await session.rollback()
        assert await bare.fetch(session, NAME, [group_iri]) == [("Again",)]
