"""The worker's delivery lane: deliveries claimed, sent and recorded in batches.

What the lane promises beyond one job per delivery: at most ``deliveries_per_host`` in flight to
one host and ``deliveries_in_flight`` in all, so a slow host holds only its own slots; every
outcome recorded (delivery row, job, host health) as with one job per delivery; an open breaker
holds a host's deliveries without sending or spending attempts; an expired one lets exactly
one probe through; a fan-out's pages are planned once per inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.delivery import Delivered
from federation.http import Headers, IncomingRequest, OutgoingRequest, PeerResponse
from federation.iri import host_of
from federation.memory import MemoryKeyResolver
from federation.signatures import verify_request
from federation.types import AS_PUBLIC, utc_now
from server.db import queue
from server.db.engine import create_engine, create_sessionmaker
from server.db.models import Activity, Actor, Delivery, Follow, Job, PeerHost
from server.db.queries import actors as actor_queries
from server.db.queries import bare
from server.jobs.tasks import default_registry
from server.jobs.worker import Worker
from server.services.delivery import fanout as delivery
from server.services.federation import build_federation
from server.services.wakeup import WakeChannel
from tests.support.nodes import Node, running_node, wait_until

SLOW = "slow.example"
FAST_HOSTS = ("a.example", "b.example", "c.example")


class GateTransport:
    """Answers 202 at once, except for hosts whose answers wait for :meth:`release`."""

    def __init__(self, slow: set[str]) -> None:
        self.slow = slow
        self.sent: list[str] = []
        self.requests: list[OutgoingRequest] = []
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self._gate = asyncio.Event()

    def release(self) -> None:
        self._gate.set()

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        host = host_of(request.url)
        self.sent.append(request.url)
        self.requests.append(request)
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        self.peak[host] = max(self.peak.get(host, 0), self.in_flight[host])
        self.peak_total = max(self.peak_total, sum(self.in_flight.values()))
        try:
            if host in self.slow:
                await self._gate.wait()
            else:
                await asyncio.sleep(0.005)
        finally:
            self.in_flight[host] -= 1
        return PeerResponse(status=202, headers=Headers({}), url=request.url, body=b"")


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """A node without its in-process worker: each test runs the worker it needs."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _activity_with_deliveries(
    node: Node, inboxes: list[str], *, priority: int = queue.Priority.NORMAL
) -> list[int]:
    """An activity of a new association and one pending delivery (and its job) per inbox."""
    group_iri = await node.create_association("lane")
    now = utc_now()
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        activity = Activity(
            iri=f"{group_iri}/a/1",
            actor_id=group.id,
            type="Create",
            visibility="public",
            document={"id": f"{group_iri}/a/1", "type": "Create", "actor": group_iri},
            published=now,
        )
        session.add(activity)
        await session.flush()
        ids = await delivery.q.insert_deliveries(
            session, activity.id, [(inbox, host_of(inbox)) for inbox in inboxes], now=now
        )
        await queue.enqueue_many(
            session,
            [
                queue.NewJob(
                    delivery.DELIVER, {"delivery_id": i}, dedup_key=f"deliver:{i}", priority=priority
                )
                for i in ids
            ],
            now=now,
        )
    return ids


def _worker(
    node: Node,
    transport: GateTransport,
    *,
    per_host: int,
    in_flight: int,
    signing_processes: int = 0,
    sessions: async_sessionmaker[AsyncSession] | None = None,
) -> Worker:
    settings = node.fed.node.settings
    worker_settings = replace(
        settings.worker,
        deliveries_per_host=per_host,
        deliveries_in_flight=in_flight,
        signing_processes=signing_processes,
    )
    ctx = replace(node.fed.node, settings=replace(settings, worker=worker_settings))
    if sessions is not None:  # an engine of its own, as another process has
        ctx = replace(ctx, sessions=sessions)
    fed = build_federation(ctx, transport)
    return Worker(ctx, default_registry(fed), concurrency=2, poll_interval_s=0.05, shutdown_timeout_s=2.0)


async def _states(node: Node, ids: list[int]) -> dict[str, int]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(Delivery.state, func.count()).where(Delivery.id.in_(ids)).group_by(Delivery.state)
        )
        return {state: int(n) for state, n in rows.all()}


