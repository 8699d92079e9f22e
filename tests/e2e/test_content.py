"""Association content between two real nodes: alerts, resources, proposals, votes, co-signing,
discussion threads. Each step checks what the receiving node stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from federation import integrity
from federation.keys import ed25519_from_multibase
from federation.types import AS_PUBLIC
from server.db.models import Activity, Endorsement, RemoteObject, Vote
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"


async def _object(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def _get(node: Node, iri: str, **headers: str) -> Any:
    response = await node.client.get(iri.removeprefix(node.uris.origin), headers={"Accept": AP, **headers})
    assert response.status == 200, (iri, response.status, await response.text())
    return await response.json(content_type=None)


async def _doc_has(node: Node, iri: str, check: Callable[[dict[str, Any]], bool]) -> bool:
    row = await _object(node, iri)
    return row is not None and check(row.document)


async def _pair(tmp_path: Path, new_database: Callable[[int], Awaitable[str]]):  # type: ignore[no-untyped-def]
    return (
        running_node(tmp_path / "a", await new_database(0)),
        running_node(tmp_path / "b", await new_database(1)),
    )


async def _setup(a: Node, b: Node) -> dict[str, Any]:
    """alpha on A (admin alice, member mia); beta on B (admin bob, member ben); beta follows alpha."""
    alpha = await a.create_association("alpha", "Alpha")
    await a.configure("alpha", replies_policy="anyone")  # discussion open to the fediverse
    await a.add_member("alice", "alpha", role="admin")
    await a.add_member("mia", "alpha", role="member")
    beta = await b.create_association("beta", "Beta")
    await b.add_member("bob", "beta", role="admin")
    await b.add_member("ben", "beta", role="member")
    await following.follow(b.fed, local_name="beta", target_iri=alpha)
    await wait_until(lambda: _accepted(b), what="beta follows alpha")
    return {
        "alpha": alpha,
        "beta": beta,
        "alice": await a.token("alice"),
        "mia": await a.token("mia"),
        "bob": await b.token("bob"),
        "ben": await b.token("ben"),
    }


async def _accepted(node: Node) -> bool:
    from server.db.models import Follow

    return await node.scalar(select(Follow.id).where(Follow.state == "accepted")) is not None


async def test_alert_is_published_first_edited_superseded_and_deleted_everywhere(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    na, nb = await _pair(tmp_path, new_database)
    async with na as a, nb as b:
        s = await _setup(a, b)
        valid_until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
        first = await a.post_outbox(
            "/groups/alpha",
            s["alice"],
            {
                "to": [AS_PUBLIC],
                "type": "Note",
                "entraideKind": "Alert",
                "name": "Pénurie de lévothyroxine",
                "content": "<p>Les pharmacies manquent de <b>Levothyrox 50</b>.</p><script>x()</script>",
                "severity": "critical",
                "category": "shortage",
                "area": "Île-de-France",
                "areaCode": "FR-IDF",
                "validUntil": valid_until.isoformat(),
                "language": "fr",
            },
        )
        alert = first["object"]
        # the fan-out of an alert runs before everything else
        async with a.sessions() as session:
            activity = await session.scalar(select(Activity).where(Activity.iri == first["id"]))
            assert activity is not None
        await wait_until(lambda: _doc_has(b, alert, lambda d: True), what="the alert reaches B")
        stored = await _object(b, alert)
        assert stored is not None and stored.kind == "alert" and stored.visibility == "public"
        doc = stored.document
        assert doc["content"].startswith("<p><strong>⚠ CRITICAL · Shortage: Pénurie de lévothyroxine")
        assert "<script>" not in doc["content"] and "summary" not in doc
        assert (doc["severity"], doc["category"], doc["areaCode"], doc["alertStatus"]) == (
            "critical",
            "shortage",
            "FR-IDF",
            "active",
        )
        assert {t["name"] for t in doc["tag"]} >= {"#alert", "#shortage"}

        # a successor supersedes it: B's copy of the first alert says so
        second = await a.post_outbox(
            "/groups/alpha",
            s["alice"],
            {
                "to": [AS_PUBLIC],
                "type": "Note",
                "entraideKind": "Alert",
                "name": "Pénurie de lévothyroxine : mise à jour",
                "content": "<p>Retour partiel.</p>",
                "severity": "warning",
                "category": "shortage",
                "supersedes": alert,
            },
        )
        await wait_until(
            lambda: _doc_has(b, alert, lambda d: d.get("alertStatus") == "superseded"),
            what="B learns the first alert is superseded",
        )
        old = await _object(b, alert)
        assert old is not None and old.document["supersededBy"] == second["object"]
        assert "SUPERSEDED" in old.document["content"]

        # retraction is an edit of the status
        await a.post_outbox(
            "/groups/alpha",
            s["alice"],
            {"type": "Update", "object": {"id": second["object"], "alertStatus": "retracted"}},
        )
        await wait_until(
            lambda: _doc_has(b, second["object"], lambda d: d.get("alertStatus") == "retracted"),
            what="retraction reaches B",
        )
        # a member who is not admin/moderator cannot publish as the association
        refused = await a.client.post(
            "/groups/alpha/outbox",
            json={
                "to": [AS_PUBLIC],
                "type": "Note",
                "entraideKind": "Alert",
                "name": "x",
                "content": "y",
                "severity": "info",
                "category": "safety",
            },
            headers={"Authorization": f"Bearer {s['mia']}"},
        )
        assert refused.status == 403
        # delete reaches B
        await a.post_outbox("/groups/alpha", s["alice"], {"type": "Delete", "object": second["object"]})
        await wait_until(
            lambda: _doc_has(b, second["object"], lambda d: d.get("type") == "Tombstone"),
            what="delete reaches B",
        )


async def test_resource_revisions_and_history(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    na, nb = await _pair(tmp_path, new_database)
    async with na as a, nb as b:
        s = await _setup(a, b)
        created = await a.post_outbox(
            "/groups/alpha",
            s["alice"],
            {
                "to": [AS_PUBLIC],
                "type": "Article",
                "name": "Guide des droits des patients",
                "summary": "<p>Ce que dit la loi.</p>",
                "content": "<h2>Vos droits</h2><p>Version 1</p>",
                "language": "fr",
                "license": "https://creativecommons.org/licenses/by-sa/4.0/",
                "tag": ["droits", "#patients"],
            },
        )
        resource = created["object"]
        await wait_until(lambda: _doc_has(b, resource, lambda d: True), what="resource reaches B")
        for version in (2, 3):
            await a.post_outbox(
                "/groups/alpha",
                s["alice"],
                {"type": "Update", "object": {"id": resource, "content": f"<p>Version {version}</p>"}},
            )
        await wait_until(
            lambda: _doc_has(b, resource, lambda d: "Version 3" in d["content"]), what="both edits reach B"
        )
        stored = await _object(b, resource)
        assert stored is not None and stored.kind == "resource" and stored.updated is not None
        assert stored.document["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"
        assert {t["name"] for t in stored.document["tag"]} == {"#droits", "#patients"}
        history = await _get(a, stored.document["history"])
        items = history["first"]["orderedItems"]
        assert [i["type"] for i in items] == ["Create", "Update", "Update"]
        assert [
            "Version 1" in items[0]["object"]["content"],
            "Version 3" in items[2]["object"]["content"],
        ] == [True, True]
        # only the owner edits
        other = await a.client.post(
            "/users/mia/outbox",
            json={"type": "Update", "object": {"id": resource, "content": "vandalisme"}},
            headers={"Authorization": f"Bearer {s['mia']}"},
        )
        assert other.status == 403
        body = await other.json(content_type=None)
        assert body["status"] == 403


async def test_proposal_votes_tally_endorsement_and_thread(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    na, nb = await _pair(tmp_path, new_database)
    async with na as a, nb as b:
        s = await _setup(a, b)
        # a proposal for associations, and one for alpha's members
        for_associations = (
            await a.post_outbox(
                "/groups/alpha",
                s["alice"],
                {
                    "to": [AS_PUBLIC],
                    "type": "Question",
                    "name": "Demande commune : stocks de sécurité",
                    "content": "<p>Nous demandons 4 mois de stock.</p>",
                    "oneOf": ["Pour", "Contre", "Abstention"],
                    "eligibility": "associations",
                    "endTime": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                },
            )
        )["object"]
        for_members = (
            await a.post_outbox(
                "/groups/alpha",
                s["alice"],
                {
                    "to": [AS_PUBLIC],
                    "type": "Question",
                    "name": "Assemblée",
                    "oneOf": ["Oui", "Non"],
                    "eligibility": "members",
                },
            )
        )["object"]
        await wait_until(lambda: _doc_has(b, for_associations, lambda d: True), what="proposal reaches B")
        copy = await _object(b, for_associations)
        assert copy is not None and copy.kind == "proposal" and copy.document["votersCount"] == 0

        # beta (an association, through its admin) votes; ben (a person) may not
        await b.post_outbox(
            "/groups/beta", s["bob"], {"type": "Note", "name": "Pour", "inReplyTo": for_associations}
        )
        again = await b.client.post(
            "/groups/beta/outbox",
            json={"type": "Note", "name": "Contre", "inReplyTo": for_associations},
            headers={"Authorization": f"Bearer {s['bob']}"},
        )
        assert again.status == 403 and (await again.json(content_type=None))["code"] == "vote_refused"
        person = await b.client.post(
            "/users/ben/outbox",
            json={"type": "Note", "name": "Contre", "inReplyTo": for_associations},
            headers={"Authorization": f"Bearer {s['ben']}"},
        )
        assert person.status == 403  # B already knows the rule from the proposal's eligibility
        await wait_until(
            lambda: _doc_has(b, for_associations, lambda d: d.get("votersCount") == 1),
            what="the tally comes back to B",
        )
        copy = await _object(b, for_associations)
        assert copy is not None
        counts = {o["name"]: o["replies"]["totalItems"] for o in copy.document["oneOf"]}
        assert counts == {"Pour": 1, "Contre": 0, "Abstention": 0}
        async with a.sessions() as session:
            votes = (await session.execute(select(Vote.choice))).scalars().all()
        assert votes == ["Pour"]

        # members-only vote: mia votes, alice (the author's admin) is a member too
        await a.post_outbox("/users/mia", s["mia"], {"type": "Note", "name": "Oui", "inReplyTo": for_members})
        await wait_until(
            lambda: _doc_has(a, for_members, lambda d: d.get("votersCount") == 1), what="members vote tallied"
        )

        # beta co-signs alpha's proposal; A verifies and lists the proof
        await b.post_outbox(
            "/groups/beta",
            s["bob"],
            {"type": "Endorsement", "object": for_associations, "content": "<p>Nous soutenons.</p>"},
        )
        await wait_until(lambda: _has_endorsement(a), what="A stores the endorsement")
        collection = await _get(a, f"{for_associations}/endorsements")
        [endorsement] = collection["first"]["orderedItems"]
        assert endorsement["attributedTo"] == s["beta"] and endorsement["object"] == for_associations
        # anyone can verify it with the key beta's actor document lists
        actor = await _get(b, s["beta"])
        [method] = [
            m for m in actor["assertionMethod"] if m["id"] == endorsement["proof"]["verificationMethod"]
        ]
        public_key = ed25519_from_multibase(method["publicKeyMultibase"])
        proof = integrity.verify_object(endorsement, public_key=public_key)
        assert proof.cryptosuite == "eddsa-jcs-2022"
        tampered = {**endorsement, "object": for_members}
        try:
            integrity.verify_object(tampered, public_key=public_key)
        except integrity.InvalidProof:
            pass
        else:
            raise AssertionError("a tampered endorsement verified")

        # discussion: ben replies on B; A stores it in alpha's thread
        reply = (
            await b.post_outbox(
                "/users/ben",
                s["ben"],
                {
                    "to": [AS_PUBLIC],
                    "type": "Note",
                    "content": "<p>Bonne idée</p>",
                    "inReplyTo": for_associations,
                },
            )
        )["object"]
        await wait_until(lambda: _doc_has(a, reply, lambda d: True), what="the reply reaches A")
        stored_reply = await _object(a, reply)
        assert stored_reply is not None and stored_reply.kind == "reply"
        assert stored_reply.context_iri == f"{for_associations}/context"
        thread = await _get(a, f"{for_associations}/context")
        ids = [item["id"] for item in thread["first"]["orderedItems"]]
        assert ids == [for_associations, reply]


async def _has_endorsement(node: Node) -> bool:
    async with node.sessions() as session:
        return bool(
            await session.scalar(
                select(func.count()).select_from(Endorsement).where(Endorsement.proposal_id.is_not(None))
            )
        )


async def test_an_alert_relayed_by_several_associations_reaches_each_node_once_with_its_edits(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    """alpha (A) publishes; beta and beta2 (B) follow alpha and relay; gamma (C) follows only the
    relays: C stores the alert once, then gets alpha's edit and delete through the relays."""
    from server.db.models import Follow, InboxActivity, Job

    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        beta = await b.create_association("beta", "Beta")
        beta2 = await b.create_association("beta2", "Beta 2")
        await b.add_member("bob", "beta", role="admin")
        await b.add_member("bob", "beta2", role="admin")
        await c.create_association("gamma", "Gamma")
        for relay in ("beta", "beta2"):
            await following.follow(b.fed, local_name=relay, target_iri=alpha)
        for relay in (beta, beta2):
            await following.follow(c.fed, local_name="gamma", target_iri=relay)

        async def accepted(node: Node, n: int) -> bool:
            """The node's own associations have ``n`` accepted follows of remote ones."""
            from server.db.models import Actor

            async with node.sessions() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(Follow)
                    .join(Actor, Actor.id == Follow.follower_id)
                    .where(Follow.state == "accepted", Actor.local.is_(True))
                )
            return count == n

        await wait_until(lambda: accepted(b, 2), what="beta and beta2 follow alpha")
        await wait_until(lambda: accepted(c, 2), what="gamma follows beta and beta2")
        alice = await a.token("alice")
        created = await a.post_outbox(
            "/groups/alpha",
            alice,
            {
                "to": [AS_PUBLIC],
                "type": "Note",
                "entraideKind": "Alert",
                "name": "Effet indésirable grave",
                "content": "<p>Signalé par plusieurs patients.</p>",
                "severity": "critical",
                "category": "side-effect",
            },
        )
        alert = created["object"]
        # the alert's fan-out job runs before everything else
        async with a.sessions() as session:
            activity_id = await session.scalar(select(Activity.id).where(Activity.iri == created["id"]))
            priority = await session.scalar(
                select(Job.priority).where(Job.kind == "fanout", Job.dedup_key == f"fanout:{activity_id}")
            )
        assert priority == 0
        await wait_until(lambda: _doc_has(b, alert, lambda d: True), what="alert reaches B")
        bob = await b.token("bob")
        relays = [
            await b.post_outbox(f"/groups/{relay}", bob, {"type": "Announce", "object": alert})
            for relay in ("beta", "beta2")
        ]

        async def got_relays() -> bool:
            async with c.sessions() as session:
                iris = set((await session.scalars(select(InboxActivity.iri))).all())
            return all(r["id"] in iris for r in relays)

        await wait_until(got_relays, what="C receives both relays")
        await wait_until(lambda: _doc_has(c, alert, lambda d: True), what="C stores the alert")
        async with c.sessions() as session:
            copies = await session.scalar(
                select(func.count()).select_from(RemoteObject).where(RemoteObject.iri == alert)
            )
        assert copies == 1

        # alpha retracts, then deletes: C, which follows only the relays, follows both steps
        await a.post_outbox(
            "/groups/alpha", alice, {"type": "Update", "object": {"id": alert, "alertStatus": "retracted"}}
        )
        await wait_until(
            lambda: _doc_has(c, alert, lambda d: d.get("alertStatus") == "retracted"),
            what="the retraction reaches C through the relays",
        )
        await a.post_outbox("/groups/alpha", alice, {"type": "Delete", "object": alert})
        await wait_until(
            lambda: _doc_has(c, alert, lambda d: d.get("type") == "Tombstone"),
            what="the delete reaches C through the relays",
        )
        # members-only content is never relayed
        members_only = await a.post_outbox(
            "/groups/alpha", alice, {"type": "Note", "content": "<p>interne</p>", "visibility": "members"}
        )
        refused = await a.client.post(
            "/groups/alpha/outbox",
            json={"type": "Announce", "object": members_only["object"]},
            headers={"Authorization": f"Bearer {alice}"},
        )
        assert refused.status == 400


