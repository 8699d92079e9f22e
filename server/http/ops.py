"""Operations endpoints: ``/healthz`` (checks the database) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import hmac
from ipaddress import ip_address
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.appkeys import DRAINING, ENGINE, METRICS, NODE
from server.http.render import json_response
from server.services.actors import directory
from server.services.errors import Forbidden, Unauthorized
from server.services.health import database_reachable

routes = web.RouteTableDef()
PROXY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """503 while the database is unreachable, and while the process drains before stopping
    (server.http.serving): either way a load balancer should send its requests elsewhere."""
    if request.app[DRAINING].is_set():
        return json_response(
            {"status": "draining", "database": "not checked"},
            status=503,
            headers={"Cache-Control": "no-store"},
        )
    if not await database_reachable(request.app[ENGINE]):
        return json_response(
            {"status": "unavailable", "database": "unreachable"},
            status=503,
            headers={"Cache-Control": "no-store"},
        )
    return json_response({"status": "ok", "database": "ok"}, headers={"Cache-Control": "no-store"})


def _check_metrics_reader(request: web.Request) -> None:
    """The counters reveal activity, members-only included: only the operator reads them (case 59).

    With ``metrics.token``, the bearer token is required; without one, only a client on a loopback
    address whose request no proxy relayed (a reverse proxy on the same host would otherwise
    turn every visitor into a loopback client), unless ``metrics.loopback_only`` is false.
    """
    settings = request.app[NODE].settings.metrics
    if settings.token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), settings.token.encode()):
            raise Unauthorized("metrics need the bearer token of metrics.token")
        return
    if not settings.loopback_only:
        return
    try:
        loopback = request.remote is not None and ip_address(request.remote).is_loopback
    except ValueError:  # a Unix socket
        loopback = False
    if not loopback or any(name in request.headers for name in PROXY_HEADERS):
        raise Forbidden("metrics are served to loopback clients only (or set metrics.token)")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    _check_metrics_reader(request)
    registry = request.app[METRICS]
    async with request.app[NODE].sessions() as session:
        registry.associations.set(len(await directory.local_groups(session)))
        registry.members.set(await directory.count_local_people(session))
    body = generate_latest(registry.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