@contextlib.asynccontextmanager
async def _workers_of_two_processes(
    node: Node, transports: list[GateTransport], *, per_host: int, in_flight: int
) -> AsyncIterator[None]:
    """One worker per transport, each with an engine of its own as a separate process has, running
    until the block ends."""
    engines = [create_engine(node.settings.database) for _ in transports]
    workers = [
        _worker(node, transport, per_host=per_host, in_flight=in_flight, sessions=create_sessionmaker(engine))
        for engine, transport in zip(engines, transports, strict=True)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        for engine in engines:
            await engine.dispose()


async def _until_all_delivered(node: Node, ids: list[int]) -> None:
    async def all_done() -> bool:
        return (await _states(node, ids)) == {"delivered": len(ids)}

    await wait_until(all_done, what="every delivery", timeout_s=60)


async def test_a_slow_host_holds_only_its_own_slots(quiet_node: Node) -> None:
    node = quiet_node
    # Given 20 deliveries to a host that does not answer, and 30 to three hosts that do
    slow = [f"https://{SLOW}/users/u{i}/inbox" for i in range(20)]
    fast = [f"https://{h}/users/u{i}/inbox" for i in range(10) for h in FAST_HOSTS]
    ids = await _activity_with_deliveries(node, slow + fast)
    transport = GateTransport({SLOW})
    worker = _worker(node, transport, per_host=3, in_flight=8)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # When the worker runs, every delivery to the answering hosts is made
        async def fast_done() -> bool:
            return (await _states(node, ids)).get("delivered", 0) == len(fast)

        await wait_until(fast_done, what="the answering hosts' deliveries")
        # Then the slow host never had more than its 3 slots, and no more than 8 were in flight
        assert transport.peak[SLOW] == 3
        assert all(transport.peak[h] <= 3 for h in FAST_HOSTS)
        assert transport.peak_total <= 8
        async with node.sessions() as session:
            running = await session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "deliver", Job.state == "running")
            )
        assert running == 3
        # When the slow host answers, the rest follows
        transport.release()

        async def all_done() -> bool:
            return (await _states(node, ids)) == {"delivered": len(ids)}

        await wait_until(all_done, what="every delivery")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # Every job is done, each delivery was sent once, and each host's health records the success
    async with node.sessions() as session:
        jobs = await session.execute(
            select(Job.state, func.count()).where(Job.kind == "deliver").group_by(Job.state)
        )
        assert dict(jobs.all()) == {"done": len(ids)}
        peers = {p.host: p for p in await session.scalars(select(PeerHost))}
    assert sorted(transport.sent) == sorted(slow + fast)
    for host in (SLOW, *FAST_HOSTS):
        assert peers[host].last_success_at is not None and peers[host].breaker == "closed"
        assert peers[host].signature_spec == "cavage"


