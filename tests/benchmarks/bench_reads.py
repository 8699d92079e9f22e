"""Reads benchmark: outbox collection and pages per second, against static bytes of the same size.

An Entraide node (``python -m server serve``, SQLite, production defaults) holds one association
with ``--activities`` (1,000) public ``Create{Note}`` activities in its outbox, inserted directly
into its database. Each URL below is fetched once from the node; a static aiohttp server
(``servers.py static``, a separate process like the node) then serves exactly those bytes with
the same content type. Both are driven with the same load generator, concurrency and duration,
anonymously (no signature, no token), with ``Accept: application/activity+json``, in alternating
short rounds (node, static, node, static…) so that both see the same machine noise.

* the outbox collection (``/groups/news/outbox``: ``totalItems`` and ``first``);
* its first page (``?page=true``: 20 activities, the hot page every follower polls);
* the second page (``?page=true&before=…``, from the first page's ``next``);
* the association's feeds (:data:`FEEDS`: Atom, RSS, JSON Feed of all content, and the Atom
  feed of alerts only), 50 entries each, over ``--activities`` public objects of every kind.

Targets (issue 20): node ≥ 0.6 x static for each hot page and feed, ≥ 0.1 x static for the rows built
every time. Those rows use unique query strings, so that the page cache never answers: outbox page 1
is then built on every request; the Atom feed runs its validators query on every request and takes its
body from the rendered-feed memo (same ETag).

    python -m tests.benchmarks.bench_reads [--activities 1000] [-c 32] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.models import Activity, Actor, RemoteObject

from ._common import (
    AP,
    PYTHON,
    Layout,
    NodeSetup,
    Proc,
    fmt,
    free_port,
    machine_info,
    print_machine,
    sqlite_url,
    step,
    summarise_profile,
    table,
    verdict,
    wait_http,
    write_json,
)
from .loadgen import CONTENT, LoadResult, Prepared, fire, get_request, median_round

AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
HOT_TARGET = 0.6  # what a cache answers: a hot page or feed
BUILT_TARGET = 0.1  # a page or feed built on every request (a crawler's read)

# ------------------------------------------------------------------------------------------------
# Feeds (server/http/feeds.py). ``{group}`` is the association's path, e.g. /groups/news; a feed
# that answers 200 is benchmarked like the pages. They list the ``objects`` rows inserted by
# :func:`_insert_feed_objects` (the outbox rows above are activities, which feeds do not read).
# ------------------------------------------------------------------------------------------------
FEEDS: tuple[tuple[str, str, str], ...] = (
    ("feed: Atom", "{group}/feed.atom", "application/atom+xml"),
    ("feed: RSS", "{group}/feed.rss", "application/rss+xml"),
    ("feed: JSON Feed", "{group}/feed.json", "application/feed+json"),
    ("feed: alerts, Atom", "{group}/feeds/alerts.atom", "application/atom+xml"),
)
FEED_KINDS = ("post", "resource", "alert", "proposal")


def _feed_object(kind: str, object_iri: str, group_iri: str, stamp: str) -> dict[str, Any]:
    """A document shaped like the publishing services': a note, resource, alert or proposal."""
    to, cc = [AS_PUBLIC], [f"{group_iri}/followers"]
    doc: dict[str, Any] = {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": object_iri,
        "type": {"resource": "Article", "proposal": "Question"}.get(kind, "Note"),
        "attributedTo": group_iri,
        "content": CONTENT,
        "published": stamp,
        "to": to,
        "cc": cc,
        "url": object_iri,
        "tag": [{"type": "Hashtag", "name": "#sante", "href": "https://example.invalid/tags/sante"}],
    }
    if kind == "resource":
        doc.update(name="Guide des droits des patients", summary="<p>Ce que dit la loi.</p>")
    elif kind == "alert":
        doc.update(
            name="Rupture d'insuline rapide",
            severity="critical",
            category="shortage",
            alertStatus="active",
            area="Paris",
            validUntil=stamp,
        )
    elif kind == "proposal":
        doc.update(
            name="Demander une permanence le samedi ?",
            oneOf=[{"type": "Note", "name": n} for n in ("Oui", "Non")],
            endTime=stamp,
        )
    return doc


