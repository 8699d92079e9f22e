"""Middlewares: request id, problem+json for every error, metrics and a log line for failures."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from federation.errors import FederationError
from server.appkeys import METRICS
from server.http.problems import problem, problem_for
from server.services import audit
from server.services.errors import ServiceError

log = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = (
        incoming
        if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable()
        else secrets.token_hex(8)
    )
    request[REQUEST_ID] = rid
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


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_latency.labels(route).observe(time.perf_counter() - started)
