"""Fan-out benchmark: one alert from an association with 10,000 remote followers.

(i) ``shared``: the followers are spread over 200 fake hosts, each host with a shared inbox, so
    the node must deliver 200 signed POSTs. Target: every host has the alert within 2 s.
(ii) ``personal``: the same followers without shared inboxes, each on its own inbox: 10,000
    signed deliveries. Target: all received within 10 s.
Both: peak RSS of the node process under 250 MB.
With ``--worker-process``: ``serve`` with its in-process worker, as an operator runs it, plus one
``python -m server worker`` process (unpinned by default, or ``--worker-cpus server|client``), both
claiming deliveries from the same queue (decision 93): the two-core configuration of issue 20
(personal inboxes within 5 s); node CPU is then both processes'. ``--serve-without-worker`` turns
``serve``'s worker off (decision 90's measurement: the worker process alone delivers).

The node is a real ``python -m server serve`` (``entraide init`` data directory, in-process
worker with its production defaults). The followers (remote actors and accepted follows) are
inserted directly into its database before it starts. The fake hosts are one process listening
on 200 ports of 127.0.0.1 (``servers.py fake-hosts``); each records when every POST arrived.
The clock starts just before the alert is POSTed to the association's C2S outbox and stops when
the last expected inbox has received it. A sample of the deliveries (the first at each host) is
verified afterwards with the association's published key.

    python -m tests.benchmarks.bench_fanout [--followers 10000] [--hosts 200] [--scenarios shared,personal]
        [--worker-process [--worker-cpus none|server|client] [--serve-without-worker]]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from federation.errors import FederationError
from federation.http import Headers, IncomingRequest
from federation.keys import PublicKey, public_key_from_pem
from federation.memory import MemoryKeyResolver
from federation.signatures import verify_request
from federation.types import AS_PUBLIC, Iri
from server.db.models import Actor, Delivery, Follow, Job

from ._common import (
    AP,
    PYTHON,
    Layout,
    NodeSetup,
    Proc,
    bench_env,
    fmt,
    free_port,
    machine_info,
    percentile,
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

TARGET_SECONDS = {"shared": 2.0, "personal": 10.0}
# serve + one separate worker process on two cores (issue 20)
TARGET_SECONDS_TWO_PROCESSES = {"shared": 2.0, "personal": 5.0}
TARGET_RSS_MB = 250.0


@dataclass
class FanoutResult:
    scenario: str
    engine: str
    followers: int
    hosts: int
    expected: int
    received: int = 0
    duplicates: int = 0
    refused: int = 0  # requests the fake hosts could not parse (answered 400)
    publish_ms: float | None = None
    first_s: float | None = None
    p50_s: float | None = None
    last_s: float | None = None
    last_arrival_s: float | None = None
    baseline_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    node_cpu_s: float | None = None
    worker_cpu_s: float | None = None  # the separate worker's share of node_cpu_s, its children's included
    worker_main_cpu_s: float | None = None  # the worker process alone (no signing children)
    fake_hosts_cpu_s: float | None = None
    worker_process: bool = False
    serve_worker: bool = True  # serve's in-process worker delivers too
    serve_deliveries: int | None = None  # of the rows delivered, those serve's worker claimed
    signing_processes: int = 0
    signatures: str = ""
    delivery_states: dict[str, int] = field(default_factory=dict)
    profile: str | None = None
    timed_out: bool = False

    @property
    def done(self) -> bool:
        return self.received >= self.expected

    @property
    def rate(self) -> float | None:
        """Inboxes reached per second, up to the last arrival."""
        return self.received / self.last_arrival_s if self.last_arrival_s else None

    @property
    def projected_s(self) -> float | None:
        """When the last inbox would have been reached at the measured rate (timed-out runs)."""
        return self.expected / self.rate if self.rate else None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "profile"}


async def _insert_followers(
    database_url: str, group_iri: str, ports: list[int], followers: int, shared: bool
) -> None:
    """``followers`` remote Person actors, round-robin over the fake hosts, all following the group."""
    now = datetime.now(UTC)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            group_id = (await conn.execute(select(Actor.id).where(Actor.iri == group_iri))).scalar_one()
            rows = []
            for j in range(followers):
                port = ports[j % len(ports)]
                origin = f"http://127.0.0.1:{port}"
                iri = f"{origin}/users/f{j}"
                rows.append(
                    {
                        "iri": iri,
                        "local": False,
                        "type": "Person",
                        "handle": f"f{j}",
                        "host": f"127.0.0.1:{port}",
                        "name": f"Follower {j}",
                        "summary": "",
                        "inbox_iri": f"{iri}/inbox",
                        "shared_inbox_iri": f"{origin}/inbox" if shared else None,
                        "outbox_iri": f"{iri}/outbox",
                        "followers_iri": f"{iri}/followers",
                        "following_iri": f"{iri}/following",
                        "manually_approves_followers": False,
                        "discoverable": True,
                        "members_visibility": "public",
                        "fetched_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            for start in range(0, len(rows), 1000):
                await conn.execute(insert(Actor), rows[start : start + 1000])
            found = await conn.execute(select(Actor.iri, Actor.id).where(Actor.local.is_(False)))
            ids = {iri: actor_id for iri, actor_id in found.all()}
            follows = [
                {
                    "follower_id": ids[str(row["iri"])],
                    "followed_id": group_id,
                    "follow_iri": f"{row['iri']}#follow",
                    "state": "accepted",
                    "created_at": now,
                    "accepted_at": now,
                }
                for row in rows
            ]
            for start in range(0, len(follows), 1000):
                await conn.execute(insert(Follow), follows[start : start + 1000])
    finally:
        await engine.dispose()


async def _delivery_states(database_url: str) -> dict[str, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(Delivery.state, func.count()).group_by(Delivery.state))
            return {state: int(n) for state, n in rows.all()}
    finally:
        await engine.dispose()


async def _deliveries_by_pid(database_url: str) -> dict[int, int]:
    """``deliver`` jobs done, by the pid of the worker that ran them (worker ids are ``host:pid:random``)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(Job.locked_by, func.count())
                .where(Job.kind == "deliver", Job.state == "done")
                .group_by(Job.locked_by)
            )
            counts: dict[int, int] = {}
            for worker_id, n in rows.all():
                parts = str(worker_id).split(":")
                if len(parts) >= 3 and parts[-2].isdigit():
                    counts[int(parts[-2])] = counts.get(int(parts[-2]), 0) + int(n)
            return counts
    finally:
        await engine.dispose()


