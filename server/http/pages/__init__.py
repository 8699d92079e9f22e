"""The web app for people: server-rendered pages (Jinja2), one module per area.

:func:`setup` installs the templates, the stylesheet and every page module's routes;
:func:`html_error_middleware` turns an error into an HTML page for a browser (the API and
ActivityPub clients keep problem+json).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from federation.http import PROBLEM_CONTENT_TYPE, wants_activitypub
from server.http.pages import (
    account,
    actors,
    admin,
    association_settings,
    drafts,
    events,
    follow_requests,
    founding,
    home,
    member,
    members,
    moderation,
    objects,
    publish,
)
from server.http.pages import core as w

STYLESHEET: Final = "/static/entraide.css"
ERROR_STATUSES: Final = frozenset({400, 401, 403, 404, 405, 409, 413, 429})
static_routes = web.RouteTableDef()


@static_routes.get(STYLESHEET)
async def stylesheet(request: web.Request) -> web.Response:
    css = resources.files("server.http").joinpath("static", "entraide.css").read_bytes()
    return web.Response(body=css, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def setup(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("server.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    app[account.LOGIN_LIMITER] = account.limiter()
    app[member.LOOKUP_LIMITER] = member.lookup_limiter()
    app.add_routes(static_routes)
    app.add_routes(account.routes)
    app.add_routes(home.routes)
    app.add_routes(actors.routes)
    app.add_routes(objects.routes)
    app.add_routes(member.routes)
    app.add_routes(moderation.routes)
    app.add_routes(members.routes)
    app.add_routes(publish.routes)
    app.add_routes(events.routes)
    app.add_routes(drafts.routes)
    app.add_routes(admin.routes)
    app.add_routes(founding.routes)
    app.add_routes(follow_requests.routes)
    app.add_routes(association_settings.routes)


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return (
        "text/html" in accept
        and not wants_activitypub(accept)
        and not request.path.startswith(("/api/", "/.well-known/", "/nodeinfo/"))
    )


@web.middleware
async def html_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser gets an error page in its language, with the status kept (never JSON)."""
    response = await handler(request)
    if (
        response.status < 400
        or response.content_type != PROBLEM_CONTENT_TYPE
        or not _wants_html(request)
        or not isinstance(response, web.Response)
    ):
        return response
    key = str(response.status) if response.status in ERROR_STATUSES else "other"
    body = response.body if isinstance(response.body, bytes) else b""
    if response.status == 403 and b'"code":"member_suspended"' in body:
        key = "suspended"  # said as such: the member reads on, and acts again when it ends
    context = {"heading": f"error_title_{key}", "text": f"error_text_{key}"}
    page = await w.render(request, "error.html", context, status=response.status, private=True, title="error")
    for name in ("Allow", "Retry-After", "WWW-Authenticate"):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page
