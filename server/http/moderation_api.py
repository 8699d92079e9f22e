"""The JSON API of moderation reports: file one, list a queue, act on one (issue 17).

The same service as the pages and ``entraide report …`` (``server/services/moderation/reports.py``):
the queue is scoped there (an association's admins and moderators, node admins for all), and every
action is audited with the channel ``api`` (set by ``audit_channel_middleware``).
"""

from __future__ import annotations

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.api import DEFAULT_LIMIT, MAX_LIMIT, NO_STORE, json_body
from server.http.auth import viewer_of
from server.http.outbox import writer_of
from server.http.params import int_param
from server.http.render import json_response
from server.services.errors import NotFound
from server.services.moderation import reports

routes = web.RouteTableDef()


def _report_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise NotFound("no such report")
    return int(raw)


@routes.post("/api/reports")
async def post_report(request: web.Request) -> web.Response:
    """A member reports an object or an actor to the moderators; the reporter is never shown to
    the reported party nor sent to another node."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    body = await json_body(request, "ReportCreate")
    async with fed.node.sessions() as session:
        reporter = await reports.person(session, viewer.actor_id)
    report_id = await reports.file(fed, reporter, body["target"], body.get("comment"))
    return json_response({"id": report_id, "state": "open"}, status=201, headers=NO_STORE)


@routes.get("/api/reports")
async def get_reports(request: web.Request) -> web.Response:
    """The reports the caller moderates, newest first (``association``: one association's)."""
    viewer = await viewer_of(request)
    limit = int_param(request, "limit", minimum=1, maximum=MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param(request, "before", minimum=1)
    state = request.query.get("state", "open")
    node = request.app[NODE]
    async with node.sessions() as session:
        reader = await reports.person(session, viewer.actor_id)
        slug = request.query.get("association")
        group = await reports.association(session, slug) if slug is not None else None
        items = await reports.queue_of(
            session,
            reader,
            group=group,
            state=None if state == "all" else state,
            limit=limit + 1,
            before=before,
        )
    next_page = None
    if len(items) > limit:
        query = "&".join(f"{k}={v}" for k, v in (("association", slug), ("state", state)) if v)
        next_page = node.uris.iri(f"/api/reports?{query}&limit={limit}&before={items[limit - 1].id}")
    return json_response(
        {"items": [item.as_json() for item in items[:limit]], "next": next_page}, headers=NO_STORE
    )


@routes.post("/api/reports/{id}/actions")
async def post_report_action(request: web.Request) -> web.Response:
    """A moderator acts on a report: dismiss, remove the content, warn, remove or suspend the
    member, or forward it to the content's origin as a ``Flag`` from this node; audited."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    report_id = _report_id(request)
    body = await json_body(request, "ReportAction")
    async with fed.node.sessions() as session:
        by = await reports.person(session, viewer.actor_id)
        await reports.one(session, by, report_id)  # 404 for a report the caller may not see
    done = await reports.act(fed, by, report_id, body["action"], body.get("text"), body.get("until"))
    async with fed.node.sessions() as session:
        report = await reports.one(session, by, report_id)
    return json_response({**report.as_json(), **done}, headers=NO_STORE)
