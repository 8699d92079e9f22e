"""Association content (alerts, resources, proposals, votes, threads, endorsements) against a real
Fedify peer (``@fedify/fedify`` 2.3.6 on Node 22, ``tests/interop/peer/peer.mjs``).

The assertions read what *Fedify* made of our documents: the peer records, for each activity its
inbox listener accepted (so after Fedify verified the request's signature), the vocabulary class
and properties Fedify parsed from the object (``describe`` in peer.mjs). In the other direction,
the oracle is the Entraide node's database and its collections as the peer fetches them.

The flows that store rows run on SQLite and PostgreSQL (the ``engine_name`` fixture); the
endorsement checks and the two regression tests of bugs found here (problems 5 and 6 in
``tests/interop/README.md``, fixed) on SQLite only. With ``ENTRAIDE_RECORD_FEDIFY=1`` the vote the peer
sent is kept under ``tests/fixtures/payloads/fedify/peer/`` (see the README there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Actor, Follow, RemoteObject, Vote
from tests.interop.support import FedifyPeer, activity_of, assert_verified, parsed_object
from tests.support.nodes import Node, running_node, wait_until

StartPeer = Callable[..., AbstractAsyncContextManager[FedifyPeer]]
NewDatabase = Callable[[int], Awaitable[str]]
Record = Callable[[str, str], None]

SQLITE_ONLY = pytest.mark.parametrize("engine_name", ["sqlite"])

HEADLINE = "Pénurie de lévothyroxine"
OPTIONS = ["Pour", "Contre"]


def alert_body() -> dict[str, Any]:
    return {
        "to": [AS_PUBLIC],
        "type": "Note",
        "entraideKind": "Alert",
        "name": HEADLINE,
        "content": "<p>Les pharmacies manquent de Levothyrox 50.</p>",
        "severity": "critical",
        "category": "shortage",
        "area": "Île-de-France",
        "areaCode": "FR-IDF",
    }


def resource_body() -> dict[str, Any]:
    return {
        "to": [AS_PUBLIC],
        "type": "Article",
        "name": "Guide des droits des patients",
        "summary": "<p>Ce que dit la loi.</p>",
        "content": "<h2>Vos droits</h2><p>Version 1</p>",
        "license": "https://creativecommons.org/licenses/by-sa/4.0/",
        "tag": ["droits", "#patients"],
    }


def proposal_body() -> dict[str, Any]:
    return {
        "to": [AS_PUBLIC],
        "type": "Question",
        "name": "Demande commune : stocks de sécurité",
        "content": "<p>Nous demandons 4 mois de stock.</p>",
        "oneOf": OPTIONS,
        "eligibility": "anyone",
        "endTime": (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat(),
    }


@dataclass
class Association:
    node: Node
    iri: str
    token: str
    path: str

    async def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.node.post_outbox(self.path, self.token, body)


async def _association(node: Node, slug: str, admin: str) -> Association:
    iri = await node.create_association(slug, slug.title(), "Entraide de quartier")
    await node.configure(slug, replies_policy="anyone")  # the peer replies without being a member
    await node.add_member(admin, slug, role="admin")
    return Association(node, iri, await node.token(admin), f"/groups/{slug}")


async def _followed_by_peer(node: Node, peer: FedifyPeer) -> Association:
    """alpha, followed by the peer (accepted on both sides)."""
    alpha = await _association(node, "alpha", "alice")
    await peer.act("follow", target=alpha.iri)
    await wait_until(lambda: _accepted(node, peer.actor, alpha.iri), what="alpha accepts the peer")
    assert_verified(await peer.wait_received(activity_of("Accept"), what="the Accept"))
    return alpha


# --- oracles on the node ---------------------------------------------------------------------------


async def _accepted(node: Node, follower_iri: str, followed_iri: str) -> bool:
    async with node.sessions() as session:
        state = await session.scalar(
            select(Follow.state)
            .join(Actor, Actor.id == Follow.follower_id)
            .where(
                Actor.iri == follower_iri,
                Follow.followed_id.in_(select(Actor.id).where(Actor.iri == followed_iri)),
            )
        )
    return state == "accepted"


async def _object(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


def _stored(node: Node, iri: str, check: Callable[[RemoteObject], bool]) -> Callable[[], Awaitable[bool]]:
    async def found() -> bool:
        row = await _object(node, iri)
        return row is not None and check(row)

    return found


async def _votes(node: Node, question_iri: str) -> list[tuple[str, str]]:
    """(voter IRI, choice) of every vote counted on ``question_iri``."""
    async with node.sessions() as session:
        rows = await session.execute(
            select(Actor.iri, Vote.choice)
            .join(Vote, Vote.voter_id == Actor.id)
            .join(RemoteObject, RemoteObject.id == Vote.question_id)
            .where(RemoteObject.iri == question_iri)
        )
        return [(iri, choice) for iri, choice in rows.all()]


def _has_votes(node: Node, question_iri: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await _votes(node, question_iri)) == n

    return check


async def _thread(peer: FedifyPeer, iri: str) -> list[str]:
    """The ids in ``{iri}/context``'s embedded first page, fetched by Fedify's document loader."""
    fetched = await peer.get("fetch", url=f"{iri}/context", signed="1")
    assert fetched["ok"], fetched
    collection = fetched["document"]
    assert collection["type"] == "OrderedCollection", collection
    return [item["id"] for item in collection["first"]["orderedItems"]]


def _options(parsed: dict[str, Any]) -> dict[str, int | None]:
    return {o["name"]: o["totalItems"] for o in parsed["exclusiveOptions"]}


# --- Entraide -> Fedify ----------------------------------------------------------------------------


async def test_peer_receives_alert_resource_and_proposal_verified(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """The peer follows alpha and gets an alert, a resource and a proposal, each verified; Fedify
    reads the alert as a Note led by its bold headline (no summary, so no content warning), the
    resource as a named Article and the proposal as a Question with exclusive options."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _followed_by_peer(node, peer)

        alert = (await alpha.publish(alert_body()))["object"]
        record = await peer.wait_received(activity_of("Create", object_id=alert), what="the alert")
        assert_verified(record)
        parsed = parsed_object(record)
        assert parsed["class"] == "Note", parsed
        assert parsed["content"].startswith("<p><strong>"), parsed
        assert HEADLINE in parsed["content"].split("</strong>")[0], parsed
        assert parsed["summary"] is None, parsed
        assert parsed["attributedTo"] == alpha.iri
        assert record["body"]["object"]["severity"] == "critical"

        resource = (await alpha.publish(resource_body()))["object"]
        record = await peer.wait_received(activity_of("Create", object_id=resource), what="the resource")
        assert_verified(record)
        parsed = parsed_object(record)
        assert parsed["class"] == "Article", parsed
        assert parsed["name"] == "Guide des droits des patients"
        assert "Version 1" in parsed["content"]

        proposal = (await alpha.publish(proposal_body()))["object"]
        record = await peer.wait_received(activity_of("Create", object_id=proposal), what="the proposal")
        assert_verified(record)
        parsed = parsed_object(record)
        assert parsed["class"] == "Question", parsed
        assert parsed["name"] == "Demande commune : stocks de sécurité"
        assert _options(parsed) == {"Pour": 0, "Contre": 0}, parsed
        assert parsed["inclusiveOptions"] == []
        assert parsed["endTime"] is not None, parsed
        # The proposal as served at its IRI (with its own @context): Fedify reads votersCount there.
        looked_up = await peer.get("lookup", url=proposal)
        assert looked_up["ok"] and looked_up["class"] == "Question", looked_up
        assert looked_up["json"].get("votersCount") == 0, looked_up["json"]


