"""ICS calendar feeds: an association's public events (``/groups/{handle}/feeds/events.ics``) and
one public event (``/objects/{id}/event.ics``), GET and HEAD.

Anonymous like the other feeds (credentials are never read) and answered 404 for anything that
is not a public event of ours, so a calendar request is no oracle of members-only events
(security case 69). Conditional GET as for the feeds: a matching ``If-None-Match`` or
``If-Modified-Since`` ends with 304 before rendering.
"""

from __future__ import annotations

from aiohttp import web

from federation import uris as paths
from server.appkeys import NODE
from server.http.feeds import CACHE_CONTROL, not_modified
from server.services.events import calendar

routes = web.RouteTableDef()

GROUP_CALENDAR_ROUTE = paths.ACTOR_KIND_FEED.format(actor="/groups/{handle}", kind="events", format="ics")
EVENT_CALENDAR_ROUTE = paths.OBJECT.format(id="{id:[0-9a-f]{32}}") + "/event.ics"


def _answer(request: web.Request, source: calendar.CalendarSource) -> web.Response:
    validators = source.validators
    headers = {"ETag": validators.etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request, validators.etag, validators.last_modified):
        response = web.Response(status=304, headers=headers)
    else:
        headers["Content-Type"] = calendar.CONTENT_TYPE
        headers["X-Content-Type-Options"] = "nosniff"
        body = calendar.render(source, now=request.app[NODE].clock())
        response = web.Response(body=body, headers=headers)
    response.last_modified = validators.last_modified
    return response


@routes.get(GROUP_CALENDAR_ROUTE)
async def get_group_calendar(request: web.Request) -> web.Response:
    node = request.app[NODE]
    async with node.sessions() as session:
        source = await calendar.association_calendar(session, request.match_info["handle"], now=node.clock())
    return _answer(request, source)


@routes.get(EVENT_CALENDAR_ROUTE)
async def get_event_calendar(request: web.Request) -> web.Response:
    node = request.app[NODE]
    iri = node.uris.object(request.match_info["id"])
    async with node.sessions() as session:
        source = await calendar.event_calendar(session, iri)
    return _answer(request, source)