async def _insert_feed_objects(database_url: str, group_iri: str, origin: str, count: int) -> None:
    """``count`` public objects of the group, the four listed kinds in turn, into ``objects``."""
    engine = create_async_engine(database_url)
    start = datetime.now(UTC) - timedelta(days=count // 10 + 1)
    try:
        async with engine.begin() as conn:
            group_id = (await conn.execute(select(Actor.id).where(Actor.iri == group_iri))).scalar_one()
            rows = []
            for i in range(count):
                when = start + timedelta(minutes=15 * i)
                kind = FEED_KINDS[i % len(FEED_KINDS)]
                object_iri = f"{origin}/objects/{uuid.uuid4().hex}"
                doc = _feed_object(kind, object_iri, group_iri, when.strftime("%Y-%m-%dT%H:%M:%SZ"))
                rows.append(
                    {
                        "iri": object_iri,
                        "local": True,
                        "type": doc["type"],
                        "kind": kind,
                        "attributed_to_id": group_id,
                        "visibility": "public",
                        "document": doc,
                        "published": when,
                        "received_at": when,
                    }
                )
            for offset in range(0, len(rows), 500):
                await conn.execute(insert(RemoteObject), rows[offset : offset + 500])
    finally:
        await engine.dispose()


@dataclass
class ReadRow:
    label: str
    path: str
    accept: str = AP
    size: int = 0
    node: LoadResult | None = None
    static: LoadResult | None = None
    unavailable: str | None = None
    target: float = HOT_TARGET

    @property
    def ratio(self) -> float | None:
        if self.node is None or self.static is None or not self.static.rate:
            return None
        return self.node.rate / self.static.rate

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "path": self.path,
            "bytes": self.size,
            "node": self.node.summary() if self.node else None,
            "static": self.static.summary() if self.static else None,
            "ratio": self.ratio,
            "target": self.target,
            "unavailable": self.unavailable,
        }


