"""The JSON API of invitations, of the member directory and of suspensions (issue 17), beside
``api.py``.

The same services as the pages and ``entraide invite``: admins create, list and revoke an
association's invitation links; a member of this node uses one with its token in the body (never in
a URL, which logs and ``Referer`` keep); the member directory is read by the association's members
only. Errors are problem+json (``problem_middleware``); an unusable link is 410 with a code saying
why (``invitation_expired``, ``invitation_exhausted``, ``invitation_revoked``). Admins and
moderators suspend a member and lift it (``membership/suspension.py``); a suspended member's
actions are refused with 403 ``member_suspended`` wherever they come from. Follows held for
approval (from a silenced domain, decision 88) are listed and answered by the member followed, or by
an admin of the association followed.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.api import NO_STORE, association, json_body, local_user, member_query, page_query
from server.http.auth import viewer_of
from server.http.outbox import acting_for, writer_of
from server.http.render import json_response
from server.services.errors import NotFound
from server.services.membership import directory, following, invitations, suspension
from server.services.membership.members import MANAGING_ROLES

routes = web.RouteTableDef()

INVITATIONS: Final = "/api/associations/{slug}/invitations"
SUSPENSION: Final = "/api/associations/{slug}/members/suspension"
ADMINS: Final = ("admin",)
FOLLOW_REQUESTS: Final = ("/api/associations/{slug}/follow-requests", "/api/users/{username}/follow-requests")


@routes.get("/api/associations/{slug}/directory")
async def get_directory(request: web.Request) -> web.Response:
    """The member directory: the association's members only (403 for anyone else)."""
    node = request.app[NODE]
    viewer = await viewer_of(request)
    limit, before = page_query(request)
    async with node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        found = await directory.directory(
            session, viewer, group, before=before, limit=limit, now=node.clock()
        )
    query = f"limit={limit}&before={found.older}" if found.older is not None else None
    next_page = node.uris.iri(f"/api/associations/{group.handle}/directory?{query}") if query else None
    return json_response({"items": [e.as_json() for e in found.entries], "next": next_page}, headers=NO_STORE)


async def _admin(request: web.Request) -> tuple[Any, Any]:
    viewer = await writer_of(request)
    async with request.app[NODE].sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group, roles=ADMINS)
    return group, by


@routes.get(INVITATIONS)
async def get_invitations(request: web.Request) -> web.Response:
    group, by = await _admin(request)
    rows = await invitations.list_for(request.app[NODE], group, by=by)
    return json_response({"items": [row.as_json() for row in rows]}, headers=NO_STORE)


@routes.post(INVITATIONS)
async def post_invitation(request: web.Request) -> web.Response:
    """A new link; its token is in this answer only (only its hash is kept)."""
    group, by = await _admin(request)
    body = await json_body(request, "InvitationCreate")
    created = await invitations.create(
        request.app[NODE],
        group,
        by=by,
        expires_in_days=body.get("expiresInDays"),
        max_uses=body.get("maxUses"),
    )
    answer = {**created.invitation.as_json(), "token": created.token, "url": created.url}
    return json_response(answer, status=201, headers=NO_STORE)


@routes.delete(INVITATIONS + "/{id}")
async def delete_invitation(request: web.Request) -> web.Response:
    group, by = await _admin(request)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound("no such invitation in this association")
    view = await invitations.revoke(request.app[NODE], group, int(raw), by=by)
    return json_response(view.as_json(), headers=NO_STORE)


@routes.post("/api/invitations/accept")
async def post_accept(request: web.Request) -> web.Response:
    """The caller, a member of this node, joins with an invitation's token."""
    viewer = await writer_of(request)
    node = request.app[NODE]
    body = await json_body(request, "InvitationAccept")
    member = await invitations.local_person(node, viewer.actor_id)
    group = await invitations.accept(node, body["token"], member=member)
    return json_response({"association": group.iri, "state": "active"}, headers=NO_STORE)


async def _manager(request: web.Request) -> tuple[Any, Any]:
    viewer = await writer_of(request)
    async with request.app[NODE].sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group, roles=MANAGING_ROLES)
    return group, by


@routes.post(SUSPENSION)
async def post_suspension(request: web.Request) -> web.Response:
    """An admin or moderator suspends a member, until a date or until lifted (audited; the member
    is notified)."""
    group, by = await _manager(request)
    body = await json_body(request, "MemberSuspension")
    fed = request.app[FEDERATION]
    until = suspension.parse_until(body.get("until"), now=fed.node.clock())
    done = await suspension.suspend(fed, group, body["member"], by=by, until=until, reason=body.get("reason"))
    return json_response(done.as_json(), headers=NO_STORE)


@routes.delete(SUSPENSION)
async def delete_suspension(request: web.Request) -> web.Response:
    """An admin or moderator lifts a member's suspension (409 when there is none)."""
    group, by = await _manager(request)
    member = member_query(request)
    await suspension.unsuspend(request.app[FEDERATION], group, member, by=by)
    return json_response({"member": member, "state": "active"}, headers=NO_STORE)


async def _followed(request: web.Request) -> Any:
    """The member or association whose follow requests are read or answered: the member
    themselves, or an admin of the association (403 for anyone else)."""
    viewer = await writer_of(request)
    async with request.app[NODE].sessions() as session:
        if "slug" in request.match_info:
            target = await association(session, request.match_info["slug"])
        else:
            target = await local_user(session, request.match_info["username"])
        await acting_for(session, viewer, target, roles=ADMINS)
    return target


async def get_follow_requests(request: web.Request) -> web.Response:
    """Follows waiting for an answer, oldest first."""
    target = await _followed(request)
    async with request.app[NODE].sessions() as session:
        rows = await following.follow_requests(session, target)
    return json_response({"items": [row.as_json() for row in rows]}, headers=NO_STORE)


async def post_follow_request(request: web.Request) -> web.Response:
    """Approve (``Accept``) or refuse (``Reject``) one of them."""
    target = await _followed(request)
    body = await json_body(request, "FollowDecision")
    state = await following.answer_follow_request(
        request.app[FEDERATION], target, body["follower"], approve=body["decision"] == "approve"
    )
    return json_response({"follower": body["follower"], "state": state}, headers=NO_STORE)


for _path in FOLLOW_REQUESTS:
    routes.get(_path)(get_follow_requests)
    routes.post(_path)(post_follow_request)
