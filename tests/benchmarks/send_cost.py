"""What one signed delivery costs the sending process, counted rather than timed (issue 20).

A fan-out to personal inboxes signs and POSTs one request per inbox. This measures, in this
process only, the CPU (``time.process_time``) per request of each part of that path, against the
fake hosts of ``bench_fanout`` (``servers.py fake-hosts``, a child process pinned to the first
core when there are two; this process is pinned to the last core):

* ``rsa``: :meth:`federation.keys.KeyPair.sign` of a signing string alone (RSA-2048);
* ``sign``: :func:`federation.signatures.sign_request` of the unsigned inbox POST, RSA included;
* ``send``: :meth:`federation.transport.AiohttpTransport.send` of requests signed beforehand;
* ``deliver``: :func:`federation.delivery.deliver`, signing and sending, as the worker does;

and, on asyncio's loop, the timers scheduled per ``send`` (``loop.call_at``: ``call_later`` and
``asyncio.timeout`` go through it), a figure the machine's load does not move; with ``--count-calls``,
the function calls per request of each phase (cProfile's count, Python and C), another.

Requests go to ``--hosts`` hosts in turn, a distinct inbox each, ``-c`` at a time (the worker's
``deliveries_in_flight``), over one transport with the production settings (connections are opened
by a warm-up round first). ``sign + send - rsa`` is what a delivery costs outside RSA; ``--fake-rsa``
replaces the RSA operation by 256 fixed bytes, which leaves exactly that without RSA's noise.

``--against <tree>`` compares with the ``federation`` package of another checkout (e.g. ``git
archive <rev>`` extracted), imported in this same process under another name: each round runs
every phase with both, in alternating order, so a change of the machine's load weighs on both.

    python -m tests.benchmarks.send_cost [-n 2000] [-c 256] [--hosts 200] [--rounds 5] [--fake-rsa]
        [--uvloop] [--against <tree>]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from ._common import PYTHON, ROOT, Proc, free_port, table, wait_http

BODY = json.dumps(
    {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://node.example/objects/0b7f5c1e-5d8a-4a53-9a7e-1f0f3b6e0c11/activity",
        "type": "Create",
        "actor": "https://node.example/groups/alerts",
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "cc": ["https://node.example/groups/alerts/followers"],
        "object": {
            "id": "https://node.example/objects/0b7f5c1e-5d8a-4a53-9a7e-1f0f3b6e0c11",
            "type": "Note",
            "attributedTo": "https://node.example/groups/alerts",
            "content": "<p>" + "Alerte : la distribution de ce soir est avancée à 18 h. " * 12 + "</p>",
            "published": "2026-12-07T21:00:00Z",
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
            "cc": ["https://node.example/groups/alerts/followers"],
        },
    }
).encode()
PHASES = ("rsa", "sign", "send", "deliver")


def _library(package: str) -> SimpleNamespace:
    """What the measurement uses, from ``package`` (``federation`` or another tree's copy)."""
    modules = {
        name: importlib.import_module(f"{package}.{name}")
        for name in ("delivery", "keys", "signatures", "transport", "types")
    }
    return SimpleNamespace(
        package=package,
        deliver=modules["delivery"].deliver,
        Delivered=modules["delivery"].Delivered,
        inbox_request=modules["delivery"].inbox_request,
        KeyPair=modules["keys"].KeyPair,
        private_key_from_pem=modules["keys"].private_key_from_pem,
        sign_request=modules["signatures"].sign_request,
        AiohttpTransport=modules["transport"].AiohttpTransport,
        utc_now=modules["types"].utc_now,
    )


def _library_of_tree(tree: Path) -> SimpleNamespace:
    """``tree``'s ``federation`` package, imported as ``federation_against`` beside ours."""
    holder = Path(tempfile.mkdtemp(prefix="entraide-send-cost-"))
    (holder / "federation_against").symlink_to((tree / "federation").resolve())
    sys.path.insert(0, str(holder))
    return _library("federation_against")


@dataclass
class _Side:
    """One code base under measurement: its transport, signer and figures."""

    label: str
    lib: SimpleNamespace
    transport: Any = None
    signer: Any = None
    figures: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    timers: int = 0
    sends: int = 0
    calls: dict[str, float] = field(default_factory=dict)
    """Function calls per request of each phase (``--count-calls``), as cProfile counts them."""


class _TimerCount:
    """Timers scheduled while counting (``loop.call_at``, which ``call_later`` and ``asyncio.timeout``
    use). Not available on uvloop, whose methods cannot be wrapped."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self.on = False
        self.supported = isinstance(loop, asyncio.BaseEventLoop)
        if self.supported:
            original = loop.call_at

            def call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
                self.count += self.on
                return original(*args, **kwargs)

            loop.call_at = call_at  # type: ignore[method-assign]

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False


@contextlib.contextmanager
def _calls(side: _Side, phase: str, count: int, on: bool) -> Iterator[None]:
    """With ``on``, count the function calls (Python and C) made meanwhile, per request."""
    if not on:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        side.calls[phase] = pstats.Stats(profiler).total_calls / count  # type: ignore[attr-defined]


async def _run_many(count: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """CPU seconds of this process to run ``one(i)`` for every ``i < count``, ``concurrency`` at once."""
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            await one(i)

    cpu = time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.process_time() - cpu


async def _round(
    side: _Side,
    ports: Sequence[int],
    round_no: int,
    timers: _TimerCount,
    args: argparse.Namespace,
    *,
    count_calls: bool = False,
) -> None:
    """One round of every phase; with ``count_calls``, function calls are counted instead of CPU."""
    lib, signer, transport, n = side.lib, side.signer, side.transport, args.n

    def signed_for(url: str) -> Any:
        return lib.sign_request(lib.inbox_request(url, BODY), signer, now=lib.utc_now())

    def inbox(i: int, phase: str) -> str:
        return f"http://127.0.0.1:{ports[i % len(ports)]}/users/{side.label}{round_no}{phase}{i}/inbox"

    message = signed_for(inbox(0, "m")).headers["Signature"]
    figures: dict[str, list[float]] = {p: [] for p in PHASES} if count_calls else side.figures
    cpu = time.process_time()
    for _ in range(n // 4):
        signer.sign(message.encode())
    figures["rsa"].append((time.process_time() - cpu) / (n // 4))

    cpu = time.process_time()
    with _calls(side, "sign", n, count_calls):
        signed = [signed_for(inbox(i, "s")) for i in range(n)]
    figures["sign"].append((time.process_time() - cpu) / n)

    async def sent(i: int) -> None:
        response = await transport.send(signed[i], follow_redirects=False)
        if response.status != 202:
            raise RuntimeError(f"status {response.status}")

    before = timers.count
    with timers.counting(), _calls(side, "send", n, count_calls):
        figures["send"].append(await _run_many(n, args.c, sent) / n)
    if not count_calls:
        side.timers += timers.count - before
        side.sends += n

    async def delivered(i: int) -> None:
        now = lib.utc_now()
        outcome = await lib.deliver(inbox(i, "d"), BODY, signer=signer, transport=transport, now=now)
        if not isinstance(outcome, lib.Delivered):
            raise RuntimeError(f"delivery failed: {outcome}")

    with _calls(side, "deliver", n, count_calls):
        figures["deliver"].append(await _run_many(n, args.c, delivered) / n)


async def measure(ports: Sequence[int], sides: list[_Side], args: argparse.Namespace) -> None:
    pem = (ROOT / "tests" / "fixtures" / "keys" / "rsa-alice.pem").read_bytes()
    timers = _TimerCount(asyncio.get_running_loop())
    async with contextlib.AsyncExitStack() as stack:
        for side in sides:
            lib = side.lib
            actor = "https://node.example/groups/alerts"
            side.signer = lib.KeyPair(f"{actor}#main-key", actor, lib.private_key_from_pem(pem))
            side.transport = await stack.enter_async_context(
                lib.AiohttpTransport(user_agent=f"Entraide/bench (+{actor})", allow_private_addresses=True)
            )

            async def warm(i: int, side: _Side = side) -> None:
                url = f"http://127.0.0.1:{ports[i % len(ports)]}/warm/{side.label}{i}/inbox"
                lib = side.lib
                await lib.deliver(url, BODY, signer=side.signer, transport=side.transport, now=lib.utc_now())

            await _run_many(len(ports) * 2, args.c, warm)  # connections, caches
        for round_no in range(args.rounds):
            for side in sides if round_no % 2 == 0 else reversed(sides):
                await _round(side, ports, round_no, timers, args)
        if args.count_calls:
            for side in sides:
                await _round(side, ports, args.rounds, timers, args, count_calls=True)
    if not timers.supported:
        for side in sides:
            side.sends = 0


async def run(sides: list[_Side], args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2 and not args.no_pin
    control_port = free_port()
    fake_cmd = [PYTHON, "-m", "tests.benchmarks.servers", "fake-hosts",
                "--count", str(args.hosts), "--port", str(control_port)]  # fmt: skip
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="entraide-send-cost-"))
    with Proc(fake_cmd, log=work / "fake-hosts.log", cpus=frozenset(cpus[:1]) if pinned else None) as fake:
        control = f"http://127.0.0.1:{control_port}"
        await wait_http(f"{control}/ports", fake)
        async with aiohttp.ClientSession() as http, http.get(f"{control}/ports") as response:
            ports: list[int] = await response.json()
        if pinned:
            os.sched_setaffinity(0, {cpus[-1]})
        await measure(ports, sides, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="requests per phase and round")
    parser.add_argument("-c", type=int, default=256, help="requests in flight (worker.deliveries_in_flight)")
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run this process's loop on uvloop")
    parser.add_argument(
        "--fake-rsa",
        action="store_true",
        help="KeyPair.sign returns 256 fixed bytes: what is left is the cost outside RSA, without its noise",
    )
    parser.add_argument("--against", type=Path, help="another checkout whose federation package is compared")
    parser.add_argument(
        "--count-calls",
        action="store_true",
        help="one more round per side under cProfile: function calls per request, a load-independent figure",
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--work-dir")
    parser.add_argument("--json", help="also write the figures (seconds per request, per round) here")
    args = parser.parse_args()
    sides = [_Side("this", _library("federation"))]
    if args.against is not None:
        sides.insert(0, _Side("against", _library_of_tree(args.against)))
    if args.fake_rsa:
        for side in sides:
            side.lib.KeyPair.sign = lambda self, message: bytes(256)
    if args.uvloop:
        import uvloop

        uvloop.run(run(sides, args))
    else:
        asyncio.run(run(sides, args))
    loop = "uvloop" if args.uvloop else "asyncio"
    rsa = "fake" if args.fake_rsa else "RSA-2048"
    print(f"loop: {loop}  signatures: {rsa}  load after: {os.getloadavg()[0]:.2f}  "
          f"n={args.n} c={args.c} hosts={args.hosts} rounds={args.rounds}")  # fmt: skip
    rows = []
    for side in sides:
        where = str(args.against) if side.label == "against" else str(ROOT)
        med = {phase: statistics.median(values) for phase, values in side.figures.items()}
        low = {phase: min(values) for phase, values in side.figures.items()}
        for phase in PHASES:
            values = side.figures[phase]
            each = " ".join(f"{1e6 * v:.0f}" for v in values)
            rows.append([where, phase, each, f"{1e6 * med[phase]:.0f}", f"{1e6 * low[phase]:.0f}"])
        outside = med["sign"] + med["send"] - med["rsa"], low["sign"] + low["send"] - low["rsa"]
        rows.append([where, "sign + send - rsa", "", *(f"{1e6 * v:.0f}" for v in outside)])
        deliver = med["deliver"] - med["rsa"], low["deliver"] - low["rsa"]
        rows.append([where, "deliver - rsa", "", *(f"{1e6 * v:.0f}" for v in deliver)])
        if side.sends:
            rows.append([where, "timers per send", "", f"{side.timers / side.sends:.2f}", ""])
        for phase, calls in side.calls.items():
            rows.append([where, f"function calls per {phase}", "", f"{calls:.0f}", ""])
    print(table(["code", "phase", "CPU µs per request, each round", "median", "lowest"], rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"loop": loop, "rsa": rsa, "sides": {s.label: s.figures for s in sides}})
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