async def _insert_activities(database_url: str, group_iri: str, origin: str, count: int) -> None:
    """``count`` public Create{Note} activities by the group, shaped like ``publishing.create_object``."""
    engine = create_async_engine(database_url)
    start = datetime.now(UTC) - timedelta(days=count // 10 + 1)
    try:
        async with engine.begin() as conn:
            group_id = (await conn.execute(select(Actor.id).where(Actor.iri == group_iri))).scalar_one()
            rows = []
            for i in range(count):
                when = start + timedelta(minutes=15 * i)
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
                rows.append(
                    {
                        "iri": activity_iri,
                        "actor_id": group_id,
                        "type": "Create",
                        "object_iri": object_iri,
                        "visibility": "public",
                        "document": document,
                        "published": when,
                    }
                )
            for offset in range(0, len(rows), 500):
                await conn.execute(insert(Activity), rows[offset : offset + 500])
    finally:
        await engine.dispose()


async def _fetch(http: aiohttp.ClientSession, url: str, accept: str) -> tuple[int, bytes, dict[str, str]]:
    async with http.get(url, headers={"Accept": accept}) as response:
        body = await response.read()
        keep = ("Content-Type", "Cache-Control", "Vary", "ETag", "Last-Modified")
        headers = {k: response.headers[k] for k in keep if k in response.headers}
        return response.status, body, headers


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    layout = Layout.choose(not args.no_pin)
    layout.pin_client()
    print_machine(info, layout.describe())
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-bench-reads-"))
    setup = NodeSetup(work / "node", free_port(), sqlite_url(work / "node")).init()
    group_iri = setup.association("news")
    group_path = group_iri.removeprefix(setup.origin)
    with step(f"inserting {args.activities:,} activities into the outbox"):
        await _insert_activities(setup.database_url, group_iri, setup.origin, args.activities)
    with step(f"inserting {args.activities:,} public objects for the feeds"):
        await _insert_feed_objects(setup.database_url, group_iri, setup.origin, args.activities)
    rows: list[ReadRow] = []
    profile_file = work / "node.pyspy.txt" if args.profile else None
    node = Proc(
        setup.serve_args(),
        log=work / "node.log",
        cpus=layout.server,
        profile_to=profile_file,
        profile_rate=args.profile_rate,
    )
    static_port = free_port()
    spec: dict[str, Any] = {}
    with node:
        await wait_http(f"{setup.origin}/actor", node, headers={"Accept": AP})
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            paths = [
                ("outbox collection", f"{group_path}/outbox", AP),
                ("outbox page 1 (hot)", f"{group_path}/outbox?page=true", AP),
            ]
            status, first_page, _ = await _fetch(http, setup.origin + paths[1][1], AP)
            if status == 200:
                next_iri = json.loads(first_page).get("next")
                if isinstance(next_iri, str) and next_iri.startswith(setup.origin):
                    paths.append(("outbox page 2", next_iri.removeprefix(setup.origin), AP))
            uncached = f"{group_path}/outbox?page=true&nocache="
            for label, template, accept in FEEDS:
                paths.append((label, template.format(group=group_path), accept))
            for index, (label, path, accept) in enumerate(paths):
                status, body, headers = await _fetch(http, setup.origin + path, accept)
                row = ReadRow(label, path, accept, len(body))
                rows.append(row)
                if status != 200:
                    row.unavailable = f"not available yet (GET {path} answered {status})"
                    continue
                file = work / f"static-{index}.bin"
                file.write_bytes(body)
                spec[path] = {
                    "file": str(file),
                    "content_type": headers.get("Content-Type", accept),
                    "headers": {k: v for k, v in headers.items() if k != "Content-Type"},
                }
        spec_file = work / "static-spec.json"
        spec_file.write_text(json.dumps(spec))
        static_cmd = [
            PYTHON, "-m", "tests.benchmarks.servers", "static",
            "--port", str(static_port), "--spec", str(spec_file),
        ]  # fmt: skip
        static_origin = f"http://127.0.0.1:{static_port}"
        with Proc(static_cmd, log=work / "static.log", cpus=layout.server) as static:
            await wait_http(f"{static_origin}/", static)

            async def measure(origin: str, requests: list[Prepared]) -> LoadResult:
                return await fire(
                    origin,
                    requests,
                    concurrency=args.c,
                    duration_s=args.duration / args.rounds,
                    client=args.client,
                )

            for row in rows:
                if row.unavailable:
                    continue
                request = [get_request(row.path, row.accept)]
                with step(f"{row.label} ({row.size:,} bytes): node and static, {args.rounds} rounds each"):
                    await fire(setup.origin, request, concurrency=args.c, duration_s=1.0, client=args.client)
                    await fire(static_origin, request, concurrency=args.c, duration_s=1.0, client=args.client)
                    node_rounds, static_rounds = [], []
                    for _ in range(args.rounds):  # interleaved: both see the same machine noise
                        node_rounds.append(await measure(setup.origin, request))
                        static_rounds.append(await measure(static_origin, request))
                    row.node, row.static = median_round(node_rounds), median_round(static_rounds)
            hot = next((r for r in rows if r.label.startswith("outbox page 1") and r.node), None)
            if hot is not None:
                # Built every time: a query string the node ignores but that makes every URL distinct, so
                # no cache can answer: what building page 1 costs on each request.
                cold = ReadRow(
                    "outbox page 1, built every time", uncached + "<n>", AP, hot.size, target=BUILT_TARGET
                )
                requests = [get_request(f"{uncached}{i}") for i in range(100_000)]
                with step(f"node: {cold.label}"):
                    await fire(setup.origin, requests[:20_000], concurrency=args.c, duration_s=1.0)
                    cold.node = await fire(
                        setup.origin,
                        requests[20_000:],
                        concurrency=args.c,
                        duration_s=args.duration / args.rounds,
                        client=args.client,
                    )
                cold.static = hot.static  # the same bytes, served statically
                rows.insert(rows.index(hot) + 1, cold)
            feed = next((r for r in rows if r.label == "feed: Atom" and r.node), None)
            if feed is not None:
                # The page cache bypassed: each request runs the feed's validators query
                # and gets the body rendered for that ETag from server/http/feeds.py's memo.
                base = f"{feed.path}?nocache="
                cold = ReadRow(
                    "feed: Atom, page cache bypassed",
                    base + "<n>",
                    feed.accept,
                    feed.size,
                    target=BUILT_TARGET,
                )
                requests = [get_request(f"{base}{i}", feed.accept) for i in range(100_000)]
                with step(f"node: {cold.label}"):
                    await fire(setup.origin, requests[:20_000], concurrency=args.c, duration_s=1.0)
                    cold.node = await fire(
                        setup.origin,
                        requests[20_000:],
                        concurrency=args.c,
                        duration_s=args.duration / args.rounds,
                        client=args.client,
                    )
                cold.static = feed.static
                rows.insert(rows.index(feed) + 1, cold)
        node_rss = node.peak_rss_mb()
    profile = summarise_profile(profile_file) if profile_file is not None else None
    _report(rows, args)
    print(f"node peak RSS {fmt(node_rss)} MB; logs: {work}")
    if profile:
        print(f"\nprofile of the node during its reads (py-spy --gil, {args.profile_rate} Hz):\n{profile}")
    return {
        "machine": info,
        "layout": layout.describe(),
        "params": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": [r.summary() for r in rows],
        "profile": profile,
    }


def _busy(result: LoadResult) -> str:
    """How busy the load generator's core was: near 100% means the client, not the server, limits."""
    return f"{100 * result.client_cpu_s / result.elapsed_s:.0f}%" if result.elapsed_s else "-"


def _client_bound(result: LoadResult | None) -> bool:
    return result is not None and result.elapsed_s > 0 and result.client_cpu_s / result.elapsed_s >= 0.85


def _report(rows: list[ReadRow], args: argparse.Namespace) -> None:
    table_rows = []
    for r in rows:
        if r.unavailable or r.node is None or r.static is None:
            table_rows.append(
                [r.label, r.path, fmt(r.size) if r.size else "", r.unavailable or "-", "", "", "", "", ""]
            )
            continue
        table_rows.append(
            [
                r.label,
                r.path,
                fmt(r.size),
                f"{fmt(r.node.rate)} (p50 {fmt(r.node.p50_ms, 1)} / p99 {fmt(r.node.p99_ms, 1)} ms)",
                f"{fmt(r.static.rate)} (p50 {fmt(r.static.p50_ms, 1)} / p99 {fmt(r.static.p99_ms, 1)} ms)",
                f"{r.ratio:.2f}" if r.ratio is not None else "-",
                f"≥ {r.target}: {verdict(r.ratio, r.target)}",
                r.node.describe_failures() + " / " + r.static.describe_failures(),
                f"{_busy(r.node)} / {_busy(r.static)}",
            ]
        )
    print()
    print(
        f"Reads: {args.activities:,} activities in the outbox, concurrency {args.c}, "
        f"{args.rounds} alternating rounds of {args.duration / args.rounds:.1f} s per server and "
        f"URL after a 1 s warm-up, client {args.client}, anonymous GETs"
    )
    print(
        table(
            [
                "document",
                "path",
                "bytes",
                "node req/s",
                "static req/s",
                "node/static",
                "target",
                "failures",
                "loadgen CPU node/static",
            ],
            table_rows,
        )
    )
    if any(_client_bound(r.static) for r in rows if not r.unavailable):
        print(
            "NOTE: the load generator's core was ≥85% busy against the static server: the static rate is "
            "client-bound (understated), so node/static is an upper bound."
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("-c", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per URL and server (all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating node/static rounds; medians")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--profile", action="store_true", help="record the node with py-spy")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--work-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    write_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
