"""The JSON API under ``/api`` (web UI and scripts), described by ``schemas/openapi.json``.

Handlers stay thin: authorise with the C2S outbox's rules (:func:`server.http.outbox.writer_of`,
:func:`server.http.outbox.acting_for`), check the body against the request schema *of the
OpenAPI document itself* (so the document and the behaviour cannot drift apart), then call the
content services, which check every field again. Reads go through the single read filter
(:mod:`server.services.reading.visibility`): an object the caller may not read answers exactly like a
missing one. Errors are raised and rendered once, as problem+json, by ``problem_middleware``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from federation import errors as fe
from federation.uris import is_valid_handle
from federation.validation import FORMAT_CHECKER
from federation.vocab import entraide as wire
from federation.vocab.entraide import Kind
from server.appkeys import FEDERATION, NODE
from server.http.auth import viewer_of
from server.http.outbox import acting_for, writer_of
from server.http.params import int_param, json_value
from server.http.problems import problem
from server.http.render import json_response
from server.services import audit
from server.services.actors import directory, dissolution, founding
from server.services.actors import local as actor_service
from server.services.content import endorsements, kinds, polls
from server.services.content import likes as likes_service
from server.services.content import local as content
from server.services.content.local import Published
from server.services.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from server.services.membership import directory as member_directory
from server.services.membership import members as membership
from server.services.reading import notifications as notifications_service
from server.services.reading import objects as reading
from server.services.reading import timeline as timeline_service
from server.services.reading import visibility
from server.services.reading.visibility import Viewer, ViewerKind
from server.services.types import Actor, RemoteObject, Session

routes = web.RouteTableDef()

OPENAPI_PATH: Final = "/api/openapi.json"
_OPENAPI_URI: Final = "urn:entraide:openapi"
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
MAX_IRI_CHARS: Final = 2048
VOTING_ROLES: Final = ("admin",)  # an association's single vote is cast by its admins only
NO_STORE: Final = {"Cache-Control": "no-store", "Vary": "Authorization"}
READ_KINDS: Final = frozenset(k.kind.value for k in kinds.registered())


@dataclass(frozen=True, slots=True)
class KindRoute:
    """One ``/api/associations/{slug}/<path>`` collection: its kind, request schema and wire type."""

    kind: Kind
    schema: str
    fixed: Mapping[str, str]


KIND_ROUTES: Final = {
    k.api_path: KindRoute(k.kind, k.api_schema, k.api_fixed)
    for k in kinds.registered()
    if k.api_path is not None and k.api_schema is not None
}
"""The kinds with a collection in the JSON API (each path is in ``schemas/openapi.json``)."""


# --- the OpenAPI document and request checks -----------------------------------------------------


@cache
def openapi_bytes() -> bytes:
    return (resources.files("schemas") / "openapi.json").read_bytes()


@cache
def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(openapi_bytes())
    return document


@cache
def request_validator(schema: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema>``; its ``$ref`` s resolve inside the document."""
    registry: Registry[Any] = Registry().with_resource(
        _OPENAPI_URI, Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{_OPENAPI_URI}#/components/schemas/{schema}"},
        registry=registry,
        format_checker=FORMAT_CHECKER,
    )


LIMIT_KEYWORDS: Final = (
    "$ref",
    "allOf",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "maxItems",
    "maxLength",
    "maxProperties",
)
"""What a body is checked against first: sizes and counts, each linear in the body (case 53)."""


@cache
def limits_validator(schema: str) -> Any:
    """A validator of ``schema`` that knows only :data:`LIMIT_KEYWORDS`.

    ``uniqueItems`` compares every pair of items, formats and patterns cost per character: run on
    4,000 option objects before ``maxItems: 20`` is reported, they kept the server busy for
    seconds. Sizes and counts are checked first, on their own, so no body buys more than a linear
    pass before it is refused.
    """
    limits_only = validators.create(
        meta_schema=Draft202012Validator.META_SCHEMA,
        validators={name: Draft202012Validator.VALIDATORS[name] for name in LIMIT_KEYWORDS},
    )
    registry: Registry[Any] = Registry().with_resource(
        _OPENAPI_URI, Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    )
    return limits_only({"$ref": f"{_OPENAPI_URI}#/components/schemas/{schema}"}, registry=registry)


PATTERN_HINTS: Final = {
    "language": "a BCP 47 tag such as fr or fr-BE",
    "areaCode": "an ISO 3166 code such as FR or FR-75",
    "tag": "hashtag names",
    "oneOf": "non-blank option names",
    "anyOf": "non-blank option names",
    "as": "an association's handle",
    "slug": "an association's handle: 1-63 lower-case letters, digits, '-' or '_'",
    "name": "a non-blank text",
}


