"""The node's home page: its associations, and the recent public alerts first."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from server.appkeys import NODE
from server.services.actors import directory
from server.http.pages import core as w
from server.services.reading import objects

routes = web.RouteTableDef()
RECENT_ALERTS: Final = 5


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    node = request.app[NODE]
    async with node.sessions() as session:
        groups = [g for g in await directory.local_groups(session) if g.discoverable]
        alerts = await objects.recent_public_alerts(session, limit=RECENT_ALERTS)
    context = {"groups": groups, "alerts": alerts}
    return await w.render(request, "home.html", context, title="")
