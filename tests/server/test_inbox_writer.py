"""Group commit of verified inbox activities: batched, acknowledged only once stored, duplicates once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import func, select

from federation.inbox import InboundActivity
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from federation.vocab.parse import parse_activity
from server.appkeys import INBOX_WRITER
from server.db import queue
from server.db.models import Actor, InboxActivity, InboxItem, Job
from server.db.queries.inbox import ProcessingJob, Received, store_received
from tests.support.nodes import Node

ACTOR = "https://peer.example/users/alice"


def inbound(n: int) -> InboundActivity:
    document = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"https://peer.example/activities/{n}",
        "type": "Like",
        "actor": ACTOR,
        "object": "https://peer.example/notes/1",
    }
    signer = VerifiedSigner(Iri(f"{ACTOR}#main-key"), Iri(ACTOR), KeyAlgorithm.RSA_V1_5_SHA256, "cavage")
    return InboundActivity(
        activity=parse_activity(document),
        signer=signer,
        document=document,
        received_at=datetime.now(UTC),
    )


async def _count(node: Node, model: type) -> int:
    return int(await node.scalar(select(func.count()).select_from(model)))


async def test_concurrent_submissions_are_stored_with_their_jobs_and_duplicates_once(node: Node) -> None:
    writer = node.client.server.app[INBOX_WRITER]
    # When 200 activities (each sent twice) arrive at once
    results = await asyncio.gather(*(writer.submit(inbound(n % 100), recipient_id=None) for n in range(200)))
    # Then 100 rows are stored, each with exactly one processing job, and 100 submissions were duplicates
    assert sum(r is not None for r in results) == 100
    assert await _count(node, InboxActivity) == 100
    async with node.sessions() as session:
        jobs = (await session.execute(select(Job.kind, func.count()).group_by(Job.kind))).all()
    assert ("process_inbox", 100) in jobs
    assert await writer.recent.seen(Iri("https://peer.example/activities/7"))


async def test_a_personal_inbox_files_the_activity_for_its_owner_even_when_duplicate(node: Node) -> None:
    writer = node.client.server.app[INBOX_WRITER]
    await node.create_association("demo")
    alice = await node.add_member("alice", "demo")
    owner = int(await node.scalar(select(Actor.id).where(Actor.iri == alice)))
    first = await writer.submit(inbound(1), recipient_id=None)
    again = await writer.submit(inbound(1), recipient_id=owner)  # same activity, now at alice's inbox
    assert first is not None and again is None
    assert await _count(node, InboxItem) == 1
    assert await _count(node, InboxActivity) == 1


async def test_a_failing_row_does_not_fail_the_others(node: Node) -> None:
    """The batch is retried row by row: only the broken submission gets the error."""
    writer = node.client.server.app[INBOX_WRITER]
    good = [writer.submit(inbound(n), recipient_id=None) for n in range(5)]
    broken = writer.submit(inbound(99), recipient_id=10**9)  # no such actor: foreign key violation
    results = await asyncio.gather(*good, broken, return_exceptions=True)
    assert all(isinstance(r, int) for r in results[:5])
    assert isinstance(results[5], Exception)
    assert await _count(node, InboxActivity) == 5


async def test_a_stored_activity_reads_back_as_received_and_its_job_is_claimable(node: Node) -> None:
    """The writer's bare-driver statements store what the ORM reads: document, times, job (decision 94).

    The node's worker may already be processing it: the job is read, not claimed."""
    writer = node.client.server.app[INBOX_WRITER]
    received = inbound(1)
    received.document["big"] = 10**30  # json.loads accepts it; orjson does not encode it
    row_id = await writer.submit(received, recipient_id=None)
    async with node.sessions() as session:
        row = await session.get(InboxActivity, row_id)
        assert row is not None
        assert row.document == received.document
        assert row.received_at == received.received_at
        assert (row.state, row.type, row.actor_iri) == ("queued", "Like", ACTOR)
        assert row.object_iri == "https://peer.example/notes/1"
        # Compared with a bound time as the claim does (as text on SQLite: the format must match).
        job = (
            await session.execute(
                select(Job).where(Job.dedup_key == f"inbox:{row_id}", Job.run_at <= datetime.now(UTC))
            )
        ).scalar_one()
    assert (job.kind, job.payload) == ("process_inbox", {"inbox_activity_id": row_id})
    assert job.priority == queue.Priority.INTERACTIVE
    assert job.max_attempts == queue.DEFAULT_MAX_ATTEMPTS and job.created_at == job.run_at


async def test_a_batch_is_one_hand_off_to_the_sqlite_thread(
    node: Node, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements and commit run together in aiosqlite's thread (decision 101), a filing included."""
    if not database_url.startswith("sqlite"):
        pytest.skip("aiosqlite's thread is SQLite's")
    await node.create_association("demo")
    alice = await node.add_member("alice", "demo")
    owner = int(await node.scalar(select(Actor.id).where(Actor.iri == alice)))
    earlier, new = _received(1), _received(2)
    job = ProcessingJob("process_inbox", priority=queue.Priority.INTERACTIVE, max_attempts=3)
    async with node.sessions() as session:
        await store_received(session, [earlier], filed=[], hosts=[], job=job, now=datetime.now(UTC))
    hand_offs: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self is driver:  # the node's worker may use other connections meanwhile
            hand_offs.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with node.sessions() as session:
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        # A new activity for the shared inbox and, in the same batch, the earlier one for alice's
        created = await store_received(
            session,
            [new, earlier],
            filed=[(earlier.iri, owner)],
            hosts=["peer.example"],
            job=job,
            now=datetime.now(UTC),
        )
    assert list(created) == [new.iri]
    assert hand_offs == ["_store_sqlite_batch"]
    assert await _count(node, InboxItem) == 1
    assert await _count(node, InboxActivity) == 2


def _received(n: int) -> Received:
    activity = inbound(n)
    return Received(
        iri=activity.activity.id,
        actor_iri=ACTOR,
        type="Like",
        object_iri="https://peer.example/notes/1",
        signer_key_iri=activity.signer.key_id,
        document=json.dumps(activity.document),
        received_at=activity.received_at,
    )