def refusal(error: ValidationError) -> InvalidInput:
    """One schema violation as the service layer words it: a sentence that names the field."""
    path = list(error.absolute_path)
    field = str(path[0]) if path else None
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    match error.validator:
        case "required":
            missing = next(k for k in expected if k not in instance)
            return InvalidInput(f"{missing} is required", field=missing)
        case "additionalProperties":
            extra = sorted(set(instance) - set(schema.get("properties", {})))[0]
            return InvalidInput(f"{extra} is not a field of this request", field=extra)
        case "minProperties":
            return InvalidInput("give at least one field to change")
        case "oneOf" if field is None:  # a proposal's options: exactly one of oneOf and anyOf
            if "oneOf" in instance and "anyOf" in instance:
                return InvalidInput("give oneOf or anyOf, not both", field="oneOf")
            return InvalidInput("list the options in oneOf (one choice) or anyOf (several)", field="oneOf")
        case "enum":
            return InvalidInput(f"{field} must be one of: {', '.join(map(str, expected))}", field=field)
        case "type":
            wanted = " or ".join(expected) if isinstance(expected, list) else expected
            return InvalidInput(f"{field} must be of type {wanted}", field=field)
        case "maxLength":
            return InvalidInput(f"{field} is longer than {expected} characters", field=field)
        case "minLength":
            return InvalidInput(f"{field} must not be empty", field=field)
        case "maxItems":
            return InvalidInput(f"{field} has more than {expected} items", field=field)
        case "minItems":
            return InvalidInput(f"{field} needs at least {expected} items", field=field)
        case "uniqueItems":
            return InvalidInput(f"{field} has duplicate items", field=field)
        case "format":
            return InvalidInput(f"{field} must be an RFC 3339 date-time with a time zone", field=field)
        case "pattern":
            hint = PATTERN_HINTS.get(field or "", "an http(s) IRI")
            return InvalidInput(f"{field} must be {hint}", field=field)
    return InvalidInput(f"{field or 'the body'}: {error.message[:200]}", field=field)


