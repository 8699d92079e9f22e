"""The node's home page: its associations, and the recent public alerts first."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from server.appkeys import NODE
from server.http.pages import core as w
from server.services.actors import directory, founding
from server.services.reading import objects

routes = web.RouteTableDef()
RECENT_ALERTS: Final = 5


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    node = request.app[NODE]
    user = await w.signed_in(request)
    async with node.sessions() as session:
        groups = [g for g in await directory.local_groups(session) if g.discoverable]
        alerts = await objects.recent_public_alerts(session, limit=RECENT_ALERTS)
        may_create = user is not None and await founding.can_create(session, user.account.actor_id)
    context = {"groups": groups, "alerts": alerts, "may_create": may_create}
    return await w.render(request, "home.html", context, title="")
