"""What delivering one queued delivery costs the worker's delivery lane, counted rather than timed.

The node of ``bench_fanout`` spends about 1 ms of CPU per delivery on RSA signing and the rest
on the lane's bookkeeping: the keyed claim, the loads of the batch (delivery rows, senders,
hosts' health), the record of the outcomes (delivery rows, hosts' health, completion of the
jobs) and their commits. This queues ``-n`` deliveries to personal inboxes on ``--hosts`` hosts
(one activity, as a fan-out page does), then lets an in-process :class:`server.jobs.worker.Worker`
with the production registry deliver them through a transport that answers 202 at once, and
reports for the drain alone, per delivery (the counters of :mod:`tests.benchmarks.inbox_cost`):

* SQL statements: those SQLAlchemy sends and those of the bare-driver helper;
* on SQLite, hand-offs to aiosqlite's connection thread; on PostgreSQL, asyncpg round trips;
* CPU milliseconds (``time.process_time`` of this process: the worker, its signatures and, on
  SQLite, the database itself).

    python -m tests.benchmarks.delivery_cost [-n 2000] [--hosts 200] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from federation.http import Headers, OutgoingRequest, PeerResponse
from federation.iri import host_of
from federation.types import utc_now
from server.collector import collector_policy
from server.db import migrate, queue
from server.db.models import Activity, Actor, Delivery
from server.jobs.tasks import default_registry
from server.jobs.worker import JobOutcome, Worker
from server.services.delivery import fanout as delivery
from server.services.federation import build_federation
from tests.support.nodes import Node, running_node

from ._common import pg_database, sqlite_url, table
from .inbox_cost import Cost, Counters


class Accepting:
    """A peer of every host that answers 202 at once."""

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        await asyncio.sleep(0)
        return PeerResponse(status=202, headers=Headers({}), url=request.url, body=b"")


async def _queue(node: Node, n: int, hosts: int) -> None:
    group_iri = await node.create_association("bench")
    now = utc_now()
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        activity = Activity(
            iri=f"{group_iri}/a/1",
            actor_id=group.id,
            type="Create",
            visibility="followers",
            document={"id": f"{group_iri}/a/1", "type": "Create", "actor": group_iri},
            published=now,
        )
        session.add(activity)
        await session.flush()
        inboxes = [f"https://h{i % hosts}.example/users/u{i}/inbox" for i in range(n)]
        ids = await delivery.q.insert_deliveries(
            session, activity.id, [(inbox, host_of(inbox)) for inbox in inboxes], now=now
        )
        jobs = [queue.NewJob(delivery.DELIVER, {"delivery_id": i}, dedup_key=f"deliver:{i}") for i in ids]
        await queue.enqueue_many(session, jobs, now=now)


async def measure(engine_name: str, url: str, work: Path, args: argparse.Namespace) -> Cost:
    migrating = create_async_engine(url)
    try:
        await migrate.upgrade(migrating)
    finally:
        await migrating.dispose()
    async with running_node(work / engine_name, url, worker={"in_process": False}) as node:
        await _queue(node, args.n, args.hosts)
        counters = Counters()
        engine = node.sessions.kw["bind"]
        with counters.install(engine):
            ctx = node.fed.node
            fed = build_federation(ctx, Accepting())  # type: ignore[arg-type]
            finished = asyncio.Event()
            outcomes: list[JobOutcome] = []

            def on_outcome(outcome: JobOutcome) -> None:
                outcomes.append(outcome)
                if len(outcomes) >= args.n:
                    finished.set()

            settings = ctx.settings
            worker = Worker(
                ctx,
                default_registry(fed),
                concurrency=settings.worker.concurrency,
                poll_interval_s=1.0,
                purge_interval_s=3600.0,
                on_outcome=on_outcome,
            )
            stop = asyncio.Event()
            with collector_policy(settings.server):
                counters.on = True
                cpu0, wall0 = time.process_time(), time.perf_counter()
                task = asyncio.create_task(worker.run(stop))
                try:
                    await asyncio.wait_for(finished.wait(), args.timeout)
                finally:
                    cpu1, wall1 = time.process_time(), time.perf_counter()
                    counters.on = False
                    stop.set()
                    await task
        async with node.sessions() as session:
            delivered = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.state == "delivered")
            )
        if args.verbose:
            print(
                f"  {engine_name}: {counters.statements} SQLAlchemy statements, {counters.bare} bare,"
                f" {counters.handoffs} hand-offs, {counters.round_trips} round trips"
            )
        if args.verbose and counters.by_call:
            print(f"  {engine_name}: hand-offs by call: {dict(counters.by_call.most_common())}")
        bad = [o for o in outcomes if o.outcome != "done"]
        if bad:
            print(f"  {engine_name}: {len(bad)} outcomes not done, e.g. {bad[0]}")
        return Cost(
            engine_name,
            int(delivered or 0),
            counters.statements,
            counters.bare,
            counters.handoffs if engine_name == "sqlite" else counters.round_trips,
            cpu1 - cpu0,
            wall1 - wall0,
        )


@contextlib.asynccontextmanager
async def _database(engine_name: str, work: Path) -> AsyncIterator[str | None]:
    if engine_name == "sqlite":
        (work / "sqlite").mkdir(parents=True, exist_ok=True)
        yield sqlite_url(work / "sqlite")
        return
    async with pg_database("deliverycost") as url:
        yield url


async def run(args: argparse.Namespace) -> list[Cost]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-delivery-cost-"))
    costs: list[Cost] = []
    for engine_name in args.engines.split(","):
        async with _database(engine_name, work) as url:
            if url is None:
                print(f"{engine_name}: unavailable")
                continue
            costs.append(await measure(engine_name, url, work, args))
    print(f"\nDelivery lane cost: {args.n} deliveries on {args.hosts} hosts, one in-process worker")
    print(
        table(
            ["engine", "delivered", "statements/delivery", "of which bare",
             "hand-offs (SQLite) or round trips (PostgreSQL)/delivery",
             "CPU ms/delivery", "deliveries/s (wall)"],
            [c.row() for c in costs],
        )
    )  # fmt: skip
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
