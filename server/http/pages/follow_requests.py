"""Follows waiting for an answer, in the browser (decision 88): a member's own
(``/account/follow-requests``: they approve followers by hand, or the follower is on a silenced
domain) and an association's (``/groups/{handle}/admin/follow-requests``, for its admins, who
answer them as the JSON API's ``/api/associations/{slug}/follow-requests`` does).

Oldest first, 50 at a time. Approving sends the follower an ``Accept`` (it then gets what is sent to
followers); refusing sends a ``Reject`` and forgets the follow. Forms carry the session's CSRF token;
a request answered meanwhile (in another tab, by another admin) shows the page again with a message
and a 404, nothing changed. The member's own page also has the setting that holds follows.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from federation import uris as paths
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.http.params import int_param
from server.services.accounts import erasure as accounts
from server.services.accounts.sessions import SignedIn
from server.services.errors import Forbidden, NotFound
from server.services.membership import directory, following
from server.services.reading import visibility
from server.services.reading.visibility import Viewer, ViewerKind

routes = web.RouteTableDef()

MINE: Final = "/account/follow-requests"
GROUP: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}/admin/follow-requests"
PAGE_SIZE: Final = 50
NOTICES: Final = ("approved", "refused", "setting_on", "setting_off")
ADMINS: Final = ("admin",)


async def _target(request: web.Request, user: SignedIn) -> Any:
    """Whose requests: the signed-in member's own, or an association they are an admin of (403
    for anyone else, 404 for no such association)."""
    if "handle" not in request.match_info:
        return user.actor
    node = request.app[NODE]
    reader = Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")
    async with node.sessions() as session:
        group = await directory.local_association(session, request.match_info["handle"])
        if await visibility.role_in(session, reader, group) not in ADMINS:
            raise Forbidden("only the association's admins answer its follow requests")
    return group


def _base(target: Any) -> str:
    return MINE if target.type == "Person" else f"/groups/{target.handle}/admin/follow-requests"


async def _page(
    request: web.Request, user: SignedIn, target: Any, *, error: str = "", status: int = 200
) -> web.Response:
    after = int_param(request, "after", minimum=1) if request.method == "GET" else None
    async with request.app[NODE].sessions() as session:
        entries = await following.follow_requests(session, target, after=after, limit=PAGE_SIZE + 1)
        count = await following.follow_request_count(session, target)
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    base = _base(target)
    done = request.query.get("done", "")
    context = {
        "target": target,
        "group": target if target.type == "Group" else None,
        "role": "admin",
        "entries": entries,
        "count": count,
        "base": base,
        "next": f"{base}?after={entries[-1].position}" if more and entries else None,
        "first": base if after is not None else None,
        "notice": done if done in NOTICES else "",
        "error": error,
    }
    return await w.render(
        request, "follow_requests.html", context, status=status, title="follow_requests_title"
    )


@routes.get(MINE)
@routes.get(GROUP)
async def follow_requests_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    return await _page(request, user, await _target(request, user))


async def _answer(request: web.Request, *, approve: bool) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    target = await _target(request, user)
    try:
        await following.answer_follow_request(
            request.app[FEDERATION], target, w.field(data, "follower"), approve=approve
        )
    except NotFound:
        return await _page(request, user, target, error="follow_requests_gone", status=404)
    raise web.HTTPSeeOther(f"{_base(target)}?done={'approved' if approve else 'refused'}")


@routes.post(MINE + "/approve")
@routes.post(GROUP + "/approve")
async def approve(request: web.Request) -> web.StreamResponse:
    return await _answer(request, approve=True)


@routes.post(MINE + "/refuse")
@routes.post(GROUP + "/refuse")
async def refuse(request: web.Request) -> web.StreamResponse:
    return await _answer(request, approve=False)


@routes.post(MINE + "/setting")
async def set_by_hand(request: web.Request) -> web.StreamResponse:
    """Approve followers by hand, or not (then the follows waiting are accepted, except those
    from silenced domains); followers get the profile's ``Update``."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    choice = w.field(data, "by_hand")
    if choice not in ("yes", "no"):
        return await _page(request, user, user.actor, error="follow_requests_choose", status=400)
    await accounts.update_profile(
        request.app[FEDERATION], user.actor.id, manually_approves_followers=choice == "yes"
    )
    raise web.HTTPSeeOther(f"{MINE}?done={'setting_on' if choice == 'yes' else 'setting_off'}")
