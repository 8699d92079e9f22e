"""What processing one inbox activity costs, counted rather than timed: statements and CPU.

The wall-clock rates of ``bench_inbox`` move with whatever else runs on the machine; what one
processed activity costs the node does not. This stores N benchmark-shaped activities (the
``Create{Note}`` of :func:`tests.benchmarks.loadgen.create_note`, from ``--senders`` actors
served by the load generator's key server) through the node's own inbox writer, then lets an
in-process :class:`server.jobs.worker.Worker` with the production registry drain them, and
reports for the drain alone:

* SQL statements per processed activity: those SQLAlchemy sends (``before_cursor_execute``)
  and those of the bare-driver helper (:func:`server.db.queries.bare.fetch` and ``write``);
* on SQLite, thread hand-offs to aiosqlite's connection thread per activity (every
  ``execute``, ``fetch``, ``commit``…: each is a queue put, a thread switch and a future); on
  PostgreSQL, asyncpg calls that wait for the server (queries, prepares, ``BEGIN``, ``COMMIT``,
  ``ROLLBACK``);
* CPU milliseconds per processed activity (``time.process_time`` of this process, which runs
  the worker and, on SQLite, the database itself).

Shapes (``--shape``): ``bench``, the inbox benchmark's public note that no local actor follows
(dropped as irrelevant, the common case of a relay or a busy peer); ``followed``, the same note
from senders a local member follows (stored, filed in that member's inbox).

    python -m tests.benchmarks.inbox_cost [-n 1200] [--engines sqlite,postgresql] [--shape bench]

Profile the drain with ``py-spy record -o out.txt --format raw -- python -m tests.benchmarks.inbox_cost``
(the store phase shows as ``InboxWriter``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from federation.inbox import InboundActivity
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from federation.vocab.parse import parse_activity
from server.collector import collector_policy
from server.config import load_settings
from server.db import engine as db_engine
from server.db.models import Actor, Follow, InboxActivity
from server.db.queries import bare
from server.jobs.runner import build_node_context
from server.jobs.tasks import default_registry
from server.jobs.worker import JobOutcome, Worker
from server.services.federation import open_federation
from server.services.inbox.writer import InboxWriter

from ._common import NodeSetup, cli, free_port, pg_database, sqlite_url, table
from .loadgen import KeyServer, create_note


@dataclass
class Cost:
    engine: str
    processed: int
    statements: int
    bare: int
    handoffs: int  # aiosqlite hand-offs, or asyncpg round trips
    cpu_s: float
    wall_s: float

    def row(self) -> list[str]:
        n = max(1, self.processed)
        return [
            self.engine,
            str(self.processed),
            f"{(self.statements + self.bare) / n:.2f}",
            f"{self.bare / n:.2f}",
            f"{self.handoffs / n:.2f}",
            f"{1000 * self.cpu_s / n:.2f}",
            f"{self.processed / self.wall_s:.0f}" if self.wall_s else "-",
        ]


class Counters:
    """Statements sent by SQLAlchemy and the bare helper, and aiosqlite hand-offs."""

    def __init__(self) -> None:
        self.statements = 0
        self.bare = 0
        self.handoffs = 0
        self.round_trips = 0
        self.connects = 0
        self.by_call: Counter[str] = Counter()
        self.on = False

    def install(self, engine: Any) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()

        def counted(*_: Any) -> None:
            if self.on:
                self.statements += 1

        def connected(*_: Any) -> None:
            if self.on:
                self.connects += 1

        event.listen(engine.sync_engine, "connect", connected)
        stack.callback(event.remove, engine.sync_engine, "connect", connected)
        event.listen(engine.sync_engine, "before_cursor_execute", counted)
        stack.callback(event.remove, engine.sync_engine, "before_cursor_execute", counted)
        for name in ("fetch", "write"):  # the bare helper's reads and writes
            original = getattr(bare, name)

            async def counted_bare(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if self.on:
                    self.bare += 1
                return await _original(*args, **kwargs)

            setattr(bare, name, counted_bare)
            stack.callback(setattr, bare, name, original)
        self._count_round_trips(stack)
        try:
            import aiosqlite.core
        except ImportError:
            return stack
        connection: Any = aiosqlite.core.Connection
        original_execute = connection._execute

        async def execute(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.handoffs += 1
                name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "?")
                self.by_call[str(name)] += 1
            return await original_execute(conn, fn, *args, **kwargs)

        connection._execute = execute
        stack.callback(setattr, connection, "_execute", original_execute)
        return stack

    def _count_round_trips(self, stack: contextlib.ExitStack) -> None:
        """asyncpg calls that wait for the server: queries, prepares, and ``BEGIN``, ``COMMIT`` and
        ``ROLLBACK`` (each an ``execute`` of the connection)."""
        try:
            import asyncpg.connection  # type: ignore[import-untyped]
            import asyncpg.prepared_stmt  # type: ignore[import-untyped]
        except ImportError:
            return
        for owner, names in (
            (asyncpg.connection.Connection, ("fetch", "fetchrow", "fetchval", "execute", "executemany")),
            (asyncpg.connection.Connection, ("prepare",)),
            (asyncpg.prepared_stmt.PreparedStatement, ("fetch", "fetchrow", "fetchval", "executemany")),
        ):
            for name in names:
                original = getattr(owner, name)

                async def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                    if self.on:
                        self.round_trips += 1
                    return await _original(*args, **kwargs)

                setattr(owner, name, counted)
                stack.callback(setattr, owner, name, original)


def _inbound(document: dict[str, Any]) -> InboundActivity:
    actor = document["actor"]
    signer = VerifiedSigner(Iri(f"{actor}#main-key"), Iri(actor), KeyAlgorithm.RSA_V1_5_SHA256, "cavage")
    return InboundActivity(
        activity=parse_activity(document),
        signer=signer,
        document=document,
        received_at=datetime.now(UTC),
    )


async def measure(engine_name: str, url: str, work: Path, args: argparse.Namespace, keys: KeyServer) -> Cost:
    setup = NodeSetup(work / engine_name, free_port(), url).init()
    setup.configure("worker", in_process=False, poll_interval_s=1.0)
    if args.shape == "followed":
        setup.association("bench")
        cli(
            "member", "add", "reader", "--association", "bench", "--role", "member", "--password-stdin",
            "--config", str(setup.config), stdin="bench password 1234\n",
        )  # fmt: skip
    settings = load_settings(setup.config)
    engine = db_engine.create_engine(settings.database)
    counters = Counters()
    try:
        with counters.install(engine):
            node = build_node_context(settings, engine)
            async with open_federation(node) as fed:
                for sender in keys.senders:  # fetched and stored once, as the warm-up does
                    await fed.actor(sender.iri)
                if args.shape == "followed":
                    await _follow_senders(node, keys)
                # Built before storing, as serve builds its in-process worker: the inbox lane then
                # takes what the writer hands over (decision 102); --rebuild measures a worker
                # elsewhere, which rebuilds every activity from its row.
                registry = None if args.rebuild else default_registry(fed)
                writer = InboxWriter(fed)
                writer.start()
                now = datetime.now(UTC)
                docs = [
                    create_note(keys.senders[i % len(keys.senders)], f"{engine_name}-{i:07d}", now)
                    for i in range(args.n)
                ]
                await asyncio.gather(*(writer.submit(_inbound(d), recipient_id=None) for d in docs))
                await writer.close()
                return await _drain(engine_name, fed, registry or default_registry(fed), counters, args)
    finally:
        await engine.dispose()


async def _follow_senders(node: Any, keys: KeyServer) -> None:
    async with node.sessions.begin() as session:
        reader = await session.scalar(select(Actor.id).where(Actor.local.is_(True), Actor.type == "Person"))
        for sender in keys.senders:
            followed = await session.scalar(select(Actor.id).where(Actor.iri == sender.iri))
            session.add(
                Follow(
                    follow_iri=f"{node.uris.origin}/follows/{followed}",
                    follower_id=reader,
                    followed_id=followed,
                    state="accepted",
                    created_at=datetime.now(UTC),
                )
            )


async def _drain(
    engine_name: str, fed: Any, registry: Any, counters: Counters, args: argparse.Namespace
) -> Cost:
    """Run a worker until every stored activity is recorded; count only that."""
    finished = asyncio.Event()
    outcomes: list[JobOutcome] = []

    def on_outcome(outcome: JobOutcome) -> None:
        if outcome.kind == "process_inbox":
            outcomes.append(outcome)
            if len(outcomes) >= args.n:
                finished.set()

    settings = fed.node.settings
    worker = Worker(
        fed.node,
        registry,
        concurrency=settings.worker.concurrency,
        poll_interval_s=1.0,
        transport=fed.transport,
        purge_interval_s=3600.0,
        on_outcome=on_outcome,
    )
    stop = asyncio.Event()
    with collector_policy(settings.server):  # as `serve` and `worker` do once started
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
    async with fed.node.sessions() as session:
        processed = await session.scalar(
            select(func.count()).select_from(InboxActivity).where(InboxActivity.state != "queued")
        )
    if args.verbose:
        print(f"  {engine_name}: {counters.connects} connections opened during the drain")
    if args.verbose and counters.by_call:
        print(f"  {engine_name}: hand-offs by call: {dict(counters.by_call.most_common())}")
    bad = [o for o in outcomes if o.outcome != "done"]
    if bad:
        print(f"  {engine_name}: {len(bad)} outcomes not done, e.g. {bad[0]}")
    return Cost(
        engine_name,
        int(processed or 0),
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
    async with pg_database("inboxcost") as url:
        yield url


async def run(args: argparse.Namespace) -> list[Cost]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-inbox-cost-"))
    keys = await KeyServer(args.senders).start()
    costs: list[Cost] = []
    try:
        for engine_name in args.engines.split(","):
            async with _database(engine_name, work) as url:
                if url is None:
                    print(f"{engine_name}: unavailable")
                    continue
                costs.append(await measure(engine_name, url, work, args, keys))
    finally:
        await keys.close()
    print(
        f"\nInbox processing cost: {args.n} Create{{Note}} (shape {args.shape}), "
        f"{args.senders} senders, drained by one in-process worker"
    )
    print(
        table(
            [
                "engine",
                "processed",
                "statements/activity",
                "of which bare",
                "hand-offs (SQLite) or round trips (PostgreSQL)/activity",
                "CPU ms/activity",
                "activities/s (wall)",
            ],
            [c.row() for c in costs],
        )
    )
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1200, help="activities stored then drained (default 1200)")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--engines", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--shape", choices=("bench", "followed"), default="bench")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up draining after this long")
    parser.add_argument(
        "--rebuild", action="store_true", help="the worker rebuilds each activity from its row (no hand-over)"
    )
    parser.add_argument("--verbose", action="store_true", help="hand-offs by aiosqlite call")
    parser.add_argument("--work-dir", help="where data dirs go (default: a new temp dir)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
