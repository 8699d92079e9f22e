"""The JSON API of the node's blocks and federation policy (node admins, admin-scope token).

Thin handlers (docs/architecture.md R7): read the request, call
``server/services/moderation/blocks.py`` or ``blocklists.py``, render. No database access here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.api import json_body, renamed_fields
from server.http.auth import viewer_of
from server.http.render import json_response
from server.services.errors import InvalidInput
from server.services.moderation import blocklists, blocks

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}


async def _admin(request: web.Request, session: Any) -> Any:
    viewer = await viewer_of(request)
    return await blocks.node_admin(session, viewer.actor_id, scope=viewer.scope or "none")


async def _view(session: Any) -> dict[str, Any]:
    return blocks.describe(
        await blocks.node_policy(session),
        await blocks.list_domain_blocks(session),
        await blocks.list_actor_blocks(session),
        await blocklists.list_subscriptions(session),
    )


@routes.get("/api/admin/federation")
async def get_federation(request: web.Request) -> web.Response:
    """The node's policy, domain and actor blocks and subscribed lists."""
    async with request.app[NODE].sessions() as session:
        await _admin(request, session)
        return json_response(await _view(session), headers=NO_STORE)


@routes.put("/api/admin/federation")
async def put_federation(request: web.Request) -> web.Response:
    """Change the federation mode, the allowlist or who may create associations."""
    body = await json_body(request, "FederationPolicyInput")
    async with request.app[NODE].sessions.begin() as session:
        by = await _admin(request, session)
        await blocks.set_node_policy(
            session,
            by=by,
            federation_mode=body.get("federationMode"),
            allowed_domains=body.get("allowedDomains"),
            association_creators=body.get("associationCreators"),
        )
        return json_response(await _view(session), headers=NO_STORE)


@routes.post("/api/admin/domain-blocks")
async def post_domain_block(request: web.Request) -> web.Response:
    """Block a domain (or change its block)."""
    body = await json_body(request, "DomainBlockInput")
    async with request.app[NODE].sessions.begin() as session:
        by = await _admin(request, session)
        row = await blocks.block_domain(
            session,
            by=by,
            domain=body["domain"],
            severity=body.get("severity", "suspend"),
            reject_media=body.get("rejectMedia", False),
            reject_reports=body.get("rejectReports", False),
            public_comment=body.get("publicComment", ""),
            private_comment=body.get("privateComment", ""),
            obfuscate=body.get("obfuscate", False),
        )
        return json_response(blocks.domain_block_json(row), status=201, headers=NO_STORE)


@routes.delete("/api/admin/domain-blocks")
async def delete_domain_block(request: web.Request) -> web.Response:
    """Lift a domain block (``?domain=``)."""
    domain = request.query.get("domain", "")
    async with request.app[NODE].sessions.begin() as session:
        by = await _admin(request, session)
        await blocks.unblock_domain(session, by=by, domain=domain)
    return web.Response(status=204)


@routes.post("/api/admin/actor-blocks")
async def post_actor_block(request: web.Request) -> web.Response:
    """Block a remote actor for the whole node."""
    body = await json_body(request, "ActorBlockInput")
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        by = await _admin(request, session)
        row = await blocks.block_actor(
            session, uris=node.uris, by=by, actor_iri=body["actor"], reason=body.get("reason", "")
        )
        answer = {"actor": row.actor_iri, "reason": row.reason, "created": row.created_at.isoformat()}
    request.app[FEDERATION].notify_worker()
    return json_response(answer, status=201, headers=NO_STORE)


@routes.delete("/api/admin/actor-blocks")
async def delete_actor_block(request: web.Request) -> web.Response:
    """Lift a node's actor block (``?actor=``)."""
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        by = await _admin(request, session)
        await blocks.unblock_actor(session, uris=node.uris, by=by, actor_iri=request.query.get("actor", ""))
    return web.Response(status=204)


@routes.post("/api/admin/domain-blocks/import")
async def post_import(request: web.Request) -> web.Response:
    """Preview (``apply`` false, the default) or apply a list: Mastodon's CSV as text, or a URL."""
    body = await json_body(request, "BlockListImport")
    if ("csv" in body) == ("url" in body):
        raise InvalidInput("give either csv or url", field="csv")
    fed = request.app[FEDERATION]
    async with request.app[NODE].sessions() as session:
        await _admin(request, session)
    text = body.get("csv")
    name = body.get("name") or "upload"
    if "url" in body:
        text, name = (await blocklists.fetch_list(fed, body["url"])).text or "", body["url"]
    async with request.app[NODE].sessions.begin() as session:
        by = await _admin(request, session)
        plan = await blocklists.import_domain_csv(
            session, text or "", name=name, by=by, apply=bool(body.get("apply", False))
        )
    return json_response(plan.as_json(), headers=NO_STORE)


@routes.get("/api/admin/domain-blocks/export")
async def get_export(request: web.Request) -> web.Response:
    """The domain blocks as Mastodon's CSV (``?list=allowlist``: the allowlist, one a line)."""
    async with request.app[NODE].sessions() as session:
        await _admin(request, session)
        if request.query.get("list") == "allowlist":
            text = await blocklists.export_allowlist(session)
        else:
            text = await blocklists.export_domain_csv(session)
    return web.Response(text=text, content_type="text/csv", charset="utf-8", headers=NO_STORE)


SUBSCRIPTIONS = "/api/admin/blocklist-subscriptions"


@routes.get(SUBSCRIPTIONS)
async def get_subscriptions(request: web.Request) -> web.Response:
    """The shared block lists (or allowlists) the node follows."""
    async with request.app[NODE].sessions() as session:
        await _admin(request, session)
        rows = await blocklists.list_subscriptions(session)
        answer = {"subscriptions": [blocks.subscription_json(r) for r in rows]}
    return json_response(answer, headers=NO_STORE)


@routes.post(SUBSCRIPTIONS)
async def post_subscription(request: web.Request) -> web.Response:
    """Follow a list by URL (or change its kind and interval); first fetched at the job's next round."""
    body = await json_body(request, "BlockListSubscriptionInput")
    with renamed_fields({"refresh_interval_s": "refreshIntervalS"}):
        async with request.app[NODE].sessions.begin() as session:
            by = await _admin(request, session)
            row = await blocklists.subscribe(
                session,
                by=by,
                url=body["url"],
                kind=body.get("kind", "blocks"),
                refresh_interval_s=body.get("refreshIntervalS", 86400),
            )
            answer = blocks.subscription_json(row)
    return json_response(answer, status=201, headers=NO_STORE)


@routes.delete(SUBSCRIPTIONS)
async def delete_subscription(request: web.Request) -> web.Response:
    """Stop following the list at ``?url=``; its domain blocks go too unless ``keepBlocks=true``."""
    keep = request.query.get("keepBlocks", "false")
    if keep not in ("true", "false"):
        raise InvalidInput("keepBlocks must be true or false", field="keepBlocks")
    async with request.app[NODE].sessions.begin() as session:
        by = await _admin(request, session)
        await blocklists.unsubscribe(
            session, by=by, url=request.query.get("url", ""), remove_entries=keep == "false"
        )
    return web.Response(status=204)