async def _verify_samples(http: aiohttp.ClientSession, control: str, group_iri: str) -> str:
    """Verify the first delivery received by each host with the group's published key."""
    async with http.get(group_iri, headers={"Accept": AP}) as response:
        doc = await response.json(content_type=None)
    entry = doc["publicKey"]
    resolver = MemoryKeyResolver(
        [PublicKey(Iri(entry["id"]), Iri(doc["id"]), public_key_from_pem(entry["publicKeyPem"]))]
    )
    async with http.get(f"{control}/samples") as response:
        samples = await response.json()
    ok = 0
    errors: dict[str, int] = {}
    for sample in samples:
        incoming = IncomingRequest(
            method="POST",
            url=f"http://127.0.0.1:{sample['port']}{sample['target']}",
            target=sample["target"],
            headers=Headers([tuple(h) for h in sample["headers"]]),
            body=base64.b64decode(sample["body"]),
        )
        try:
            await verify_request(incoming, resolve_key=resolver, now=datetime.now(UTC))
            ok += 1
        except FederationError as exc:
            errors[exc.code] = errors.get(exc.code, 0) + 1
    return f"{ok}/{len(samples)} verified" + (f" ({errors})" if errors else "")


async def _scenario(
    scenario: str, engine: str, database_url: str, args: argparse.Namespace, work: Path, layout: Layout
) -> FanoutResult:
    shared = scenario == "shared"
    expected = args.hosts if shared else args.followers
    result = FanoutResult(scenario, engine, args.followers, args.hosts, expected)
    base = work / f"{scenario}-{engine}"
    control_port = free_port()
    fake_cmd = [
        PYTHON, "-m", "tests.benchmarks.servers", "fake-hosts",
        "--count", str(args.hosts), "--port", str(control_port),
    ]  # fmt: skip
    control = f"http://127.0.0.1:{control_port}"
    with Proc(fake_cmd, log=base / "fake-hosts.log", cpus=layout.client) as fake:
        await wait_http(f"{control}/ports", fake)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(f"{control}/ports") as response:
                ports: list[int] = await response.json()
            setup = NodeSetup(base / "node", free_port(), database_url).init()
            group_iri = setup.association("alerts")
            token = setup.admin_token("alerts")
            await _insert_followers(database_url, group_iri, ports, args.followers, shared)
            profile_file = base / "node.pyspy.txt" if args.profile else None
            result.worker_process = args.worker_process
            result.serve_worker = not (args.worker_process and args.serve_without_worker)
            result.signing_processes = args.signing_processes if args.worker_process else 0
            # The same configuration for every process that delivers, as an operator's one file
            # gives it; unset when not asked for, so code from before decision 90 runs too.
            signing = (
                {"ENTRAIDE_WORKER__SIGNING_PROCESSES": str(args.signing_processes)}
                if args.signing_processes
                else {}
            )
            serve_env = signing if result.serve_worker else {"ENTRAIDE_WORKER__IN_PROCESS": "false"}
            node = Proc(
                setup.serve_args(),
                log=base / "node.log",
                cpus=layout.server,
                env=bench_env(**serve_env) if serve_env else None,
                profile_to=None if args.worker_process else profile_file,
                profile_rate=args.profile_rate,
            )
            worker: Proc | None = None
            if args.worker_process:
                worker_cpus = {"none": None, "server": layout.server, "client": layout.client}[
                    args.worker_cpus
                ]
                worker = Proc(
                    [*setup.serve_args()[:3], "worker", *setup.serve_args()[4:]],
                    log=base / "worker.log",
                    cpus=worker_cpus,
                    env=bench_env(**signing) if signing else None,
                    profile_to=profile_file,  # the worker process: profile it
                    profile_rate=args.profile_rate,
                )
            with node, worker or contextlib.nullcontext():
                await wait_http(f"{setup.origin}/actor", node, headers={"Accept": AP})
                await asyncio.sleep(1.0)  # let the worker's start-up jobs (sync_all, purge) pass
                result.baseline_rss_mb = node.rss_mb()
                cpu0 = node.tree_cpu_seconds()
                wcpu0 = worker.tree_cpu_seconds() if worker else 0.0
                wmain0 = worker.cpu_seconds() if worker else 0.0
                fcpu0 = fake.cpu_seconds()
                note = {
                    "to": [AS_PUBLIC],
                    "type": "Note",
                    "content": "<p>Alerte : rupture de stock d'insuline rapide, voir la fiche.</p>",
                }
                t0 = time.time()
                async with http.post(
                    f"{group_iri}/outbox",
                    json=note,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": AP},
                ) as response:
                    body = await response.text()
                    if response.status != 201:
                        raise RuntimeError(f"publishing answered {response.status}: {body}")
                result.publish_ms = 1000 * (time.time() - t0)
                deadline = time.monotonic() + args.timeout
                stats: dict[str, Any] = {}
                while time.monotonic() < deadline:
                    async with http.get(f"{control}/stats") as response:
                        stats = await response.json()
                    if stats["inboxes"] >= expected:
                        break
                    await asyncio.sleep(0.05)
                else:
                    result.timed_out = True
                async with http.get(f"{control}/stats", params={"times": "1"}) as response:
                    stats = await response.json()
                cpu1 = node.tree_cpu_seconds()
                wcpu1 = worker.tree_cpu_seconds() if worker else 0.0
                wmain1 = worker.cpu_seconds() if worker else 0.0
                fcpu1 = fake.cpu_seconds()
                result.fake_hosts_cpu_s = None if fcpu0 is None or fcpu1 is None else fcpu1 - fcpu0
                if None not in (cpu0, cpu1, wcpu0, wcpu1):
                    result.worker_cpu_s = (wcpu1 - wcpu0) if worker else None  # type: ignore[operator]
                    if worker and wmain0 is not None and wmain1 is not None:
                        result.worker_main_cpu_s = wmain1 - wmain0
                    result.node_cpu_s = (cpu1 - cpu0) + (wcpu1 - wcpu0)  # type: ignore[operator]
                peaks = [node.peak_rss_mb(), worker.peak_rss_mb() if worker else None]
                result.peak_rss_mb = max((p for p in peaks if p is not None), default=None)
                result.received = stats["inboxes"]
                result.duplicates = stats["duplicates"]
                result.refused = stats["refused"]
                times = [t - t0 for t in stats["times"]]
                result.first_s = times[0] if times else None
                result.p50_s = percentile(times, 50)
                result.last_arrival_s = times[-1] if times else None
                result.last_s = result.last_arrival_s if result.done else None
                result.signatures = await _verify_samples(http, control, group_iri)
                result.delivery_states = await _delivery_states(database_url)
                if worker is not None and result.serve_worker:
                    result.serve_deliveries = (await _deliveries_by_pid(database_url)).get(node.pid, 0)
    if args.profile and profile_file is not None:
        result.profile = summarise_profile(profile_file)
    return result


