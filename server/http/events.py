"""The JSON API's participation routes (the events themselves are a content kind: their
collection ``/api/associations/{slug}/events`` comes from the kinds' registry, server/http/api.py).

Thin handlers: the caller's token, the body checked against ``schemas/openapi.json``, then
:mod:`server.services.events.participation`, which decides everything (problem+json errors).
"""

from __future__ import annotations

from aiohttp import web

from server.appkeys import FEDERATION
from server.http.api import NO_STORE, association, json_body
from server.http.outbox import acting_for, writer_of
from server.http.render import json_response
from server.services.errors import InvalidInput
from server.services.events import participation

routes = web.RouteTableDef()

MAX_IRI_CHARS = 2048


def _iri_query(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if not value.startswith(("https://", "http://")) or len(value) > MAX_IRI_CHARS or "\x00" in value:
        raise InvalidInput(f"{name} must be an http(s) IRI", field=name)
    return value


@routes.post("/api/events/participations")
async def post_participation(request: web.Request) -> web.Response:
    """The caller asks to take part: 201 accepted at once, 202 waiting for the organisers."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    body = await json_body(request, "EventParticipationCreate")
    person = await participation.local_person(fed, viewer.actor_id)
    state = await participation.join(fed, person, body["event"], body.get("message"))
    return json_response(
        {"event": body["event"], "state": state}, status=201 if state == "accepted" else 202, headers=NO_STORE
    )


@routes.delete("/api/events/participations")
async def delete_participation(request: web.Request) -> web.Response:
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    event = _iri_query(request, "event")
    person = await participation.local_person(fed, viewer.actor_id)
    await participation.leave(fed, person, event)
    return json_response({"event": event, "state": "left"}, headers=NO_STORE)


@routes.get("/api/associations/{slug}/events/participants")
async def get_participants(request: web.Request) -> web.Response:
    """The organisers (admins and moderators) see the list; participants see only the count."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    event = _iri_query(request, "event")
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group)
    listed = await participation.participants(fed, group, event, by=by)
    items = [
        {"actor": p.actor_iri, "state": p.state, "message": p.message, "at": p.at.isoformat()} for p in listed
    ]
    return json_response({"items": items}, headers=NO_STORE)


@routes.post("/api/associations/{slug}/events/participants")
async def post_decision(request: web.Request) -> web.Response:
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    body = await json_body(request, "EventDecision")
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group)
    state = await participation.decide(
        fed, group, body["event"], body["participant"], by=by, accept=body["accept"]
    )
    return json_response({"event": body["event"], "state": state}, headers=NO_STORE)
