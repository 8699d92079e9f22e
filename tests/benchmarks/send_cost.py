"""What one signed delivery costs the sending process, counted rather than timed (issue 20).

A fan-out to personal inboxes signs and POSTs one request per inbox. This measures, in this
process only, the CPU (``time.process_time``) per request of each part of that path, against the
fake hosts of ``bench_fanout`` (``servers.py fake-hosts``, a child process pinned to the other
core when there are two; this process is pinned to the last core):

* ``rsa``: :meth:`federation.keys.KeyPair.sign` of a signing string alone (RSA-2048);
* ``sign``: :func:`federation.signatures.sign_request` of the unsigned inbox POST, RSA included;
* ``send``: :meth:`federation.transport.AiohttpTransport.send` of requests signed beforehand;
* ``deliver``: :func:`federation.delivery.deliver`, signing and sending, as the worker does.

Requests go to ``--hosts`` hosts in turn, a distinct inbox each, ``-c`` at a time (the worker's
``deliveries_in_flight``), over one transport with the production settings (connections are opened
by a warm-up round first). ``sign + send - rsa`` is what a delivery costs outside RSA.
Old and new code are compared by running this module alternately from each tree
(``PYTHONPATH=<tree> python -m tests.benchmarks.send_cost``).

    python -m tests.benchmarks.send_cost [-n 4000] [-c 256] [--hosts 200] [--rounds 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from federation.delivery import Delivered, deliver, inbox_request
from federation.http import OutgoingRequest
from federation.keys import KeyPair, private_key_from_pem
from federation.signatures import sign_request
from federation.transport import AiohttpTransport
from federation.types import Iri, utc_now

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


async def measure(ports: Sequence[int], args: argparse.Namespace) -> dict[str, list[float]]:
    pem = (ROOT / "tests" / "fixtures" / "keys" / "rsa-alice.pem").read_bytes()
    signer = KeyPair(Iri("https://node.example/groups/alerts#main-key"), Iri("https://node.example/groups/alerts"),
                     private_key_from_pem(pem))  # fmt: skip
    n, hosts = args.n, len(ports)
    figures: dict[str, list[float]] = {"rsa": [], "sign": [], "send": [], "deliver": []}
    async with AiohttpTransport(user_agent="Entraide/bench (+https://node.example)",
                                allow_private_addresses=True) as transport:  # fmt: skip
        round_no = 0

        def inbox(i: int) -> Iri:
            return Iri(f"http://127.0.0.1:{ports[i % hosts]}/users/r{round_no}u{i}/inbox")

        async def delivered(i: int) -> None:
            outcome = await deliver(inbox(i), BODY, signer=signer, transport=transport, now=utc_now())
            if not isinstance(outcome, Delivered):
                raise RuntimeError(f"delivery failed: {outcome}")

        await _run_many(hosts * 2, args.c, delivered)  # warm-up: connections, caches
        first = sign_request(inbox_request(inbox(0), BODY), signer, now=utc_now())
        message = first.headers["Signature"].encode()
        timers = _TimerCount(asyncio.get_running_loop())
        for round_no in range(1, args.rounds + 1):
            cpu = time.process_time()
            for _ in range(n // 4):
                signer.sign(message)
            figures["rsa"].append((time.process_time() - cpu) / (n // 4))

            signed: list[OutgoingRequest] = []
            cpu = time.process_time()
            for i in range(n):
                signed.append(sign_request(inbox_request(inbox(i), BODY), signer, now=utc_now()))
            figures["sign"].append((time.process_time() - cpu) / n)

            async def sent(i: int, signed: list[OutgoingRequest] = signed) -> None:
                response = await transport.send(signed[i], follow_redirects=False)
                if response.status != 202:
                    raise RuntimeError(f"status {response.status}")

            with timers.counting():
                figures["send"].append(await _run_many(n, args.c, sent) / n)
            round_no += 1000  # fresh inboxes for the deliver phase
            figures["deliver"].append(await _run_many(n, args.c, delivered) / n)
            round_no -= 1000
    if timers.supported:
        figures["timers per send"] = [timers.count / (n * args.rounds)]
    return figures


class _TimerCount:
    """Timers (``loop.call_at``, which ``call_later`` and ``asyncio.timeout`` use) scheduled while
    counting: a load-independent figure. Not available on uvloop (its methods cannot be wrapped)."""

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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2 and not args.no_pin
    control_port = free_port()
    fake_cmd = [PYTHON, "-m", "tests.benchmarks.servers", "fake-hosts",
                "--count", str(args.hosts), "--port", str(control_port)]  # fmt: skip
    work = Path(args.work_dir or f"/tmp/entraide-send-cost-{os.getpid()}")
    with Proc(fake_cmd, log=work / "fake-hosts.log", cpus=frozenset(cpus[:1]) if pinned else None) as fake:
        control = f"http://127.0.0.1:{control_port}"
        await wait_http(f"{control}/ports", fake)
        async with aiohttp.ClientSession() as http, http.get(f"{control}/ports") as response:
            ports: list[int] = await response.json()
        if pinned:
            os.sched_setaffinity(0, {cpus[-1]})
        figures = await measure(ports, args)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=4000, help="requests per phase and round")
    parser.add_argument("-c", type=int, default=256, help="requests in flight (worker.deliveries_in_flight)")
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run this process's loop on uvloop")
    parser.add_argument(
        "--fake-rsa",
        action="store_true",
        help="KeyPair.sign returns 256 fixed bytes: what is left is the cost outside RSA, without its noise",
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--work-dir")
    parser.add_argument("--json", help="also write the figures (seconds per request, per round) here")
    args = parser.parse_args()
    if args.fake_rsa:
        KeyPair.sign = lambda self, message: bytes(256)  # type: ignore[method-assign]
    if args.uvloop:
        import uvloop

        figures = uvloop.run(run(args))
    else:
        figures = asyncio.run(run(args))
    timers = figures.pop("timers per send", None)
    rows = [
        [phase, *(f"{1e6 * v:.0f}" for v in values), f"{1e6 * statistics.median(values):.0f}"]
        for phase, values in figures.items()
    ]
    med = {phase: statistics.median(values) for phase, values in figures.items()}
    loop = "uvloop" if args.uvloop else "asyncio"
    rsa = "fake" if args.fake_rsa else "RSA-2048"
    print(f"code: {ROOT}  loop: {loop}  signatures: {rsa}  load: {os.getloadavg()[0]:.2f}  "
          f"n={args.n} c={args.c} hosts={args.hosts}")  # fmt: skip
    print(table(["phase", *(f"round {r + 1} µs" for r in range(args.rounds)), "median µs"], rows))
    print(f"outside RSA (sign + send - rsa): {1e6 * (med['sign'] + med['send'] - med['rsa']):.0f} µs; "
          f"deliver - rsa: {1e6 * (med['deliver'] - med['rsa']):.0f} µs")  # fmt: skip
    if timers is not None:
        print(f"timers scheduled per send: {timers[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"loop": loop, "args": vars(args), "figures": figures}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