async def test_peer_vote_is_counted_and_the_tally_comes_back_verified(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    """The peer (not a follower: the tally must reach it as a voter) votes on alpha's proposal
    with Mastodon's shape; alpha counts it and sends the peer a verified ``Update{Question}``
    that Fedify reads as 1 voter and 1 vote for the option."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _association(node, "alpha", "alice")
        proposal = (await alpha.publish(proposal_body()))["object"]

        vote = await peer.act("vote", question=proposal, choice="Pour")
        await wait_until(_has_votes(node, proposal, 1), what="alpha counts the peer's vote")
        assert await _votes(node, proposal) == [(peer.actor, "Pour")]
        posts = await peer.sent("POST")
        [sent] = [e for e in posts if isinstance(e["body"], dict) and e["body"].get("id") == vote["create"]]
        assert sent["status"] == 202 and sent["url"].startswith(node.uris.origin), sent
        assert sent["body"]["object"]["name"] == "Pour" and "content" not in sent["body"]["object"]
        record_payload("create_vote.json", sent["bodyText"])

        def tallied(record: dict[str, Any]) -> bool:
            if not activity_of("Update", object_id=proposal)(record):
                return False
            return _options(record.get("object") or {"exclusiveOptions": []}).get("Pour") == 1

        update = await peer.wait_received(tallied, what="the Update{Question} with the tally")
        assert_verified(update)
        parsed = parsed_object(update)
        assert parsed["class"] == "Question", parsed
        assert _options(parsed) == {"Pour": 1, "Contre": 0}, parsed
        # On the wire; what Fedify reads of it is test_fedify_reads_voters_count_of_delivered_questions.
        assert update["body"]["object"]["votersCount"] == 1
        # A vote is counted, not shown: the thread holds the proposal alone.
        assert await _thread(peer, proposal) == [proposal]


async def test_alert_retraction_and_deletion_reach_the_peer_verified(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """Retracting an alert (``Update`` with ``alertStatus: retracted``) and deleting it reach the
    following peer, verified; Fedify reads the retracted alert's lead as retracted."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _followed_by_peer(node, peer)
        alert = (await alpha.publish(alert_body()))["object"]
        await peer.wait_received(activity_of("Create", object_id=alert), what="the alert")

        await alpha.publish({"type": "Update", "object": {"id": alert, "alertStatus": "retracted"}})
        update = await peer.wait_received(activity_of("Update", object_id=alert), what="the retraction")
        assert_verified(update)
        assert update["body"]["object"]["alertStatus"] == "retracted"
        parsed = parsed_object(update)
        assert parsed["class"] == "Note" and parsed["summary"] is None, parsed
        assert parsed["content"].startswith("<p><strong>⚠ RETRACTED"), parsed

        await alpha.publish({"type": "Delete", "object": alert})
        deleted = await peer.wait_received(activity_of("Delete", object_id=alert), what="the Delete")
        assert_verified(deleted)
        assert parsed_object(deleted)["class"] == "Tombstone"


# --- Fedify -> Entraide ----------------------------------------------------------------------------


async def test_peer_reply_joins_the_resource_thread_and_leaves_it_when_deleted(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """The peer's reply to a resource is filed in the resource's thread (``{resource}/context``,
    as Fedify fetches it); the peer deletes it: our copy is a tombstone and leaves the thread."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _association(node, "alpha", "alice")
        resource = (await alpha.publish(resource_body()))["object"]

        reply = await peer.act("post", content="<p>Merci, très utile</p>", inReplyTo=resource)
        await wait_until(_stored(node, reply["id"], lambda _: True), what="the reply stored")
        row = await _object(node, reply["id"])
        assert row is not None and row.kind == "reply" and row.in_reply_to_iri == resource
        assert row.context_iri == f"{resource}/context"
        assert await _thread(peer, resource) == [resource, reply["id"]]

        await peer.act("delete", object=reply["id"])
        await wait_until(
            _stored(node, reply["id"], lambda r: r.deleted_at is not None), what="our copy tombstoned"
        )
        row = await _object(node, reply["id"])
        assert row is not None
        assert row.document["type"] == "Tombstone", row.document
        assert await _thread(peer, resource) == [resource]


# --- FEP-8b32: Fedify verifies our endorsement proofs ----------------------------------------------


async def _endorsed_proposal(node: Node) -> tuple[str, Association, str]:
    """alpha's proposal, endorsed by beta (same node): (proposal, beta, endorsement IRI)."""
    alpha = await _association(node, "alpha", "alice")
    beta = await _association(node, "beta", "bob")
    proposal = (await alpha.publish(proposal_body()))["object"]
    statement = {"type": "Endorsement", "object": proposal, "content": "<p>Nous soutenons.</p>"}
    endorsement = (await beta.publish(statement))["object"]
    return proposal, beta, endorsement


@SQLITE_ONLY
async def test_fedify_verifies_the_endorsement_proof(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """beta endorses alpha's proposal (same node); the peer fetches the proposal's public
    ``endorsements`` collection and checks the FEP-8b32 proof with Fedify's own ``verifyProof``
    (``eddsa-jcs-2022``, the key fetched by Fedify from beta's ``assertionMethod``, its controller
    beta). Fedify's ``verifyObject``: see the test below."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        proposal, beta, endorsement = await _endorsed_proposal(node)

        result = await peer.get("verify_proofs", url=f"{proposal}/endorsements")
        assert result["ok"], result
        [item] = result["items"]
        assert item["id"] == endorsement and item["hasProof"], item
        assert item["proof"] == {
            "cryptosuite": "eddsa-jcs-2022",
            "verificationMethod": f"{beta.iri}#ed25519-key",
            "proofPurpose": "assertionMethod",
            "created": item["proof"]["created"],
        }, item
        assert item["proofVerified"] is True, item
        assert item["key"] == {"id": f"{beta.iri}#ed25519-key", "controller": beta.iri}, item


# Found here and fixed: activities carried "@context": [AS2] only, so JSON-LD readers lost
# toot:votersCount and our terms in delivered Create/Update (Fedify's Question.voters was null).
@SQLITE_ONLY
async def test_fedify_reads_voters_count_of_delivered_questions(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """Fedify reads ``votersCount`` (its ``Question.voters``) from the delivered ``Create`` and
    from the tally's ``Update``."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _followed_by_peer(node, peer)
        proposal = (await alpha.publish(proposal_body()))["object"]
        created = await peer.wait_received(activity_of("Create", object_id=proposal), what="the proposal")
        assert created["body"]["object"]["votersCount"] == 0  # on the wire, as plain JSON
        assert parsed_object(created)["voters"] == 0, parsed_object(created)

        await peer.act("vote", question=proposal, choice="Contre")
        update = await peer.wait_received(activity_of("Update", object_id=proposal), what="the tally")
        assert parsed_object(update)["voters"] == 1, parsed_object(update)


# Found here and fixed: the endorsement's @context did not define `proof` (no data-integrity/v1),
# so Fedify's verifyObject found no proof although verifyProof accepted it.
@SQLITE_ONLY
async def test_fedify_verify_object_authenticates_the_endorser(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """Fedify's ``verifyObject`` reads the endorsement's proof and authenticates its
    ``attributedTo`` (beta) by the proof's key controller."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        proposal, _beta, _endorsement = await _endorsed_proposal(node)
        [item] = (await peer.get("verify_proofs", url=f"{proposal}/endorsements"))["items"]
        assert item["proofVerified"] is True, item
        assert item["parsedProofs"] == 1, item
        assert item["objectVerified"] is True, item
