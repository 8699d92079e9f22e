"""The worker's inbox lane: stored activities claimed, loaded and marked in batches.

What the lane promises beyond one job per activity: one actor's activities run one at a time,
in the order they arrived, while other actors' run alongside; a handler that fails leaves its
row queued and its job to be retried without holding back the others; a row that an earlier
run already processed is not processed again; every row finished is marked in the transaction
that completes its job.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.inbox import InboundActivity, InboxRouter
from federation.types import AS_PUBLIC, utc_now
from federation.vocab.activities import Create
from server.db import queue
from server.db.models import InboxActivity, Job
from server.jobs import tasks
from server.jobs.tasks import default_registry
from server.jobs.worker import Worker
from server.services.federation import Federation
from server.services.inbox.process import PROCESS_INBOX
from tests.support.nodes import Node, running_node, wait_until


class Recorder:
    """A router whose Create handler records the order and the overlap of the runs."""

    def __init__(self) -> None:
        self.router: InboxRouter[Federation] = InboxRouter()
        self.ran: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.failing: set[str] = set()
        self.hold: set[str] = set()  # activities whose handler waits for release()
        self._released = asyncio.Event()
        self.router.on(Create)(self.on_create)

    def release(self) -> None:
        self._released.set()

    async def on_create(self, fed: Federation, create: Create, inbound: InboundActivity) -> None:
        actor = str(create.actor)
        self.in_flight[actor] += 1
        self.peak[actor] = max(self.peak[actor], self.in_flight[actor])
        self.peak_total = max(self.peak_total, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(0.02)
            if create.id in self.hold:
                await asyncio.wait_for(self._released.wait(), 20)
            if create.id in self.failing:
                raise RuntimeError("handler failed")
            self.ran.append(str(create.id))
        finally:
            self.in_flight[actor] -= 1


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """A node without its in-process worker: each test runs the worker it needs."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    spy = Recorder()
    monkeypatch.setattr(tasks, "router", spy.router)
    return spy


def _create(host: str, user: str, n: int) -> dict[str, Any]:
    actor = f"https://{host}/users/{user}"
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor}/activities/{n}",
        "type": "Create",
        "actor": actor,
        "to": [AS_PUBLIC],
        "object": {
            "id": f"{actor}/notes/{n}",
            "type": "Note",
            "attributedTo": actor,
            "to": [AS_PUBLIC],
            "content": f"<p>{n}</p>",
        },
    }


async def _store(node: Node, documents: list[dict[str, Any]]) -> list[int]:
    """Store activities as the inbox does (row and ``process_inbox`` job), in this order."""
    now = utc_now()
    ids: list[int] = []
    async with node.sessions.begin() as session:
        for doc in documents:
            row = InboxActivity(
                iri=doc["id"],
                actor_iri=doc["actor"],
                type=doc["type"],
                object_iri=doc["object"]["id"],
                signer_key_iri=f"{doc['actor']}#main-key",
                document=doc,
                state="queued",
                received_at=now,
            )
            session.add(row)
            await session.flush()
            ids.append(row.id)
        await queue.enqueue_many(
            session,
            [queue.NewJob(PROCESS_INBOX, {"inbox_activity_id": i}, dedup_key=f"inbox:{i}") for i in ids],
            now=now,
        )
    return ids


async def _states(node: Node) -> dict[str, str]:
    async with node.sessions() as session:
        rows = await session.execute(select(InboxActivity.iri, InboxActivity.state))
        return {iri: state for iri, state in rows.all()}


async def _jobs(node: Node) -> dict[str, int]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(Job.state, func.count()).where(Job.kind == PROCESS_INBOX).group_by(Job.state)
        )
        return {state: int(n) for state, n in rows.all()}


