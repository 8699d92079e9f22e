"""WebFinger, NodeInfo, host-meta and actor documents, as peers and browsers see them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from sqlalchemy import select, update

from federation.types import utc_now
from server.db.models import Actor
from server.services.accounts import erasure
from tests.support.nodes import Node

AP = "application/activity+json"
AS_TYPE = "https://www.w3.org/ns/activitystreams#type"


async def test_webfinger_finds_an_association_by_acct_with_port(node: Node) -> None:
    """The README's check: acct:slug@host:port resolves to the Group actor."""
    iri = await node.create_association("demo", "Démo")
    response = await node.client.get(
        "/.well-known/webfinger", params={"resource": f"acct:demo@{node.uris.host}"}
    )
    assert response.status == 200
    assert response.content_type == "application/jrd+json"
    jrd = await response.json()
    assert jrd["subject"] == f"acct:demo@{node.uris.host}"
    selfs = [link for link in jrd["links"] if link["rel"] == "self"]
    assert selfs == [{"rel": "self", "type": AP, "href": iri, "properties": {AS_TYPE: "Group"}}]


async def test_webfinger_lists_person_then_group_for_a_shared_name(node: Node) -> None:
    """Lemmy-style: both actors are listed, the Group last because Mastodon takes the last one."""
    group = await node.create_association("sante")
    await node.create_association("autre")
    person = await node.add_member("sante", "autre")
    jrd = await (
        await node.client.get("/.well-known/webfinger", params={"resource": f"acct:sante@{node.uris.host}"})
    ).json()
    selfs = [(link["href"], link["properties"][AS_TYPE]) for link in jrd["links"] if link["rel"] == "self"]
    assert selfs == [(person, "Person"), (group, "Group")]


async def test_webfinger_by_actor_iri(node: Node) -> None:
    iri = await node.create_association("demo")
    jrd = await (await node.client.get("/.well-known/webfinger", params={"resource": iri})).json()
    assert jrd["subject"] == f"acct:demo@{node.uris.host}"  # as Mastodon answers
    assert iri in jrd["aliases"]


async def test_webfinger_resolves_the_application_actor(node: Node) -> None:
    jrd = await (
        await node.client.get(
            "/.well-known/webfinger", params={"resource": f"acct:entraide.node@{node.uris.host}"}
        )
    ).json()
    assert [link["href"] for link in jrd["links"] if link["rel"] == "self"] == [node.uris.application_actor()]


async def test_webfinger_bad_resource_is_400_problem(node: Node) -> None:
    for resource in ("", "demo", "acct:", "acct:a@b@c", "acct:demo@host/x", "x" * 600):
        response = await node.client.get("/.well-known/webfinger", params={"resource": resource})
        assert response.status == 400, resource
        assert response.content_type == "application/problem+json"
        assert (await response.json())["status"] == 400


async def test_webfinger_unknown_or_foreign_is_404_problem(node: Node) -> None:
    await node.create_association("demo")
    for resource in (
        f"acct:nobody@{node.uris.host}",
        "acct:demo@elsewhere.example",
        f"{node.uris.origin}/groups/nobody",
        "https://elsewhere.example/groups/demo",
    ):
        response = await node.client.get("/.well-known/webfinger", params={"resource": resource})
        assert response.status == 404, resource
        assert response.content_type == "application/problem+json"


async def test_webfinger_unserved_scheme_is_404_and_every_answer_allows_any_origin(node: Node) -> None:
    """RFC 7033: a resource in a scheme we hold nothing for is not found (§4.2), and every answer,
    errors included, carries Access-Control-Allow-Origin (§5)."""
    await node.create_association("demo")
    for resource, status in (
        ("mailto:demo@example.org", 404),
        ("foo:bar", 404),
        (f"acct:demo@{node.uris.host}", 200),
        (f"acct:nobody@{node.uris.host}", 404),
        ("acct:", 400),
        ("", 400),
    ):
        response = await node.client.get("/.well-known/webfinger", params={"resource": resource})
        assert response.status == status, resource
        assert response.headers.get("Access-Control-Allow-Origin") == "*", resource


