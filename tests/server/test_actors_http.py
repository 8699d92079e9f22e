"""Actor documents, content negotiation and the paged collections."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.db.models import Actor, Follow
from tests.support.nodes import Node

AP = "application/activity+json"
LD = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    "accept", [AP, LD, "application/activity+json, application/ld+json", "application/ld+json"]
)
async def test_activitypub_accept_values_get_json_ld(node: Node, accept: str) -> None:
    iri = await node.create_association("demo", "Démo", "Une association")
    response = await node.client.get("/groups/demo", headers={"Accept": accept})
    assert response.status == 200
    assert response.headers["Content-Type"] == AP  # exactly: Lemmy refuses anything else
    assert "Accept" in response.headers["Vary"]
    doc = await response.json(content_type=None)
    assert doc["id"] == iri and doc["type"] == "Group"
    assert doc["preferredUsername"] == "demo"
    assert doc["publicKey"] == {
        "id": f"{iri}#main-key",
        "owner": iri,
        "publicKeyPem": doc["publicKey"]["publicKeyPem"],
    }
    assert doc["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert doc["assertionMethod"][0]["type"] == "Multikey"
    assert doc["assertionMethod"][0]["publicKeyMultibase"].startswith("z6Mk")
    assert doc["endpoints"]["sharedInbox"] == node.uris.shared_inbox()
    assert doc["members"] == f"{iri}/members"


@pytest.mark.parametrize("accept", [BROWSER, "", "*/*", "image/png", "text/html", "garbage;;;q=x"])
async def test_browsers_and_unsupported_accept_get_html_never_500(node: Node, accept: str) -> None:
    iri = await node.create_association("demo", "Démo <b>&</b>")
    headers = {"Accept": accept} if accept else {}
    response = await node.client.get("/groups/demo", headers=headers)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "Accept" in response.headers["Vary"]
    page = await response.text()
    assert f'<link rel="alternate" type="application/activity+json" href="{iri}">' in page
    assert "Démo &lt;b&gt;&amp;&lt;/b&gt;" in page  # names are escaped


async def test_person_actor_document(node: Node) -> None:
    await node.create_association("demo")
    iri = await node.add_member("alice", "demo")
    doc = await (await node.client.get("/users/alice", headers={"Accept": AP})).json(content_type=None)
    assert doc["type"] == "Person" and doc["id"] == iri
    assert "members" not in doc


async def test_unknown_actor_is_404_problem_json(node: Node) -> None:
    for path in ("/groups/nobody", "/users/nobody", "/groups/nobody/outbox", "/groups/UPPER"):
        response = await node.client.get(path, headers={"Accept": AP})
        assert response.status == 404, path
        assert response.content_type == "application/problem+json"


async def test_empty_outbox_is_a_paged_ordered_collection(node: Node) -> None:
    iri = await node.create_association("demo")
    doc = await (await node.client.get("/groups/demo/outbox", headers={"Accept": AP})).json(content_type=None)
    assert doc == {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": f"{iri}/outbox",
        "type": "OrderedCollection",
        "totalItems": 0,
        "first": f"{iri}/outbox?page=true",
    }
    page = await (
        await node.client.get(doc["first"].removeprefix(node.uris.origin), headers={"Accept": AP})
    ).json(content_type=None)
    assert page["type"] == "OrderedCollectionPage"
    assert page["partOf"] == f"{iri}/outbox"
    assert page["orderedItems"] == [] and "next" not in page


async def _add_remote_followers(node: Node, group_iri: str, count: int) -> list[str]:
    now = datetime.now(UTC)
    iris = []
    async with node.sessions.begin() as session:
        group = (await session.execute(Actor.__table__.select().where(Actor.iri == group_iri))).first()
        assert group is not None
        for i in range(count):
            iri = f"https://peer{i % 3}.example/users/u{i}"
            actor = Actor(
                iri=iri,
                local=False,
                type="Person",
                handle=f"u{i}",
                host=f"peer{i % 3}.example",
                inbox_iri=f"{iri}/inbox",
                created_at=now,
                updated_at=now,
            )
            session.add(actor)
            await session.flush()
            session.add(Follow(follower_id=actor.id, followed_id=group.id, state="accepted", created_at=now))
            iris.append(iri)
    return iris


async def test_followers_are_counted_but_listed_only_to_admins(node: Node) -> None:
    """Who follows a patient association is sensitive: anonymous readers get the count only."""
    iri = await node.create_association("demo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("bob", "demo", role="member")
    followers = await _add_remote_followers(node, iri, 45)
    anon = await (await node.client.get("/groups/demo/followers", headers={"Accept": AP})).json(
        content_type=None
    )
    assert anon["totalItems"] == 45 and "first" not in anon
    anon_page = await node.client.get("/groups/demo/followers?page=true", headers={"Accept": AP})
    assert "orderedItems" not in await anon_page.json(content_type=None)
    member = {"Accept": AP, "Authorization": f"Bearer {await node.token('bob')}"}
    assert "first" not in await (await node.client.get("/groups/demo/followers", headers=member)).json(
        content_type=None
    )

    # An admin pages through every follower, newest first, 20 at a time.
    admin = {"Accept": AP, "Authorization": f"Bearer {await node.token('alice')}"}
    url = "/groups/demo/followers?page=true"
    seen: list[str] = []
    for _ in range(10):
        response = await node.client.get(url, headers=admin)
        assert response.headers["Cache-Control"] == "private, no-store"
        page = await response.json(content_type=None)
        seen += page["orderedItems"]
        if "next" not in page:
            break
        url = page["next"].removeprefix(node.uris.origin)
    assert seen == list(reversed(followers))


async def test_members_collection_is_members_only_by_default(node: Node) -> None:
    """Membership of a patient association is health data: hidden from non-members (same 404 as absent)."""
    await node.create_association("demo")
    await node.create_association("other")
    alice = await node.add_member("alice", "demo", role="admin")
    await node.add_member("eve", "other")
    anonymous = await node.client.get("/groups/demo/members", headers={"Accept": AP})
    missing = await node.client.get("/groups/nothere/members", headers={"Accept": AP})
    assert anonymous.status == missing.status == 404
    assert (await anonymous.json())["detail"] == "no such collection"
    outsider = await node.client.get(
        "/groups/demo/members?page=true",
        headers={"Accept": AP, "Authorization": f"Bearer {await node.token('eve')}"},
    )
    assert outsider.status == 404
    member = await node.client.get(
        "/groups/demo/members?page=true",
        headers={"Accept": AP, "Authorization": f"Bearer {await node.token('alice')}"},
    )
    assert member.status == 200
    assert (await member.json(content_type=None))["orderedItems"] == [alice]


async def test_invalid_paging_parameters_are_400(node: Node) -> None:
    await node.create_association("demo")
    for query in ("page=yes", "page=true&before=abc", "page=true&before=-1", "before=" + "9" * 40):
        response = await node.client.get(f"/groups/demo/outbox?{query}", headers={"Accept": AP})
        assert response.status == 400, query
        assert response.content_type == "application/problem+json"


async def test_invalid_bearer_token_is_401_not_anonymous(node: Node) -> None:
    await node.create_association("demo")
    for header in ("Bearer nope", "Basic abc", "Bearer "):
        response = await node.client.get(
            "/groups/demo/members", headers={"Accept": AP, "Authorization": header}
        )
        assert response.status == 401, header
        assert response.content_type == "application/problem+json"


async def test_health_and_metrics(node: Node) -> None:
    await node.create_association("demo")
    health = await node.client.get("/healthz")
    assert health.status == 200 and (await health.json()) == {"status": "ok", "database": "ok"}
    await node.client.get("/groups/demo", headers={"Accept": AP})
    text = await (await node.client.get("/metrics")).text()
    assert 'entraide_http_requests_total{method="GET",route="/{kind}/{handle}",status="200"} 1.0' in text
    assert "entraide_associations 1.0" in text


async def test_unknown_route_and_wrong_method_are_problem_json(node: Node) -> None:
    response = await node.client.get("/nothing/here")
    assert response.status == 404 and response.content_type == "application/problem+json"
    response = await node.client.delete("/groups/demo")
    assert response.status == 405 and response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        ("/groups/demo", "entraide/group"),
        ("/users/alice", "entraide/person"),
        ("/actor", "entraide/application"),
    ],
)
async def test_actor_documents_validate_against_our_schema_and_expand_offline(
    node: Node, path: str, schema: str
) -> None:
    """The contract peers rely on: our strict schema, and JSON-LD expansion with no unknown term."""
    from federation import jsonld
    from federation.validation import validate

    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo")
    doc = await (await node.client.get(path, headers={"Accept": AP})).json(content_type=None)
    validate(doc, schema)
    expanded = jsonld.expand(doc)
    assert "https://w3id.org/security#assertionMethod" in expanded[0]
    if schema == "entraide/group":
        assert "https://w3id.org/entraide/ns#members" in expanded[0]


async def test_collections_validate_against_our_schema(node: Node) -> None:
    from federation.validation import validate

    await node.create_association("demo")
    collection = await (await node.client.get("/groups/demo/outbox", headers={"Accept": AP})).json(
        content_type=None
    )
    validate(collection, "entraide/ordered-collection")
    page = await (await node.client.get("/groups/demo/outbox?page=true", headers={"Accept": AP})).json(
        content_type=None
    )
    validate(page, "entraide/ordered-collection-page")
