"""A pytest plugin that fails any test reaching the network beyond loopback (security.md §2.7, item 4).

Registered for the whole suite from ``tests/conftest.py``. While the session runs, the socket
layer itself is patched, below aiohttp, asyncpg, requests/urllib3 and pyld's document loaders:

* ``socket.socket.connect``, ``connect_ex`` and ``sendto``: an ``AF_INET``/``AF_INET6`` peer
  address must be loopback (``127.0.0.0/8``, ``::1``, or ``::ffff:127.x.y.z``). asyncio's
  non-blocking connect (``loop.sock_connect``, hence ``loop.create_connection``, aiohappyeyeballs
  and every aiohttp connection) ends in ``socket.socket.connect``, so it is covered too.
  ``AF_UNIX`` (PostgreSQL's socket) and other families are left alone.
* ``socket.create_connection``: the same rule, checked on the host before anything else.
* ``socket.getaddrinfo``, ``gethostbyname`` and ``gethostbyname_ex``: only ``localhost``,
  loopback literals, and ``None``/``""``/unspecified addresses (for binding a server) may be
  looked up; any other name would be a real DNS query. aiohttp's default resolver and asyncio's
  ``loop.getaddrinfo`` call ``socket.getaddrinfo`` at call time, so they are covered.

A refused call raises :class:`BlockedConnection` (an ``OSError``) or :class:`BlockedLookup` (a
``socket.gaierror``), so the code under test sees an ordinary network failure and does not
hang; the attempt is also *recorded*, and the test phase (setup, call or teardown) in which it
happened fails afterwards, even when the code under test swallowed the exception.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Generator
from ipaddress import IPv6Address, ip_address
from typing import Any, Final

import pytest

LOOKUP_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
"""Host names that may be resolved (they come from /etc/hosts, never from DNS)."""

_BIND_ONLY: Final = frozenset({"", "0.0.0.0", "::"})
"""Hosts a server binds to; looking them up is harmless, connecting to them is not."""

_violations: list[str] = []
_lock = threading.Lock()
_originals: dict[tuple[Any, str], Any] = {}


class BlockedConnection(ConnectionRefusedError):
    """A test tried to open a connection to a non-loopback address."""


class BlockedLookup(socket.gaierror):
    """A test tried to resolve a name other than localhost (a real DNS query)."""


def is_loopback_host(host: object) -> bool:
    """True for IP literals in ``127.0.0.0/8``, ``::1`` or IPv4-mapped loopback (zone ignored)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def may_look_up(host: object) -> bool:
    """Whether ``getaddrinfo(host, ...)`` stays off the network under the guard's rule."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    return host.lower() in LOOKUP_NAMES or host in _BIND_ONLY or is_loopback_host(host)


def may_connect(family: int, address: object) -> bool:
    """Whether connecting a socket of ``family`` to ``address`` stays on this machine."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return True  # AF_UNIX (PostgreSQL), netlink, socketpair internals...
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if is_loopback_host(host):
        return True
    # socket.connect(("localhost", port)) resolves in C, without our getaddrinfo.
    return isinstance(host, str) and host.lower() in LOOKUP_NAMES


def record(what: str) -> None:
    """Remember one refused attempt; the current test phase fails once it ends."""
    with _lock:
        _violations.append(what)


def take_violations() -> list[str]:
    """Return and forget the attempts recorded so far (the guard's own tests use this)."""
    with _lock:
        taken = list(_violations)
        _violations.clear()
    return taken


def check_connect(family: int, address: object) -> None:
    """Raise :class:`BlockedConnection` (and record it) unless :func:`may_connect` allows it."""
    if not may_connect(family, address):
        message = f"socket guard: connection to {address!r} refused (only loopback is allowed in tests)"
        record(message)
        raise BlockedConnection(message)


def check_lookup(host: object) -> None:
    """Raise :class:`BlockedLookup` (and record it) unless :func:`may_look_up` allows it."""
    if not may_look_up(host):
        message = f"socket guard: name lookup of {host!r} refused (only localhost is allowed in tests)"
        record(message)
        raise BlockedLookup(socket.EAI_NONAME, message)


# ---------------------------------------------------------------------------------------------
# The patches
# ---------------------------------------------------------------------------------------------


def _guard_socket_method(name: str) -> Callable[..., Any]:
    original = getattr(socket.socket, name)

    @functools.wraps(original)
    def guarded(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        # connect(address), connect_ex(address), sendto(data, address) / sendto(data, flags, address)
        address = args[-1] if args else kwargs.get("address")
        if name != "sendto" or len(args) >= 2:
            check_connect(self.family, address)
        return original(self, *args, **kwargs)

    return guarded


def _guard_lookup(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        check_lookup(host)
        return original(host, *args, **kwargs)

    return guarded


def _guard_create_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(address: Any, *args: Any, **kwargs: Any) -> Any:
        # Checked on the host as given, before create_connection's own lookup and connect.
        check_connect(socket.AF_INET, address if isinstance(address, tuple) else (address,))
        return original(address, *args, **kwargs)

    return guarded


_INHERITED = object()  # marks an attribute that came from a base class (socket.socket's C methods)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _originals[(owner, name)] = owner.__dict__.get(name, _INHERITED)
    setattr(owner, name, replacement)


def install() -> None:
    """Patch the socket module (idempotent)."""
    if _originals:
        return
    for name in ("connect", "connect_ex", "sendto"):
        _patch(socket.socket, name, _guard_socket_method(name))
    _patch(socket, "create_connection", _guard_create_connection(socket.create_connection))
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        _patch(socket, name, _guard_lookup(getattr(socket, name)))


def uninstall() -> None:
    """Restore everything :func:`install` replaced."""
    for (owner, name), original in _originals.items():
        if original is _INHERITED:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
    _originals.clear()


def is_installed() -> bool:
    return bool(_originals)


# ---------------------------------------------------------------------------------------------
# pytest hooks
# ---------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


def _fail_on_violations(phase: str) -> None:
    found = take_violations()
    if found:
        listed = "\n  ".join(dict.fromkeys(found))
        pytest.fail(f"network access outside loopback during {phase}:\n  {listed}", pytrace=False)


def _guarded_phase(phase: str) -> Generator[None, Any, Any]:
    try:
        result = yield
    except BaseException:
        _fail_on_violations(phase)  # chained to the phase's own error, which pytest shows too
        raise
    _fail_on_violations(phase)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    take_violations()  # whatever a previous test's stray task did is not this test's fault
    return (yield from _guarded_phase("setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded_phase("the test"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    return (yield from _guarded_phase("teardown"))


__all__ = [
    "BlockedConnection",
    "BlockedLookup",
    "check_connect",
    "check_lookup",
    "install",
    "is_installed",
    "is_loopback_host",
    "may_connect",
    "may_look_up",
    "take_violations",
    "uninstall",
]
