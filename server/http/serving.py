"""``entraide serve``: listen, and on SIGTERM drain before stopping, so a rolling restart fails nothing.

A load balancer or proxy in front of several web processes learns that one is going away from
its health check. On SIGTERM (or SIGINT) the process therefore first *drains*: for
``server.drain_s`` seconds it keeps serving every request while ``/healthz`` answers 503
``draining``, long enough for the health checks to take it out of rotation. Then it closes the
listener and gives the requests still in flight ``server.shutdown_timeout_s`` to finish (as
``aiohttp.web.run_app`` does), and the in-process worker the same time for its jobs.
While it serves, the cyclic garbage collector follows ``server.gc_freeze`` and
``server.gc_threshold`` (:mod:`server.collector`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from server.appkeys import DRAINING, SETTINGS
from server.collector import collector_policy
from server.http.proxies import AccessLogger

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    access_log: logging.Logger | None,
    on_ready: Callable[[], None],
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT; drain, then stop gracefully."""
    settings = app[SETTINGS].server
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_s,
        access_log=access_log,
        access_log_class=AccessLogger,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        await web.TCPSite(runner, host, port).start()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        with collector_policy(settings):  # started: what lives now lives as long as the process
            on_ready()
            await stop.wait()
        if settings.drain_s > 0:
            app[DRAINING].set()
            log.info("draining", extra={"drain_s": settings.drain_s})
            await asyncio.sleep(settings.drain_s)
        log.info("stopping", extra={"shutdown_timeout_s": settings.shutdown_timeout_s})
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
