"""The worker's inbox lane: stored activities claimed, loaded and marked in batches.

What the lane promises beyond one job per activity: one actor's activities on one object run one
at a time, in the order they arrived (an Update or a Delete never overtakes the Create of its
object), a Follow or an Undo after everything the actor sent before it, while the actor's
activities on other objects, and other actors', run alongside (decision 69); a handler that fails leaves its
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
from federation.vocab.activities import Activity, Create, Delete, Follow, Update
from server.db import queue
from server.db.models import InboxActivity, Job
from server.jobs import tasks
from server.jobs.tasks import default_registry
from server.jobs.worker import Worker
from server.services.federation import Federation
from server.services.inbox.process import PROCESS_INBOX, ordering_key
from tests.support.nodes import Node, running_node, wait_until


class Recorder:
    """A router whose handlers (Create, Update, Delete, Follow) record the order and the
    overlap of the runs, per actor and per object."""

    def __init__(self) -> None:
        self.router: InboxRouter[Federation] = InboxRouter()
        self.ran: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.failing: set[str] = set()
        self.hold: set[str] = set()  # activities whose handler waits for release()
        self._released = asyncio.Event()
        self.object_in_flight: Counter[str] = Counter()
        self.object_peak: Counter[str] = Counter()
        for kind in (Create, Update, Delete, Follow):
            self.router.on(kind)(self.on_activity)

    def release(self) -> None:
        self._released.set()

    async def on_activity(self, fed: Federation, activity: Activity, inbound: InboundActivity) -> None:
        actor = str(activity.actor)
        target = str(getattr(activity.object, "id", None) or activity.object)
        self.in_flight[actor] += 1
        self.object_in_flight[target] += 1
        self.peak[actor] = max(self.peak[actor], self.in_flight[actor])
        self.object_peak[target] = max(self.object_peak[target], self.object_in_flight[target])
        self.peak_total = max(self.peak_total, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(0.02)
            if activity.id in self.hold:
                await asyncio.wait_for(self._released.wait(), 20)
            if activity.id in self.failing:
                raise RuntimeError("handler failed")
            self.ran.append(str(activity.id))
        finally:
            self.in_flight[actor] -= 1
            self.object_in_flight[target] -= 1


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


def _update(host: str, user: str, n: int, version: int) -> dict[str, Any]:
    doc = _create(host, user, n)
    doc["id"] = f"{doc['actor']}/activities/{n}/update/{version}"
    doc["type"] = "Update"
    doc["object"]["content"] = f"<p>{n}, v{version}</p>"
    return doc


def _delete(host: str, user: str, n: int) -> dict[str, Any]:
    doc = _create(host, user, n)
    doc["id"] = f"{doc['actor']}/activities/{n}/delete"
    doc["type"] = "Delete"
    doc["object"] = {"id": doc["object"]["id"], "type": "Tombstone"}
    return doc


def _follow(host: str, user: str, n: int) -> dict[str, Any]:
    actor = f"https://{host}/users/{user}"
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor}/follows/{n}",
        "type": "Follow",
        "actor": actor,
        "object": {"id": "https://node.example/actors/demo", "type": "Group"},
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
                object_iri=doc["object"]["id"] if isinstance(doc["object"], dict) else doc["object"],
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


async def test_one_actors_activities_on_one_object_run_in_arrival_order_others_alongside(
    quiet_node: Node, recorder: Recorder
) -> None:
    # Given three actors who each create three notes, update them and delete one, interleaved as
    # they arrived; the Create of ann's first note is slow
    actors = [("a.example", "ann"), ("b.example", "bob"), ("c.example", "cat")]
    docs: list[dict[str, Any]] = []
    for host, user in actors:
        docs += [_create(host, user, 0), _create(host, user, 1), _update(host, user, 0, 1)]
        docs += [_create(host, user, 2), _delete(host, user, 0), _update(host, user, 1, 1)]
        docs += [_update(host, user, 2, 1), _update(host, user, 2, 2)]
    recorder.hold = {_create("a.example", "ann", 0)["id"]}
    await _store(quiet_node, docs)
    worker = Worker(
        quiet_node.fed.node, default_registry(quiet_node.fed), concurrency=8, poll_interval_s=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # When the worker runs: the other activities are processed while that Create is held
        # (the runs waiting for it hold lane slots: keep them under the lane's 8), and nothing
        # about that note runs before it
        first = {d["id"] for d in docs if d["object"]["id"] == "https://a.example/users/ann/notes/0"}

        async def others_processed() -> bool:
            states = await _states(quiet_node)
            return all(states[d["id"]] == "processed" for d in docs if d["id"] not in first)

        await wait_until(others_processed, what="the activities on the other notes processed")
        assert not first & set(recorder.ran)
        recorder.release()

        async def all_processed() -> bool:
            return set((await _states(quiet_node)).values()) == {"processed"}

        await wait_until(all_processed, what="every activity processed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    # Then on each object the activities ran one at a time and in the order they arrived
    for note in {d["object"]["id"] for d in docs}:
        mine = [d["id"] for d in docs if d["object"]["id"] == note]
        assert [iri for iri in recorder.ran if iri in mine] == mine
        assert recorder.object_peak[note] == 1
    # and one actor's activities on different objects ran alongside
    assert max(recorder.peak.values()) > 1
    assert sorted(recorder.ran) == sorted(doc["id"] for doc in docs)
    assert await _jobs(quiet_node) == {"done": len(docs)}


async def test_a_burst_from_one_actor_is_claimed_together_and_run_alongside(
    quiet_node: Node, recorder: Recorder
) -> None:
    # Given 40 new posts from one actor (a relay, a Lemmy community), the first one slow
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
        # When the worker runs, the others are processed, several at once, while the first one runs
        async def others_processed() -> bool:
            states = await _states(quiet_node)
            return all(states[d["id"]] == "processed" for d in docs[1:])

        await wait_until(others_processed, what="the actor's other posts processed")
        assert docs[0]["id"] not in recorder.ran
        recorder.release()

        async def all_processed() -> bool:
            return set((await _states(quiet_node)).values()) == {"processed"}

        await wait_until(all_processed, what="every activity processed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # Then they ran alongside (the lane was full of them), each once
    assert recorder.peak["https://relay.example/users/community"] > 1
    assert sorted(recorder.ran) == sorted(doc["id"] for doc in docs)
    assert await _jobs(quiet_node) == {"done": len(docs)}


async def test_a_follow_runs_after_everything_its_actor_sent_before_and_before_what_follows(
    quiet_node: Node, recorder: Recorder
) -> None:
    # Given a slow post, another post, a Follow, then a third post, from one actor
    docs = [_create("a.example", "ann", 0), _create("a.example", "ann", 1), _follow("a.example", "ann", 0)]
    docs.append(_create("a.example", "ann", 2))
    recorder.hold = {docs[0]["id"]}
    await _store(quiet_node, docs)
    worker = Worker(
        quiet_node.fed.node, default_registry(quiet_node.fed), concurrency=8, poll_interval_s=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # When the worker runs: the second post goes alongside the first, the Follow waits for
        # both, and the post after the Follow waits for it
        async def second_processed() -> bool:
            return (await _states(quiet_node))[docs[1]["id"]] == "processed"

        await wait_until(second_processed, what="the second post processed")
        await asyncio.sleep(0.3)
        assert recorder.ran == [docs[1]["id"]]
        recorder.release()

        async def all_processed() -> bool:
            return set((await _states(quiet_node)).values()) == {"processed"}

        await wait_until(all_processed, what="every activity processed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert recorder.ran == [docs[1]["id"], docs[0]["id"], docs[2]["id"], docs[3]["id"]]


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


@pytest.mark.parametrize(
    ("document", "key"),
    [
        (_create("a.example", "ann", 1), "https://a.example/users/ann/notes/1"),
        (_update("a.example", "ann", 1, 2), "https://a.example/users/ann/notes/1"),
        (_delete("a.example", "ann", 1), "https://a.example/users/ann/notes/1"),
        ({"type": "Announce", "object": "https://b.example/notes/9"}, "https://b.example/notes/9"),
        ({"type": "Like", "object": "https://b.example/notes/9"}, "https://b.example/notes/9"),
        # barriers: ordered after everything the actor sent before
        (_follow("a.example", "ann", 0), None),
        ({"type": "Undo", "object": {"id": "https://a.example/likes/1", "type": "Like"}}, None),
        ({"type": "Update", "object": {"id": "https://a.example/users/ann", "type": "Person"}}, None),
        ({"type": "Delete", "object": "https://a.example/users/ann"}, None),
        ({"type": "Create", "object": {"type": "Note"}}, None),
        ({"type": "Create", "object": 3}, None),
        ({"type": "Move", "object": "https://a.example/notes/1"}, None),
    ],
)
def test_ordering_keys(document: dict[str, Any], key: str | None) -> None:
    assert ordering_key(document, "https://a.example/users/ann") == key


async def test_the_run_order_forgets_every_run_once_it_ended() -> None:
    order = tasks._RunOrder()
    first, f1 = order.claim("ann", "n1")
    second, f2 = order.claim("ann", "n1")
    other, f3 = order.claim("ann", "n2")
    barrier, f4 = order.claim("ann", None)
    after, f5 = order.claim("ann", "n3")
    assert (first, second, other) == ([], [f1], [])
    assert set(barrier) == {f2, f3} and after == [f4]  # f1 is behind f2 already
    for key, fut in (("n1", f1), ("n1", f2), ("n2", f3), (None, f4), ("n3", f5)):
        order.release("ann", key, fut)
    assert len(order) == 0


async def test_a_batch_hands_its_runs_their_sender_unless_a_barrier_of_that_actor_may_change_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 89: the senders read with a batch are handed to their runs, except the runs of an
    actor with a barrier (here a Follow) in the batch or still running from an earlier one."""
    from types import SimpleNamespace

    from server.db.queue import ClaimedJob
    from server.services.inbox import process as inbox_service
    from server.services.inbox.verified import VerifiedActivities

    settings = SimpleNamespace(worker=SimpleNamespace(concurrency=8), database=SimpleNamespace(pool_size=10))
    node = SimpleNamespace(settings=settings, sessions=None)
    lane = tasks.InboxLane(SimpleNamespace(node=node, verified=VerifiedActivities()))  # type: ignore[arg-type]
    rows = {"ann": object(), "bob": object(), "cat": object()}
    # Given a batch: two Creates from ann, a Create then a Follow from bob, a Create from cat,
    # whose Follow of an earlier batch is still running
    loaded = {
        1: inbox_service.Queued("ann", None, "note-1", rows["ann"]),  # type: ignore[arg-type]
        2: inbox_service.Queued("ann", None, "note-2", rows["ann"]),  # type: ignore[arg-type]
        3: inbox_service.Queued("bob", None, "note-3", rows["bob"]),  # type: ignore[arg-type]
        4: inbox_service.Queued("bob", None, None, rows["bob"]),  # type: ignore[arg-type]
        5: inbox_service.Queued("cat", None, "note-5", rows["cat"]),  # type: ignore[arg-type]
    }
    before, earlier = lane._order.claim("cat", None)

    async def load(fed: Any, ids: Any, *, senders: bool = False) -> dict[int, Any]:
        assert senders
        return loaded

    handed: dict[str, list[object]] = {}

    class Spy:
        def __init__(self, row: object) -> None:
            self.row = row

        def __enter__(self) -> None:
            return None

        def __exit__(self, *_: object) -> None:
            return None

    async def run(fed: Any, router: Any, activity: Any) -> str:
        return "ignored"

    def known_actor(row: object) -> Spy:
        name = next((name for name, value in rows.items() if value is row), "none")
        handed.setdefault(name, []).append(row)
        return Spy(row)

    monkeypatch.setattr(inbox_service, "load", load)
    monkeypatch.setattr(inbox_service, "run", run)
    monkeypatch.setattr(tasks, "known_actor", known_actor)
    jobs = [ClaimedJob(i, PROCESS_INBOX, {"inbox_activity_id": i}, 1, 3, 5) for i in loaded]
    items = await lane.prepare(jobs)
    lane._order.release("cat", None, earlier)
    # When the batch runs
    assert await asyncio.gather(*items) == ["ignored"] * 5
    # Then only ann's runs got her row; bob's (a Follow in the batch) and cat's (a Follow running) read theirs
    assert handed == {"ann": [rows["ann"], rows["ann"]], "none": [None, None, None]}
    assert not before
