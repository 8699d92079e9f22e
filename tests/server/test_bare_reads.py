"""Statements through the bare driver (server/db/queries/bare.py) in a session's transaction."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import make_url, select

from federation.types import utc_now
from server.db import queue
from server.db.engine import create_engine
from server.db.models import Activity, Actor, Job
from server.db.queries import bare, delivery
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


def _sqlite_path(node: Node) -> str | None:
    url = make_url(node.settings.database.url)
    return url.database if url.get_backend_name() == "sqlite" else None


def _write_lock_free(path: str) -> bool:
    """Whether another connection can take SQLite's write lock at once (no busy wait)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


async def test_a_write_that_commits_holds_sqlite_s_write_lock_only_while_it_runs(node: Node) -> None:
    """Decision 108: ``commit=True`` sends what ``later`` left, the statement and the commit in one
    hand-off: once it returns, another process can write at once, although the session is still
    open; nothing may be written in that transaction after it. On PostgreSQL the session commits."""
    group_iri = await node.create_association("demo")
    path = _sqlite_path(node)
    upsert = (
        "INSERT INTO peer_hosts (host, breaker, recent_failures, failing_days, unavailable, updated_at)"
        " VALUES (?, 'closed', 0, 0, FALSE, ?) ON CONFLICT (host) DO NOTHING"
    )
    async with node.sessions.begin() as session:
        bare.later(session, upsert, ["left.example", utc_now()])
        summary = "UPDATE actors SET summary = ? WHERE iri = ? RETURNING summary"
        assert await bare.write(session, summary, ["s", group_iri], commit=True) == [("s",)]
        if path is not None:
            assert _write_lock_free(path)  # committed: the lock is not held across the session's end
            reader = sqlite3.connect(path)
            try:
                assert reader.execute("SELECT host FROM peer_hosts").fetchall() == [("left.example",)]
            finally:
                reader.close()
            with pytest.raises(ValueError, match="committed"):
                await bare.write(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Again", group_iri])
            with pytest.raises(ValueError, match="committed"):
                bare.later(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Again", group_iri])
    async with node.sessions() as session:
        assert await bare.fetch(session, "SELECT summary FROM actors WHERE iri = ?", [group_iri]) == [("s",)]
        assert await bare.fetch(session, "SELECT host FROM peer_hosts", []) == [("left.example",)]


async def test_without_a_commit_the_write_lock_stays_held_until_the_session_commits(node: Node) -> None:
    """The other side of the test above: what decision 108 changes."""
    group_iri = await node.create_association("demo")
    path = _sqlite_path(node)
    if path is None:
        pytest.skip("SQLite's write lock")
    async with node.sessions.begin() as session:
        await bare.write(session, "UPDATE actors SET name = ? WHERE iri = ?", ["Renamed", group_iri])
        assert not _write_lock_free(path)
    assert _write_lock_free(path)


async def test_a_returning_write_left_for_later_gives_its_rows_once_sent(node: Node) -> None:
    """SQLite: a lane's completion of its jobs (``UPDATE … RETURNING``) rides on its claim's hand-off;
    on PostgreSQL a ``WITH`` cannot give its rows back, and ``later`` refuses it."""
    group_iri = await node.create_association("demo")
    returning = "UPDATE actors SET name = ? WHERE iri = ? RETURNING name"
    async with node.sessions.begin() as session:
        returned = bare.Returned()
        if bare.on_postgresql(session):
            with pytest.raises(ValueError, match="SQLite"):
                bare.later(session, returning, ["Renamed", group_iri], into=returned)
            return
        with pytest.raises(ValueError, match="RETURNING"):
            bare.later(session, returning, ["Renamed", group_iri])  # rows with nowhere to go
        bare.later(session, returning, ["Renamed", group_iri], into=returned)
        with pytest.raises(RuntimeError, match="not sent"):
            _ = returned.rows
        await bare.send_later(session, commit=True)
        assert returned.rows == [("Renamed",)]


async def test_a_fan_out_page_is_planned_and_committed_in_one_hand_off(node: Node) -> None:
    """Decision 108: a page's deliveries and their jobs; a page planned again adds nothing. On SQLite
    the page holds the write lock only while it runs."""
    group_iri = await node.create_association("demo")
    path = _sqlite_path(node)
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        activity = Activity(
            iri=f"{group_iri}/activities/1",
            actor_id=group.id,
            type="Create",
            document={},
            visibility="public",
            published=utc_now(),
        )
        session.add(activity)
    targets = [(f"https://h{i % 3}.example/users/u{i}/inbox", f"h{i % 3}.example") for i in range(7)]
    # Due tomorrow: the node's own worker must not claim these jobs and look the hosts up.
    now = utc_now() + timedelta(days=1)
    for attempt in range(2):
        async with node.sessions.begin() as session:
            ids = await delivery.plan_deliveries(
                session, activity.id, targets, kind="deliver", priority=5, max_attempts=3, now=now
            )
            if path is not None:
                assert _write_lock_free(path)
        assert len(ids) == (7 if attempt == 0 else 0)
    async with node.sessions() as session:
        rows = await bare.fetch(
            session, "SELECT id, inbox_iri, host, state FROM deliveries WHERE activity_id = ?", [activity.id]
        )
        jobs = (await session.execute(select(Job).where(Job.kind == "deliver"))).scalars().all()
    assert sorted((inbox, host, state) for _, inbox, host, state in rows) == sorted(
        (inbox, host, "pending") for inbox, host in targets
    )
    assert sorted((j.payload["delivery_id"], j.dedup_key) for j in jobs) == sorted(
        (i, f"deliver:{i}") for i, _, _, _ in rows
    )
    assert {(j.priority, j.max_attempts, j.state, j.attempts) for j in jobs} == {(5, 3, "queued", 0)}
    assert all(j.run_at == now and j.created_at == now for j in jobs)


async def test_an_advisory_turn_holds_its_lock_for_its_block_and_never_longer(node: Node) -> None:
    """Decision 110: on PostgreSQL ``advisory_turn`` holds a transaction-level advisory lock: outside
    the session's transaction for its block only, released when the block ends even when it
    raises (no pooled connection may keep it, or every later claim would wait); inside the
    session's transaction until that ends. On SQLite it takes nothing."""
    key = 2026_12_08
    other = create_engine(node.settings.database)
    try:
        async with other.connect() as connection:
            probe = (await connection.get_raw_connection()).driver_connection
            assert probe is not None
            postgresql = connection.dialect.name == "postgresql"

            async def free() -> bool:
                if not postgresql:
                    return True
                if not await probe.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    return False
                await probe.execute("SELECT pg_advisory_unlock($1)", key)
                return True

            async with node.sessions() as session:
                with pytest.raises(RuntimeError):
                    async with bare.advisory_turn(session, key):
                        assert await free() is not postgresql  # held meanwhile
                        raise RuntimeError("the block fails")
                assert await free()
                async with bare.advisory_turn(session, key):
                    pass
                assert await free()
            async with node.sessions.begin() as session:
                await session.execute(select(Job.id).limit(1))  # the session's transaction has begun
                async with bare.advisory_turn(session, key):
                    pass
                assert await free() is not postgresql  # held until the transaction ends
            assert await free()
    finally:
        await other.dispose()