async def test_nodeinfo_index_links_21_and_the_application_actor(node: Node) -> None:
    doc = await (await node.client.get("/.well-known/nodeinfo")).json()
    rels = {link["rel"]: link["href"] for link in doc["links"]}
    assert rels["http://nodeinfo.diaspora.software/ns/schema/2.1"] == f"{node.uris.origin}/nodeinfo/2.1"
    assert rels["https://www.w3.org/ns/activitystreams#Application"] == node.uris.application_actor()


async def test_nodeinfo_lists_the_associations(node: Node) -> None:
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo")
    response = await node.client.get("/nodeinfo/2.1")
    assert 'profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"' in response.headers["Content-Type"]
    doc = await response.json()
    assert doc["software"]["name"] == "entraide"
    assert doc["protocols"] == ["activitypub"]
    assert doc["usage"]["users"]["total"] == 1
    assert doc["metadata"]["associations"] == [
        {"handle": "demo", "name": "Démo", "actor": node.uris.group("demo")}
    ]


async def test_host_meta_points_at_webfinger(node: Node) -> None:
    response = await node.client.get("/.well-known/host-meta")
    root = ET.fromstring(await response.text())
    link = root.find("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link is not None
    assert link.get("template") == f"{node.uris.origin}/.well-known/webfinger?resource={{uri}}"


async def test_application_actor_is_fetchable_unsigned(node: Node) -> None:
    """Signed fetches are made as this actor, so its own document must need no signature."""
    response = await node.client.get("/actor", headers={"Accept": AP})
    doc = await response.json(content_type=None)
    assert response.status == 200
    assert doc["type"] == "Application"
    assert doc["publicKey"]["owner"] == doc["id"] == node.uris.application_actor()


async def test_webfinger_answers_410_for_a_deleted_account_or_association(node: Node) -> None:
    """Mastodon's answer for an account that existed (decision 86): 410 by acct: and by IRI, like the
    actor document (a Tombstone); a name that never existed stays 404, and a live actor sharing the
    name of a deleted one is still found."""
    await node.create_association("collectif")
    lea = await node.add_member("lea", "collectif")
    gone_group = await node.create_association("ancienne")
    async with node.sessions() as session:
        lea_id = await session.scalar(select(Actor.id).where(Actor.iri == lea))
    assert lea_id is not None
    await erasure.delete_account(node.fed, lea_id)
    async with node.sessions.begin() as session:  # no command deletes an association yet
        await session.execute(update(Actor).where(Actor.iri == gone_group).values(deleted_at=utc_now()))
    host = node.uris.host
    for resource, iri in ((f"acct:lea@{host}", lea), (f"acct:ancienne@{host}", gone_group)):
        for asked in (resource, iri):
            response = await node.client.get("/.well-known/webfinger", params={"resource": asked})
            assert response.status == 410, asked
            assert response.content_type == "application/problem+json"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        actor = await node.client.get(urlsplit(iri).path, headers={"Accept": AP})
        assert actor.status == 410
        assert (await actor.json(content_type=None))["type"] == "Tombstone"
    for missing in (f"acct:personne@{host}", node.uris.iri("/users/personne")):
        response = await node.client.get("/.well-known/webfinger", params={"resource": missing})
        assert response.status == 404, missing
    # A person named like the deleted association is found, not gone.
    await node.add_member("ancienne", "collectif")
    response = await node.client.get("/.well-known/webfinger", params={"resource": f"acct:ancienne@{host}"})
    assert response.status == 200
    assert [
        link["properties"][AS_TYPE] for link in (await response.json())["links"] if link["rel"] == "self"
    ] == ["Person"]
    by_iri = await node.client.get("/.well-known/webfinger", params={"resource": gone_group})
    assert by_iri.status == 410
