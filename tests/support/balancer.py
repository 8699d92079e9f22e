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
from functools import partial

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


def _served_more(balancer: Balancer, port: int, count: int) -> bool:
    return balancer.served[port] > count


async def _until(balancer: Balancer, ready: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Wait until ``ready()`` while the load runs; fail after ``timeout_s`` (a busy machine gets the
    time it needs, a broken process does not hang the test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not ready():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {balancer.served}")
        await asyncio.sleep(POLL_S)


async def restart_one_by_one(
    balancer: Balancer,
    processes: dict[int, ServiceProcess],
    make: Callable[[int], ServiceProcess],
    *,
    settle_s: float = 0.5,
    served: int = 10,
) -> None:
    """Under the balancer's load, restart each web process in turn (SIGTERM, wait for its
    graceful exit, start a new one, wait for its ``/healthz``), as an upgrade does.

    Each process has served more than ``served`` requests before it is restarted, and each new
    one serves again before this returns: waits on the load itself, not on the clock alone."""
    await _until(balancer, lambda: all(balancer.healthy.values()), "every backend healthy")
    restarted_at: dict[int, int] = {}
    for port in list(processes):
        await asyncio.sleep(settle_s)
        await _until(balancer, partial(_served_more, balancer, port, served), f"the load to reach {port}")
        assert await processes[port].terminate() == 0, processes[port].log()
        processes[port] = make(port)
        await processes[port].start()
        await wait_for_http(f"http://127.0.0.1:{port}/healthz", process=processes[port], timeout_s=40)
        restarted_at[port] = balancer.served[port]
    await asyncio.sleep(settle_s)
    await _until(
        balancer,
        lambda: all(balancer.served[port] > count for port, count in restarted_at.items()),
        "the restarted processes to serve",
    )
