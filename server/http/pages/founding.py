"""Creating an association from the browser (``/associations/new``): the JSON API's service
(``server/services/actors/founding.py``, decision 73) behind a form.

Whoever the node's policy lets create (node admins, or every member) gets the form; anyone else
signed in gets a 403 page. The creator becomes the association's admin and lands on its page.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from server.appkeys import NODE
from server.http.pages import core as w
from server.services.actors import founding
from server.services.errors import Conflict, InvalidInput

routes = web.RouteTableDef()
PAGE: Final = "/associations/new"


async def _form(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    user = await w.require_signed_in(request)
    async with request.app[NODE].sessions() as session:
        await founding.may_create(session, user.account.actor_id, scope="write")
    context = {"values": values or {}, "errors": errors or {}}
    return await w.render(request, "association_new.html", context, status=status, title="create_association")


@routes.get(PAGE)
async def new_association(request: web.Request) -> web.Response:
    return await _form(request)


@routes.post(PAGE)
async def create_association(request: web.Request) -> web.StreamResponse:
    """Create it (audited as the creator's, with the channel ``web``) and go to its page."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    values = {name: w.field(data, name).strip() for name in ("slug", "name", "summary")}
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            group = await founding.create_as_member(
                session,
                node.uris,
                node.vault,
                actor_id=user.account.actor_id,
                scope="write",
                handle=values["slug"],
                name=values["name"],
                summary=values["summary"],
                now=node.clock(),
            )
            handle = group.handle
    except (InvalidInput, Conflict) as exc:
        field = exc.context.get("field")
        errors = {field if field in values else "slug": exc.detail}
        return await _form(
            request, values=values, errors=errors, status=409 if isinstance(exc, Conflict) else 400
        )
    raise web.HTTPSeeOther(f"/groups/{handle}")
