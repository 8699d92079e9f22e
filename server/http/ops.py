"""Operations endpoints: ``/healthz`` (checks the database) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.appkeys import DRAINING, ENGINE, METRICS, NODE
from server.db.engine import DatabaseUnavailable, check_connection
from server.db.queries import actors as q
from server.http.render import json_response

routes = web.RouteTableDef()


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
    try:
        await check_connection(request.app[ENGINE])
    except DatabaseUnavailable:
        return json_response(
            {"status": "unavailable", "database": "unreachable"},
            status=503,
            headers={"Cache-Control": "no-store"},
        )
    return json_response({"status": "ok", "database": "ok"}, headers={"Cache-Control": "no-store"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    async with request.app[NODE].sessions() as session:
        registry.associations.set(len(await q.local_groups(session)))
        registry.members.set(await q.count_local_people(session))
    body = generate_latest(registry.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
