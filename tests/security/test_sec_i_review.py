"""The outside review of issue 12: cases 51-53 and 57-59 (security.md, "The catalogue").

Each test replays a class of attack against a real node on SQLite and PostgreSQL (the ``node``
fixture) and fails on the code before the fix: cost is measured by counting rows and statements,
or as a ratio of CPU times taken side by side, never against a wall-clock bound.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.nodes import Node

PROBLEM = "application/problem+json"


async def _scene(node: Node) -> dict[str, str]:
    """Association ``demo`` (admin alice, member mia) with a public proposal; tokens and IRIs."""
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mia", "demo")
    scene = {"alice": await node.token("alice"), "mia": await node.token("mia")}
    status, answer = await _send(
        node, "POST", "/api/associations/demo/proposals", scene["alice"], _proposal()
    )
    assert status == 201, answer
    scene["proposal"] = answer["id"]
    return scene


def _proposal(**extra: Any) -> dict[str, Any]:
    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    return {"name": "Adopter la charte ?", "oneOf": ["Oui", "Non"], "endTime": end.isoformat(), **extra}


async def _send(
    node: Node,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    response = await node.client.request(method, path, data=data, headers=headers)
    text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def _assert_problem(status: int, answer: Any, expected: int = 400) -> None:
    assert status == expected, answer
    assert isinstance(answer, dict) and answer.get("status") == expected, answer


# ---------------------------------------------------------------------------------------------
# Case 58: no request gets a 500 (finding 11)
# ---------------------------------------------------------------------------------------------

UNICODE_DIGITS = ("%C2%B2", "%D9%A3", "%EF%BC%91", "1%C2%B2")
"""``²``, Arabic-Indic three, full-width one, ``1²``: ``str.isdigit()`` is true for all of them."""


async def test_sec_58_unicode_digits_in_integer_parameters_are_400(node: Node) -> None:
    scene = await _scene(node)
    object_path = scene["proposal"].removeprefix(node.settings.server.origin)
    paths = [
        "/groups/demo/outbox?page=true&before={}",
        "/groups/demo/followers?page=true&before={}",
        "/users/alice/following?page=true&before={}",
        "/groups/demo/members?page=true&before={}",
        object_path + "/replies?after={}",
        object_path + "/context?after={}",
        object_path + "/history?after={}",
        object_path + "/endorsements?after={}",
        "/api/associations/demo/proposals?before={}",
        "/api/associations/demo/proposals?limit={}",
        "/api/associations/demo/alerts?before={}",
    ]
    for template in paths:
        for digits in UNICODE_DIGITS:
            response = await node.client.get(
                template.format(digits), headers={"Accept": "application/activity+json"}
            )
            body = await response.text()
            assert response.status in (400, 404), (template, digits, response.status, body)
            assert response.content_type == PROBLEM, (template, digits, body)


async def test_sec_58_deeply_nested_json_bodies_are_400(node: Node) -> None:
    scene = await _scene(node)
    deep = b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    for path in ("/api/associations/demo/proposals", "/api/votes", "/groups/demo/outbox"):
        status, answer = await _send(node, "POST", path, scene["alice"], raw=deep)
        _assert_problem(status, answer)


async def test_sec_58_dates_past_the_representable_range_are_400(node: Node) -> None:
    scene = await _scene(node)
    for extreme in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        status, answer = await _send(
            node, "POST", "/api/associations/demo/proposals", scene["alice"], _proposal(endTime=extreme)
        )
        _assert_problem(status, answer)
        status, answer = await _send(
            node,
            "POST",
            "/api/associations/demo/resources",
            scene["alice"],
            {"name": "Aide", "content": "<p>x</p>", "validUntil": extreme},
        )
        _assert_problem(status, answer)
        c2s = {
            "type": "Question",
            **_proposal(endTime=extreme),
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
        }
        status, answer = await _send(node, "POST", "/groups/demo/outbox", scene["alice"], c2s)
        _assert_problem(status, answer)


QUERY_NAMES = ("page", "before", "after", "limit", "iri", "member", "state", "association", "resource", "as")
"""Every query parameter a route reads (``grep request.query server/http``)."""


def _fuzz_queries(base_url: str, paths: list[str], token: str) -> list[str]:
    """Hypothesis over (route, parameter, text value), signed in and not: every 5xx, as text."""
    import requests
    from hypothesis import HealthCheck, Phase, example, given, settings
    from hypothesis import strategies as st

    failures: list[str] = []

    @example(path=paths[0], name="before", value="\u00b2", signed=False)
    @example(path=paths[0], name="after", value="\u0663", signed=True)
    @given(
        path=st.sampled_from(paths),
        name=st.sampled_from(QUERY_NAMES),
        value=st.text(max_size=24),
        signed=st.booleans(),
    )
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(path: str, name: str, value: str, signed: bool) -> None:
        headers = {"Accept": "application/activity+json"}
        if signed:
            headers["Authorization"] = f"Bearer {token}"
        answer = requests.get(
            base_url + path, params={"page": "true", name: value}, headers=headers, timeout=30
        )
        if answer.status_code >= 500:
            failures.append(f"{path}?{name}={value!r}: {answer.status_code} {answer.text[:200]}")

    probe()
    return failures


async def test_sec_58_fuzzed_query_parameters_of_every_route_never_500(node: Node) -> None:
    scene = await _scene(node)
    object_path = scene["proposal"].removeprefix(node.settings.server.origin)
    paths = [
        *(
            f"/groups/demo/{c}"
            for c in ("outbox", "followers", "following", "liked", "members", "featured", "inbox")
        ),
        *(f"{object_path}/{c}" for c in ("replies", "context", "history", "endorsements", "likes")),
        *(f"/api/associations/demo/{kind}" for kind in ("alerts", "resources", "proposals", "posts")),
        "/api/associations/demo/members",
        "/api/objects",
        "/.well-known/webfinger",
        "/groups/demo/feed.atom",
        "/groups/demo/feeds/proposals.json",
        "/users/alice/inbox",
        object_path,
    ]
    base_url = str(node.client.make_url("/")).rstrip("/")
    # requests is synchronous: run it off the loop that serves the node
    assert await asyncio.to_thread(_fuzz_queries, base_url, paths, scene["alice"]) == []


def _fuzz_bodies(base_url: str, routes: list[tuple[str, dict[str, Any]]], token: str) -> list[str]:
    """Hypothesis over (write route, field, JSON value) from a valid body: every 5xx, as text."""
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    failures: list[str] = []

    @given(route=st.sampled_from(routes), data=st.data(), value=values)
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def probe(route: tuple[str, dict[str, Any]], data: Any, value: Any) -> None:
        path, body = route
        field = data.draw(st.sampled_from([*body, "id", "inReplyTo", "attachment", "tag"]))
        answer = requests.post(
            base_url + path,
            json={**body, field: value},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if answer.status_code >= 500:
            failures.append(f"POST {path} {field}={value!r}: {answer.status_code} {answer.text[:200]}")

    probe()
    return failures


async def test_sec_58_fuzzed_body_fields_of_every_write_route_never_500(node: Node) -> None:
    scene = await _scene(node)
    public = ["https://www.w3.org/ns/activitystreams#Public"]
    routes = [
        ("/api/associations/demo/proposals", _proposal()),
        (
            "/api/associations/demo/alerts",
            {"name": "A", "content": "<p>x</p>", "severity": "info", "category": "shortage"},
        ),
        (
            "/api/associations/demo/resources",
            {"name": "R", "content": "<p>x</p>", "validUntil": _proposal()["endTime"]},
        ),
        ("/api/associations/demo/posts", {"content": "<p>x</p>"}),
        ("/api/users/alice/replies", {"inReplyTo": scene["proposal"], "content": "<p>x</p>"}),
        ("/api/votes", {"question": scene["proposal"], "choice": "Oui"}),
        ("/api/associations/demo/endorsements", {"proposal": scene["proposal"]}),
        ("/groups/demo/outbox", {"type": "Question", **_proposal(), "to": public}),
        (
            "/users/alice/outbox",
            {"type": "Note", "content": "<p>x</p>", "to": public, "inReplyTo": scene["proposal"]},
        ),
    ]
    base_url = str(node.client.make_url("/")).rstrip("/")
    assert await asyncio.to_thread(_fuzz_bodies, base_url, routes, scene["alice"]) == []


# ---------------------------------------------------------------------------------------------
# Case 59: information leaks (finding 12)
# ---------------------------------------------------------------------------------------------

AP = "application/activity+json"


async def test_sec_59_metrics_are_refused_to_a_client_relayed_by_a_proxy(node: Node) -> None:
    await node.create_association("demo")
    assert (await node.client.get("/metrics")).status == 200  # the operator on the host itself
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = await node.client.get("/metrics", headers={header: "203.0.113.9"})
        body = await response.text()
        assert response.status == 403 and response.content_type == PROBLEM, (header, body)
        assert "entraide_" not in body


async def test_sec_59_metrics_are_refused_to_a_client_off_the_host(node: Node) -> None:
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from server.http.ops import metrics

    app = node.client.server.app
    assert app is not None
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("203.0.113.9", 40000) if name == "peername" else default
    )
    request = make_mocked_request("GET", "/metrics", app=app, transport=transport)
    assert request.remote == "203.0.113.9"
    from server.services.errors import Forbidden

    try:
        await metrics(request)
    except Forbidden:
        pass
    else:
        raise AssertionError("/metrics answered a client that is not on the host")


async def test_sec_59_metrics_with_a_token_need_it(tmp_path: Any, database_url: str) -> None:
    from tests.support.nodes import running_node

    token = "s3cret-metrics-token"
    async with running_node(tmp_path / "node", database_url, metrics={"token": token}) as node:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            response = await node.client.get("/metrics", headers=headers)
            assert response.status == 401 and "entraide_" not in await response.text(), headers
        response = await node.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200 and "entraide_http_requests_total" in await response.text()


def test_sec_59_data_directory_is_0700_and_its_files_0600(tmp_path: Any, database_url: str) -> None:
    import os
    import stat

    from server.cli import main

    previous = os.umask(0o022)  # the usual umask: SQLite and open() would follow it (0644, 0755)
    data_dir = tmp_path / "data"
    args = ["init", "--data-dir", str(data_dir), "--origin", "http://127.0.0.1:8080"]
    if database_url.startswith("postgresql"):
        args += ["--database", database_url]
    try:
        assert main(args) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert {"entraide.toml", "secret.key"} <= set(modes)
    if not database_url.startswith("postgresql"):
        assert "entraide.sqlite3" in modes
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


async def test_sec_59_members_are_not_discoverable_unless_they_opt_in(node: Node) -> None:
    from federation.types import utc_now
    from server.services.actors import local as actor_service

    await node.create_association("demo")
    await node.add_member("mia", "demo")

    async def flags(path: str) -> tuple[Any, Any]:
        doc = await (await node.client.get(path, headers={"Accept": AP})).json(content_type=None)
        return doc["discoverable"], doc["indexable"]

    assert await flags("/users/mia") == (False, False)
    assert await flags("/groups/demo") == (True, True)  # an association is there to be found
    async with node.sessions.begin() as session:
        await actor_service.configure_account(session, username="mia", discoverable=True, now=utc_now())
    assert await flags("/users/mia?opted-in") == (True, True)  # (past the 1 s page cache)


# ---------------------------------------------------------------------------------------------
# Case 57: budgets keyed by host:port (finding 10)
# ---------------------------------------------------------------------------------------------


def test_sec_57_a_peer_is_counted_by_its_registrable_domain_without_port() -> None:
    from federation.domains import registrable_domain

    assert {registrable_domain(f"127.0.0.1:{port}") for port in (8001, 8002, 65535)} == {"127.0.0.1"}
    assert {registrable_domain(f"[::1]:{port}") for port in (80, 81)} == {"[::1]"}
    hosts = ("social.example.org", "a.b.example.org:8443", "example.org:444")
    assert {registrable_domain(h) for h in hosts} == {"example.org"}
    assert registrable_domain("x.example.co.uk") == "example.co.uk"  # public suffix aware
    assert registrable_domain("alice.github.io") != registrable_domain("bob.github.io")  # private suffixes


async def test_sec_57_key_fetch_budget_is_shared_across_ports_and_subdomains(node: Node) -> None:
    """Case 7's budget (3 fetches here) holds for keyIds spread over ports and subdomains of one
    registrable domain: past it, no fetch is even tried."""
    from aiohttp.test_utils import unused_port

    from federation.transport import AiohttpTransport, StaticResolver
    from federation.types import Iri
    from server.appkeys import NODE
    from server.services.actors.key_resolver import FetchBudget, KeyFetchBudgetExceeded, RemoteKeyResolver
    from tests.support.fake_peers import USER_AGENT

    names = tuple(f"n{i}.evil.example.org" for i in range(5))
    port = unused_port()  # nothing listens there: a fetch that is tried fails at once
    families = {
        "subdomains": [f"http://{name}:{port}/key#k" for name in names],
        "ports": [f"http://127.0.0.1:{port + i}/key#k" for i in range(1, 6)],
    }
    async with AiohttpTransport(
        user_agent=USER_AGENT,
        allow_private_addresses=False,
        trusted_test_hosts=names,
        resolver=StaticResolver({name: ["127.0.0.1"] for name in names}),
    ) as transport:
        for family, key_ids in families.items():
            resolver = RemoteKeyResolver(
                node.client.server.app[NODE],
                transport,
                per_host_budget=FetchBudget(capacity=3, refill_per_minute=1),
            )
            outcomes = []
            for key_id in key_ids:
                try:
                    await resolver.resolve(Iri(key_id))
                except Exception as exc:  # every fetch fails; which failure is the point
                    outcomes.append(isinstance(exc, KeyFetchBudgetExceeded))
            assert outcomes == [False, False, False, True, True], family


async def test_sec_57_unverified_inbox_traffic_is_limited_by_source_address(
    tmp_path: Any, database_url: str
) -> None:
    from tests.support.nodes import running_node

    limits = {"inbox_rate_per_host": 0.01, "inbox_burst_per_host": 2}
    async with running_node(tmp_path / "node", database_url, federation=limits) as node:
        statuses = []
        for n in range(4):
            forged = {
                "@context": "https://www.w3.org/ns/activitystreams",
                "id": f"http://{n}.forger.example:{1000 + n}/activities/{n}",
                "type": "Like",
                "actor": f"http://{n}.forger.example:{1000 + n}/users/x",
                "object": "http://127.0.0.1/objects/x",
            }
            response = await node.client.post(
                "/inbox", data=json.dumps(forged), headers={"Content-Type": "application/activity+json"}
            )
            statuses.append(response.status)
        assert statuses[:2] != [429, 429] and statuses[2:] == [429, 429], statuses


# ---------------------------------------------------------------------------------------------
# Case 53: sizes and counts before the expensive checks (finding 6)
# ---------------------------------------------------------------------------------------------

ARRAY_FIELDS = ("to", "cc", "tag", "attachment", "oneOf", "anyOf")
STRING_FIELDS = ("name", "content", "summary", "choice", "statement", "member", "association", "area")


def _worst(plain: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """``plain`` with every array field holding 4,000 distinct objects (``uniqueItems`` compares
    every pair of unhashable items) and every text field 20,000 characters: under 0.5 MB, so
    inside the body limit."""
    worst = dict(plain)
    for name in fields & set(ARRAY_FIELDS):
        worst[name] = [{"o": i} for i in range(4000)]
    for name in fields & set(STRING_FIELDS):
        worst[name] = "é" * 20_000
    return worst


async def test_sec_53_no_write_body_costs_much_more_cpu_than_a_plain_one(node: Node) -> None:
    """For each write route, the CPU time of its worst body against a plain one, measured side by
    side in this process (client and node): a ratio, never an absolute time."""
    import time

    from server.http.api import openapi_document

    scene = await _scene(node)
    schemas = openapi_document()["components"]["schemas"]
    public = ["https://www.w3.org/ns/activitystreams#Public"]
    iri = scene["proposal"]
    routes: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("POST", "/api/associations/demo/proposals", "ProposalCreate", _proposal()),
        (
            "POST",
            "/api/associations/demo/alerts",
            "AlertCreate",
            {"name": "A", "content": "<p>x</p>", "severity": "info", "category": "shortage"},
        ),
        ("POST", "/api/associations/demo/resources", "ResourceCreate", {"name": "R", "content": "<p>x</p>"}),
        ("POST", "/api/associations/demo/posts", "PostCreate", {"content": "<p>x</p>"}),
        ("POST", "/api/users/alice/replies", "ReplyCreate", {"inReplyTo": iri, "content": "<p>x</p>"}),
        ("PATCH", f"/api/objects?iri={iri}", "ObjectPatch", {"name": "Adopter la charte ?"}),
        ("POST", "/api/votes", "VoteCreate", {"question": iri, "choice": "Oui"}),
        ("POST", "/api/associations/demo/endorsements", "EndorsementCreate", {"proposal": iri}),
        (
            "POST",
            "/api/associations/demo/members",
            "MemberDecision",
            {"member": "https://x.example/u", "decision": "approve"},
        ),
        ("POST", "/api/memberships", "MembershipCreate", {"association": "https://x.example/g"}),
        ("POST", "/groups/demo/outbox", None, {"type": "Question", **_proposal(), "to": public}),
        ("POST", "/users/alice/outbox", None, {"type": "Note", "content": "<p>x</p>", "to": public}),
    ]
    ratios = {}
    for method, path, schema, plain in routes:
        fields = set(schemas[schema]["properties"]) if schema else set(ARRAY_FIELDS) | {"name", "content"}
        bodies = {"plain": json.dumps(plain).encode(), "worst": json.dumps(_worst(plain, fields)).encode()}
        spent = {"plain": 0.0, "worst": 0.0}
        for _ in range(2):
            for kind, raw in bodies.items():
                token = scene["mia"] if path == "/api/memberships" else scene["alice"]
                started = time.process_time()
                status, answer = await _send(node, method, path, token, raw=raw)
                spent[kind] += time.process_time() - started
                assert status < 500, (path, kind, answer)
                if kind == "worst":
                    assert 400 <= status < 500, (path, answer)
        ratios[f"{method} {path}"] = spent["worst"] / max(spent["plain"], 1e-3)
    assert {route: round(r, 1) for route, r in ratios.items() if r >= 20} == {}, ratios


# ---------------------------------------------------------------------------------------------
# Case 51: replies and thread collections scan every hidden row (finding 4)
# ---------------------------------------------------------------------------------------------


async def _hide_replies(node: Node, parent_iri: str, count: int, start: int) -> None:
    """``count`` members-only and direct replies to ``parent_iri`` by mia, stored as they would be."""
    from sqlalchemy import select

    from federation.types import utc_now
    from server.db.models import Actor, RemoteObject

    now = utc_now()
    async with node.sessions.begin() as session:
        mia = await session.scalar(select(Actor).where(Actor.handle == "mia", Actor.local.is_(True)))
        group = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.local.is_(True)))
        parent = await session.scalar(select(RemoteObject).where(RemoteObject.iri == parent_iri))
        assert mia is not None and group is not None and parent is not None
        for n in range(start, start + count):
            iri = f"{node.settings.server.origin}/objects/{n:032x}"
            session.add(
                RemoteObject(
                    iri=iri,
                    local=True,
                    type="Note",
                    attributed_to_id=mia.id,
                    audience_id=group.id if n % 2 else None,
                    in_reply_to_iri=parent_iri,
                    context_iri=parent.context_iri,
                    visibility="members" if n % 2 else "direct",
                    kind="post",
                    document={"id": iri, "type": "Note", "content": "<p>hidden</p>", "to": [mia.iri]},
                    published=now,
                    updated=None,
                    received_at=now,
                    deleted_at=None,
                )
            )


async def test_sec_51_a_page_of_replies_costs_the_same_with_1500_hidden_replies_as_with_15(
    node: Node,
) -> None:
    from sqlalchemy import event

    from server.appkeys import ENGINE

    scene = await _scene(node)
    proposal = scene["proposal"]
    path = proposal.removeprefix(node.settings.server.origin)
    status, reply = await _send(
        node,
        "POST",
        "/api/users/alice/replies",
        scene["alice"],
        {"inReplyTo": proposal, "content": "<p>vu</p>"},
    )
    assert status == 201, reply
    engine = node.client.server.app[ENGINE]  # type: ignore[index]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "jobs" not in statement:  # the in-process worker polls meanwhile
            statements.append(statement)

    async def cost(collection: str, token: str | None) -> tuple[int, list[Any]]:
        headers = {"Accept": AP} | ({"Authorization": f"Bearer {token}"} if token else {})
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            response = await node.client.get(f"{path}/{collection}?after=0", headers=headers)
            doc = await response.json(content_type=None)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        assert response.status == 200, doc
        return len(statements), doc["orderedItems"] if "orderedItems" in doc else doc["items"]

    await node.create_association("other")
    await node.add_member("olga", "other", role="admin")
    readers = {"anonymous": None, "non-member": await node.token("olga")}
    await _hide_replies(node, proposal, 15, start=1)
    few = {(c, who): await cost(c, token) for c in ("replies", "context") for who, token in readers.items()}
    await _hide_replies(node, proposal, 1485, start=16)
    many = {(c, who): await cost(c, token) for c in ("replies", "context") for who, token in readers.items()}
    for key in few:
        assert many[key][0] <= few[key][0] + 1, (key, few[key][0], many[key][0])  # statements per page
    for who in readers:
        assert reply["id"] in many[("replies", who)][1]  # the public reply is still listed
        assert all("hidden" not in json.dumps(item) for item in many[("context", who)][1])


# ---------------------------------------------------------------------------------------------
# Case 52: endorsement amplification (finding 5)
# ---------------------------------------------------------------------------------------------


async def _signed_endorsement(node: Node, endorser: str, proposal_iri: str, statement_chars: int) -> Any:
    """A valid endorsement of ``proposal_iri`` signed by association ``endorser``, its statement
    ``statement_chars`` long: what a hostile peer association can send."""
    import uuid

    from sqlalchemy import select

    from federation import integrity
    from federation.types import AS_PUBLIC, Iri, utc_now
    from federation.vocab import entraide as wire
    from server.db.models import Actor, RemoteObject
    from server.services.actors.signing import actor_key_pair

    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == endorser, Actor.type == "Group"))
        proposal = await session.scalar(select(RemoteObject).where(RemoteObject.iri == proposal_iri))
        assert group is not None and proposal is not None
        author = await session.get(Actor, proposal.attributed_to_id)
        assert author is not None
    document = wire.render_endorsement(
        iri=node.uris.object(uuid.uuid4().hex),
        endorser=Iri(group.iri),
        proposal=Iri(proposal_iri),
        proposal_author=Iri(author.iri),
        published=utc_now(),
        statement_html="<p>" + "x" * statement_chars + "</p>",
        to=[AS_PUBLIC],
        cc=[],
    )
    pair = await actor_key_pair(node.fed.node, group, kind="ed25519")
    signed = integrity.sign_object(
        document,
        key=pair.private_key,
        verification_method=pair.key_id,
        created=utc_now(),  # type: ignore[arg-type]
    )
    return group, signed


async def test_sec_52_an_oversized_endorsement_document_is_not_stored(node: Node) -> None:
    from sqlalchemy import func, select

    from server.db.models import Endorsement
    from server.services.content import endorsements

    scene = await _scene(node)
    await node.create_association("other")
    await node.create_association("hostile")
    group, small = await _signed_endorsement(node, "other", scene["proposal"], 1_000)
    assert await endorsements.receive(node.fed, group, small)  # an honest one is kept
    hostile, huge = await _signed_endorsement(node, "hostile", scene["proposal"], 950_000)
    assert not await endorsements.receive(node.fed, hostile, huge)
    assert await node.scalar(select(func.count()).select_from(Endorsement)) == 1


async def test_sec_52_a_page_of_endorsements_is_bounded_in_items_and_bytes(node: Node) -> None:
    """12 documents of ~100 KB each (kept before the bound, say): pages of at most 256 KiB of
    documents, and following ``next`` lists each exactly once."""
    from sqlalchemy import select

    from federation.types import utc_now
    from server.db.models import Actor, Endorsement, RemoteObject

    scene = await _scene(node)
    endorsers = [await node.create_association(f"e{n}") for n in range(12)]
    async with node.sessions.begin() as session:
        proposal = await session.scalar(select(RemoteObject).where(RemoteObject.iri == scene["proposal"]))
        assert proposal is not None
        for iri in endorsers:
            endorser = await session.scalar(select(Actor).where(Actor.iri == iri))
            assert endorser is not None
            session.add(
                Endorsement(
                    iri=f"{iri}#endorsement",
                    proposal_iri=proposal.iri,
                    proposal_id=proposal.id,
                    endorser_id=endorser.id,
                    document={"id": f"{iri}#endorsement", "type": "Endorsement", "content": "y" * 100_000},
                    created_at=utc_now(),
                )
            )
    path = scene["proposal"].removeprefix(node.settings.server.origin) + "/endorsements?after=0"
    seen: list[str] = []
    for _ in range(13):  # bounded: at least one document per page
        response = await node.client.get(path, headers={"Accept": AP})
        body = await response.read()
        assert response.status == 200 and len(body) <= 256 * 1024 + 110_000, len(body)
        page = json.loads(body)
        seen += [item["id"] for item in page["orderedItems"]]
        if not page.get("next"):
            break
        path = page["next"].removeprefix(node.settings.server.origin)
    assert sorted(seen) == sorted(f"{iri}#endorsement" for iri in endorsers)
