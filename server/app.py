"""The application factory: settings in, a ready ``web.Application`` out. Nothing runs at import."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from federation import retry
from federation.ports import Transport
from federation.retry import RetryPolicy
from server.appkeys import (
    DRAINING,
    ENGINE,
    FEDERATION,
    INBOX_WRITER,
    METRICS,
    NODE,
    RETRY_POLICY,
    SETTINGS,
    TRANSPORT,
)
from server.config import Settings
from server.db.engine import create_engine, open_reader
from server.http import (
    account_api,
    activitypub,
    api,
    blocks_api,
    calendar,
    drafts_api,
    events,
    feeds,
    inbox,
    media,
    members_api,
    moderation_api,
    ops,
    outbox,
    pages,
    threads,
    wellknown,
)
from server.http.cache import PAGE_CACHE, PageCache, page_cache_hit_middleware, page_cache_middleware
from server.http.inbox import INBOX_DEPS, INBOX_LIMITER, UNVERIFIED_LIMITER, inbox_deps
from server.http.middlewares import (
    audit_channel_middleware,
    metrics_middleware,
    problem_middleware,
    request_id_middleware,
)
from server.http.proxies import forwarded_middleware
from server.http.ratelimit import HostRateLimiter
from server.http.routing import MemoRouter
from server.jobs.runner import build_node_context
from server.jobs.tasks import default_registry, schedule_periodic_jobs
from server.jobs.worker import Worker
from server.metrics import create_metrics
from server.services.federation import Federation, build_federation, open_federation
from server.services.inbox.writer import InboxWriter
from server.services.moderation.blocks import policy_sync


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database)
    reader = open_reader(settings.database)
    app[ENGINE] = engine
    app[NODE] = build_node_context(settings, engine, reader=reader)
    yield
    if reader is not None:
        reader.close()
    await engine.dispose()


async def _federation_ctx(app: web.Application) -> AsyncIterator[None]:
    injected = app.get(TRANSPORT)
    if injected is not None:  # tests: a transport that maps fake peer names to 127.0.0.1
        fed = build_federation(app[NODE], injected)
        async with policy_sync(fed), _inbox_writer(app, fed):
            yield
        return
    async with open_federation(app[NODE]) as fed, _inbox_writer(app, fed):
        yield


@asynccontextmanager
async def _inbox_writer(app: web.Application, fed: Federation) -> AsyncIterator[None]:
    """The federation runtime, the inbox's group-commit writer, and the inbox checks' deps."""
    app[FEDERATION] = fed
    writer = InboxWriter(fed)
    writer.start()
    app[INBOX_WRITER] = writer
    app[INBOX_DEPS] = inbox_deps(app)
    federation_settings = fed.node.settings.federation
    app[INBOX_LIMITER] = HostRateLimiter(
        rate_per_s=federation_settings.inbox_rate_per_host, burst=federation_settings.inbox_burst_per_host
    )
    # The same budget per source address, spent only by requests whose signature did not verify.
    app[UNVERIFIED_LIMITER] = HostRateLimiter(
        rate_per_s=federation_settings.inbox_rate_per_host, burst=federation_settings.inbox_burst_per_host
    )
    try:
        yield
    finally:
        await writer.close()


async def _worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The in-process worker of ``serve`` (``worker.in_process``); stopped gracefully at shutdown."""
    settings = app[SETTINGS]
    if not settings.worker.in_process:
        yield
        return
    fed = app[FEDERATION]
    worker = Worker(
        fed.node,
        default_registry(fed),
        concurrency=settings.worker.concurrency,
        poll_interval_s=settings.worker.poll_interval_s,
        policy=app.get(RETRY_POLICY, retry.DEFAULT),
        transport=fed.transport,
        shutdown_timeout_s=settings.server.shutdown_timeout_s,
    )
    fed.wakeups.append(worker.notify)
    if fed.wake_channel is not None:  # other processes' enqueues wake it too (decision 100)
        fed.wake_channel.listen(worker.notify)
    async with fed.node.sessions.begin() as session:
        await schedule_periodic_jobs(session, now=fed.node.clock())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="entraide-worker")
    yield
    stop.set()
    await task


def _application(settings: Settings) -> web.Application:
    return web.Application(
        router=MemoRouter(),
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            forwarded_middleware,
            page_cache_hit_middleware,
            request_id_middleware,
            audit_channel_middleware,
            metrics_middleware,
            page_cache_middleware,
            pages.html_error_middleware,
            problem_middleware,
        ],
    )


def create_app(
    settings: Settings, *, transport: Transport | None = None, retry_policy: RetryPolicy | None = None
) -> web.Application:
    """Build the application for one node; resources open in ``cleanup_ctx`` when it starts.

    ``transport`` replaces the outbound HTTP transport (its owner starts and closes it); tests
    use it to reach fake peers by name. ``retry_policy`` replaces the in-process worker's
    schedule (default :data:`federation.retry.DEFAULT`, 2 to 3 days); tests pass a fast one
    such as :data:`federation.retry.FAST` so that retries happen within the test.
    """
    with warnings.catch_warnings():  # aiohttp calls ``router=`` deprecated; it is the only hook
        warnings.simplefilter("ignore", DeprecationWarning)
        app = _application(settings)
    app[SETTINGS] = settings
    app[METRICS] = create_metrics()
    app[PAGE_CACHE] = PageCache()
    app[DRAINING] = asyncio.Event()
    if transport is not None:
        app[TRANSPORT] = transport
    if retry_policy is not None:
        app[RETRY_POLICY] = retry_policy
    app.cleanup_ctx.extend([_database_ctx, _federation_ctx, _worker_ctx])
    app.on_response_prepare.append(wellknown.webfinger_cors)
    pages.setup(app)
    app.add_routes(wellknown.routes)
    app.add_routes(ops.routes)
    app.add_routes(activitypub.routes)
    app.add_routes(inbox.routes)
    app.add_routes(outbox.routes)
    app.add_routes(media.routes)
    app.add_routes(events.routes)  # before api: /events/participants is not an object of the events kind
    app.add_routes(api.routes)
    app.add_routes(drafts_api.routes)
    app.add_routes(blocks_api.routes)
    app.add_routes(account_api.routes)
    app.add_routes(moderation_api.routes)
    app.add_routes(members_api.routes)
    app.add_routes(calendar.routes)  # before feeds: events.ics is not one of the feeds' formats
    app.add_routes(feeds.routes)
    app.add_routes(threads.routes)
    return app
