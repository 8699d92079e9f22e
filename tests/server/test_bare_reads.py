"""Statements through the bare driver (server/db/queries/bare.py) in a session's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from federation.types import utc_now
from server.db import queue
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


SUMMARY = "UPDATE actors SET summary = ? WHERE iri = ? RETURNING id"


async def test_writes_left_for_the_next_write_go_with_it_and_commit_or_fail_with_it(node: Node) -> None:
    """Decision 104: the inbox lane's marks travel with the completion of their jobs. On PostgreSQL
    the bare driver's statements run outside SQLAlchemy's transaction, each its own: sent apart, a
    mark would stay when its completion fails."""
    first, second, third = [await node.create_association(name) for name in ("one", "two", "three")]
    async with node.sessions.begin() as session:
        bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Left", first])
        bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Also", second])
        assert len(await bare.write(session, SUMMARY, ["Sent", third])) == 1
    read = "SELECT name, summary FROM actors WHERE iri = ?"
    async with node.sessions() as session:
        assert [(await bare.fetch(session, read, [iri]))[0] for iri in (first, second)] == [
            ("Left", ""),
            ("Also", ""),
        ]
        assert (await bare.fetch(session, read, [third]))[0][1] == "Sent"
    with pytest.raises(Exception, match=r"(?i)null"):
        async with node.sessions.begin() as session:
            bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Never", first])
            await bare.write(session, "UPDATE actors SET iri = NULL WHERE iri = ? RETURNING id", [third])
    async with node.sessions() as session:
        assert await bare.fetch(session, NAME, [first]) == [("Left",)]


async def test_a_write_left_and_never_sent_fails_the_commit(node: Node) -> None:
    group_iri = await node.create_association("demo")
    async with node.sessions() as session:
        before = await bare.fetch(session, NAME, [group_iri])
    with pytest.raises(RuntimeError, match="never sent"):
        async with node.sessions.begin() as session:
            bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Lost", group_iri])
    async with node.sessions() as session:
        assert await bare.fetch(session, NAME, [group_iri]) == before
        with pytest.raises(ValueError, match="without results"):
            bare.later(session, SUMMARY, ["x", group_iri])
        bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Unseen", group_iri])
        with pytest.raises(ValueError, match=r"bare\.later"):  # a read would not see it
            await bare.fetch(session, NAME, [group_iri])


async def test_an_insert_may_be_left_and_writes_left_are_sent_alone_when_no_job_is_done(node: Node) -> None:
    """Decision 106: the delivery lane leaves its hosts' upsert (an ``INSERT``) with its rows; a batch
    whose jobs are all retried completes none, and ``complete_many`` sends what was left alone."""
    group_iri = await node.create_association("demo")
    upsert = (
        "INSERT INTO peer_hosts (host, breaker, recent_failures, failing_days, unavailable, updated_at)"
        " VALUES (?, 'closed', 0, 0, FALSE, ?) ON CONFLICT (host) DO NOTHING"
    )
    async with node.sessions.begin() as session:
        bare.later(session, upsert, ["left.example", utc_now()])
        bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Left", group_iri])
        assert await queue.complete_many(session, [], worker_id="w", now=utc_now()) == set()
    async with node.sessions() as session:
        assert await bare.fetch(session, "SELECT host FROM peer_hosts", []) == [("left.example",)]
        assert await bare.fetch(session, NAME, [group_iri]) == [("Left",)]
        with pytest.raises(ValueError, match="without results"):
            bare.later(session, upsert + " RETURNING host", ["x.example", utc_now()])
