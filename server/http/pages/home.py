"""The node's home page: its associations, and the recent public alerts first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.appkeys import NODE
from server.db.models import Actor, RemoteObject
from server.db.queries import actors as q
from server.http.pages import core as w

routes = web.RouteTableDef()
RECENT_ALERTS: Final = 5


async def _recent_public_alerts(session: AsyncSession) -> Sequence[tuple[RemoteObject, Actor]]:
    """This node's latest public alerts with their associations (public only: the same for everyone)."""
    stmt = (
        select(RemoteObject, Actor)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            RemoteObject.local.is_(True),
            RemoteObject.kind == "alert",
            RemoteObject.visibility == "public",
            RemoteObject.deleted_at.is_(None),
        )
        .order_by(RemoteObject.published.desc(), RemoteObject.id.desc())
        .limit(RECENT_ALERTS)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    node = request.app[NODE]
    async with node.sessions() as session:
        groups = [g for g in await q.local_groups(session) if g.discoverable]
        alerts = await _recent_public_alerts(session)
    context = {"groups": groups, "alerts": alerts}
    return await w.render(request, "home.html", context, title="")
