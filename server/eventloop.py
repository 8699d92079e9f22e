"""The event loop of the long-running processes, ``serve`` and ``worker`` (decision 105).

Everything a node does in those processes passes through one event loop per process: each
inbox request, each signed delivery and each database hand-off to aiosqlite's thread is a
handful of callbacks, timers and socket reads. uvloop runs the same :mod:`asyncio` API on libuv,
with those in C: the node spends less of each request and delivery in the loop's own Python
code (docs/performance.md, "uvloop"). ``server.event_loop`` chooses:

* ``auto`` (the default): uvloop where it is installed (a dependency of the package on Linux and
  macOS, the platforms it supports), asyncio's own loop elsewhere;
* ``uvloop``: refuse to start without it, rather than run slower than the operator planned;
* ``asyncio``: asyncio's own loop, to rule the loop out when investigating.

The short commands of the CLI (``migrate``, ``follow``, ...) keep :func:`asyncio.run`: their cost
is their database work, not their loop. The tests run on asyncio's loop, as pytest-aiohttp gives
it; the end-to-end tests that start ``serve`` and ``worker`` run them on the configured loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from server.config import ConfigError

__all__ = ["EVENT_LOOPS", "loop_factory", "run", "running_loop_name"]

EVENT_LOOPS = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop ``server.event_loop = choice`` gives: its name, and a factory (None: asyncio's own).

    Raises:
        ConfigError: ``choice`` is ``uvloop`` and uvloop cannot be imported, or is unknown.
    """
    if choice not in EVENT_LOOPS:
        raise ConfigError(f"server.event_loop: {choice!r} is not one of {', '.join(EVENT_LOOPS)}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(
                f"server.event_loop is 'uvloop' but uvloop cannot be imported ({exc}): "
                "install it (pip install uvloop) or set server.event_loop to 'auto' or 'asyncio'"
            ) from exc
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """Run ``main`` to completion on the loop ``choice`` names, as :func:`asyncio.run` does."""
    try:
        _, factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop this coroutine runs on (for logs and metrics)."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
