"""Events for browsers (issue 18): the node's agenda (``/events``), an association's agenda
(``/groups/{handle}/events``), taking part from an event's page (join with an optional message,
leave), and the organisers' list of participants, where they accept or refuse requests.

The agendas list what the read filter lets the reader see (:mod:`server.services.events.agenda`),
so a members-only event is never listed to a stranger; the event page itself is the object page
(:mod:`server.http.pages.objects`). Joining, leaving and deciding call
:mod:`server.services.events.participation`, as the JSON API does, which decides every rule;
forms are posted with the session's CSRF token and answered with a redirect.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from federation import uris as paths
from federation.audience import PUBLICLY_READABLE
from federation.types import Iri
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.http.pages import i18n
from server.http.pages.objects import OBJECT_PATH, READ_PATH, located, object_page
from server.services.actors import directory
from server.services.content import editors
from server.services.errors import Conflict, InvalidInput, NotFound
from server.services.events import agenda, participation
from server.services.reading import objects as reading
from server.services.types import Actor

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

GROUP: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}"
DECIDED: Final = frozenset({"accepted", "rejected"})


async def _render_agenda(request: web.Request, found: agenda.Agenda, *, group: Actor | None) -> web.Response:
    node = request.app[NODE]
    shown = [*found.upcoming, *found.past]
    context: dict[str, Any] = {
        "group": group,
        "upcoming": found.upcoming,
        "past": found.past,
        "next_cursor": found.next_cursor,
        "first_page": not request.query.get("after"),
        "calendar": node.uris.feed(Iri(group.iri), "ics", "events") if group is not None else "",
    }
    private = any(entry.row.visibility not in PUBLICLY_READABLE for entry in shown)
    title = "agenda_node_title" if group is None else ""
    raw = "" if group is None else (group.name or group.handle)
    return await w.render(request, "agenda.html", context, private=private, title=title, raw_title=raw)


@routes.get("/events")
async def node_agenda(request: web.Request) -> web.Response:
    """The node's upcoming events, then the recent past; a member also sees those of whom they follow."""
    node = request.app[NODE]
    viewer = await w.viewer(request)
    async with node.sessions() as session:
        found = await agenda.node_agenda(
            session, viewer, now=node.clock(), cursor=w.field(request.query, "after")
        )
    return await _render_agenda(request, found, group=None)


@routes.get(GROUP + "/events")
async def association_agenda(request: web.Request) -> web.Response:
    node = request.app[NODE]
    viewer = await w.viewer(request)
    group = await editors.association(node, request.match_info["handle"])
    async with node.sessions() as session:
        found = await agenda.association_agenda(
            session, viewer, group, now=node.clock(), cursor=w.field(request.query, "after")
        )
    return await _render_agenda(request, found, group=group)


# --- taking part --------------------------------------------------------------------------------------


@routes.post(OBJECT_PATH + "/participation")
@routes.post(READ_PATH + "/participation")
async def participate(request: web.Request) -> web.StreamResponse:
    """Join (``action=join``, with an optional message) or leave the event of this page."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        row = await located(request, session, await w.viewer(request))
    page = request.path.removesuffix("/participation")
    try:
        if w.field(data, "action") == "leave":
            await participation.leave(fed, user.actor, row.iri)
            state = "left"
        else:
            state = await participation.join(fed, user.actor, row.iri, w.field(data, "message") or None)
    except (Conflict, InvalidInput, NotFound) as exc:
        log.info("web participation refused", extra={"event": row.iri, "error": exc.detail})
        catalogue = i18n.translations(w.language(request, user))
        return await object_page(
            request, errors={"participation": catalogue.gettext("event_refused")}, status=409
        )
    raise web.HTTPSeeOther(f"{page}?participation={state}")


# --- the organisers' list -------------------------------------------------------------------------------


async def _participants_page(
    request: web.Request, editor: editors.Editor, event_iri: str, *, notice: str = "", status: int = 200
) -> web.Response:
    fed = request.app[FEDERATION]
    listed = await participation.participants(fed, editor.group, event_iri, by=editor.member)
    async with fed.node.sessions() as session:
        row = await reading.local_object(session, event_iri)
        known = await directory.by_iris(session, [p.actor_iri for p in listed])
    context = {
        "group": editor.group,
        "event_iri": event_iri,
        "event_name": row.document.get("name", "") if row is not None else "",
        "participants": [(p, known.get(p.actor_iri)) for p in listed],
        "notice": notice,
    }
    return await w.render(
        request, "event_participants.html", context, status=status, title="event_participants_title"
    )


@routes.get(GROUP + "/events/participants")
async def participants_page(request: web.Request) -> web.Response:
    """The participants of one of the association's events, for its admins and moderators."""
    user = await w.require_signed_in(request)
    editor = await editors.acting(request.app[NODE], request.match_info["handle"], user.actor)
    decided = request.query.get("decided", "")
    return await _participants_page(
        request, editor, w.field(request.query, "event"), notice=decided if decided in DECIDED else ""
    )


@routes.post(GROUP + "/events/participants")
async def decide(request: web.Request) -> web.StreamResponse:
    """Accept or refuse a pending request (the capacity is checked again on acceptance)."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    editor = await editors.acting(request.app[NODE], request.match_info["handle"], user.actor)
    event_iri = w.field(data, "event")
    accept = w.field(data, "decision") == "accept"
    try:
        state = await participation.decide(
            request.app[FEDERATION], editor.group, event_iri, w.field(data, "participant"), by=editor.member,
            accept=accept,
        )  # fmt: skip
    except Conflict:
        return await _participants_page(request, editor, event_iri, notice="full", status=409)
    back = request.path + "?" + urlencode({"event": event_iri, "decided": state})
    raise web.HTTPSeeOther(back)
