"""Actor pages for browsers: an association (summary, tabs of its content, feeds, how to follow
it from Mastodon, joining and leaving) and a member's profile.

Each tab lists what the read filter lets the reader see, newest first; a members-only item
appears only to the association's members. Joining follows the association's join policy
(open: a member at once; approval: pending until its admins answer).
"""

from __future__ import annotations

import html
from typing import Any, Final

from aiohttp import web
from markupsafe import Markup

from federation import uris as paths
from federation.audience import PUBLICLY_READABLE
from federation.http import AP_CONTENT_TYPE
from federation.types import Iri
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.services.accounts.sessions import SignedIn
from server.services.actors import directory
from server.services.actors.profiles import summary_html
from server.services.content.sanitize import sanitize_html
from server.services.errors import NotFound
from server.services.media import uploads as media_service
from server.services.membership import members as membership
from server.services.reading import objects, visibility
from server.services.reading.feeds import feed_links
from server.services.types import Actor

routes = web.RouteTableDef()
TABS: Final = {"alerts": "alert", "resources": "resource", "proposals": "proposal", "discussions": "post"}
TAB_SIZE: Final = 20
ACTOR_TYPES: Final = {"groups": "Group", "users": "Person"}
GROUP_PATH: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}"


def _alternates(actor: Actor, links: list[Any]) -> Markup:
    """The ``<link rel="alternate">`` tags of the actor document and its feeds (escaped here)."""
    tags = [f'<link rel="alternate" type="{AP_CONTENT_TYPE}" href="{html.escape(actor.iri, quote=True)}">']
    tags += [
        f'<link rel="alternate" type="{html.escape(link.media_type, quote=True)}" '
        f'href="{html.escape(link.href, quote=True)}" title="{html.escape(link.title, quote=True)}">'
        for link in links
    ]
    return Markup("\n".join(tags))  # every value above is escaped


async def actor_page(request: web.Request) -> web.Response:
    """``GET /groups/{handle}`` and ``GET /users/{handle}`` for a browser."""
    node = request.app[NODE]
    kind = ACTOR_TYPES[request.match_info["kind"]]
    viewer = await w.viewer(request)
    tab = request.query.get("tab", "alerts")
    if tab not in TABS:
        tab = "alerts"
    async with node.sessions() as session:
        actor = await directory.local_by_handle(session, kind, request.match_info["handle"])
        if actor is None and await directory.local_tombstone(session, kind, request.match_info["handle"]):
            gone = {"heading": "error_title_410", "text": "error_text_410"}
            return await w.render(request, "error.html", gone, status=410, private=True, title="error")
        if actor is None:
            raise NotFound("no such actor")
        items = (
            await objects.group_tab(session, viewer, actor, TABS[tab], size=TAB_SIZE)
            if kind == "Group"
            else []
        )
        state = (
            await membership.state_of(session, actor.id, viewer.actor_id)
            if kind == "Group" and viewer.actor_id is not None
            else None
        )
        avatar = await media_service.avatar_of(session, actor.id)
        role = await visibility.role_in(session, viewer, actor) if state == "active" else None
    name = actor.name or actor.handle
    links = feed_links(node.uris, Iri(actor.iri), name) if kind == "Group" else []
    context = {
        "actor": actor,
        # A member's summary is plain text (escaped, in paragraphs), as in the actor document.
        "summary": sanitize_html(actor.summary) if kind == "Group" else Markup(summary_html(actor.summary)),
        "handle": f"@{actor.handle}@{node.uris.host}",
        "avatar_url": node.uris.media(avatar.key) if avatar is not None else "",
        "tabs": list(TABS),
        "tab": tab,
        "items": items,
        "state": state,
        "role": role,
        "alternates": _alternates(actor, links),
        "feeds": [
            (
                kind_key or "all",
                [(fmt, node.uris.feed(Iri(actor.iri), fmt, kind_key)) for fmt in paths.FEED_FORMATS],
            )
            for kind_key in (None, *paths.FEED_KINDS)
        ]
        if kind == "Group"
        else [],
    }
    private = any(item.visibility not in PUBLICLY_READABLE for item in items)
    template = "group.html" if kind == "Group" else "person.html"
    return await w.render(request, template, context, private=private, raw_title=name)


async def _group_for_form(request: web.Request) -> tuple[SignedIn, Actor]:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    node = request.app[NODE]
    async with node.sessions() as session:
        group = await directory.local_by_handle(session, "Group", request.match_info["handle"])
    if group is None:
        raise NotFound("no such association")
    return user, group


@routes.post(GROUP_PATH + "/join")
async def join(request: web.Request) -> web.StreamResponse:
    user, group = await _group_for_form(request)
    await membership.join_here(request.app[FEDERATION], user.actor, group)
    raise web.HTTPSeeOther(f"/groups/{group.handle}")


@routes.post(GROUP_PATH + "/leave")
async def leave(request: web.Request) -> web.StreamResponse:
    user, group = await _group_for_form(request)
    await membership.leave(request.app[FEDERATION], user.actor, group.iri)
    raise web.HTTPSeeOther(f"/groups/{group.handle}")
