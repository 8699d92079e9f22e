"""A rolling restart of two `entraide serve` processes under load fails no request (graceful drain).

The test plays the load balancer: it sends a steady load round-robin to the processes whose
``/healthz`` last answered 200, polling every 0.1 s. On SIGTERM a process keeps serving for
``server.drain_s`` with ``/healthz`` at 503, so the balancer stops choosing it before it closes
its listener. With ``drain_s = 0`` the listener closes at once and requests sent in the
balancer's blind window are refused (this test fails).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support.databases import SqliteTemplate
from tests.support.nodes import node_settings
from tests.support.processes import ServiceProcess, wait_for_http, write_config

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


async def test_rolling_restart_under_load_fails_no_request(
    tmp_path: Path, sqlite_template: SqliteTemplate
) -> None:
    ports = [unused_port(), unused_port()]
    url = sqlite_template.copy_to(tmp_path / "db")
    settings = node_settings(
        tmp_path / "data", url, port=ports[0], server={"drain_s": 1.0, "shutdown_timeout_s": 5.0}
    )
    config = write_config(settings, tmp_path / "entraide.toml")

    def web(port: int) -> ServiceProcess:
        args = ["serve", "--config", str(config), "--port", str(port)]
        return ServiceProcess(args, log_path=tmp_path / f"web-{port}.log")

    processes = {port: web(port) for port in ports}
    balancer = Balancer(ports)
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        for process in processes.values():
            await process.start()
        for port, process in processes.items():
            await wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            tasks = [asyncio.create_task(balancer.poll(http))]
            tasks += [asyncio.create_task(balancer.load(http)) for _ in range(4)]
            try:
                async with asyncio.timeout(60):
                    while not all(balancer.healthy.values()):
                        await asyncio.sleep(POLL_S)
                    for port in ports:  # restart one, then the other
                        await asyncio.sleep(0.5)
                        before = balancer.served[port]
                        assert await processes[port].terminate() == 0, processes[port].log()
                        assert balancer.served[port] > before, "the load did not reach this process"
                        processes[port] = web(port)
                        await processes[port].start()
                        await wait_for_http(f"http://127.0.0.1:{port}/healthz", process=processes[port])
                    await asyncio.sleep(0.5)
            finally:
                balancer.stop.set()
                await asyncio.gather(*tasks)
    finally:
        for process in processes.values():
            await process.close()
    assert balancer.failures == []
    assert all(balancer.served[port] > 10 for port in ports), balancer.served
    assert "draining" in (tmp_path / f"web-{ports[0]}.log").read_text()
