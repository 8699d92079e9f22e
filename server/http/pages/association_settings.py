"""An association's settings in the browser, for its admins (``/groups/{handle}/admin/settings``):
its profile (name, summary, default language) and rules (who may join, who may reply, who sees the
members list), and the deletion of the association (decision 97), confirmed by typing its handle.

Thin handlers over the services the JSON API and the CLI call: ``actors/local.py``
(``edit_association``: a changed name or summary reaches followers as ``Update{Group}``, audited) and
``actors/dissolution.py``. A refused value shows the page again with the reason next to its field
(400), a suspended admin is told so (403); nothing is changed then. A node admin may delete an
association they do not administer through the JSON API or the CLI; this page is the association's.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from federation import uris as paths
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.services.accounts.sessions import SignedIn
from server.services.actors import dissolution
from server.services.actors import local as actor_service
from server.services.errors import Forbidden, InvalidInput
from server.services.membership import directory
from server.services.membership.standing import Suspended
from server.services.reading import visibility
from server.services.reading.visibility import Viewer, ViewerKind

routes = web.RouteTableDef()

PAGE: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}/admin/settings"
FIELDS: Final = ("name", "summary", "language", "join_policy", "replies_policy", "members_visibility")
MAX_REASON_CHARS: Final = 2000


async def _admin_of(request: web.Request, user: SignedIn) -> Any:
    """The association, when the signed-in member is one of its admins (403 otherwise, 404 for no
    such association)."""
    reader = Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")
    async with request.app[NODE].sessions() as session:
        group = await directory.local_association(session, request.match_info["handle"])
        if await visibility.role_in(session, reader, group) != "admin":
            raise Forbidden("only the association's admins change its settings")
    return group


def _values(group: Any) -> dict[str, str]:
    return {name: getattr(group, name) or "" for name in FIELDS}


async def _page(
    request: web.Request,
    group: Any,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    reason: str = "",
    status: int = 200,
) -> web.Response:
    plan = await dissolution.plan(request.app[FEDERATION], group.handle)
    done = request.query.get("done", "")
    context = {
        "group": group,
        "role": "admin",
        "values": values or _values(group),
        "settings": actor_service.ASSOCIATION_SETTINGS,
        "errors": errors or {},
        "error": error,
        "reason": reason,
        "reason_max": MAX_REASON_CHARS,
        "plan": plan,
        "notice": done if done == "saved" else "",
    }
    return await w.render(
        request, "association_settings.html", context, status=status, title="settings_title"
    )


@routes.get(PAGE)
async def settings_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    return await _page(request, await _admin_of(request, user))


@routes.post(PAGE)
async def save_settings(request: web.Request) -> web.StreamResponse:
    """Save what changed (audited; followers get the profile's ``Update``) and come back."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _admin_of(request, user)
    values = {name: w.field(data, name).strip() for name in FIELDS}
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            edited = await actor_service.edit_association(
                session, node.uris, handle=group.handle, changes=values, by=user.actor, now=node.clock()
            )
    except Suspended:
        return await _page(request, group, values=values, error="members_you_are_suspended", status=403)
    except InvalidInput as exc:
        field = str(exc.context.get("field", ""))
        key = f"settings_invalid_{field}" if field in ("name", "summary", "language") else "settings_invalid"
        errors = {field if field in values else "name": key}
        return await _page(request, group, values=values, errors=errors, status=400)
    if edited.update_iri:
        request.app[FEDERATION].notify_worker()
    raise web.HTTPSeeOther(f"/groups/{group.handle}/admin/settings?done=saved")


@routes.post(PAGE + "/delete")
async def delete_association(request: web.Request) -> web.StreamResponse:
    """Delete the association for good once its handle is typed again; the admin lands on a page
    that says it is done."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _admin_of(request, user)
    reason = w.field(data, "reason").strip()
    if w.field(data, "confirm").strip() != group.handle:
        errors = {"confirm": "settings_delete_confirm_invalid"}
        return await _page(request, group, errors=errors, reason=reason, status=400)
    if len(reason) > MAX_REASON_CHARS:
        return await _page(
            request, group, errors={"reason": "members_reason_invalid"}, reason=reason, status=400
        )
    try:
        await dissolution.delete_association(
            request.app[FEDERATION], group.handle, by=user.actor, scope=None, reason=reason or None
        )
    except Suspended:
        return await _page(request, group, error="members_you_are_suspended", reason=reason, status=403)
    context = {"name": group.name or group.handle}
    return await w.render(request, "association_deleted.html", context, title="association_deleted_title")
