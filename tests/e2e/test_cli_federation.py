"""Two nodes run from the command line only: init, association create, serve, follow, deliveries status.

Everything an operator would type, as real processes on 127.0.0.1; the test only watches through
HTTP and the CLI's own output, and stops both servers with SIGTERM at the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support.processes import cli_env, run_cli, service, wait_for_http

AP = {"Accept": "application/activity+json"}
NewDatabase = Callable[[int], Awaitable[str]]


async def _init_node(data_dir: Path, port: int, database_url: str, slug: str) -> Path:
    """``entraide init`` on a loopback origin, then ``association create``; returns the config file."""
    result = await run_cli(
        [
            "init",
            "--data-dir",
            str(data_dir),
            "--origin",
            f"http://127.0.0.1:{port}",
            "--database",
            database_url,
            "--allow-private-addresses",
        ]
    )
    config = Path(result.check().stdout.strip())
    assert config == data_dir / "entraide.toml"
    created = await run_cli(["association", "create", slug, "--name", slug.title(), "--config", str(config)])
    assert created.check().stdout.strip() == f"http://127.0.0.1:{port}/groups/{slug}"
    return config


async def _total_items(url: str) -> int | None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
        http.get(url, headers=AP) as response,
    ):
        if response.status != 200:
            return None
        doc: dict[str, Any] = await response.json(content_type=None)
        total = doc.get("totalItems")
        return total if isinstance(total, int) else None


async def _poll(what: str, check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def _status(config: Path) -> dict[str, Any]:
    result = await run_cli(["deliveries", "status", "--config", str(config), "--json"])
    loaded: dict[str, Any] = json.loads(result.check().stdout)
    return loaded


def _delivered(status: dict[str, Any], kind: str) -> int:
    return sum(int(row.get("delivered", 0)) for row in status["activities"] if row["type"] == kind)


async def test_two_cli_nodes_follow_each_other_over_webfinger_and_report_deliveries(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    # Given two nodes created and started with the CLI on free loopback ports
    port_a = unused_port()
    port_b = unused_port()
    while port_b == port_a:
        port_b = unused_port()
    config_a, config_b = await asyncio.gather(
        _init_node(tmp_path / "a", port_a, await new_database(0), "alpha"),
        _init_node(tmp_path / "b", port_b, await new_database(1), "beta"),
    )
    origin_a, origin_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    env = cli_env(ENTRAIDE_WORKER__POLL_INTERVAL_S="0.05")  # the in-process worker polls often
    async with (
        service(["serve", "--config", str(config_a)], log_path=tmp_path / "a.log", env=env) as serve_a,
        service(["serve", "--config", str(config_b)], log_path=tmp_path / "b.log", env=env) as serve_b,
    ):
        await wait_for_http(f"{origin_a}/groups/alpha", process=serve_a, headers=AP)
        await wait_for_http(f"{origin_b}/groups/beta", process=serve_b, headers=AP)

        # When alpha follows beta by its handle (WebFinger over http, allowed on loopback here)
        followed = await run_cli(
            ["follow", f"beta@127.0.0.1:{port_b}", "--as", "alpha", "--config", str(config_a)]
        )
        follow_iri = followed.check().stdout.strip()
        assert follow_iri.startswith(f"{origin_a}/"), followed
        assert "pending" in followed.stderr

        # Then B lists alpha as a follower, and A lists beta as followed (the Accept came back)
        async def b_has_a_follower() -> bool:
            return await _total_items(f"{origin_b}/groups/beta/followers") == 1

        async def a_follows_beta() -> bool:
            return await _total_items(f"{origin_a}/groups/alpha/following") == 1

        await _poll("beta's followers collection to count alpha", b_has_a_follower)
        await _poll("alpha's following collection to count beta", a_follows_beta)

        # and `deliveries status --json` shows A's Follow and B's Accept delivered, nothing failed
        statuses: list[dict[str, Any]] = []

        async def both_delivered() -> bool:
            statuses[:] = await asyncio.gather(_status(config_a), _status(config_b))
            return _delivered(statuses[0], "Follow") == 1 and _delivered(statuses[1], "Accept") == 1

        await _poll("A's Follow and B's Accept delivered", both_delivered)
        for status in statuses:
            assert all(set(row) <= {"activity", "type", "delivered"} for row in status["activities"]), status
            assert not any(key.endswith(":failed") for key in status["jobs"]), status

        # When both servers get SIGTERM, they stop gracefully
        assert await serve_a.terminate() == 0, serve_a.log()
        assert await serve_b.terminate() == 0, serve_b.log()