async def test_the_per_host_cap_holds_over_the_workers_of_two_processes(
    quiet_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision 110: ``deliveries_per_host`` is the node's. Two workers with engines of their own,
    as ``serve`` and an ``entraide worker`` have, share a host that does not answer: together they
    never have more than its 3 slots in flight (each alone counted only its own: 6), while the
    answering hosts are served by both."""
    node = quiet_node
    slow = [f"https://{SLOW}/users/u{i}/inbox" for i in range(20)]
    fast = [f"https://{h}/users/u{i}/inbox" for i in range(10) for h in FAST_HOSTS]
    ids = await _activity_with_deliveries(node, slow + fast)
    transport = GateTransport({SLOW})  # one for both workers: it sees what they send together
    async with _workers_of_two_processes(node, [transport, transport], per_host=3, in_flight=8):

        async def fast_done() -> bool:
            return (await _states(node, ids)).get("delivered", 0) == len(fast)

        await wait_until(fast_done, what="the answering hosts' deliveries", timeout_s=60)
        await asyncio.sleep(0.3)  # a few more polls of both workers: neither takes a fourth slot
        assert transport.peak[SLOW] == 3
        assert transport.in_flight[SLOW] == 3
        async with node.sessions() as session:
            running = await session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "deliver", Job.state == "running")
            )
        assert running == 3
        transport.release()
        await _until_all_delivered(node, ids)
    assert transport.peak[SLOW] == 3
    assert sorted(transport.sent) == sorted(slow + fast)  # each once
    assert "job claim failed" not in caplog.text and "not recorded" not in caplog.text


async def test_an_open_breaker_defers_the_hosts_deliveries_without_spending_attempts(
    quiet_node: Node,
) -> None:
    node = quiet_node
    now = utc_now()
    async with node.sessions.begin() as session:
        session.add(
            PeerHost(host=SLOW, breaker="open", open_until=now + timedelta(minutes=20), updated_at=now)
        )
    ids = await _activity_with_deliveries(node, [f"https://{SLOW}/u{i}/inbox" for i in range(4)])
    transport = GateTransport(set())
    worker = _worker(node, transport, per_host=8, in_flight=8)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def deferred() -> bool:
        async with node.sessions() as session:
            rows = (await session.execute(select(Job).where(Job.kind == "deliver"))).scalars().all()
            return len(rows) == 4 and all(j.state == "queued" and j.last_error for j in rows)

    try:
        await wait_until(deferred, what="the held deliveries deferred")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    async with node.sessions() as session:
        jobs = (await session.execute(select(Job).where(Job.kind == "deliver"))).scalars().all()
    assert transport.sent == []
    for job in jobs:
        assert job.attempts == 0, "a held delivery spends no attempt"
        assert job.last_error == "deferred: circuit_open"
        assert job.run_at > now + timedelta(minutes=19)
    assert await _states(node, ids) == {"pending": 4}


async def test_an_expired_breaker_lets_one_probe_through_per_batch(quiet_node: Node) -> None:
    node = quiet_node
    now = utc_now()
    async with node.sessions.begin() as session:
        session.add(
            PeerHost(host=SLOW, breaker="open", open_until=now - timedelta(seconds=1), updated_at=now)
        )
    ids = await _activity_with_deliveries(node, [f"https://{SLOW}/u{i}/inbox" for i in range(3)])
    batcher = delivery.DeliveryBatcher(node.fed.node)
    prepared = await batcher.prepare([delivery.DeliveryWork(i, 1, 16) for i in ids])
    # Exactly one delivery is the probe; the others are held until the probe's period ends
    assert sum(p.attempt is not None for p in prepared) == 1
    assert sum(p.attempt is None for p in prepared) == 2
    async with node.sessions() as session:
        peer = await session.get(PeerHost, SLOW)
    assert peer is not None and peer.breaker == "half_open"
    # and a second batch meanwhile sends nothing: the probe is taken
    again = await batcher.prepare([delivery.DeliveryWork(i, 1, 16) for i in ids])
    assert all(p.attempt is None for p in again)


class KnockTransport:
    """A peer whose verifier answers 500 to any RFC 9421 signature and 202 to draft-cavage."""

    def __init__(self) -> None:
        self.specs: list[str] = []

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        rfc9421 = "Signature-Input" in request.headers
        self.specs.append("rfc9421" if rfc9421 else "cavage")
        return PeerResponse(status=500 if rfc9421 else 202, headers=Headers({}), url=request.url, body=b"")


async def test_a_first_knock_answered_500_falls_back_at_once_and_the_working_scheme_is_kept(
    quiet_node: Node,
) -> None:
    """With ``rfc9421_first_knock``, a host whose scheme is unknown and that answers RFC 9421 with
    a 500 gets draft-cavage in the same attempt; its host remembers cavage, so the next delivery
    goes out in draft-cavage alone and the host's health records no failure."""
    node = quiet_node
    inboxes = ["https://bovine.example/inbox", "https://bovine.example/u/inbox"]
    ids = await _activity_with_deliveries(node, inboxes)
    transport = KnockTransport()
    first = await delivery.deliver_one(
        node.fed.node, transport, ids[0], attempt=1, max_attempts=3, prefer_rfc9421=True
    )
    assert first == delivery.DeliveryDone("delivered")
    assert transport.specs == ["rfc9421", "cavage"]
    second = await delivery.deliver_one(
        node.fed.node, transport, ids[1], attempt=1, max_attempts=3, prefer_rfc9421=True
    )
    assert second == delivery.DeliveryDone("delivered")
    assert transport.specs == ["rfc9421", "cavage", "cavage"]
    host = await node.scalar(select(PeerHost).where(PeerHost.host == "bovine.example"))
    assert (host.signature_spec, host.recent_failures, host.breaker) == ("cavage", 0, "closed")


async def test_a_signing_pool_signs_the_batches_and_every_signature_verifies(
    quiet_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``worker.signing_processes`` (decision 90) the lane's draft-cavage signatures are made
    in a child process, a batch at a time; each request still carries a valid signature of the
    sender's key over its own inbox, and every outcome is recorded as without the pool."""
    node = quiet_node
    inboxes = [f"https://{h}/users/u{i}/inbox" for i in range(6) for h in FAST_HOSTS]
    ids = await _activity_with_deliveries(node, inboxes)
    transport = GateTransport(set())
    worker = _worker(node, transport, per_host=4, in_flight=32, signing_processes=1)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def all_done() -> bool:
            return (await _states(node, ids)) == {"delivered": len(ids)}

        await wait_until(all_done, what="every delivery", timeout_s=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sorted(transport.sent) == sorted(inboxes)
    assert "signing pool failed" not in caplog.text  # the pool signed; the sends did not fall back
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri.like("%/lane")))
        assert group is not None
        keys = await actor_queries.keys_of(session, group.id)
    pair = node.fed.node.local_keys.key_pair(keys["rsa"], group.iri)
    resolver = MemoryKeyResolver([pair.public])
    for request in transport.requests:
        target = urlsplit(request.url).path
        incoming = IncomingRequest("POST", request.url, target, request.headers, request.body or b"")
        signer = await verify_request(incoming, resolve_key=resolver, now=utc_now())
        assert signer.key_id == pair.key_id


async def test_two_workers_on_their_own_connections_send_each_delivery_once(
    quiet_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """``serve``'s worker and an ``entraide worker`` process deliver side by side (decision 93).

    Each worker here has an engine of its own, as a separate process has: on SQLite their claims
    and records take the write lock in turn (busy timeout) and a claim re-checks that its jobs are
    still runnable; on PostgreSQL the candidates are locked ``SKIP LOCKED``. Every delivery is
    sent once, by one of them, and both take a share."""
    node = quiet_node
    hosts = [f"h{i}.example" for i in range(12)]
    inboxes = [f"https://{h}/users/u{i}/inbox" for i in range(25) for h in hosts]
    ids = await _activity_with_deliveries(node, inboxes)
    transports = [GateTransport(set()), GateTransport(set())]
    async with _workers_of_two_processes(node, transports, per_host=4, in_flight=32):
        await _until_all_delivered(node, ids)
    sent = [url for transport in transports for url in transport.sent]
    assert sorted(sent) == sorted(inboxes)  # each once, none lost
    assert all(transport.sent for transport in transports)  # both delivered
    assert "job claim failed" not in caplog.text and "not recorded" not in caplog.text
    async with node.sessions() as session:
        jobs = await session.execute(
            select(Job.state, func.count()).where(Job.kind == "deliver").group_by(Job.state)
        )
        assert dict(jobs.all()) == {"done": len(ids)}


async def test_a_worker_of_another_process_claims_a_fan_out_at_once_when_woken(quiet_node: Node) -> None:
    """A worker polling every 30 s, on an engine of its own as a separate process has, delivers
    within seconds when the enqueuing process announces the deliveries on the node's wake-up
    channel (decision 100); without it the first poll after its start finds nothing and it
    sleeps past the test's timeout."""
    node = quiet_node
    transport = GateTransport(set())
    engine = create_engine(node.settings.database)
    worker = _worker(node, transport, per_host=4, in_flight=32, sessions=create_sessionmaker(engine))
    worker.poll_interval_s = 30.0
    directory = node.settings.storage.data_dir / "wake"
    listening, enqueuing = WakeChannel(directory), WakeChannel(directory)
    listening.listen(worker.notify)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.5)  # its first claim found nothing: it sleeps for 30 s
        inboxes = [f"https://{h}/users/u/inbox" for h in FAST_HOSTS]
        ids = await _activity_with_deliveries(node, inboxes)
        enqueuing.send({delivery.DELIVER})

        async def all_done() -> bool:
            return (await _states(node, ids)) == {"delivered": len(ids)}

        await wait_until(all_done, what="the woken worker's deliveries", timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        listening.close()
        enqueuing.close()
        await engine.dispose()
    assert sorted(transport.sent) == sorted(inboxes)


async def test_a_fan_out_s_pages_wake_only_the_delivery_lanes(quiet_node: Node) -> None:
    """A page of a fan-out queues deliveries only: its wake-up (in this process and, through the
    wake-up channel, in the others) is for the delivery lanes, not for every worker loop, whose
    claims would contend with the planning for SQLite's write lock."""
    node = quiet_node
    group_iri = await node.create_association("pages")
    now = utc_now()
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        followers = [
            Actor(
                iri=f"https://{host}/users/f",
                local=False,
                type="Person",
                handle="f",
                host=host,
                inbox_iri=f"https://{host}/users/f/inbox",
                created_at=now,
                updated_at=now,
            )
            for host in FAST_HOSTS
        ]
        session.add_all(followers)
        await session.flush()
        session.add_all(
            Follow(follower_id=f.id, followed_id=group.id, state="accepted", created_at=now)
            for f in followers
        )
        activity = Activity(
            iri=f"{group_iri}/a/pages",
            actor_id=group.id,
            type="Create",
            visibility="public",
            document={"id": f"{group_iri}/a/pages", "type": "Create", "actor": group_iri, "to": [AS_PUBLIC]},
            published=now,
        )
        session.add(activity)
        await session.flush()
        await queue.enqueue(session, delivery.FANOUT, {"activity_id": activity.id}, now=now)
    fed = build_federation(node.fed.node, GateTransport(set()))
    woken: list[set[str] | None] = []
    fed.wakeups.append(lambda kinds: woken.append(None if kinds is None else set(kinds)))
    worker = Worker(fed.node, default_registry(fed), concurrency=2, poll_interval_s=0.05)
    assert await worker.run_batch() == 1
    async with node.sessions() as session:
        queued = await session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == delivery.DELIVER)
        )
    assert queued == len(FAST_HOSTS)
    assert woken and all(kinds == {delivery.DELIVER} for kinds in woken)


