"""Interop with a real Fedify peer (``@fedify/fedify`` 2.3.6 on Node 22) against real Entraide nodes.

The peer (``tests/interop/peer/peer.mjs``) runs on 127.0.0.1 and is driven through its control
API; every activity it receives is recorded with what *Fedify* decided about its signature
(its inbox listeners only run once Fedify has verified the request). Entraide nodes run on
127.0.0.1 with their in-process worker.

The flows that store the most run on SQLite and PostgreSQL (``new_database``); the read-only
and single-row ones on SQLite only (:data:`SQLITE_ONLY`), to keep the suite short.

Publishing is parametrised over :data:`KINDS`, the things an association publishes through its
outbox. Today: ``Note`` and ``Article``. Alerts, resources and proposals (with votes and tallies)
come with the next issue: add them to :data:`KINDS`, plus a vote test (the peer answers a
``Question`` with ``Create{Note{name, inReplyTo}}`` and receives the ``Update{Question}``).

With ``ENTRAIDE_RECORD_FEDIFY=1`` the tests also keep what the peer sent and served under
``tests/fixtures/payloads/fedify/peer/`` (see the README there).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from server.db.models import Actor, Follow, PeerHost, Reaction, RemoteObject
from server.services.membership import following
from tests.interop.support import CAVAGE, RFC9421, FedifyPeer
from tests.support.nodes import Node, running_node, wait_until

AP = "application/activity+json"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

StartPeer = Callable[..., AbstractAsyncContextManager[FedifyPeer]]
NewDatabase = Callable[[int], Awaitable[str]]
Record = Callable[[str, str], None]

# Overrides the ``engine_name`` fixture of tests/conftest.py (both engines) for cheap tests.
SQLITE_ONLY = pytest.mark.parametrize("engine_name", ["sqlite"])


@dataclass(frozen=True)
class Kind:
    """Something an association publishes through its C2S outbox, and how it looks on the wire."""

    name: str
    as_type: str
    body: Callable[[str], dict[str, Any]]


KINDS = (
    Kind("note", "Note", lambda text: {"to": [AS_PUBLIC], "type": "Note", "content": f"<p>{text}</p>"}),
    Kind(
        "article",
        "Article",
        lambda text: {
            "to": [AS_PUBLIC],
            "type": "Article",
            "name": "Compte rendu",
            "content": f"<p>{text}</p>",
        },
    ),
    # Next issue: alert, resource, proposal (Question) — same shape, one line each.
)


@dataclass
class Association:
    node: Node
    iri: str
    token: str

    async def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.node.post_outbox("/groups/alpha", self.token, body)


async def _alpha(node: Node) -> Association:
    iri = await node.create_association("alpha", "Alpha", "Entraide de quartier")
    await node.configure("alpha", replies_policy="anyone")  # the peer replies without being a member
    await node.add_member("alice", "alpha", role="admin")
    return Association(node, iri, await node.token("alice"))


# --- oracles on the node's database ------------------------------------------------------------


async def _follow_state(node: Node, follower_iri: str, followed_iri: str) -> str | None:
    async with node.sessions() as session:
        follower = await session.scalar(select(Actor.id).where(Actor.iri == follower_iri))
        followed = await session.scalar(select(Actor.id).where(Actor.iri == followed_iri))
        if follower is None or followed is None:
            return None
        return await session.scalar(
            select(Follow.state).where(Follow.follower_id == follower, Follow.followed_id == followed)
        )


async def _object(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def _reactions(node: Node, object_iri: str, type_: str) -> int:
    return int(
        await node.scalar(
            select(func.count())
            .select_from(Reaction)
            .where(Reaction.object_iri == object_iri, Reaction.type == type_)
        )
    )


def _state_is(node: Node, follower: str, followed: str, state: str | None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _follow_state(node, follower, followed) == state

    return check


def _stored(
    node: Node, iri: str, check: Callable[[RemoteObject], bool] = lambda _: True
) -> Callable[[], Awaitable[bool]]:
    async def found() -> bool:
        row = await _object(node, iri)
        return row is not None and check(row)

    return found


def _counted(node: Node, iri: str, type_: str, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _reactions(node, iri, type_) == expected

    return check


# --- what the peer saw -------------------------------------------------------------------------


def _activity(type_: str, *, object_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """An inbox record of a ``type_`` activity (whose object, embedded or not, is ``object_id``)."""

    def match(record: dict[str, Any]) -> bool:
        body = record.get("body")
        if not isinstance(body, dict) or body.get("type") != type_:
            return False
        if object_id is None:
            return True
        obj = body.get("object")
        return (obj.get("id") if isinstance(obj, dict) else obj) == object_id

    return match


def _assert_verified(record: dict[str, Any], spec: str) -> None:
    """Fedify ran its inbox listener (signature verified), with ``spec``, and answered 202."""
    summary = {k: record.get(k) for k in ("type", "verified", "status", "signatureSpec", "unverifiedReason")}
    assert record["verified"] is True, summary
    assert record["status"] == 202, summary
    assert record["signatureSpec"] == spec, summary


async def _sent_post(peer: FedifyPeer, activity_id: str) -> list[dict[str, Any]]:
    """The peer's POSTs of ``activity_id`` (one per try: double-knocking shows as two)."""
    posts = await peer.sent("POST")
    return [e for e in posts if isinstance(e["body"], dict) and e["body"].get("id") == activity_id]


