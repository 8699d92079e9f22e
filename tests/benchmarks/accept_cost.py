"""What accepting one inbox POST costs, counted rather than timed: CPU, statements, hand-offs.

The accept path is everything between a signed ``POST /inbox`` and its 202: the middlewares,
the signature and digest checks, the key cache, and the group-committed insert of the activity
with its processing job. ``bench_inbox``'s diagnostic target (a0) times it from outside; this
runs the node's own application in this process (worker off, as in (a0)) and counts, for the
timed requests only:

* CPU microseconds per accepted request (``time.process_time`` of this process: the node, and on
  SQLite the database too; PostgreSQL's backend is another process and is not counted);
* statements per request sent through SQLAlchemy (``before_cursor_execute``) or the bare-driver
  read helper (:func:`server.db.queries.bare.fetch`);
* on SQLite, hand-offs to aiosqlite's connection thread per request (each is a queue put, a
  thread switch and a future), whoever makes them; on PostgreSQL, asyncpg calls that wait for
  the server (queries, prepares, pings, ``BEGIN``/``COMMIT``);
* the inbox writer's batches (one transaction each) per request.

The load comes from the load generator in a child process (``python -m tests.benchmarks.loadgen``,
its own key server, keys fetched once in its warm-up), pinned to another core when there are two.

    python -m tests.benchmarks.accept_cost [-n 3000] [-c 16] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from server.app import create_app
from server.appkeys import NODE
from server.collector import collector_policy
from server.config import load_settings
from server.services.inbox.writer import InboxWriter

from ._common import NodeSetup, free_port, pg_database, sqlite_url, table
from .inbox_cost import Counters
from .loadgen import KeyServer, fire, presign_creates, send_one


async def measure(engine_name: str, url: str, work: Path, args: argparse.Namespace) -> list[str]:
    setup = NodeSetup(work / engine_name, free_port(), url).init()
    setup.configure("worker", in_process=False)
    setup.configure("federation", inbox_rate_per_host=0)  # one key-server host sends everything
    settings = load_settings(setup.config)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", setup.port).start()
    counters = Counters()
    trips = _PgRoundTrips()
    batches = 0
    write = InboxWriter._write

    async def counted_write(writer: InboxWriter, batch: Any) -> None:
        nonlocal batches
        if counters.on:
            batches += 1
        await write(writer, batch)

    client = await _Client.start(setup.origin, args)
    try:
        engine = app[NODE].sessions.kw["bind"]
        with (
            counters.install(engine),
            trips.install(counters),
            _patched(InboxWriter, "_write", counted_write),
        ):
            await client.ready()  # keys fetched, statements compiled, connections opened
            with collector_policy(settings.server):  # as `serve` does once started
                counters.on = True
                cpu0, wall0 = time.process_time(), time.perf_counter()
                accepted = await client.go()
                cpu1, wall1 = time.process_time(), time.perf_counter()
                counters.on = False
    finally:
        await runner.cleanup()
    n = max(1, accepted)
    return [
        engine_name,
        str(accepted),
        f"{1e6 * (cpu1 - cpu0) / n:.0f}",
        f"{(counters.statements + counters.bare) / n:.3f}",
        f"{counters.handoffs / n:.3f}" if engine_name == "sqlite" else f"{trips.count / n:.3f}",
        f"{batches / n:.3f}",
        f"{wall1 - wall0:.1f}",
    ]


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


class _PgRoundTrips:
    """asyncpg calls that wait for the server: queries, prepares, pings, BEGIN / COMMIT / ROLLBACK."""

    CONNECTION = ("fetch", "fetchrow", "fetchval", "execute", "executemany", "prepare")
    PREPARED = ("fetch", "fetchrow", "fetchval", "executemany")
    TRANSACTION = ("start", "commit", "rollback")

    def __init__(self) -> None:
        self.count = 0

    def install(self, counters: Counters) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        try:
            import asyncpg.connection  # type: ignore[import-untyped]
            import asyncpg.prepared_stmt  # type: ignore[import-untyped]
            import asyncpg.transaction  # type: ignore[import-untyped]
        except ImportError:
            return stack
        for owner, names in (
            (asyncpg.connection.Connection, self.CONNECTION),
            (asyncpg.prepared_stmt.PreparedStatement, self.PREPARED),
            (asyncpg.transaction.Transaction, self.TRANSACTION),
        ):
            for name in names:
                stack.enter_context(_patched(owner, name, self._counting(getattr(owner, name), counters)))
        return stack

    def _counting(self, method: Any, counters: Counters) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if counters.on:
                self.count += 1
            return await method(*args, **kwargs)

        return counted


class _Client:
    """The load generator in a child process: warm-up, then the timed requests when told to go."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def start(cls, origin: str, args: argparse.Namespace) -> _Client:
        command = [
            sys.executable, "-m", "tests.benchmarks.accept_cost", "--child", origin,
            "-n", str(args.n), "-c", str(args.c), "--senders", str(args.senders),
        ]  # fmt: skip
        if args.client_cpu is not None:
            command = ["taskset", "-c", args.client_cpu, *command]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(proc)

    async def _line(self) -> str:
        assert self._proc.stdout is not None
        line = (await self._proc.stdout.readline()).decode().strip()
        if not line:
            raise RuntimeError("the load generator stopped")
        print("  " + line)
        return line

    async def ready(self) -> None:
        while not (await self._line()).startswith("ready"):
            pass

    async def go(self) -> int:
        assert self._proc.stdin is not None
        self._proc.stdin.write(b"go\n")
        await self._proc.stdin.drain()
        line = await self._line()
        await self._proc.wait()
        return int(line.split("/", 1)[0])