async def test_a_fan_out_being_planned_does_not_narrow_its_delivery_lane(
    quiet_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the main loop runs a handler, a lane shares the worker's ``concurrency`` slots with
    it, except while that handler is a fan-out, which feeds the delivery lane: its first pages'
    deliveries go out ``deliveries_in_flight`` at a time, not ``concurrency - 1`` (decision 100)."""
    node = quiet_node
    planning, planned = asyncio.Event(), asyncio.Event()

    async def still_planning(*_: Any, **__: Any) -> delivery.FanoutResult:
        planning.set()
        await planned.wait()
        return delivery.FanoutResult(0, 0)

    monkeypatch.setattr(delivery, "fanout", still_planning)
    async with node.sessions.begin() as session:
        await queue.enqueue(session, delivery.FANOUT, {"activity_id": 1}, now=utc_now())
    transport = GateTransport(set(FAST_HOSTS))  # every answer waits: the sends stay in flight
    worker = _worker(node, transport, per_host=4, in_flight=32)  # concurrency 2
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(planning.wait(), 10)
        inboxes = [f"https://{h}/users/u{i}/inbox" for i in range(4) for h in FAST_HOSTS]
        await _activity_with_deliveries(node, inboxes)
        worker.notify({delivery.DELIVER})

        async def all_in_flight() -> bool:
            return transport.peak_total == len(inboxes)

        await wait_until(all_in_flight, what="every delivery in flight beside the fan-out", timeout_s=10)
    finally:
        planned.set()
        transport.release()
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_batch_is_loaded_and_recorded_without_sqlalchemy_statements(quiet_node: Node) -> None:
    """Decision 106: once its sender's keys are cached, a batch's loads (rows with their hosts'
    health, the activity and its sender) and its record (rows, hosts reset, sent with the jobs'
    completion) are bare-driver statements, none compiled by SQLAlchemy. Only pending rows change;
    a host's last success gives its spec."""
    node = quiet_node
    inboxes = [f"https://{h}/users/u{i}/inbox" for i in range(2) for h in FAST_HOSTS]
    ids = await _activity_with_deliveries(node, inboxes)
    batcher = delivery.DeliveryBatcher(node.fed.node)
    works = [delivery.DeliveryWork(i, 1, 16) for i in ids]
    await batcher.prepare(works)  # reads the sender's keys (the ORM), kept for the next batches
    engine = node.sessions.kw["bind"]
    compiled: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        compiled.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        prepared = await batcher.prepare(works)
        assert all(item.attempt is not None for item in prepared)
        first, rest = prepared[: len(FAST_HOSTS)], prepared[len(FAST_HOSTS) :]
        async with node.sessions.begin() as session:
            await batcher.record(session, [(item, Delivered(201, "rfc9421")) for item in first])
            await queue.complete_many(session, [], worker_id="w", now=utc_now())
        async with node.sessions.begin() as session:
            await batcher.record(session, [(item, Delivered(202, "cavage")) for item in prepared])
            await bare.send_later(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert compiled == []
    async with node.sessions() as session:
        rows = (await session.execute(select(Delivery).where(Delivery.id.in_(ids)))).scalars().all()
        hosts = (await session.execute(select(PeerHost))).scalars().all()
    kept = {item.work.delivery_id for item in first}
    assert {r.id: r.state for r in rows} == dict.fromkeys(ids, "delivered")
    assert all(r.attempts == 1 and r.delivered_at is not None for r in rows)
    assert {h.host: (h.breaker, h.signature_spec) for h in hosts} == dict.fromkeys(
        FAST_HOSTS, ("closed", "cavage")
    )
    assert all(h.last_success_at is not None and h.recent_failures == 0 for h in hosts)
    # The first record's rows were no longer pending for the second: left as the first wrote them.
    assert {r.id: r.last_status for r in rows} == {i: 201 if i in kept else 202 for i in ids}
    assert len(kept) == len(rest) == len(FAST_HOSTS)