async def _envelope(peer: FedifyPeer, entry: dict[str, Any]) -> str:
    """A signed request as the peer sent it (method, URL, signature headers, exact body) with the
    peer's actor document of the same run, as served: a test vector for signature verifiers."""
    served = [s for s in await peer.get("served") if s["path"] == "/users/peer" and s["status"] == 200]
    envelope = {k: entry[k] for k in ("method", "url", "headers")} | {
        "body": entry["bodyText"],
        "signer": served[0]["bodyText"] if served else None,
    }
    return json.dumps(envelope, indent=2, ensure_ascii=False) + "\n"


# --- Entraide -> Fedify: our signatures, verified by Fedify -------------------------------------


@pytest.mark.parametrize("spec", [CAVAGE, RFC9421])
async def test_fedify_verifies_our_follow_and_deliveries(
    spec: str, tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """Our association follows the peer, then publishes every kind addressed to it: Fedify verifies
    each request, signed draft-cavage by default and RFC 9421 with ``rfc9421_first_knock``."""
    first_knock = {"rfc9421_first_knock": spec == RFC9421}
    async with (
        running_node(tmp_path / "a", await new_database(0), federation=first_knock) as node,
        start_peer() as peer,
    ):
        alpha = await _alpha(node)
        await following.follow(node.fed, local_name="alpha", target_iri=peer.actor)
        follow = await peer.wait_received(_activity("Follow", object_id=peer.actor), what="our Follow")
        _assert_verified(follow, spec)
        assert follow["body"]["actor"] == alpha.iri

        for kind in KINDS:
            created = await alpha.publish({**kind.body(f"Pour le pair ({kind.name})"), "cc": [peer.actor]})
            record = await peer.wait_received(
                _activity("Create", object_id=created["object"]), what=f"the Create of a {kind.name}"
            )
            _assert_verified(record, spec)
            assert record["body"]["object"]["type"] == kind.as_type

        if spec == RFC9421:
            assert "rsa-v1_5-sha256" in record["headers"]["signature-input"]
            used = await node.scalar(select(PeerHost.signature_spec).where(PeerHost.host == peer.host))
            assert used == "rfc9421"  # the first knock worked and is remembered for the peer's host


# --- Fedify -> Entraide: the peer follows an association ----------------------------------------


@pytest.mark.parametrize("spec", [CAVAGE, RFC9421])
async def test_peer_follows_association_and_receives_verified_publications(
    spec: str, tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    """The peer follows alpha by actor URL, gets a verified Accept, then every published kind, its
    edit and its deletion, each verified by Fedify. Both sides sign with ``spec`` first."""
    first_knock = {"rfc9421_first_knock": spec == RFC9421}
    async with (
        running_node(tmp_path / "a", await new_database(0), federation=first_knock) as node,
        start_peer(first_knock=spec) as peer,
    ):
        alpha = await _alpha(node)

        follow = await peer.act("follow", target=alpha.iri)
        await wait_until(_state_is(node, peer.actor, alpha.iri, "accepted"), what="alpha's new follower")
        accept = await peer.wait_received(_activity("Accept"), what="the Accept")
        _assert_verified(accept, spec)
        embedded = accept["body"]["object"]
        assert (embedded["id"] if isinstance(embedded, dict) else embedded) == follow["id"]
        assert (await peer.get("following"))[alpha.iri]["state"] == "accepted"
        # The peer's own Follow went out signed with its first knock and was accepted at once.
        [sent] = await _sent_post(peer, follow["id"])
        assert (sent["signatureSpec"], sent["status"]) == (spec, 202)
        name = "rfc9421" if spec == RFC9421 else "cavage"
        record_payload(f"request_post_{name}.json", await _envelope(peer, sent))
        record_payload("follow.json", sent["bodyText"])

        for kind in KINDS:
            created = await alpha.publish(kind.body(f"Distribution samedi ({kind.name})"))
            record = await peer.wait_received(
                _activity("Create", object_id=created["object"]), what=f"the Create of a {kind.name}"
            )
            _assert_verified(record, spec)
            assert record["body"]["object"]["type"] == kind.as_type
            assert PUBLIC in record["body"]["object"]["to"]

        note = created["object"]
        await alpha.publish({"type": "Update", "object": {"id": note, "content": "<p>Reportée</p>"}})
        updated = await peer.wait_received(_activity("Update", object_id=note), what="the Update")
        _assert_verified(updated, spec)
        await alpha.publish({"type": "Delete", "object": note})
        deleted = await peer.wait_received(_activity("Delete", object_id=note), what="the Delete")
        _assert_verified(deleted, spec)

        # The peer unfollows: alpha forgets it.
        await peer.act("unfollow", target=alpha.iri)
        await wait_until(_state_is(node, peer.actor, alpha.iri, None), what="alpha applies the Undo")


# --- the peer reads us -------------------------------------------------------------------------


@SQLITE_ONLY
async def test_peer_fetches_our_actor_and_note_unsigned_and_signed(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _alpha(node)
        note = (
            await alpha.publish({"to": [AS_PUBLIC], "type": "Note", "content": "<p>Permanence mardi</p>"})
        )["object"]

        for signed in ("0", "1"):
            actor = await peer.get("lookup", url=alpha.iri, signed=signed)
            assert actor["ok"], actor
            assert actor["class"] == "Group" and actor["id"] == alpha.iri
            assert actor["preferredUsername"] == "alpha"
            assert actor["inbox"] == f"{alpha.iri}/inbox"
            assert actor["sharedInbox"] == f"{node.uris.origin}/inbox"
            # Fedify reads our RSA key and both FEP-521a keys.
            assert actor["publicKey"] == {"id": f"{alpha.iri}#main-key", "owner": alpha.iri}
            algorithms = {m["id"]: m["algorithm"] for m in actor["assertionMethods"]}
            assert algorithms.get(f"{alpha.iri}#ed25519-key") == "Ed25519", algorithms

            found = await peer.get("lookup", url=note, signed=signed)
            assert found["ok"], found
            assert found["class"] == "Note" and found["id"] == note
            assert found["json"]["attributedTo"] == alpha.iri
            assert "Permanence mardi" in found["json"]["content"]

        # The signed GETs were signed (RFC 9421, Fedify's first knock) and answered at once.
        gets = [e for e in await peer.sent("GET") if e["url"] in (alpha.iri, note) and e["signatureSpec"]]
        assert gets and all(e["signatureSpec"] == RFC9421 and e["status"] == 200 for e in gets), gets


@SQLITE_ONLY
async def test_authorized_fetch_serves_the_peer_only_when_signed(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    """With ``authorized_fetch`` our objects answer 401 unsigned and the peer's signed GET opens
    them; our deliveries still verify (Fedify signs the fetch of our key as the recipient)."""
    async with (
        running_node(tmp_path / "a", await new_database(0), federation={"authorized_fetch": True}) as node,
        start_peer() as peer,
    ):
        alpha = await _alpha(node)
        note = (await alpha.publish({"to": [AS_PUBLIC], "type": "Note", "content": "<p>Réservé</p>"}))[
            "object"
        ]

        unsigned = await peer.get("fetch", url=note, signed="0")
        assert unsigned["ok"] is False and "401" in unsigned["error"], unsigned
        signed = await peer.get("fetch", url=note, signed="1")
        assert signed["ok"], signed
        assert signed["document"]["id"] == note
        looked_up = await peer.get("lookup", url=alpha.iri, signed="1")
        assert looked_up["ok"] and looked_up["class"] == "Group", looked_up
        [get] = [e for e in await peer.sent("GET") if e["url"] == note and e["status"] == 200]
        assert get["signatureSpec"] == RFC9421
        record_payload("request_get_rfc9421.json", await _envelope(peer, get))

        await following.follow(node.fed, local_name="alpha", target_iri=peer.actor)
        follow = await peer.wait_received(_activity("Follow", object_id=peer.actor), what="our Follow")
        _assert_verified(follow, CAVAGE)
        # Fedify fetched our key with a signature (RFC 9421; it covers the keyId's fragment in
        # @target-uri, which we accept: test_fedify_rfc9421.py).
        key_fetches = [e for e in await peer.sent("GET") if e["url"].startswith(alpha.iri)]
        assert any(e["signatureSpec"] and e["status"] == 200 for e in key_fetches), key_fetches


@SQLITE_ONLY
async def test_peer_resolves_our_webfinger(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    """Fedify resolves an actor URL through our WebFinger; ``acct:`` goes over https only.

    Fedify's ``lookupWebFinger`` always uses https for ``acct:`` resources, and our test nodes are
    plain http on loopback, so the ``acct:`` JRD is fetched directly (what Fedify would fetch over
    https) and its ``self`` link followed with Fedify's ``lookupObject``.
    """
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _alpha(node)
        acct = f"acct:alpha@{node.uris.host}"

        by_url = await peer.get("webfinger", resource=alpha.iri)
        assert by_url["ok"] and by_url["jrd"] is not None, by_url
        # We answer a URL query with the URL as subject (RFC 7033 allows it); Mastodon answers
        # with the acct: subject, and Fedify's getActorHandle then falls back to
        # preferredUsername@host, which is the same handle here.
        assert by_url["jrd"]["subject"] in (alpha.iri, acct)
        self_links = [link for link in by_url["jrd"]["links"] if link["rel"] == "self"]
        assert [link["href"] for link in self_links] == [alpha.iri]
        assert self_links[0]["type"] == AP

        jrd = await peer.get("jrd", resource=acct, server=node.uris.origin)
        assert jrd["status"] == 200 and jrd["contentType"].startswith("application/jrd+json"), jrd
        [self_link] = [link for link in jrd["jrd"]["links"] if link["rel"] == "self"]
        actor = await peer.get("lookup", url=self_link["href"])
        assert actor["ok"] and actor["id"] == alpha.iri

        # The limitation, pinned: Fedify looks acct: up at https://127.0.0.1:PORT, which is http.
        over_https = await peer.get("webfinger", resource=acct)
        assert not over_https["ok"] or over_https["jrd"] is None, over_https


# --- the peer reacts to our note ---------------------------------------------------------------


@SQLITE_ONLY
async def test_peer_likes_and_announces_our_note(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _alpha(node)
        note = (await alpha.publish({"to": [AS_PUBLIC], "type": "Note", "content": "<p>Merci à tous</p>"}))[
            "object"
        ]

        like = await peer.act("like", object=note)
        await wait_until(_counted(node, note, "Like", 1), what="the Like counted")
        announce = await peer.act("announce", object=note)
        await wait_until(_counted(node, note, "Announce", 1), what="the Announce counted")
        for activity in (like, announce):
            [sent] = await _sent_post(peer, activity["id"])
            assert sent["status"] == 202
            record_payload(f"{sent['body']['type'].lower()}.json", sent["bodyText"])

        undo = await peer.act("undo", activity=like["id"])
        await wait_until(_counted(node, note, "Like", 0), what="the Undo of the Like applied")
        assert await _reactions(node, note, "Announce") == 1
        [sent] = await _sent_post(peer, undo["id"])
        record_payload("undo_like.json", sent["bodyText"])


# --- Entraide follows the peer -----------------------------------------------------------------


async def test_association_follows_peer_and_keeps_its_posts_in_sync(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    """alpha follows the peer: the Accept lands, the outbox is backfilled, new posts, edits and
    deletions follow (a deleted post stays as a tombstone)."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _alpha(node)
        early = await peer.act("post", content="<p>Avant le suivi</p>")

        await following.follow(node.fed, local_name="alpha", target_iri=peer.actor)
        await wait_until(_state_is(node, alpha.iri, peer.actor, "accepted"), what="the peer's Accept")
        assert await peer.get("followers") == [alpha.iri]
        await wait_until(_stored(node, early["id"]), what="the backfill of the peer's outbox")

        post = await peer.act("post", content="<p>Bonjour Entraide</p>")
        await wait_until(_stored(node, post["id"]), what="the peer's post stored")
        row = await _object(node, post["id"])
        assert row is not None and not row.local and row.type == "Note" and row.visibility == "public"
        assert "Bonjour Entraide" in row.document["content"]

        update = await peer.act("update", object=post["id"], content="<p>Bonjour à tous</p>")
        await wait_until(
            _stored(node, post["id"], lambda r: "Bonjour à tous" in str(r.document.get("content"))),
            what="the peer's edit applied",
        )
        deleted = await peer.act("delete", object=post["id"])
        await wait_until(
            _stored(node, post["id"], lambda r: r.deleted_at is not None), what="our copy tombstoned"
        )

        served = await peer.get("served")
        by_path = {s["path"]: s for s in served if s["status"] == 200}
        if "/users/peer" in by_path:
            record_payload("actor.json", by_path["/users/peer"]["bodyText"])
        if "/users/peer/outbox" in by_path:
            record_payload("outbox.json", by_path["/users/peer/outbox"]["bodyText"])
        sent = {e["body"]["id"]: e for e in await peer.sent("POST") if isinstance(e["body"], dict)}
        accept = next(e for e in sent.values() if e["body"].get("type") == "Accept")
        record_payload("accept_follow.json", accept["bodyText"])
        record_payload("create_note.json", sent[post["create"]]["bodyText"])
        record_payload("update_note.json", sent[update["id"]]["bodyText"])
        record_payload("delete_note.json", sent[deleted["id"]]["bodyText"])
        async with peer.http.get(early["id"], headers={"Accept": AP}) as response:
            assert response.status == 200
            record_payload("note.json", await response.text())


@SQLITE_ONLY
async def test_peer_reply_reaches_the_thread(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer, record_payload: Record
) -> None:
    """A reply from an actor alpha does not follow is kept, attached to our note (inReplyTo)."""
    async with running_node(tmp_path / "a", await new_database(0)) as node, start_peer() as peer:
        alpha = await _alpha(node)
        note = (
            await alpha.publish({"to": [AS_PUBLIC], "type": "Note", "content": "<p>Qui peut aider ?</p>"})
        )["object"]

        reply = await peer.act("post", content="<p>Moi, samedi</p>", inReplyTo=note)
        await wait_until(_stored(node, reply["id"]), what="the reply stored")
        row = await _object(node, reply["id"])
        assert row is not None and row.in_reply_to_iri == note
        assert "Moi, samedi" in row.document["content"]
        [sent] = await _sent_post(peer, reply["create"])
        assert alpha.iri in sent["body"]["object"]["cc"]
        record_payload("create_reply.json", sent["bodyText"])