async def _child(args: argparse.Namespace) -> None:
    """Key server, warm-up (one POST per sender, then 200), N presigned requests, fired on ``go``."""
    origin = args.child
    keys = await KeyServer(args.senders).start()
    try:
        warm = presign_creates(origin, "/inbox", keys.senders, len(keys.senders), tag="warm")
        statuses = Counter([await send_one(origin, p) for p in warm])
        more = presign_creates(origin, "/inbox", keys.senders, 200, tag="warm2-")
        result = await fire(origin, more, concurrency=args.c)
        print(f"warm-up: {dict(statuses)}, then {result.ok}/{result.sent}; key GETs {keys.gets}", flush=True)
        batch = presign_creates(origin, "/inbox", keys.senders, args.n, tag=f"run{time.time_ns()}-")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        result = await fire(origin, batch, concurrency=args.c)
        print(
            f"{result.ok}/{result.sent} accepted in {result.elapsed_s:.2f} s; "
            f"non-2xx/errors: {result.describe_failures()}",
            flush=True,
        )
    finally:
        await keys.close()


@contextlib.asynccontextmanager
async def _database(engine_name: str, work: Path) -> Any:
    if engine_name == "sqlite":
        (work / "sqlite").mkdir(parents=True, exist_ok=True)
        yield sqlite_url(work / "sqlite")
        return
    async with pg_database("acceptcost") as url:
        yield url


async def run(args: argparse.Namespace) -> None:
    if args.server_cpu is not None:
        os.sched_setaffinity(0, {int(args.server_cpu)})
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-accept-cost-"))
    rows = []
    for engine_name in args.engines.split(","):
        async with _database(engine_name, work) as url:
            if url is None:
                print(f"{engine_name}: unavailable")
                continue
            rows.append(await measure(engine_name, url, work, args))
    print(
        f"\nAccept path: {args.n} signed Create{{Note}} to the shared inbox, concurrency {args.c}, worker off"
    )
    print(
        table(
            [
                "engine",
                "accepted",
                "CPU µs/request",
                "SQLAlchemy statements/request",
                "hand-offs (SQLite) or round trips (PostgreSQL)/request",
                "writer batches/request",
                "wall s",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=3000, help="timed requests (default 3000)")
    parser.add_argument("-c", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--engines", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--server-cpu", default="1", help="pin this process to that CPU ('' for none)")
    parser.add_argument("--client-cpu", default="0", help="pin the load generator to that CPU ('' for none)")
    parser.add_argument("--work-dir", help="where data dirs go (default: a new temp dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the load generator's side
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args))
        return
    args.server_cpu = args.server_cpu or None
    args.client_cpu = args.client_cpu or None
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
