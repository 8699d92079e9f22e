"""The standalone worker process (``entraide worker``): the same Worker as ``serve``, no HTTP.

Run as many as the database allows: on PostgreSQL they share the queue safely across
machines (docs/architecture.md, "Worker lanes"); on SQLite one beside ``serve``'s own worker gives
deliveries a second core (a single writer at a time: claims and records take turns, decision 93).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from federation import retry
from federation.ports import Transport
from federation.retry import RetryPolicy
from federation.types import Clock, utc_now
from federation.uris import UriScheme
from server.collector import collector_policy
from server.config import Settings
from server.db.engine import check_connection, create_engine, create_sessionmaker
from server.db.queries.bare import Reader
from server.jobs.registry import JobRegistry
from server.jobs.tasks import default_registry, schedule_periodic_jobs
from server.jobs.worker import Worker
from server.services.actors.keys import LocalKeyCache, load_vault
from server.services.context import NodeContext
from server.services.federation import open_federation
from server.services.media.store import media_store

__all__ = ["build_node_context", "run_worker_process"]

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_node_context(
    settings: Settings, engine: AsyncEngine, *, clock: Clock = utc_now, reader: Reader | None = None
) -> NodeContext:
    """The :class:`NodeContext` of this node over ``engine`` (the same as ``serve`` builds, which
    also gives it its ``reader``).

    Raises:
        SecretKeyError: the node secret file is missing or invalid.
    """
    vault = load_vault(settings.storage.secret_key_file)
    return NodeContext(
        settings=settings,
        uris=UriScheme(settings.server.origin),
        sessions=create_sessionmaker(engine),
        vault=vault,
        local_keys=LocalKeyCache(vault),
        clock=clock,
        media_store=media_store(settings.media),
        reader=reader,
    )


@contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (graceful shutdown) while the block runs."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def request_stop(sig: signal.Signals) -> None:
        log.info("worker stop requested", extra={"signal": sig.name})
        stop.set()

    for sig in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, request_stop, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no unix signals
            log.debug("cannot install signal handler", extra={"signal": sig.name})
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_worker_process(
    settings: Settings,
    *,
    registry: JobRegistry | None = None,
    transport: Transport | None = None,
    stop: asyncio.Event | None = None,
    policy: RetryPolicy | None = None,
) -> None:
    """Run one worker with ``settings.worker`` until SIGTERM/SIGINT (or ``stop``) arrives.

    Opens the engine, checks the database answers, runs :class:`Worker` with
    :func:`~server.jobs.tasks.default_registry` unless ``registry`` is given, and disposes of
    the engine on the way out. Running jobs get ``server.shutdown_timeout_s`` to finish.
    The caller checks migrations (as ``serve`` does) before calling this.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
        SecretKeyError: the node secret file is missing or invalid.
    """
    engine = create_engine(settings.database)
    stop_event = stop if stop is not None else asyncio.Event()
    # Signals are caught from the start: a SIGTERM while the worker sets up (schedules the periodic
    # rounds, opens the federation) stops it gracefully instead of killing it mid-transaction.
    with _stop_on_signals(stop_event):
        try:
            await check_connection(engine)
            node = build_node_context(settings, engine)
            # As `serve` does for its in-process worker: a node run by worker processes alone
            # must still catch up periodically (security.md §3.4 item 4). Idempotent per round.
            async with node.sessions.begin() as session:
                await schedule_periodic_jobs(session, now=node.clock())
            async with open_federation(node) as fed:
                worker = Worker(
                    node,
                    registry if registry is not None else default_registry(fed),
                    concurrency=settings.worker.concurrency,
                    poll_interval_s=settings.worker.poll_interval_s,
                    policy=policy if policy is not None else retry.DEFAULT,
                    transport=transport if transport is not None else fed.transport,
                    shutdown_timeout_s=settings.server.shutdown_timeout_s,
                )
                fed.wakeups.append(worker.notify)
                if fed.wake_channel is not None:  # other processes' enqueues wake it too (decision 100)
                    fed.wake_channel.listen(worker.notify)
                with collector_policy(settings.server):  # as `serve` does once started
                    await worker.run(stop_event)
        finally:
            await engine.dispose()
