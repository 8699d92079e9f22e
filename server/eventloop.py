"""The event loop of the long-running processes, ``serve`` and ``worker`` (decision 105).

``server.event_loop`` chooses it:

* ``asyncio`` (the default): asyncio's own loop;
* ``uvloop``: the same :mod:`asyncio` API on libuv, with the loop's callbacks, timers and
  transports in C (``pip install 'entraide[uvloop]'``). It refuses to start without uvloop rather
  than run on another loop than the operator chose.

On the project machine uvloop did not change the node's CPU per inbox activity or per delivery
beyond the noise (docs/performance.md, "The event loop"): the loop's own work is a few percent of
either, and its system calls are the same on both. It stays a setting for machines where that
differs, and the tests run ``serve`` on both.

The short commands of the CLI (``migrate``, ``follow``, ...) keep :func:`asyncio.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from server.config import ConfigError

__all__ = ["EVENT_LOOPS", "loop_factory", "run", "running_loop_name"]

EVENT_LOOPS = ("asyncio", "uvloop")

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
        raise ConfigError(
            f"server.event_loop is 'uvloop' but uvloop cannot be imported ({exc}): "
            "install it (pip install 'entraide[uvloop]') or set server.event_loop to 'asyncio'"
        ) from exc
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
    """``uvloop`` or ``asyncio``: the loop this coroutine runs on (for logs)."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
