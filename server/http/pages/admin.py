"""The node admins' federation page: open federation or an allowlist, who creates associations,
domain blocks (with the preview of a shared list before it is applied) and actor blocks.

Thin handlers over ``server/services/moderation/blocks.py`` and ``blocklists.py``; every change is
audited with the channel ``web``. A signed-in person who is not a node admin gets a 403 page.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from server.appkeys import NODE
from server.http.pages import core as w
from server.services.errors import InvalidInput
from server.services.moderation import blocklists, blocks

routes = web.RouteTableDef()
PAGE: Final = "/admin/federation"
MAX_LIST_CHARS: Final = 1_000_000


async def _page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    plan: blocklists.ImportPlan | None = None,
    csv_text: str = "",
    confirm_actor: str = "",
    status: int = 200,
) -> web.Response:
    user = await w.require_signed_in(request)
    async with request.app[NODE].sessions() as session:
        await blocks.node_admin(session, user.account.actor_id, scope=None)
        view = blocks.describe(
            await blocks.node_policy(session),
            await blocks.list_domain_blocks(session),
            await blocks.list_actor_blocks(session),
            await blocklists.list_subscriptions(session),
        )
    context = {
        "view": view,
        "errors": errors or {},
        "plan": plan,
        "csv_text": csv_text,
        "confirm_actor": confirm_actor,
        "notice": request.query.get("done", ""),
    }
    return await w.render(request, "admin_federation.html", context, status=status, title="federation_policy")


async def _admin_form(request: web.Request) -> tuple[Any, Any]:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    return user, data


def _done(what: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PAGE}?done={what}")


def _refused(exc: InvalidInput, default: str) -> dict[str, str]:
    field = exc.context.get("field")
    return {field if isinstance(field, str) else default: exc.detail}


@routes.get(PAGE)
async def federation_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post(f"{PAGE}/policy")
async def set_policy(request: web.Request) -> web.StreamResponse:
    user, data = await _admin_form(request)
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            by = await blocks.node_admin(session, user.account.actor_id, scope=None)
            await blocks.set_node_policy(
                session,
                by=by,
                federation_mode=w.field(data, "mode") or None,
                allowed_domains=w.field(data, "allowed").splitlines(),
                association_creators=w.field(data, "creators") or None,
                now=node.clock(),
            )
    except InvalidInput as exc:
        return await _page(request, errors=_refused(exc, "allowed"), status=400)
    raise _done("policy")


@routes.post(f"{PAGE}/domains")
async def add_domain(request: web.Request) -> web.StreamResponse:
    user, data = await _admin_form(request)
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            by = await blocks.node_admin(session, user.account.actor_id, scope=None)
            await blocks.block_domain(
                session,
                by=by,
                domain=w.field(data, "domain"),
                severity=w.field(data, "severity") or "suspend",
                reject_media=bool(w.field(data, "reject_media")),
                reject_reports=bool(w.field(data, "reject_reports")),
                public_comment=w.field(data, "public_comment"),
                private_comment=w.field(data, "private_comment"),
                now=node.clock(),
            )
    except InvalidInput as exc:
        return await _page(request, errors=_refused(exc, "domain"), status=400)
    raise _done("domain")


@routes.post(f"{PAGE}/domains/remove")
async def remove_domain(request: web.Request) -> web.StreamResponse:
    user, data = await _admin_form(request)
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        by = await blocks.node_admin(session, user.account.actor_id, scope=None)
        await blocks.unblock_domain(session, by=by, domain=w.field(data, "domain"), now=node.clock())
    raise _done("unblocked")


@routes.post(f"{PAGE}/actors")
async def add_actor(request: web.Request) -> web.StreamResponse:
    user, data = await _admin_form(request)
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            by = await blocks.node_admin(session, user.account.actor_id, scope=None)
            await blocks.block_actor(
                session,
                uris=node.uris,
                by=by,
                actor_iri=w.field(data, "actor"),
                reason=w.field(data, "reason"),
                now=node.clock(),
            )
    except InvalidInput as exc:
        return await _page(request, errors={"actor": exc.detail}, status=400)
    raise _done("actor")


@routes.post(f"{PAGE}/actors/remove")
async def remove_actor(request: web.Request) -> web.StreamResponse:
    """Lift a node's actor block: the first post asks for a confirmation, ``confirm=yes`` lifts it
    (audited ``actor.unblock``)."""
    user, data = await _admin_form(request)
    actor = w.field(data, "actor")
    if w.field(data, "confirm") != "yes":
        return await _page(request, confirm_actor=actor)
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        by = await blocks.node_admin(session, user.account.actor_id, scope=None)
        await blocks.unblock_actor(session, uris=node.uris, by=by, actor_iri=actor, now=node.clock())
    raise _done("actor_unblocked")


@routes.post(f"{PAGE}/import")
async def import_list(request: web.Request) -> web.StreamResponse:
    """``step=preview`` shows what the list changes; ``step=apply`` applies exactly that."""
    user, data = await _admin_form(request)
    raw = data.get("csv", "")
    text = raw[:MAX_LIST_CHARS] if isinstance(raw, str) else ""
    apply = w.field(data, "step") == "apply"
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            by = await blocks.node_admin(session, user.account.actor_id, scope=None)
            plan = await blocklists.import_domain_csv(
                session, text, name=w.field(data, "name") or "web", by=by, apply=apply, now=node.clock()
            )
    except InvalidInput as exc:
        return await _page(request, errors={"csv": exc.detail}, csv_text=text, status=400)
    if apply:
        raise _done("imported")
    return await _page(request, plan=plan, csv_text=text)
