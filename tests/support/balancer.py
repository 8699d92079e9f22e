"""A load balancer for tests: round-robin over the backends whose ``/healthz`` last answered 200.

It plays nginx or Caddy in front of several ``entraide serve`` processes: it polls every
backend's ``/healthz`` every :data:`POLL_S` and sends a steady load to the healthy ones only,
recording every answer and every error, so that a test can restart the processes one by one
and check that no request failed (graceful drain, docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable

import aiohttp

from tests.support.processes import ServiceProcess, wait_for_http

POLL_S = 0.1


class Balancer:
    """Round-robin over the healthy backends; every answer or error is recorded."""

    def __init__(self, ports: list[int]) -> None:
        self.healthy = dict.fromkeys(ports, False)
        self.served: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stop = asyncio.Event()
        self._turn = itertools.count()

    def pick(self) -> int | None:
        ready = [port for port, ok in self.healthy.items() if ok]
        return ready[next(self._turn) % len(ready)] if ready else None

    async def poll(self, http: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            for port in self.healthy:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        self.healthy[port] = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    self.healthy[port] = False
            await asyncio.sleep(POLL_S)

    async def load(self, http: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            port = self.pick()
            if port is None:
                await asyncio.sleep(0.01)
                continue
            try:
                async with http.get(f"http://127.0.0.1:{port}/nodeinfo/2.1") as response:
                    await response.read()
                    if response.status == 200:
                        self.served[port] += 1
                    else:
                        self.failures.append(f"{port}: {response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{port}: {exc!r}")
            await asyncio.sleep(0.005)


async def restart_one_by_one(
    balancer: Balancer,
    processes: dict[int, ServiceProcess],
    make: Callable[[int], ServiceProcess],
    *,
    settle_s: float = 0.5,
) -> None:
    """Under the balancer's load, restart each web process in turn (SIGTERM, wait for its
    graceful exit, start a new one, wait for its ``/healthz``), as an upgrade does."""
    while not all(balancer.healthy.values()):
        await asyncio.sleep(POLL_S)
    for port in list(processes):
        await asyncio.sleep(settle_s)
        assert balancer.served[port] > 0, "the load did not reach this process"
        assert await processes[port].terminate() == 0, processes[port].log()
        processes[port] = make(port)
        await processes[port].start()
        await wait_for_http(f"http://127.0.0.1:{port}/healthz", process=processes[port], timeout_s=40)
    await asyncio.sleep(settle_s)