async def test_a_resource_with_an_attachment_reaches_the_follower_with_its_file(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    from tests.server.test_media import form, png

    na, nb = await _pair(tmp_path, new_database)
    async with na as a, nb as b:
        s = await _setup(a, b)
        image = png(2, 2)
        uploaded = await a.client.post(
            "/api/media",
            data=form(image, description="Schéma du parcours de soins", **{"as": "alpha"}),
            headers={"Authorization": f"Bearer {s['alice']}"},
        )
        assert uploaded.status == 201, await uploaded.text()
        media = await uploaded.json()
        created = await a.post_outbox(
            "/groups/alpha",
            s["alice"],
            {
                "to": [AS_PUBLIC],
                "type": "Article",
                "name": "Parcours",
                "content": "<p>Voir le schéma.</p>",
                "attachment": [media["key"]],
            },
        )
        resource = created["object"]
        await wait_until(lambda: _doc_has(b, resource, lambda d: bool(d.get("attachment"))), what="B gets it")
        stored = await _object(b, resource)
        assert stored is not None
        [attachment] = stored.document["attachment"]
        assert attachment["type"] == "Image" and attachment["mediaType"] == "image/png"
        assert attachment["name"] == "Schéma du parcours de soins"
        served = await a.client.get(attachment["url"].removeprefix(a.uris.origin))
        assert served.status == 200 and await served.read() == image
        # an upload attaches once: a second resource cannot take it
        again = await a.client.post(
            "/groups/alpha/outbox",
            json={
                "to": [AS_PUBLIC],
                "type": "Article",
                "name": "Copie",
                "content": "<p>x</p>",
                "attachment": [media["key"]],
            },
            headers={"Authorization": f"Bearer {s['alice']}"},
        )
        assert again.status == 400 and (await again.json())["field"] == "attachment"
