"""Middlewares: request id, problem+json for every error, metrics and a log line for failures."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from federation.errors import FederationError
from server.appkeys import METRICS
from server.http.problems import problem, problem_for
from server.metrics import Metrics
from server.services import audit
from server.services.errors import ServiceError

log = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)
MAX_BOUND = 1024


def request_id(request: web.Request) -> str:
    """The client's ``X-Request-Id`` when it is short printable ASCII, else a fresh random one."""
    incoming = request.headers.get("X-Request-Id", "")
    if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable():
        return incoming
    return secrets.token_hex(8)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request[REQUEST_ID] = request_id(request)
    response = await handler(request)
    response.headers["X-Request-Id"] = rid
    return response


def audit_channel(request: web.Request) -> str:
    """The audit log's channel of a request: ``api`` for the JSON API, C2S and bearer tokens,
    ``web`` for the browser's pages and forms (signed in with a cookie)."""
    if "Authorization" in request.headers or request.path.startswith("/api/"):
        return "api"
    return "web"


@web.middleware
async def audit_channel_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Actions done while handling the request are audited with its channel (decision 49)."""
    with audit.channel_scope(audit_channel(request)):
        return await handler(request)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into problem+json; attacker input must never produce a bare 500."""
    try:
        return await handler(request)
    except (FederationError, ServiceError) as exc:
        response = problem_for(exc)
        log.info(
            "request refused",
            extra={
                "path": request.path,
                "status": response.status,
                "code": exc.code,
                "request_id": request.get(REQUEST_ID),
            },
        )
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        response = problem(exc.status, detail or exc.reason)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "request_id": request.get(REQUEST_ID)})
        return problem(
            500,
            "internal error; the request id identifies it in the logs",
            request_id=request.get(REQUEST_ID),
        )


def route_of(request: web.Request) -> str:
    """The matched route's template (``/groups/{handle}/outbox``), the metrics' label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource else "unmatched"


def _children(metrics: Metrics, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The counter and histogram children of one (method, route, status), bound once: prometheus'
    ``labels()`` takes a lock and formats the labels on every call (docs/performance.md, Reads)."""
    key = (method, route, status)
    children = metrics.bound.get(key)
    if children is None:
        children = (
            metrics.http_requests.labels(method, route, str(status)),
            metrics.http_latency.labels(route),
        )
        if len(metrics.bound) < MAX_BOUND:  # methods are the client's: bounded
            metrics.bound[key] = children
    return children


def record_request(request: web.Request, status: int, seconds: float) -> None:
    """Count one answered request in the node's metrics."""
    counter, latency = _children(request.app[METRICS], request.method, route_of(request), status)
    counter.inc()
    latency.observe(seconds)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        record_request(request, status, time.perf_counter() - started)