async def _run_worker_until(node: Node, done: Any, what: str) -> None:
    worker = Worker(
        node.fed.node, default_registry(node.fed), concurrency=8, poll_interval_s=0.05, shutdown_timeout_s=2.0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_until(done, what=what)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_one_actors_activities_run_one_at_a_time_in_arrival_order(
    quiet_node: Node, recorder: Recorder
) -> None:
    # Given five activities from each of three actors, interleaved as they arrived
    actors = [("a.example", "ann"), ("b.example", "bob"), ("c.example", "cat")]
    docs = [_create(host, user, n) for n in range(5) for host, user in actors]
    await _store(quiet_node, docs)

    # When the worker runs
    async def all_processed() -> bool:
        return set((await _states(quiet_node)).values()) == {"processed"}

    await _run_worker_until(quiet_node, all_processed, "every activity processed")

    # Then each actor's activities ran one at a time and in order; actors ran alongside
    for host, user in actors:
        mine = [doc["id"] for doc in docs if doc["actor"] == f"https://{host}/users/{user}"]
        assert [iri for iri in recorder.ran if iri in mine] == mine
        assert recorder.peak[f"https://{host}/users/{user}"] == 1
    assert recorder.peak_total > 1
    assert sorted(recorder.ran) == sorted(doc["id"] for doc in docs)
    assert await _jobs(quiet_node) == {"done": len(docs)}


async def test_a_burst_from_one_actor_is_claimed_together_and_run_in_order(
    quiet_node: Node, recorder: Recorder
) -> None:
    # Given 40 activities from one actor (a relay, a Lemmy community), the first one slow
    docs = [_create("relay.example", "community", n) for n in range(40)]
    recorder.hold = {docs[0]["id"]}
    await _store(quiet_node, docs)
    worker = Worker(
        quiet_node.fed.node,
        default_registry(quiet_node.fed),
        concurrency=8,
        poll_interval_s=0.05,
        shutdown_timeout_s=2.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # When the worker runs, several of them are claimed at once while the first one runs
        async def several_running() -> bool:
            return (await _jobs(quiet_node)).get("running", 0) > 1

        await wait_until(several_running, what="several of the actor's jobs claimed together")
        assert recorder.ran == []  # the others wait for the first one
        recorder.release()

        async def all_processed() -> bool:
            return set((await _states(quiet_node)).values()) == {"processed"}

        await wait_until(all_processed, what="every activity processed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # Then they ran one at a time, in the order they arrived
    assert recorder.ran == [doc["id"] for doc in docs]
    assert recorder.peak["https://relay.example/users/community"] == 1
    assert await _jobs(quiet_node) == {"done": len(docs)}


async def test_a_failing_handler_keeps_its_row_queued_and_holds_back_no_one(
    quiet_node: Node, recorder: Recorder
) -> None:
    docs = [_create("a.example", "ann", n) for n in range(3)] + [_create("b.example", "bob", 0)]
    recorder.failing = {docs[1]["id"]}
    await _store(quiet_node, docs)

    async def others_done() -> bool:
        states = await _states(quiet_node)
        return all(states[d["id"]] == "processed" for d in docs if d["id"] not in recorder.failing)

    await _run_worker_until(quiet_node, others_done, "the other activities processed")
    states = await _states(quiet_node)
    assert states[docs[1]["id"]] == "queued"
    async with quiet_node.sessions() as session:
        failed = (await session.execute(select(Job).where(Job.state == "queued"))).scalars().all()
    assert len(failed) == 1
    assert failed[0].payload == {"inbox_activity_id": failed[0].payload["inbox_activity_id"]}
    assert failed[0].attempts == 1 and "handler failed" in (failed[0].last_error or "")
    assert failed[0].run_at > utc_now()  # retried later, under the retry policy


async def test_a_row_already_processed_is_not_processed_again(quiet_node: Node, recorder: Recorder) -> None:
    # Given a row an earlier run processed, whose job's completion was lost (a crash between)
    docs = [_create("a.example", "ann", 0), _create("a.example", "ann", 1)]
    ids = await _store(quiet_node, docs)
    async with quiet_node.sessions.begin() as session:
        row = await session.get(InboxActivity, ids[0])
        assert row is not None
        row.state, row.processed_at = "processed", utc_now()

    # When the worker runs both jobs
    async def jobs_done() -> bool:
        return await _jobs(quiet_node) == {"done": 2}

    await _run_worker_until(quiet_node, jobs_done, "both jobs done")

    # Then only the other row's handler ran
    assert recorder.ran == [docs[1]["id"]]
    assert set((await _states(quiet_node)).values()) == {"processed"}


async def test_a_stored_document_that_no_longer_parses_fails_alone(
    quiet_node: Node, recorder: Recorder
) -> None:
    broken = _create("a.example", "ann", 0)
    docs = [broken, _create("b.example", "bob", 0)]
    ids = await _store(quiet_node, docs)
    async with quiet_node.sessions.begin() as session:
        row = await session.get(InboxActivity, ids[0])
        assert row is not None
        row.document = {"id": broken["id"], "type": "Create"}  # no actor: does not parse

    async def bob_done() -> bool:
        return (await _states(quiet_node))[docs[1]["id"]] == "processed"

    await _run_worker_until(quiet_node, bob_done, "the other activity processed")
    assert (await _states(quiet_node))[broken["id"]] == "queued"
    assert recorder.ran == [docs[1]["id"]]