def _serve_share(r: FanoutResult) -> str:
    """What ``serve`` did in a two-process run: its worker's deliveries, or no worker."""
    return f"its worker on: {r.serve_deliveries or 0:,} deliveries" if r.serve_worker else "no worker"


def report(results: list[FanoutResult], args: argparse.Namespace, rsa_ms: float) -> None:
    rows = []
    for r in results:
        target = (TARGET_SECONDS_TWO_PROCESSES if r.worker_process else TARGET_SECONDS)[r.scenario]
        last = r.last_s
        rows.append(
            [
                f"({'i' if r.scenario == 'shared' else 'ii'}) {r.scenario} inboxes",
                r.engine,
                f"{r.followers:,} / {r.hosts}",
                f"{r.received:,}/{r.expected:,}" + (" (TIMED OUT)" if r.timed_out else ""),
                fmt(r.first_s, 2),
                fmt(r.p50_s, 2),
                fmt(last, 2)
                if last is not None
                else f"> {args.timeout:.0f} (≈{fmt(r.projected_s)} at this rate)",
                f"< {target:.0f} s: {verdict(last, target, higher_is_better=False) if last else 'MISSED'}",
                fmt(r.rate),
                fmt(1000 * r.node_cpu_s / r.received if r.node_cpu_s and r.received else None, 2),
                fmt(1000 * r.fake_hosts_cpu_s / r.received if r.fake_hosts_cpu_s and r.received else None, 2),
                f"{fmt(r.baseline_rss_mb)} → {fmt(r.peak_rss_mb)}",
                verdict(r.peak_rss_mb, TARGET_RSS_MB, higher_is_better=False),
            ]
        )
    print()
    print(
        "Fan-out: one alert (Create{Note}, public) from an association; seconds after the POST to its outbox"
    )
    print(
        table(
            [
                "scenario",
                "db",
                "followers / hosts",
                "inboxes reached",
                "first s",
                "p50 s",
                "last s",
                "target",
                "deliveries/s",
                "node CPU ms/delivery",
                "fake hosts CPU ms/delivery",
                "RSS MB start → peak",
                "RSS < 250 MB",
            ],
            rows,
        )
    )
    for r in results:
        worker_ms = 1000 * r.worker_main_cpu_s / r.received if r.worker_main_cpu_s and r.received else None
        print(
            f"({r.scenario}, {r.engine}) publish answered in {fmt(r.publish_ms)} ms; signatures of the first "
            f"delivery per host: {r.signatures}; duplicates: {r.duplicates}; refused: {r.refused}; "
            f"delivery rows: {r.delivery_states}"
            + (
                f"; serve ({_serve_share(r)})"
                f" + worker process ({r.signing_processes} signing processes each), the worker's CPU: "
                f"{fmt(r.worker_cpu_s, 2)} s of {fmt(r.node_cpu_s, 2)} s, of which its own process "
                f"{fmt(r.worker_main_cpu_s, 2)} s "
                f"({fmt(worker_ms, 2)}"
                " ms per delivery)"
                if r.worker_process
                else ""
            )
        )
    for r in results:
        if r.scenario != "personal" or not r.node_cpu_s or not r.received:
            continue
        # Each personal delivery is one RSA signature: what no code can take off on this host.
        cores = 2 if r.worker_process else 1
        floor = r.expected * rsa_ms / 1000 / cores
        outside = 1000 * r.node_cpu_s / r.received - rsa_ms
        print(
            f"({r.scenario}, {r.engine}) RSA-2048 at {rsa_ms:.2f} ms here: the signatures alone are "
            f"{floor:.2f} s on {cores} core{'s' if cores > 1 else ''}; the node's CPU outside them "
            f"{outside:.2f} ms per delivery"
        )
    for r in results:
        if r.profile:
            print(f"\nprofile of the node, {r.scenario} ({r.engine}) (py-spy --gil, {args.profile_rate} Hz):")
            print(r.profile)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    layout = Layout.choose(not args.no_pin)
    layout.pin_client()
    print_machine(info, layout.describe())
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-bench-fanout-"))
    results: list[FanoutResult] = []
    for engine in args.engines.split(","):
        for scenario in args.scenarios.split(","):
            label = f"{scenario} ({engine}): {args.followers:,} followers on {args.hosts} hosts"
            with step(label):
                if engine == "sqlite":
                    url = sqlite_url(work / f"{scenario}-{engine}" / "node")
                    results.append(await _scenario(scenario, engine, url, args, work, layout))
                else:
                    async with pg_database("fanout") as url:
                        if url is None:
                            print(f"  skipped: PostgreSQL unavailable ({label})")
                            continue
                        results.append(await _scenario(scenario, engine, url, args, work, layout))
            r = results[-1] if results else None
            if r is not None:
                print(f"  {r.received:,}/{r.expected:,} inboxes, last at {fmt(r.last_s, 2)} s", flush=True)
    report(results, args, info["rsa2048_sign_ms"])
    print(f"\nlogs: {work}")
    return {
        "machine": info,
        "layout": layout.describe(),
        "params": {k: v for k, v in vars(args).items() if k != "json"},
        "results": [r.summary() for r in results],
        "profiles": {f"{r.scenario}-{r.engine}": r.profile for r in results if r.profile},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--scenarios", default="shared,personal", help="shared,personal (default both)")
    parser.add_argument("--engines", default="sqlite", help="sqlite,postgresql (default sqlite)")
    parser.add_argument("--timeout", type=float, default=75.0, help="seconds to wait per scenario")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="serve without its in-process worker plus one separate `worker` process (two cores)",
    )
    parser.add_argument(
        "--worker-cpus",
        choices=("none", "server", "client"),
        default="none",
        help="with --worker-process: pin the worker like the node (server), like the fake hosts "
        "(client), or not at all (default)",
    )
    parser.add_argument(
        "--serve-without-worker",
        action="store_true",
        help="with --worker-process: serve's in-process worker off, the worker process delivers alone",
    )
    parser.add_argument(
        "--signing-processes",
        type=int,
        default=0,
        help="with --worker-process: worker.signing_processes of each process that delivers "
        "(decision 90; default 0)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the node and helpers to CPUs")
    parser.add_argument("--profile", action="store_true", help="record the node with py-spy")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument("--work-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    write_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
