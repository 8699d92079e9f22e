"""The socket guard trips on any network access beyond loopback (security.md §2.7, item 4).

Each attempt below is made on purpose, then taken off the guard's record with
``take_violations()`` so that this test itself passes; the last test runs a throwaway pytest
session in a subprocess to show that an unreported attempt really fails the test that made it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pyld import jsonld

from tests.support import socket_guard
from tests.support.socket_guard import BlockedConnection, BlockedLookup, take_violations

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_NET = "192.0.2.1"  # TEST-NET-1: documentation only, never routed


@pytest.fixture
def guard_record() -> Iterator[list[str]]:
    """The attempts this test makes on purpose (and clears, so the test is not failed for them)."""
    take_violations()
    attempts: list[str] = []
    yield attempts
    attempts.extend(take_violations())


def test_guard_is_installed_for_the_whole_suite() -> None:
    """The plugin is registered from tests/conftest.py and patched the socket module."""
    assert socket_guard.is_installed()
    assert socket.getaddrinfo.__wrapped__ is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("family", "address", "allowed"),
    [
        (socket.AF_INET, ("127.0.0.1", 5432), True),
        (socket.AF_INET, ("127.8.9.10", 80), True),
        (socket.AF_INET6, ("::1", 80, 0, 0), True),
        (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0), True),
        (socket.AF_INET, ("localhost", 80), True),
        (socket.AF_UNIX, "/var/run/postgresql/.s.PGSQL.5432", True),
        (socket.AF_INET, (TEST_NET, 80), False),
        (socket.AF_INET, ("10.0.0.5", 80), False),
        (socket.AF_INET, ("0.0.0.0", 80), False),
        (socket.AF_INET, ("example.com", 80), False),
        (socket.AF_INET6, ("2606:4700::1111", 443, 0, 0), False),
        (socket.AF_INET6, ("::ffff:192.0.2.1", 80, 0, 0), False),
    ],
)
def test_connect_rule(family: int, address: object, allowed: bool) -> None:
    """Only loopback (and Unix sockets) may be connected to."""
    assert socket_guard.may_connect(family, address) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("::1", True),
        (None, True),
        ("", True),
        ("0.0.0.0", True),  # binding a server, not a lookup on the network
        ("example.com", False),
        ("peer.example", False),
        ("www.w3.org", False),
        (TEST_NET, False),
        ("localhost.evil.example", False),
    ],
)
def test_lookup_rule(host: str | None, allowed: bool) -> None:
    """Only localhost and loopback literals may be resolved."""
    assert socket_guard.may_look_up(host) is allowed


def test_blocking_connect_to_test_net_trips(guard_record: list[str]) -> None:
    """socket.connect() to 192.0.2.1 raises before any packet leaves."""
    with socket.socket() as sock, pytest.raises(BlockedConnection):
        sock.connect((TEST_NET, 80))
    with socket.socket() as sock:
        with pytest.raises(BlockedConnection):
            sock.connect_ex((TEST_NET, 80))
    assert len(take_violations()) == 2


def test_create_connection_and_getaddrinfo_trip(guard_record: list[str]) -> None:
    """socket.create_connection and a DNS lookup of example.com are refused."""
    with pytest.raises(BlockedConnection):
        socket.create_connection((TEST_NET, 80), timeout=0.1)
    with pytest.raises(BlockedLookup):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(BlockedLookup):
        socket.gethostbyname("example.com")
    assert len(take_violations()) == 3


async def test_asyncio_connections_trip(guard_record: list[str]) -> None:
    """asyncio's non-blocking connect paths end in the patched socket.connect."""
    loop = asyncio.get_running_loop()
    with pytest.raises(OSError):
        await asyncio.open_connection(TEST_NET, 80)
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(BlockedConnection):
            await loop.sock_connect(sock, (TEST_NET, 80))
    with pytest.raises(OSError):
        await loop.getaddrinfo("example.com", 443)
    recorded = take_violations()
    assert len(recorded) == 3
    assert TEST_NET in recorded[0] and "example.com" in recorded[2]


async def test_aiohttp_client_trips(guard_record: list[str]) -> None:
    """An aiohttp request to a public literal or a public name is refused by the guard."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://{TEST_NET}/")
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get("http://example.com/")
    recorded = take_violations()
    assert any(TEST_NET in r for r in recorded)
    assert any("example.com" in r for r in recorded)


def test_stdlib_and_pyld_default_loaders_trip(guard_record: list[str]) -> None:
    """urllib and pyld's own requests loader (which federation/jsonld.py replaces) are refused too."""
    with pytest.raises(OSError):
        urllib.request.urlopen("http://example.com/", timeout=1)
    with pytest.raises(jsonld.JsonLdError):
        jsonld.requests_document_loader(timeout=1)("https://example.com/context.jsonld", {})
    recorded = take_violations()
    assert len(recorded) >= 2
    assert all("example.com" in r for r in recorded)


def test_unreported_attempt_fails_the_test(tmp_path: Path) -> None:
    """A test that swallows the refusal still fails: the guard reports after the phase."""
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            """
            import socket

            def test_swallows_the_error():
                try:
                    socket.create_connection(("192.0.2.1", 80), timeout=0.1)
                except OSError:
                    pass

            def test_stays_on_loopback():
                assert socket.getaddrinfo("localhost", 80)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTEST_ADDOPTS": ""}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.socket_guard"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    assert "network access outside loopback" in output and "192.0.2.1" in output, output
