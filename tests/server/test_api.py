"""The JSON API (``/api``), on both engines: publishing each kind, reading through the read filter,
replies, votes, co-signing, edits and deletes, every refusal, and the OpenAPI document that
describes it all (every response seen here is checked against it)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.specs.openapi.definitions import OPENAPI_31
from sqlalchemy import select

from federation.audience import Visibility
from federation.validation import FORMAT_CHECKER
from federation.vocab import entraide as wire
from server.db.models import Actor, AuditEntry, RemoteObject
from server.http.api import KIND_ROUTES
from server.services.content import endorsements
from server.services.content import local as content
from tests.support.nodes import Node, running_node, wait_until

SPEC_FILE = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
SPEC_URI = "urn:test:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
PROBLEM = "application/problem+json"


# --- helpers -------------------------------------------------------------------------------------


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = SPEC
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        item = node
    return item


def _schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    if set(schema) == {"$ref"}:
        schema = {"$ref": SPEC_URI + schema["$ref"]}
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FORMAT_CHECKER)


def template_of(path: str) -> str:
    """The OpenAPI path template that ``path`` (without its query) falls under."""
    for template in SPEC["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{path} is not in the OpenAPI document")


def check_response(path: str, method: str, status: int, content_type: str, body: Any) -> None:
    """The response is declared for this operation, with this media type, and matches its schema."""
    template = template_of(path)
    responses = SPEC["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered an undeclared {status}: {body}"
    declared = _resolve(responses[str(status)]).get("content", {})
    if not declared and not content_type:  # an answer without a body (304)
        return
    assert content_type in declared, f"{method} {template} {status}: {content_type} not in {list(declared)}"
    _schema_validator(declared[content_type]["schema"]).validate(body)


class Api:
    """Calls the API as a client would, checking every answer against the OpenAPI document."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = content_type
        response = await self.node.client.request(method, path, data=data, headers=headers, params=params)
        payload = await response.json(content_type=None)
        check_response(path, method, response.status, response.content_type, payload)
        return response.status, payload, dict(response.headers)

    async def create(self, slug: str, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer, headers = await self.call(
            "POST",
            f"/api/associations/{slug}/{path}",
            token=token,
            body=body,
        )
        assert status == 201, answer
        assert headers["Location"] == answer["id"] == answer["url"]
        return answer

    async def get(self, iri: str, token: str | None = None) -> tuple[int, Any]:
        status, answer, _ = await self.call("GET", "/api/objects", params={"iri": iri}, token=token)
        return status, answer

    async def list(self, slug: str, path: str, token: str | None = None, **params: str) -> tuple[int, Any]:
        status, answer, _ = await self.call(
            "GET",
            f"/api/associations/{slug}/{path}",
            token=token,
            params=params or None,
        )
        return status, answer

    async def listed(self, slug: str, path: str, token: str | None = None) -> list[str]:
        status, answer = await self.list(slug, path, token)
        assert status == 200, answer
        return [item["id"] for item in answer["items"]]


async def _people(node: Node) -> dict[str, str]:
    """demo: admin alice, moderator mo, member mia; other: admin olga, member zed. Their tokens."""
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mo", "demo", role="moderator")
    await node.add_member("mia", "demo", role="member")
    await node.create_association("other", "Autre")
    await node.add_member("olga", "other", role="admin")
    await node.add_member("zed", "other", role="member")
    tokens = {name: await node.token(name) for name in ("alice", "mo", "mia", "olga", "zed")}
    tokens["alice_read"] = await node.token("alice", scope="read")
    return tokens


def _alert(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Pénurie de lévothyroxine",
        "content": "<p>Les pharmacies manquent de <b>Levothyrox 50</b>.</p><script>x()</script>",
        "severity": "critical",
        "category": "shortage",
        "area": "Île-de-France",
        "areaCode": "FR-IDF",
        "language": "fr",
        **extra,
    }


def _proposal(**extra: Any) -> dict[str, Any]:
    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    return {"name": "Adopter la charte ?", "oneOf": ["Oui", "Non"], "endTime": end.isoformat(), **extra}


async def _row(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


# --- the document ----------------------------------------------------------------------------------


def _request_schemas() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for template, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                found.append((f"{method.upper()} {template} {media_type}", media["schema"]))
    return found


async def test_openapi_document_is_valid_and_describes_every_api_route(node: Node) -> None:
    # The document is a valid OpenAPI 3.1 document (the official 3.1 meta-schema, offline).
    Draft202012Validator(OPENAPI_31).validate(SPEC)
    # Every route registered under /api is documented, and everything documented is routed.
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in node.client.server.app.router.routes()  # type: ignore[union-attr]
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (method, template)
        for template, item in SPEC["paths"].items()
        for method in item
        if method != "parameters" and template.startswith("/api/")
    }
    assert routed == documented
    # Outside /api only the feeds and calendars are documented (test_feeds_and_calendars_…).
    assert {t for t in SPEC["paths"] if not t.startswith("/api/")} == set(FEED_PATHS)
    # Every schema in the document, and each request body schema, is a valid Draft 2020-12 schema.
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name
    assert len(_request_schemas()) >= 10
    for _, schema in _request_schemas():
        Draft202012Validator.check_schema(_resolve(schema))
    # The node serves this very document.
    response = await node.client.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == SPEC


FEED_PATHS = (
    "/groups/{handle}/feeds/events.ics",
    "/objects/{id}/event.ics",
    "/groups/{handle}/feed.{format}",
    "/groups/{handle}/feeds/{kind}.{format}",
)


async def test_feeds_and_calendars_answer_as_the_openapi_document_says(node: Node) -> None:
    """Each feed and calendar path, with each format: 200 with the declared media type, 304 for
    its ETag, 404 (problem+json) for an unknown association, kind or event."""
    api, t = Api(node), await _people(node)
    start = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    permanence = {"name": "Permanence", "startTime": start.isoformat()}
    event = await api.create("demo", "events", t["alice"], permanence)
    event_id = event["id"].rsplit("/", 1)[-1]
    paths = [
        "/groups/demo/feeds/events.ics",
        f"/objects/{event_id}/event.ics",
        *(f"/groups/demo/feed.{fmt}" for fmt in ("atom", "rss", "json")),
        *(f"/groups/demo/feeds/{kind}.{fmt}" for kind in ("alerts", "events") for fmt in ("atom", "json")),
    ]
    for path in paths:
        answer = await node.client.get(path)
        body = await answer.json() if answer.content_type == "application/feed+json" else await answer.text()
        check_response(path, "GET", answer.status, answer.content_type, body)
        assert answer.status == 200, path
        again = await node.client.get(path, headers={"If-None-Match": answer.headers["ETag"]})
        check_response(path, "GET", again.status, "", None)
        assert again.status == 304, path
    for path in (
        "/groups/nobody/feeds/events.ics",
        "/objects/" + "0" * 32 + "/event.ics",
        "/groups/nobody/feed.atom",
        "/groups/demo/feeds/nothing.rss",
    ):
        answer = await node.client.get(path)
        check_response(path, "GET", answer.status, answer.content_type, await answer.json(content_type=None))
        assert answer.status == 404, path


def test_openapi_limits_and_enums_are_the_services() -> None:
    schemas = SPEC["components"]["schemas"]
    assert schemas["Content"]["maxLength"] == content.MAX_CONTENT_CHARS
    assert schemas["Name"]["maxLength"] == content.MAX_NAME_CHARS
    assert schemas["Summary"]["maxLength"] == content.MAX_SUMMARY_CHARS
    assert schemas["Tags"]["maxItems"] == content.MAX_TAGS
    assert schemas["Attachments"]["maxItems"] == content.MAX_ATTACHMENTS
    assert schemas["Recipients"]["maxItems"] == content.MAX_RECIPIENTS
    assert schemas["Options"]["maxItems"] == wire.MAX_OPTIONS
    assert schemas["Options"]["items"]["maxLength"] == wire.MAX_OPTION_CHARS
    assert (
        schemas["EndorsementCreate"]["properties"]["statement"]["maxLength"]
        == endorsements.MAX_STATEMENT_CHARS
    )
    assert schemas["Severity"]["enum"] == [s.value for s in wire.Severity]
    assert schemas["AlertCategory"]["enum"] == [c.value for c in wire.AlertCategory]
    assert schemas["AlertStatus"]["enum"] == [s.value for s in wire.AlertStatus]
    assert schemas["Eligibility"]["enum"] == [e.value for e in wire.Eligibility]
    assert schemas["Visibility"]["enum"] == [v.value for v in Visibility]
    for path, route in KIND_ROUTES.items():
        post = SPEC["paths"][f"/api/associations/{{slug}}/{path}"]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(route.schema)


# --- publishing and reading ------------------------------------------------------------------------


async def test_each_kind_is_published_and_read_back(node: Node) -> None:
    api, t = Api(node), await _people(node)
    # Given an admin and a moderator of demo, when each kind is published through the API
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    resource = await api.create(
        "demo",
        "resources",
        t["mo"],
        {
            "name": "Guide des droits",
            "content": "Texte brut",
            "summary": "Résumé",
            "license": "https://creativecommons.org/licenses/by/4.0/",
            "tag": ["droits", "#guide"],
        },
    )
    proposal = await api.create("demo", "proposals", t["alice"], _proposal(eligibility="members"))
    post = await api.create(
        "demo", "posts", t["mo"], {"content": "<p>Bienvenue</p>", "visibility": "unlisted"}
    )
    # Then each reads back with its kind's fields
    status, item = await api.get(alert["id"])
    assert status == 200
    assert (item["kind"], item["type"], item["severity"], item["category"], item["areaCode"]) == (
        "alert",
        "Note",
        "critical",
        "shortage",
        "FR-IDF",
    )
    assert item["name"] == "Pénurie de lévothyroxine" and item["alertStatus"] == "active"
    assert "<script>" not in item["content"] and item["language"] == "fr"
    assert item["attributedTo"] == node.uris.iri("/groups/demo")
    status, item = await api.get(resource["id"])
    assert (item["kind"], item["type"], item["license"]) == (
        "resource",
        "Article",
        "https://creativecommons.org/licenses/by/4.0/",
    )
    assert item["tags"] == ["#droits", "#guide"] and item["summary"] == "Résumé"
    status, item = await api.get(proposal["id"])
    assert (item["kind"], item["type"], item["eligibility"], item["closed"], item["multiple"]) == (
        "proposal",
        "Question",
        "members",
        False,
        False,
    )
    assert item["options"] == [{"name": "Oui", "votes": 0}, {"name": "Non", "votes": 0}]
    assert item["votersCount"] == 0 and item["proposalStatus"] == "open"
    status, item = await api.get(post["id"])
    assert (item["kind"], item["visibility"]) == ("post", "unlisted")
    for path, created in (
        ("alerts", alert),
        ("resources", resource),
        ("proposals", proposal),
        ("posts", post),
    ):
        assert await api.listed("demo", path) == [created["id"]]
    # And the association is the author, with the member who did it in the audit log
    async with node.sessions() as session:
        audit = (
            await session.execute(
                select(AuditEntry.action, Actor.handle)
                .join(Actor, Actor.id == AuditEntry.by_actor_id)
                .where(AuditEntry.action.like("%.create"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [tuple(row) for row in audit] == [
        ("alert.create", "alice"),
        ("resource.create", "mo"),
        ("proposal.create", "alice"),
        ("post.create", "mo"),
    ]


async def test_listing_and_reading_go_through_the_read_filter(node: Node) -> None:
    api, t = Api(node), await _people(node)
    public = await api.create("demo", "alerts", t["alice"], _alert())
    members_only = await api.create("demo", "alerts", t["alice"], _alert(visibility="members"))
    # Anonymous readers and a non-member with a token do not get the members-only alert at all
    assert await api.listed("demo", "alerts") == [public["id"]]
    assert await api.listed("demo", "alerts", t["olga"]) == [public["id"]]
    # Members and admins do, newest first
    assert await api.listed("demo", "alerts", t["mia"]) == [members_only["id"], public["id"]]
    assert await api.listed("demo", "alerts", t["alice"]) == [members_only["id"], public["id"]]
    # One object: not readable answers exactly like missing
    missing = node.uris.object("0" * 32)
    _, absent = await api.get(missing)
    for token in (None, t["olga"]):
        status, hidden = await api.get(members_only["id"], token)
        assert status == 404 and hidden == absent
    status, item = await api.get(members_only["id"], t["mia"])
    assert status == 200 and item["visibility"] == "members"
    # Paging: limit and the next link, until the end
    posts = [
        (await api.create("demo", "posts", t["alice"], {"content": f"<p>{i}</p>"}))["id"] for i in range(3)
    ]
    status, page = await api.list("demo", "posts", limit="2")
    assert [i["id"] for i in page["items"]] == posts[::-1][:2] and page["next"]
    status, rest = await api.list(
        "demo", "posts", **dict(p.split("=") for p in page["next"].split("?")[1].split("&"))
    )
    assert [i["id"] for i in rest["items"]] == [posts[0]] and rest["next"] is None


async def test_replies_votes_and_endorsements(node: Node) -> None:
    api, t = Api(node), await _people(node)
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    # A member replies in their own name; the reply joins the alert's thread
    status, reply, headers = await api.call(
        "POST",
        "/api/users/mia/replies",
        token=t["mia"],
        body={"inReplyTo": alert["id"], "content": "<p>Merci</p>"},
    )
    assert status == 201 and headers["Location"] == reply["id"]
    _, item = await api.get(reply["id"])
    assert item["kind"] == "reply" and item["inReplyTo"] == alert["id"]
    assert item["attributedTo"] == node.uris.iri("/users/mia")
    # Members vote on a members-only-eligible proposal; the tally follows
    proposal = await api.create("demo", "proposals", t["alice"], _proposal())
    status, _, _ = await api.call(
        "POST", "/api/votes", token=t["mia"], body={"question": proposal["id"], "choice": "Oui"}
    )
    assert status == 201
    status, again, _ = await api.call(
        "POST", "/api/votes", token=t["mia"], body={"question": proposal["id"], "choice": "Non"}
    )
    assert (status, again["code"]) == (403, "vote_refused")
    status, outsider, _ = await api.call(
        "POST", "/api/votes", token=t["zed"], body={"question": proposal["id"], "choice": "Oui"}
    )
    assert (status, outsider["code"]) == (403, "vote_refused")

    async def tallied() -> bool:
        _, current = await api.get(proposal["id"])
        return bool(current["options"][0]["votes"] == 1 and current["votersCount"] == 1)

    await wait_until(tallied, what="the tally of the vote")
    # An association votes through its admin, only where associations vote
    between = await api.create("demo", "proposals", t["alice"], _proposal(eligibility="associations"))
    status, answer, _ = await api.call(
        "POST", "/api/votes", token=t["zed"], body={"question": between["id"], "choice": "Non", "as": "other"}
    )
    assert (status, answer["code"]) == (403, "forbidden")
    status, answer, _ = await api.call(
        "POST",
        "/api/votes",
        token=t["olga"],
        body={"question": between["id"], "choice": "Non", "as": "other"},
    )
    assert status == 201
    # Another association co-signs the proposal, once
    body = {"proposal": proposal["id"], "statement": "<p>Nous soutenons.</p>"}
    status, _, _ = await api.call("POST", "/api/associations/other/endorsements", token=t["olga"], body=body)
    assert status == 201
    status, twice, _ = await api.call(
        "POST", "/api/associations/other/endorsements", token=t["olga"], body=body
    )
    assert (status, twice["code"]) == (409, "conflict")
    status, own, _ = await api.call(
        "POST", "/api/associations/demo/endorsements", token=t["alice"], body=body
    )
    assert (status, own["code"], own["field"]) == (400, "invalid_input", "proposal")


# --- membership --------------------------------------------------------------------------------


async def _set_policy(node: Node, handle: str, policy: str) -> None:
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == handle, Actor.type == "Group"))
        assert group is not None
        group.join_policy = policy


async def test_joining_answering_listing_removing_and_leaving_through_the_api(node: Node) -> None:
    api, t = Api(node), await _people(node)
    demo, other = node.uris.group("demo"), node.uris.group("other")
    zed = node.uris.person("zed")
    members = "/api/associations/demo/members"

    async def listed(token: str | None, state: str = "active") -> tuple[int, list[str]]:
        status, page, _ = await api.call("GET", members, token=token, params={"state": state})
        return status, [m["member"] for m in page["items"]] if status == 200 else []

    # zed asks to join demo, which approves requests (the default): pending, and only once
    status, answer, _ = await api.call("POST", "/api/memberships", token=t["zed"], body={"association": demo})
    assert (status, answer["state"]) == (202, "pending")
    status, again, _ = await api.call("POST", "/api/memberships", token=t["zed"], body={"association": demo})
    assert (status, again["code"]) == (409, "conflict")
    # the request is seen by demo's admins and moderators only
    assert await listed(t["alice"], "pending") == (200, [zed])
    assert await listed(t["mo"], "pending") == (200, [zed])
    assert (await listed(t["mia"], "pending"))[0] == 403
    assert (await listed(None, "pending"))[0] == 403
    # a plain member cannot answer it; the moderator approves it (audited)
    decision = {"member": zed, "decision": "approve"}
    status, _, _ = await api.call("POST", members, token=t["mia"], body=decision)
    assert status == 403
    status, answer, _ = await api.call("POST", members, token=t["mo"], body=decision)
    assert (status, answer) == (200, {"member": zed, "state": "active"})
    async with node.sessions() as session:
        assert "member.approve" in (await session.scalars(select(AuditEntry.action))).all()
    # demo lists its members to its members only (its members_visibility)
    status, active = await listed(t["mia"])
    assert status == 200 and zed in active and len(active) == 4
    assert (await listed(t["olga"]))[0] == 403 and (await listed(None))[0] == 403
    # a moderator removes zed, but not an admin
    status, answer, _ = await api.call("DELETE", members, token=t["mo"], params={"member": zed})
    assert (status, answer["state"]) == (200, "removed")
    alice = node.uris.person("alice")
    status, refused, _ = await api.call("DELETE", members, token=t["mo"], params={"member": alice})
    assert (status, refused["code"]) == (403, "forbidden")
    # zed leaves other; then he is no member to leave
    status, answer, _ = await api.call(
        "DELETE", "/api/memberships", token=t["zed"], params={"association": other}
    )
    assert (status, answer["state"]) == (200, "left")
    status, _, _ = await api.call("DELETE", "/api/memberships", token=t["zed"], params={"association": other})
    assert status == 404
    # an open association takes him at once; a closed one refuses
    await _set_policy(node, "other", "open")
    status, answer, _ = await api.call(
        "POST", "/api/memberships", token=t["zed"], body={"association": other}
    )
    assert (status, answer["state"]) == (201, "active")
    await _set_policy(node, "demo", "closed")
    status, refused, _ = await api.call(
        "POST", "/api/memberships", token=t["zed"], body={"association": demo}
    )
    assert (status, refused["code"]) == (403, "forbidden")
    # bad input names the field
    for params, field in [({"state": "invited"}, "state"), ({"limit": "0"}, "limit")]:
        status, problem, _ = await api.call("GET", members, token=t["alice"], params=params)
        assert (status, problem["field"]) == (400, field)
    unknown = {"association": "https://nowhere.example/groups/x"}
    status, problem, _ = await api.call("POST", "/api/memberships", token=t["zed"], body=unknown)
    assert (status, problem["field"]) == (400, "association")
    status, problem, _ = await api.call(
        "POST", members, token=t["alice"], body={"member": zed, "decision": "maybe"}
    )
    assert (status, problem["field"]) == (400, "decision")
    status, problem, _ = await api.call(
        "POST", members, token=t["alice"], body={"member": zed, "decision": "approve"}
    )
    assert status == 404  # no pending request from zed


# --- refusals ----------------------------------------------------------------------------------


async def test_every_refusal_is_a_problem_naming_the_field_and_changes_nothing(node: Node) -> None:
    api, t = Api(node), await _people(node)
    alice, mia, olga = t["alice"], t["mia"], t["olga"]
    alert = (await api.create("demo", "alerts", alice, _alert()))["id"]
    hidden = (await api.create("demo", "alerts", alice, _alert(visibility="members")))["id"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    no_severity = {k: v for k, v in _alert().items() if k != "severity"}
    huge = b'{"content": "' + b"x" * 1_100_000 + b'"}'
    A, P, V = "/api/associations/demo/alerts", "/api/associations/demo/proposals", "/api/votes"
    E, R = "/api/associations/other/endorsements", "/api/users/mia/replies"
    reply = {"inReplyTo": alert, "content": "x"}
    cases: list[tuple[str, str, str, dict[str, Any], str]] = [
        # (what, method, path, request, "status code field")
        ("no token", "POST", A, {"body": _alert()}, "401 unauthorized"),
        ("read-only token", "POST", A, {"body": _alert(), "token": t["alice_read"]}, "403 forbidden"),
        ("a plain member", "POST", A, {"body": _alert(), "token": mia}, "403 forbidden"),
        ("another association's admin", "POST", A, {"body": _alert(), "token": olga}, "403 forbidden"),
        ("malformed JSON", "POST", A, {"raw": b'{"name": ', "token": alice}, "400 malformed_payload"),
        ("not an object", "POST", A, {"raw": b"[1, 2]", "token": alice}, "400 malformed_payload"),
        ("not JSON", "POST", A, {"raw": b"x", "content_type": "text/plain", "token": alice}, "415"),
        ("too large", "POST", A, {"raw": huge, "token": alice}, "413 payload_too_large"),
        ("no severity", "POST", A, {"body": no_severity, "token": alice}, "400 invalid_input severity"),
        (
            "a category",
            "POST",
            A,
            {"body": _alert(category="x"), "token": alice},
            "400 invalid_input category",
        ),
        ("headline", "POST", A, {"body": _alert(name="x" * 501), "token": alice}, "400 invalid_input name"),
        ("a type", "POST", A, {"body": _alert(type="Article"), "token": alice}, "400 invalid_input type"),
        (
            "area code",
            "POST",
            A,
            {"body": _alert(areaCode="fr"), "token": alice},
            "400 invalid_input areaCode",
        ),
        (
            "a date",
            "POST",
            A,
            {"body": _alert(validUntil="x"), "token": alice},
            "400 invalid_input validUntil",
        ),
        ("no content", "POST", A, {"body": _alert(content=""), "token": alice}, "400 invalid_input content"),
        ("a NUL", "POST", A, {"body": _alert(area="a\x00"), "token": alice}, "400 invalid_input area"),
        (
            "superseding nothing",
            "POST",
            A,
            {"body": _alert(supersedes=node.uris.object("1" * 32)), "token": alice},
            "400 invalid_input supersedes",
        ),
        (
            "unknown association",
            "POST",
            "/api/associations/nowhere/alerts",
            {"body": _alert(), "token": alice},
            "404 not_found",
        ),
        ("invalid slug", "GET", "/api/associations/No%20Such/alerts", {}, "404 not_found"),
        ("a bad limit", "GET", A, {"params": {"limit": "0"}}, "400 invalid_input limit"),
        ("a bad cursor", "GET", A, {"params": {"before": "abc"}}, "400 invalid_input before"),
        ("no iri", "GET", "/api/objects", {}, "400 invalid_input iri"),
        (
            "a bad token",
            "GET",
            "/api/objects",
            {"params": {"iri": alert}, "token": "ent_nope"},
            "401 unauthorized",
        ),
        ("unknown user", "POST", "/api/users/nobody/replies", {"body": reply, "token": mia}, "404 not_found"),
        (
            "replying as another",
            "POST",
            "/api/users/alice/replies",
            {"body": reply, "token": mia},
            "403 forbidden",
        ),
        (
            "a non-member's reply in an association's thread (replies from members only)",
            "POST",
            "/api/users/olga/replies",
            {"body": {**reply, "visibility": "members"}, "token": olga},
            "403 forbidden",
        ),
        (
            "a public reply to members-only content",
            "POST",
            R,
            {"body": {**reply, "inReplyTo": hidden}, "token": mia},
            "400 invalid_input visibility",
        ),
        (
            "replying to a hidden object",
            "POST",
            "/api/users/olga/replies",
            {"body": {**reply, "inReplyTo": hidden}, "token": olga},
            "400 invalid_input inReplyTo",
        ),
        (
            "one option",
            "POST",
            P,
            {"body": _proposal(oneOf=["Oui"]), "token": alice},
            "400 invalid_input oneOf",
        ),
        (
            "both kinds of options",
            "POST",
            P,
            {"body": _proposal(anyOf=["a", "b"]), "token": alice},
            "400 invalid_input oneOf",
        ),
        (
            "closing in the past",
            "POST",
            P,
            {"body": _proposal(endTime=past), "token": alice},
            "400 invalid_input endTime",
        ),
        (
            "an eligibility",
            "POST",
            P,
            {"body": _proposal(eligibility="all"), "token": alice},
            "400 invalid_input eligibility",
        ),
        (
            "voting on a hidden question",
            "POST",
            V,
            {"body": {"question": hidden, "choice": "Oui"}, "token": olga},
            "400 invalid_input question",
        ),
        (
            "voting on an alert",
            "POST",
            V,
            {"body": {"question": alert, "choice": "Oui"}, "token": mia},
            "400 invalid_input question",
        ),
        (
            "voting as nobody",
            "POST",
            V,
            {"body": {"question": alert, "choice": "Oui", "as": "x"}, "token": alice},
            "404 not_found",
        ),
        (
            "endorsing an alert",
            "POST",
            E,
            {"body": {"proposal": alert}, "token": olga},
            "400 invalid_input proposal",
        ),
    ]
    before = await node.row_counts()
    for what, method, path, request, expected in cases:
        status, problem, headers = await api.call(method, path, **request)
        got = " ".join(str(v) for v in (status, problem.get("code"), problem.get("field")) if v)
        assert got == expected, (what, problem)
        assert headers["Content-Type"].startswith(PROBLEM) and problem["status"] == status, what
    assert await node.row_counts() == before


async def test_edits_and_deletes_are_for_the_author_and_its_admins_only(node: Node) -> None:
    api, t = Api(node), await _people(node)
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    members_only = await api.create("demo", "alerts", t["alice"], _alert(visibility="members"))
    post = await api.create("demo", "posts", t["alice"], {"content": "<p>Un</p>"})
    _, reply, _ = await api.call(
        "POST",
        "/api/users/mia/replies",
        token=t["mia"],
        body={"inReplyTo": alert["id"], "content": "<p>Vu</p>"},
    )
    original = (await _row(node, alert["id"])).document  # type: ignore[union-attr]
    before = await node.row_counts()

    async def patch(iri: str, token: str | None, body: Any) -> tuple[int, Any]:
        status, answer, _ = await api.call(
            "PATCH", "/api/objects", params={"iri": iri}, token=token, body=body
        )
        return status, answer

    async def delete(iri: str, token: str | None) -> tuple[int, Any]:
        status, answer, _ = await api.call("DELETE", "/api/objects", params={"iri": iri}, token=token)
        return status, answer

    # Refused: nothing changes
    change = {"content": "<p>Changé</p>"}
    for iri, token, body, status, code, field in [
        (alert["id"], None, change, 401, "unauthorized", None),
        (alert["id"], t["mia"], change, 403, "forbidden", None),  # a member, not a moderator
        (alert["id"], t["olga"], change, 403, "forbidden", None),  # another association's admin
        (members_only["id"], t["olga"], change, 404, "not_found", None),  # not even readable
        (reply["id"], t["alice"], change, 403, "forbidden", None),  # a member's own reply
        (post["id"], t["alice"], {"severity": "info"}, 400, "invalid_input", "severity"),
        (alert["id"], t["alice"], {}, 400, "invalid_input", None),
        (alert["id"], t["alice"], {"visibility": "members"}, 400, "invalid_input", "visibility"),
        (alert["id"], t["alice"], {"alertStatus": "superseded"}, 400, "invalid_input", "alertStatus"),
    ]:
        got, problem = await patch(iri, token, body)
        assert (got, problem.get("code"), problem.get("field")) == (status, code, field), (iri, problem)
    for iri, token, status in [
        (alert["id"], t["mia"], 403),
        (alert["id"], t["olga"], 403),
        (members_only["id"], t["zed"], 404),
        (reply["id"], t["mo"], 403),
    ]:
        got, problem = await delete(iri, token)
        assert got == status, problem
    assert await node.row_counts() == before
    assert (await _row(node, alert["id"])).document == original  # type: ignore[union-attr]
    # Allowed: a moderator edits the association's alert, a member their own reply
    status, edited = await patch(
        alert["id"], t["mo"], {"content": "<p>Retour partiel.</p>", "severity": "warning"}
    )
    assert status == 200 and edited["id"] == alert["id"]
    _, item = await api.get(alert["id"])
    assert item["severity"] == "warning" and "Retour partiel." in item["content"] and item["updated"]
    status, _ = await patch(reply["id"], t["mia"], {"content": "<p>Vu, merci</p>"})
    assert status == 200
    # The admin deletes: the object is gone (410), and can no longer be edited
    status, deleted = await delete(alert["id"], t["alice"])
    assert status == 200 and deleted["id"] == alert["id"]
    status, gone = await api.get(alert["id"])
    assert (status, gone["code"]) == (410, "gone")
    assert await api.listed("demo", "alerts") == []
    status, _ = await patch(alert["id"], t["alice"], change)
    assert status == 404


# --- schemathesis ---------------------------------------------------------------------------------


def _hypothesis_run(strategy: Any, checks: list[Any], budget: int, base_url: str, token: str) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    @given(case=strategy)
    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=checks)

    run()


FUZZ_PARTS = 3  # the operations are fuzzed in this many tests, so that parallel workers share them


def _fuzz(base_url: str, token: str, question: str, budget: int, part: int) -> list[str]:
    """Run schemathesis on every ``FUZZ_PARTS``-th operation from ``part`` (except uploads) against the
    live node; failures as text."""
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    conformance = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    # Invalid requests must get a declared status and never a 5xx. Their media type is not checked:
    # aiohttp's HTTP parser answers a request line over 8190 bytes in text/plain, before any handler.
    robustness = [not_a_server_error, status_code_conformance]
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(SPEC)))
    failures: list[str] = []
    for index, result in enumerate(schema.get_all_operations()):
        if index % FUZZ_PARTS != part:
            continue
        operation = result.ok()
        if operation.path == "/api/media":  # uploads are exercised in tests/server/test_media.py
            continue
        if not operation.path.startswith("/api/"):  # feeds and calendars: not JSON, tested above
            continue
        known: dict[str, Any] = {}
        if "{slug}" in operation.path:
            known["path_parameters"] = {"slug": "demo"}
        elif "{username}" in operation.path:
            known["path_parameters"] = {"username": "alice"}
        runs = [
            (operation.as_strategy(GenerationMode.POSITIVE, **known), conformance),
            (operation.as_strategy(GenerationMode.NEGATIVE, **known), robustness),
        ]
        if operation.path == "/api/objects":  # also on an object that exists
            runs.append((operation.as_strategy(query={"iri": question}), conformance))
        for strategy, checks in runs:
            try:
                _hypothesis_run(strategy, checks, budget, base_url, token)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as exc:  # one report per operation and mode
                failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
    return failures


@pytest.mark.parametrize("part", range(FUZZ_PARTS))
async def test_schemathesis_finds_no_server_error_and_only_conformant_answers(
    tmp_path: Path, database_url: str, part: int
) -> None:
    # Fuzzed posts address random hosts, which the fan-out fetches: a closed network of loopback
    # keeps every such fetch a policy refusal, before any name lookup.
    closed = {"network": "allowlist", "allowed_domains": ["127.0.0.1"]}
    async with running_node(tmp_path / "node", database_url, federation=closed) as node:
        await _fuzz_node(node, part)


async def _fuzz_node(node: Node, part: int) -> None:
    api, t = Api(node), await _people(node)
    proposal = await api.create("demo", "proposals", t["alice"], _proposal())
    base_url = str(node.client.make_url("/")).rstrip("/")
    # schemathesis calls synchronously (requests): run it off the loop that serves the node
    failures = await asyncio.to_thread(_fuzz, base_url, t["alice"], proposal["id"], 15, part)
    assert failures == []