def _nul_field(value: Any, field: str | None = None) -> str | None:
    """The top-level field holding a NUL character anywhere inside it (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return (field or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_field(key, field or key) or _nul_field(item, field or key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _nul_field(item, field)
            if found is not None:
                return found
    return None


def check_body(body: Any, schema: str) -> dict[str, Any]:
    """``body`` when it is a JSON object valid against the request schema ``schema``."""
    if not isinstance(body, dict):
        raise fe.MalformedPayload("the body must be a JSON object")
    nul = _nul_field(body)
    if nul is not None:
        raise InvalidInput(f"{nul} must not contain NUL characters", field=nul)
    # The first size or count past its limit, without looking further (the walk stops there).
    error = next(limits_validator(schema).iter_errors(body), None) or best_match(
        request_validator(schema).iter_errors(body)
    )
    if error is not None:
        raise refusal(error)
    return body


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def json_body(request: web.Request, schema: str) -> dict[str, Any]:
    """The request's JSON object, checked against ``schema`` (413, 415 and 400 otherwise)."""
    if not _is_json(request.content_type):
        raise web.HTTPUnsupportedMediaType(text="the body must be application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[NODE].settings.server.max_body_bytes
        raise fe.PayloadTooLarge(f"the body is larger than {limit} bytes") from None
    return check_body(json_value(raw), schema)


@contextmanager
def renamed_fields(names: Mapping[str, str]) -> Iterator[None]:
    """Services name the wire fields (``inReplyTo``); answer with this request's names (``question``)."""
    try:
        yield
    except InvalidInput as exc:
        field = exc.context.get("field")
        if not isinstance(field, str) or field not in names:
            raise
        detail = exc.detail
        if detail.startswith(field):
            detail = names[field] + detail[len(field) :]
        raise InvalidInput(detail, field=names[field]) from None


# --- lookups ---------------------------------------------------------------------------------------


async def association(session: Session, slug: str) -> Actor:
    group = await directory.local_by_handle(session, "Group", slug) if is_valid_handle(slug) else None
    if group is None:
        raise NotFound("no such association")
    return group


async def local_user(session: Session, username: str) -> Actor:
    user = await directory.local_by_handle(session, "Person", username) if is_valid_handle(username) else None
    if user is None:
        raise NotFound("no such user")
    return user


def iri_query(request: web.Request) -> str:
    iri = request.query.get("iri", "")
    if not iri:
        raise InvalidInput("iri is required", field="iri")
    if len(iri) > MAX_IRI_CHARS or not iri.startswith(("https://", "http://")) or "\x00" in iri:
        raise InvalidInput("iri must be an http(s) IRI", field="iri")
    return iri


async def readable_object(
    session: Session, viewer: Viewer, iri: str, *, held: bool = False
) -> tuple[RemoteObject, Actor]:
    """One of our readable content objects and its author (with ``held``, a peer's object that this
    node holds too); NotFound for anything else."""
    return await reading.readable_object(session, viewer, iri, kinds=READ_KINDS, held=held)


def page_query(request: web.Request) -> tuple[int, int | None]:
    limit = int_param(request, "limit", minimum=1, maximum=MAX_LIMIT)
    return limit or DEFAULT_LIMIT, int_param(request, "before", minimum=1)


# --- rendering -------------------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def item_of(row: RemoteObject, *, now: datetime, likes: int = 0) -> dict[str, Any]:
    """One object as the API shows it: common fields (``likes``: how many like it, ours and
    peers'), then those of its kind."""
    doc = row.document
    content_map = doc.get("contentMap")
    item: dict[str, Any] = {
        "id": row.iri,
        "kind": row.kind,
        "type": row.type,
        "attributedTo": _str(doc.get("attributedTo")) or "",
        "name": _str(doc.get("name")),
        "content": _str(doc.get("content")) or "",
        "summary": _str(doc.get("summary")),
        "published": wire.iso(row.published),
        "updated": wire.iso(row.updated) if row.updated is not None else None,
        "visibility": row.visibility,
        "url": _str(doc.get("url")) or row.iri,
        "language": next(iter(content_map), None) if isinstance(content_map, dict) else None,
        "tags": [t["name"] for t in doc.get("tag", []) if isinstance(t, dict) and t.get("type") == "Hashtag"],
        "attachment": [a for a in doc.get("attachment", []) if isinstance(a, dict)],
        "sensitive": doc.get("sensitive") is True,
        "inReplyTo": _str(doc.get("inReplyTo")),
        "context": _str(doc.get("context")),
        "likes": likes,
    }
    if row.kind == Kind.ALERT.value:
        for key in ("severity", "category", "alertStatus"):
            item[key] = doc.get(key)
        for key in ("area", "areaCode", "validUntil", "supersedes", "supersededBy"):
            item[key] = _str(doc.get(key))
    elif row.kind == Kind.RESOURCE.value:
        item["license"] = _str(doc.get("license"))
        item["history"] = _str(doc.get("history"))
    elif row.kind == Kind.PROPOSAL.value:
        names, multiple = wire.option_names(doc)
        counts = polls.results(doc)
        voters = doc.get("votersCount")
        item.update(
            options=[{"name": name, "votes": counts.get(name, 0)} for name in names],
            multiple=multiple,
            votersCount=voters if isinstance(voters, int) and voters >= 0 else 0,
            endTime=_str(doc.get("endTime")),
            closed=polls.is_closed(doc, now),
            eligibility=polls.eligibility_of(row).value,
            proposalStatus="closed" if doc.get("proposalStatus") == "closed" else "open",
            endorsements=_str(doc.get("endorsements")),
        )
    return item


def published_response(result: Published, *, status: int) -> web.Response:
    iri = result.object_iri or ""
    headers = dict(NO_STORE)
    if status == 201:
        headers["Location"] = iri
    return json_response(
        {"id": iri, "activity": result.activity_iri or "", "url": iri}, status=status, headers=headers
    )


# --- routes ----------------------------------------------------------------------------------------


@routes.get(OPENAPI_PATH)
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return web.Response(
        body=openapi_bytes(),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def list_kind(request: web.Request, path: str, route: KindRoute) -> web.Response:
    """The association's objects of one kind that the caller may read, newest first."""
    node = request.app[NODE]
    viewer = await viewer_of(request)
    limit, before = page_query(request)
    async with node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        levels = await visibility.outbox_levels(session, viewer, group)
        rows = await reading.kind_page(session, group, route.kind, levels=levels, before=before, limit=limit)
        counts = await likes_service.likes_count(session, [row.iri for row in rows[:limit]])
    now = node.clock()
    items = [item_of(row, now=now, likes=counts.get(row.iri, 0)) for row in rows[:limit]]
    next_page = (
        node.uris.iri(f"/api/associations/{group.handle}/{path}?limit={limit}&before={rows[limit - 1].id}")
        if len(rows) > limit
        else None
    )
    return json_response({"items": items, "next": next_page}, headers=NO_STORE)


async def create_kind(request: web.Request, route: KindRoute) -> web.Response:
    """Publish as the association: the caller is one of its admins or moderators."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        member = await acting_for(session, viewer, group)
    body = await json_body(request, route.schema)
    result = await content.create(fed, group, {**body, **route.fixed}, by=member)
    return published_response(result, status=201)


def _kind_routes(path: str, route: KindRoute) -> None:
    async def get_list(request: web.Request) -> web.Response:
        return await list_kind(request, path, route)

    async def post_create(request: web.Request) -> web.Response:
        return await create_kind(request, route)

    routes.get(f"/api/associations/{{slug}}/{path}")(get_list)
    routes.post(f"/api/associations/{{slug}}/{path}")(post_create)


for _path, _route in KIND_ROUTES.items():
    _kind_routes(_path, _route)


@routes.get("/api/objects")
async def get_object(request: web.Request) -> web.Response:
    """An object this node holds, ours or a peer's, in its current state, if the caller may read it
    (404 otherwise, 410 once deleted)."""
    node = request.app[NODE]
    viewer = await viewer_of(request)
    iri = iri_query(request)
    async with node.sessions() as session:
        row, _ = await readable_object(session, viewer, iri, held=True)
        counts = await likes_service.likes_count(session, [row.iri])
    if row.deleted_at is not None:
        return problem(410, "this object was deleted", code="gone", headers=NO_STORE)
    return json_response(item_of(row, now=node.clock(), likes=counts.get(row.iri, 0)), headers=NO_STORE)


async def _editor(request: web.Request) -> tuple[RemoteObject, Actor, Actor]:
    """The object named by ``?iri=``, its author, and the caller acting for the author."""
    viewer = await writer_of(request)
    iri = iri_query(request)
    async with request.app[NODE].sessions() as session:
        row, owner = await readable_object(session, viewer, iri)
        if row.deleted_at is not None:
            raise NotFound("no such object")
        try:
            member = await acting_for(session, viewer, owner)
        except Forbidden:
            raise Forbidden(
                "only the author, or an admin or moderator of its association, may change this object"
            ) from None
    return row, owner, member


def _check_patch(kind: str, body: Mapping[str, Any]) -> None:
    """Fields that the service would ignore for this kind are refused instead."""
    content.check_fields_apply(kind, body)


@routes.patch("/api/objects")
async def patch_object(request: web.Request) -> web.Response:
    """Edit an object; an ``Update`` goes to its audience."""
    row, owner, member = await _editor(request)
    body = await json_body(request, "ObjectPatch")
    _check_patch(row.kind, body)
    result = await content.update(request.app[FEDERATION], owner, {**body, "id": row.iri}, by=member)
    return published_response(result, status=200)


@routes.delete("/api/objects")
async def delete_object(request: web.Request) -> web.Response:
    """Delete an object: a tombstone stays, a ``Delete`` goes to its audience."""
    row, owner, member = await _editor(request)
    result = await content.delete(request.app[FEDERATION], owner, row.iri, by=member)
    return published_response(result, status=200)


@routes.post("/api/users/{username}/replies")
async def post_reply(request: web.Request) -> web.Response:
    """Reply as this member; only the member's own token may."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        user = await local_user(session, request.match_info["username"])
        member = await acting_for(session, viewer, user)
    body = await json_body(request, "ReplyCreate")
    # The reply's audience is the content service's rule (never wider than its parent's): the
    # same for this API, the C2S outbox, the pages and the CLI (decision 71).
    result = await content.create(fed, user, {**body, "type": "Note"}, by=member)
    return published_response(result, status=201)


@routes.post("/api/votes")
async def post_vote(request: web.Request) -> web.Response:
    """Vote as the caller, or as an association the caller administers (``as``)."""
    viewer = await writer_of(request)
    body = await json_body(request, "VoteCreate")
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        if "as" in body:
            voter = await association(session, body["as"])
            member = await acting_for(session, viewer, voter, roles=VOTING_ROLES)
        else:
            found = await directory.by_id(session, viewer.actor_id)
            if found is None:
                raise NotFound("no such user")
            voter = member = found
        # The vote service looks questions up by IRI alone: apply the read filter first, so that
        # a question the voter may not read answers like an unknown one.
        question = await reading.held_object(session, body["question"])
        as_voter = Viewer(ViewerKind.LOCAL, actor_id=voter.id, actor_iri=voter.iri)
        if question is None or not await visibility.can_read_object(session, as_voter, question):
            raise InvalidInput("question names no question known here", field="question")
    with renamed_fields({"inReplyTo": "question", "name": "choice"}):
        result = await polls.cast(
            fed, voter, {"name": body["choice"], "inReplyTo": body["question"]}, by=member
        )
    return published_response(result, status=201)


@routes.post("/api/associations/{slug}/endorsements")
async def post_endorsement(request: web.Request) -> web.Response:
    """The association co-signs another association's public proposal."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        member = await acting_for(session, viewer, group)
    body = await json_body(request, "EndorsementCreate")
    obj = {"object": body["proposal"], "content": body.get("statement")}
    with renamed_fields({"object": "proposal", "content": "statement"}):
        result = await endorsements.endorse(fed, group, obj, by=member)
    return published_response(result, status=201)


# --- membership ------------------------------------------------------------------------------------

INT32_MAX: Final = 2**31 - 1


def member_query(request: web.Request) -> str:
    """The ``member`` query parameter: an actor IRI."""
    iri = request.query.get("member", "")
    if not iri or len(iri) > MAX_IRI_CHARS or not iri.startswith(("https://", "http://")) or "\x00" in iri:
        raise InvalidInput("member must be the member's http(s) actor IRI", field="member")
    return iri


@routes.get("/api/associations/{slug}/members")
async def get_members(request: web.Request) -> web.Response:
    """Active members (listed to whom the association chooses; members who left the directory only
    to its admins and moderators), or pending requests to join (``state=pending``: its admins and
    moderators only), newest first."""
    node = request.app[NODE]
    viewer = await viewer_of(request)
    state = request.query.get("state", "active")
    limit, before = page_query(request)
    async with node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        found = await member_directory.members_page(
            session, viewer, group, state=state, before=before, limit=limit, now=node.clock()
        )
    cursor = found.cursor
    query = f"state={state}&limit={limit}&before={cursor}" if cursor is not None else None
    next_page = node.uris.iri(f"/api/associations/{group.handle}/members?{query}") if query else None
    return json_response({"items": found.items(), "next": next_page}, headers=NO_STORE)


@routes.post("/api/associations/{slug}/members")
async def post_member_decision(request: web.Request) -> web.Response:
    """An admin or moderator approves or refuses a pending request to join (audited; a member on
    another node gets ``Accept{Join}`` or ``Reject{Join}``)."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        member = await acting_for(session, viewer, group, roles=membership.MANAGING_ROLES)
    body = await json_body(request, "MemberDecision")
    approve = body["decision"] == "approve"
    await membership.decide(fed, group, body["member"], by=member, approve=approve, reason=body.get("reason"))
    return json_response(
        {"member": body["member"], "state": "active" if approve else "refused"}, headers=NO_STORE
    )


@routes.delete("/api/associations/{slug}/members")
async def delete_member(request: web.Request) -> web.Response:
    """A moderator or admin removes a member (only an admin removes an admin); audited, and a
    member on another node gets ``Remove``."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    member_iri = member_query(request)
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group, roles=membership.MANAGING_ROLES)
    await membership.remove(fed, group, member_iri, by=by)
    return json_response({"member": member_iri, "state": "removed"}, headers=NO_STORE)


@routes.post("/api/memberships")
async def post_membership(request: web.Request) -> web.Response:
    """The caller asks to join an association, here or on another node: active at once when it is
    open, else pending until its admins answer (201 active, 202 pending)."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    body = await json_body(request, "MembershipCreate")
    async with fed.node.sessions() as session:
        user = await directory.by_id(session, viewer.actor_id)
        group = await directory.live_by_iri(session, body["association"])
    if user is None or user.type != "Person":
        raise Forbidden("only a person joins an association")
    if group is None or group.type != "Group":
        # The API never fetches on a caller's word: look the association up (WebFinger) first.
        raise InvalidInput("association names no association known here", field="association")
    with renamed_fields({"object": "association"}):
        await membership.join(fed, user, group.iri)
    async with fed.node.sessions() as session:
        state = await membership.state_of(session, group.id, user.id) or "pending"
    return json_response(
        {"association": body["association"], "state": state},
        status=201 if state == "active" else 202,
        headers=NO_STORE,
    )


@routes.delete("/api/memberships")
async def delete_membership(request: web.Request) -> web.Response:
    """The caller leaves an association (one on another node gets ``Leave``)."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    group_iri = request.query.get("association", "")
    if (
        not group_iri.startswith(("https://", "http://"))
        or len(group_iri) > MAX_IRI_CHARS
        or "\x00" in group_iri
    ):
        raise InvalidInput("association must be the association's http(s) IRI", field="association")
    async with fed.node.sessions() as session:
        user = await directory.by_id(session, viewer.actor_id)
        group = await directory.by_iri(session, group_iri)
    if user is None or group is None:
        raise NotFound("not a member")
    await membership.leave(fed, user, group_iri)
    return json_response({"association": group_iri, "state": "left"}, headers=NO_STORE)


# --- a member reads: timeline, notifications, memberships (issue 13) -------------------------------


async def reader_of(request: web.Request) -> Viewer:
    """The caller, who must be a local account (any token scope).

    Raises:
        Unauthorized: no bearer token (or a remote actor's signature: these are a member's own lists).
    """
    viewer = await viewer_of(request)
    if viewer.kind is not ViewerKind.LOCAL or viewer.actor_id is None:
        raise Unauthorized("a bearer token is required")
    return viewer


@routes.get("/api/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    """What the caller's followed actors and joined associations published or relayed, newest first."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    limit = page_limit(request)
    kind = request.query.get("kind")
    if kind is not None and kind not in timeline_service.TIMELINE_KINDS:
        raise InvalidInput("kind must be one of alert, resource, proposal, post", field="kind")
    raw = request.query.get("before")
    before = timeline_service.Cursor.parse(raw) if raw is not None else None
    if raw is not None and before is None:
        raise InvalidInput("before must be the cursor of a previous page", field="before")
    async with node.sessions() as session:
        entries, cursor = await timeline_service.timeline(
            session, viewer, kind=kind, before=before, limit=limit
        )
        counts = await likes_service.likes_count(session, [entry.object.iri for entry in entries])
    now = node.clock()
    query = f"limit={limit}" + (f"&kind={kind}" if kind else "")
    next_page = node.uris.iri(f"/api/timeline?{query}&before={cursor}") if cursor is not None else None
    items = [
        {
            **item_of(entry.object, now=now, likes=counts.get(entry.object.iri, 0)),
            "relayedBy": entry.relayed_by,
            "relayedAt": wire.iso(entry.relayed_at) if entry.relayed_at is not None else None,
        }
        for entry in entries
    ]
    return json_response({"items": items, "next": next_page}, headers=NO_STORE)


def page_limit(request: web.Request) -> int:
    raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(raw_limit)


@routes.get("/api/notifications")
async def get_notifications(request: web.Request) -> web.Response:
    """The caller's notifications, newest first, each saying whether it was read."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    limit = page_limit(request)
    raw = request.query.get("before")
    before = notifications_service.Key.parse(raw) if raw is not None else None
    if raw is not None and before is None:
        raise InvalidInput("before must be the cursor of a previous page", field="before")
    async with node.sessions() as session:
        page = await notifications_service.notifications(
            session,
            viewer,
            before=before,
            limit=limit,
            now=node.clock(),
            reminder_before=node.settings.events.reminder_before,
        )
    items = [
        {
            "type": n.type,
            "at": wire.iso(n.at),
            "object": n.object,
            "actor": n.actor,
            **(n.detail or {}),
            "read": page.read_at is not None and n.at <= page.read_at,
        }
        for n in page.items
    ]
    next_page = (
        node.uris.iri(f"/api/notifications?limit={limit}&before={page.next_before.encode()}")
        if page.next_before is not None
        else None
    )
    return json_response({"items": items, "next": next_page}, headers=NO_STORE)


@routes.post("/api/notifications/read")
async def post_notifications_read(request: web.Request) -> web.Response:
    """Everything notified so far is read."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    async with node.sessions.begin() as session:
        await notifications_service.mark_read(session, viewer, now=node.clock())
    return web.Response(status=204, headers=NO_STORE)


@routes.get("/api/memberships")
async def get_memberships(request: web.Request) -> web.Response:
    """The caller's memberships, on this node and elsewhere, with their state."""
    node = request.app[NODE]
    viewer = await reader_of(request)
    assert viewer.actor_id is not None
    limit = page_limit(request)
    raw = request.query.get("before")
    before = membership.MembershipCursor.parse(raw) if raw is not None else None
    if raw is not None and before is None:
        raise InvalidInput("before must be the cursor of a previous page", field="before")
    async with node.sessions() as session:
        rows, cursor = await membership.memberships_page(session, viewer.actor_id, before=before, limit=limit)
    items = [
        {"association": iri, "state": state, "local": local, "since": wire.iso(at)}
        for iri, state, local, at in rows
    ]
    next_page = (
        node.uris.iri(f"/api/memberships?limit={limit}&before={cursor.encode()}")
        if cursor is not None
        else None
    )
    return json_response({"items": items, "next": next_page}, headers=NO_STORE)


# --- administration: closing, association settings, roles, tokens, audit log (issue 17) -----------
# The same services as ``entraide content|association|member|token|audit``; audited with the channel
# ``api`` (set by ``audit_channel_middleware``).

AUDIT_MAX_LIMIT: Final = 100
ASSOCIATION_FIELDS: Final = {
    "name": "name",
    "summary": "summary",
    "language": "language",
    "joinPolicy": "join_policy",
    "replies": "replies_policy",
    "membersList": "members_visibility",
}


@routes.post("/api/objects/close")
async def post_close_object(request: web.Request) -> web.Response:
    """Close a proposal's (or poll's) vote now, with its final tally (admins and moderators of the
    authoring association, or the author)."""
    row, owner, member = await _editor(request)
    result = await polls.close_early(request.app[FEDERATION], owner, row.iri, by=member)
    return published_response(result, status=200)


def association_of(group: Actor) -> dict[str, Any]:
    return {
        "id": group.iri,
        "handle": group.handle,
        "name": group.name,
        "summary": group.summary,
        "language": group.language,
        "joinPolicy": group.join_policy,
        "replies": group.replies_policy,
        "membersList": group.members_visibility,
    }


@routes.post("/api/associations")
async def post_association(request: web.Request) -> web.Response:
    """A member creates an association and becomes its admin, if the node's policy lets them
    (node admins only, or every member: decision 73)."""
    viewer = await viewer_of(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        await founding.may_create(session, viewer.actor_id, scope=viewer.scope)
    body = await json_body(request, "AssociationCreate")
    async with node.sessions.begin() as session:
        group = await founding.create_as_member(
            session,
            node.uris,
            node.vault,
            actor_id=viewer.actor_id,
            scope=viewer.scope,
            handle=body["slug"],
            name=body["name"],
            summary=body.get("summary", ""),
            now=node.clock(),
        )
        answer = association_of(group)
    return json_response({**answer, "update": None}, status=201, headers=NO_STORE)


@routes.patch("/api/associations/{slug}")
async def patch_association(request: web.Request) -> web.Response:
    """An admin edits the association's profile and settings; a changed name or summary reaches its
    followers as ``Update{Group}``."""
    viewer = await writer_of(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group, roles=("admin",))
    body = await json_body(request, "AssociationPatch")
    changes = {ASSOCIATION_FIELDS[k]: ("" if v is None else v) for k, v in body.items()}
    with renamed_fields({v: k for k, v in ASSOCIATION_FIELDS.items()}):
        async with node.sessions.begin() as session:
            edited = await actor_service.edit_association(
                session, node.uris, handle=group.handle, changes=changes, by=by, now=node.clock()
            )
            answer = association_of(edited.group)
    if edited.update_iri:
        request.app[FEDERATION].notify_worker()
    return json_response({**answer, "update": edited.update_iri}, headers=NO_STORE)


@routes.delete("/api/associations/{slug}")
async def delete_association(request: web.Request) -> web.Response:
    """An admin of the association, or a node admin, deletes it for good (decision 97): ``confirm``
    must repeat its handle."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await directory.by_id(session, viewer.actor_id)
        if by is None:
            raise Unauthorized("a bearer token of a local account is required")
        await dissolution.check_may_delete(session, group, by, scope=viewer.scope, now=fed.node.clock())
    body = await json_body(request, "AssociationDelete")
    if body["confirm"] != group.handle:
        raise InvalidInput("confirm must repeat the association's handle", field="confirm")
    done = await dissolution.delete_association(
        fed, group.handle, by=by, scope=viewer.scope, reason=body.get("reason") or None
    )
    answer = {
        "id": done.actor_iri, "delete": done.delete_iri, "objects": done.objects, "members": done.members,
    }  # fmt: skip
    return json_response(answer, headers=NO_STORE)


@routes.patch("/api/associations/{slug}/members")
async def patch_member(request: web.Request) -> web.Response:
    """An admin changes a member's role (the last admin keeps it); audited."""
    viewer = await writer_of(request)
    fed = request.app[FEDERATION]
    member_iri = member_query(request)
    async with fed.node.sessions() as session:
        group = await association(session, request.match_info["slug"])
        by = await acting_for(session, viewer, group, roles=("admin",))
    body = await json_body(request, "MemberRole")
    previous = await membership.set_role(fed, group, member_iri, body["role"], by=by)
    return json_response({"member": member_iri, "role": body["role"], "previous": previous}, headers=NO_STORE)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else None


async def _own_account(request: web.Request, viewer: Viewer) -> Actor:
    async with request.app[NODE].sessions() as session:
        user = await directory.by_id(session, viewer.actor_id)
    if user is None or not user.local or user.type != "Person":
        raise Unauthorized("a bearer token of a local account is required")
    return user


@routes.get("/api/tokens")
async def get_tokens(request: web.Request) -> web.Response:
    """The caller's own live tokens (never their secrets, which are not stored)."""
    viewer = await viewer_of(request)
    user = await _own_account(request, viewer)
    async with request.app[NODE].sessions() as session:
        tokens = await actor_service.list_tokens(session, username=user.handle)
    items = [
        {
            "id": t.id,
            "scope": t.scope,
            "label": t.label,
            "created": _iso(t.created_at),
            "lastUsed": _iso(t.last_used_at),
        }
        for t in tokens
    ]
    return json_response({"items": items}, headers=NO_STORE)


@routes.delete("/api/tokens/{id}")
async def delete_token(request: web.Request) -> web.Response:
    """The caller revokes one of their own tokens (it stops working at once); audited."""
    viewer = await writer_of(request)
    user = await _own_account(request, viewer)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise NotFound("no such token")
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        token = await actor_service.revoke_token(
            session, username=user.handle, token_id=int(raw), by=user, now=node.clock()
        )
    return json_response({"id": token.id, "revoked": _iso(token.revoked_at)}, headers=NO_STORE)


def _audit_filters(request: web.Request, group_id: int | None) -> audit.Filters:
    for name in request.query:
        if name not in ("action", "channel", "target", "limit", "before"):
            raise InvalidInput(f"{name} is not a filter of the audit log", field=name)
    target = request.query.get("target")
    if target is not None and (len(target) > MAX_IRI_CHARS or "\x00" in target):
        raise InvalidInput("target must be an IRI", field="target")
    return audit.Filters(
        group_id=group_id,
        action=audit.check_action(request.query.get("action")),
        channel=audit.check_channel(request.query.get("channel")),
        target=target,
    )


async def _audit_page(request: web.Request, filters: audit.Filters, path: str) -> web.Response:
    limit = int_param(request, "limit", minimum=1, maximum=AUDIT_MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param(request, "before", minimum=1)
    node = request.app[NODE]
    async with node.sessions() as session:
        # audit_log.id is a 32-bit integer: a larger cursor means "from the top"
        items = await audit.entries(
            session, filters, limit=limit + 1, before=min(before, INT32_MAX) if before else None
        )
    next_page = None
    if len(items) > limit:
        query = {k: v for k, v in request.query.items() if k != "before"}
        query.update(limit=str(limit), before=str(items[limit - 1]["id"]))
        next_page = str(node.uris.iri(path).rstrip("?")) + "?" + urlencode(query)
    return json_response({"items": items[:limit], "next": next_page}, headers=NO_STORE)


@routes.get("/api/audit")
async def get_audit(request: web.Request) -> web.Response:
    """The node's audit log, newest first: node admins only, with an admin-scope token."""
    viewer = await viewer_of(request)
    user = await _own_account(request, viewer)
    async with request.app[NODE].sessions() as session:
        account = await directory.account_of(session, user.id)
    if account is None or not account.is_node_admin or viewer.scope != "admin":
        raise Forbidden("the node's audit log is read by node admins, with an admin-scope token")
    return await _audit_page(request, _audit_filters(request, None), "/api/audit")


@routes.get("/api/associations/{slug}/audit")
async def get_association_audit(request: web.Request) -> web.Response:
    """One association's audit log, newest first: its admins and moderators only."""
    viewer = await viewer_of(request)
    async with request.app[NODE].sessions() as session:
        group = await association(session, request.match_info["slug"])
        if await visibility.role_in(session, viewer, group) not in membership.MANAGING_ROLES:
            raise Forbidden("an association's audit log is read by its admins and moderators")
    return await _audit_page(
        request, _audit_filters(request, group.id), f"/api/associations/{group.handle}/audit"
    )
