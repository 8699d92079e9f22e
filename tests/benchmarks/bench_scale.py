"""Scale benchmark: do reads built every time cost the same with 1,000 and with N stored items?

For each size (``--small``, 1,000 by default, and ``--objects`` N) a fresh node (``python -m
server serve``, production defaults) holds one association with that many public
``Create{Note}`` activities in its outbox and that many public objects of every kind for its
feeds, bulk-loaded straight into its database (one transaction, then ``ANALYZE``, as an import
should end), plus one post with 40 replies. Each read below is then driven with a query string
that changes on every request, so the one-second page cache never answers and the read is
built every time:

* ``outbox collection`` (``totalItems``), ``outbox page 1`` (20 activities);
* ``Atom feed`` (validators on every request; the body comes from the rendered-feed memo for
  that ETag, as in production);
* ``NodeInfo 2.1`` (``localPosts``), ``replies`` (the post's first page of replies).

Both databases are loaded first and both nodes run together (on the server's core); for each
read the sizes then take turns, ``--rounds`` rounds each, so that a change in the machine's load
during the run weighs on both sizes alike. The table puts them side by side: requests per second
over all rounds (p50 latency) and the cost ratio ``rate(small) / rate(N)``. Target: every read at
N costs at most 1.5x its cost at the small size.

    python -m tests.benchmarks.bench_scale [--objects 100000] [--small 1000] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.models import Activity, Actor, RemoteObject

from ._common import (
    AP,
    Layout,
    NodeSetup,
    Proc,
    fmt,
    free_port,
    machine_info,
    pg_database,
    print_machine,
    sqlite_url,
    step,
    table,
    verdict,
    wait_http,
    write_json,
)
from .bench_reads import FEED_KINDS, _feed_object
from .loadgen import CONTENT, LoadResult, fire, get_request

AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
TARGET = 1.5
REPLIES = 40
BATCH = 5000


def _activity_row(group_id: int, group_iri: str, origin: str, when: datetime) -> dict[str, Any]:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    object_iri = f"{origin}/objects/{uuid.uuid4().hex}"
    activity_iri = f"{origin}/activities/{uuid.uuid4().hex}"
    to, cc = [AS_PUBLIC], [f"{group_iri}/followers"]
    note = {
        "id": object_iri,
        "type": "Note",
        "attributedTo": group_iri,
        "content": CONTENT,
        "published": stamp,
        "to": to,
        "cc": cc,
        "url": object_iri,
    }
    document = {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": activity_iri,
        "type": "Create",
        "object": note,
        "to": to,
        "cc": cc,
        "published": stamp,
        "actor": group_iri,
    }
    return {
        "iri": activity_iri,
        "actor_id": group_id,
        "type": "Create",
        "object_iri": object_iri,
        "visibility": "public",
        "document": document,
        "published": when,
    }


def _object_row(
    group_id: int, group_iri: str, origin: str, when: datetime, kind: str, reply_to: str | None = None
) -> dict[str, Any]:
    object_iri = f"{origin}/objects/{uuid.uuid4().hex}"
    doc = _feed_object(kind, object_iri, group_iri, when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if reply_to is not None:
        doc["inReplyTo"] = reply_to
    return {
        "iri": object_iri,
        "local": True,
        "type": doc["type"],
        "kind": "reply" if reply_to else kind,
        "attributed_to_id": group_id,
        "visibility": "public",
        "in_reply_to_iri": reply_to,
        "document": doc,
        "published": when,
        "received_at": when,
    }


async def bulk_load(database_url: str, group_iri: str, origin: str, count: int) -> str:
    """``count`` activities and ``count`` feed objects of the group, and a post with replies, in
    one transaction, then ANALYZE; returns the path of the post's replies collection."""
    engine = create_async_engine(database_url)
    start = datetime.now(UTC) - timedelta(days=count // 10 + 1)
    try:
        async with engine.begin() as conn:
            group_id = (await conn.execute(select(Actor.id).where(Actor.iri == group_iri))).scalar_one()
            for offset in range(0, count, BATCH):
                stop = min(count, offset + BATCH)
                times = [start + timedelta(minutes=15 * i) for i in range(offset, stop)]
                await conn.execute(
                    insert(Activity), [_activity_row(group_id, group_iri, origin, t) for t in times]
                )
                await conn.execute(
                    insert(RemoteObject),
                    [
                        _object_row(group_id, group_iri, origin, t, FEED_KINDS[i % len(FEED_KINDS)])
                        for i, t in zip(range(offset, stop), times, strict=True)
                    ],
                )
            parent = _object_row(group_id, group_iri, origin, datetime.now(UTC), "post")
            await conn.execute(insert(RemoteObject), [parent])
            await conn.execute(
                insert(RemoteObject),
                [
                    _object_row(
                        group_id, group_iri, origin, datetime.now(UTC), "post", reply_to=parent["iri"]
                    )
                    for _ in range(REPLIES)
                ],
            )
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    finally:
        await engine.dispose()
    return str(parent["iri"]).removeprefix(origin) + "/replies"


def reads(group_path: str, replies_path: str) -> list[tuple[str, str, str]]:
    return [
        ("outbox collection", f"{group_path}/outbox?nocache=", AP),
        ("outbox page 1", f"{group_path}/outbox?page=true&nocache=", AP),
        ("Atom feed", f"{group_path}/feed.atom?nocache=", "application/atom+xml"),
        ("NodeInfo 2.1", "/nodeinfo/2.1?nocache=", "application/json"),
        ("replies", f"{replies_path}?nocache=", AP),
    ]


@dataclass
class Loaded:
    """One size's database, bulk-loaded, and the node that serves it."""

    size: int
    setup: NodeSetup
    group_path: str
    replies_path: str


async def load_size(work: Path, size: int, database_url: str) -> Loaded:
    setup = NodeSetup(work / f"node-{size}", free_port(), database_url).init()
    group_iri = setup.association("news")
    with step(f"bulk-loading {size:,} activities and {size:,} objects into one association"):
        began = time.monotonic()
        replies_path = await bulk_load(database_url, group_iri, setup.origin, size)
        print(f"    loaded in {time.monotonic() - began:.1f} s")
    return Loaded(size, setup, group_iri.removeprefix(setup.origin), replies_path)


def _merged(rounds: list[LoadResult]) -> LoadResult:
    """The rounds of one read at one size as one result: answers over the time they took."""
    first = rounds[0]
    merged = LoadResult(first.label, first.client, first.concurrency)
    for r in rounds:
        merged.sent += r.sent
        merged.ok += r.ok
        merged.statuses.update(r.statuses)
        merged.errors.update(r.errors)
        merged.elapsed_s += r.elapsed_s
        merged.latencies_ms.extend(r.latencies_ms)
        merged.client_cpu_s += r.client_cpu_s
        merged.response_bytes += r.response_bytes
    return merged


async def measure_sizes(
    args: argparse.Namespace, layout: Layout, work: Path, loaded: list[Loaded]
) -> dict[int, dict[str, LoadResult]]:
    """Every read at every size, the sizes taking turns round after round (``--rounds``), so a
    change in the machine's load during the run weighs on both sizes alike: the ratio between
    them is measured side by side. The nodes share the server's core; one is driven at a time."""
    rounds: dict[int, dict[str, list[LoadResult]]] = {one.size: {} for one in loaded}
    with contextlib.ExitStack() as stack:
        for one in loaded:
            node = stack.enter_context(
                Proc(one.setup.serve_args(), log=work / f"node-{one.size}.log", cpus=layout.server)
            )
            await wait_http(f"{one.setup.origin}/actor", node, headers={"Accept": AP})
        counter = iter(range(10**9))
        for index, (label, _, _) in enumerate(reads("", "")):
            with step(f"{label}, built every time: {' / '.join(f'{one.size:,}' for one in loaded)} in turn"):
                for turn in range(args.rounds):
                    for one in loaded:
                        _, path, accept = reads(one.group_path, one.replies_path)[index]
                        requests = [get_request(f"{path}{next(counter)}", accept) for _ in range(30_000)]
                        if turn == 0:  # warm-up: the node's caches and connections
                            await fire(one.setup.origin, requests[:2_000], concurrency=args.c, duration_s=0.5)
                        result = await fire(
                            one.setup.origin,
                            requests[2_000:],
                            concurrency=args.c,
                            duration_s=args.duration / args.rounds,
                        )
                        rounds[one.size].setdefault(label, []).append(result)
    return {size: {label: _merged(r) for label, r in by_read.items()} for size, by_read in rounds.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    layout = Layout.choose(not args.no_pin)
    layout.pin_client()
    print_machine(info, layout.describe())
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-bench-scale-"))
    sizes = [args.small, args.objects]
    out: dict[str, Any] = {"machine": info, "params": {k: v for k, v in vars(args).items() if k != "json"}}
    for engine in args.engines.split(","):
        async with contextlib.AsyncExitStack() as stack:
            loaded: list[Loaded] = []
            for size in sizes:
                if engine == "sqlite":
                    url: str | None = sqlite_url(work / engine / f"node-{size}")
                else:
                    url = await stack.enter_async_context(pg_database(f"scale{size}"))
                if url is None:
                    break
                loaded.append(await load_size(work / engine, size, url))
            if len(loaded) == len(sizes):
                out[engine] = _report(
                    engine, sizes, await measure_sizes(args, layout, work / engine, loaded), args
                )
    return out


def _report(
    engine: str, sizes: list[int], by_size: dict[int, dict[str, LoadResult]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    small, large = sizes
    rows, summary = [], []
    for label in by_size[small]:
        a, b = by_size[small][label], by_size[large][label]
        ratio = a.rate / b.rate if b.rate else None
        rows.append(
            [
                label,
                f"{fmt(a.rate)} (p50 {fmt(a.p50_ms, 1)} ms)",
                f"{fmt(b.rate)} (p50 {fmt(b.p50_ms, 1)} ms)",
                f"{ratio:.2f}" if ratio is not None else "-",
                verdict(ratio, TARGET, higher_is_better=False),
                f"{a.non_2xx} / {b.non_2xx}",
            ]
        )
        summary.append({"read": label, str(small): a.summary(), str(large): b.summary(), "cost_ratio": ratio})
    print()
    print(
        f"Reads built every time (page cache bypassed), {engine}, one association, concurrency {args.c}, "
        f"{args.duration:.1f} s per read and size in {args.rounds} alternating rounds"
    )
    print(
        table(
            [
                "read",
                f"{small:,} items: req/s",
                f"{large:,} items: req/s",
                f"cost {large:,} / {small:,}",
                f"≤ {TARGET}",
                "non-2xx",
            ],
            rows,
        )
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000, help="the large size (default 100,000)")
    parser.add_argument("--small", type=int, default=1_000, help="the reference size (default 1,000)")
    parser.add_argument("--engines", default="sqlite", help="sqlite,postgresql (default sqlite)")
    parser.add_argument("-c", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument(
        "--duration", type=float, default=4.0, help="seconds per read and size, over all rounds (default 4)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="turns the sizes take for each read (default 4)"
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--work-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        write_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
