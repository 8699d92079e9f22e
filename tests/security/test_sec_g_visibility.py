"""Visibility, members-only leaks and the closed network (security.md §G, cases 39-47).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`): the database is the oracle. The members-only content of
the scene carries a secret marker, searched for in every answer a non-member gets. The full
matrix (five levels, seven readers, every channel) is ``tests/server/test_visibility_matrix.py``;
these tests are the catalogue's attacks against the same single read filter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from federation.keys import KeyPair
from server.db.models import Actor, Membership, Reaction, RemoteObject, Vote
from server.http.cache import PAGE_CACHE
from server.services.membership import members as membership
from tests.server.test_votes_inbox import mastodon_vote
from tests.support.fake_peers import actor_document
from tests.support.nodes import Node, wait_until
from tests.support.signed_inbox import (
    AS_PUBLIC,
    RemoteAccount,
    StallingPeers,
    changed,
    fixed_key,
    posts_to,
    processed,
    settle,
)
from tests.support.visibility import AP, HTML, Reader, bodies, inboxes_of, read
from tests.support.world import (
    GROUP_INBOX,
    SHARED,
    NodeStarter,
    World,
    activity,
    assert_refused,
    create,
    given_world,
    note,
    object_row,
)

SECRET = "SECRET-d41c9a"
"""The marker inside every members-only object of the scene (content, summary and name)."""
MISSING_ID = "0" * 32


# ---------------------------------------------------------------------------------------------
# The scene: an association with members-only content, and every kind of reader
# ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    world: World
    admin: str  # adele's token (an admin of collectif)
    public: str  # a public note of collectif
    secret: str  # a members-only note of collectif (carries SECRET)
    secret_activity: str  # the Create of ``secret``
    secret_reply: str  # collectif's members-only reply to ``public``
    olga: str  # the token of a local account that is no member (of "voisins")

    @property
    def node(self) -> Node:
        return self.world.node

    def outsiders(self) -> list[Reader]:
        """Everyone who must not read members-only content."""
        w = self.world
        return [
            Reader("anonymous"),
            Reader("local non-member", token=self.olga),
            Reader("remote non-member", remote=w.mallory),
            Reader("institution follower", remote=w.bob),
            Reader("instance actor of a member's host", remote=instance_actor(w)),
        ]


def instance_actor(world: World) -> RemoteAccount:
    """peer.example's ``Application`` actor (the node alice lives on), with its own key."""
    iri = world.peers.iri("peer.example", "/actor")
    key = fixed_key("rsa-bob.pem", f"{iri}#main-key", iri)
    world.peers.serve_json(
        iri, actor_document(iri, username="peer.example", keys=(key.public,), actor_type="Application")
    )
    return RemoteAccount(iri, key, world.peers)


async def _policy(node: Node, group: str, policy: str) -> None:
    async with node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == group).values(join_policy=policy))


async def _membership(node: Node, group: str, member: str) -> str | None:
    async with node.sessions() as session:
        ids = dict(
            (r[0], r[1])
            for r in await session.execute(select(Actor.iri, Actor.id).where(Actor.iri.in_((group, member))))
        )
        if len(ids) < 2:
            return None
        return await session.scalar(
            select(Membership.state).where(
                Membership.group_id == ids[group], Membership.member_id == ids[member]
            )
        )


async def _accepted(world: World, doc: dict[str, Any], who: RemoteAccount) -> None:
    assert (await world.send(GROUP_INBOX, doc, who)).status == 202
    assert await processed(world.node, doc["id"]) == "processed"


async def _publish(scene_node: Node, token: str, level: str, text: str, **extra: Any) -> dict[str, Any]:
    body = {
        "type": "Note",
        "name": f"Titre {text}",
        "content": f"<p>{text} du collectif</p>",
        "summary": f"Résumé {text}",
        "visibility": level,
        **extra,
    }
    return await scene_node.post_outbox("/groups/collectif", token, body)


async def given_scene(
    node: Node, peers: StallingPeers, *, warm: tuple[str, ...] = ("alice", "bob", "mallory")
) -> Scene:
    """collectif with admin adele and member alice (remote, joined); bob follows it read-only."""
    world = await given_world(node, peers, warm=warm)
    await node.add_member("adele", "collectif", role="admin")
    await node.create_association("voisins", "Voisins")
    await node.add_member("olga", "voisins", role="member")
    await _policy(node, world.group, "open")
    await _accepted(world, activity("Join", world.alice, world.group), world.alice)
    await _policy(node, world.group, "approval")
    await _accepted(world, activity("Follow", world.bob, world.group), world.bob)
    admin = await node.token("adele")
    public = (await _publish(node, admin, "public", "Bonjour"))["object"]
    created = await _publish(node, admin, "members", SECRET)
    reply = await _publish(node, admin, "members", f"{SECRET}-reply", inReplyTo=public)
    await settle(node)
    peers.hits.clear()
    return Scene(
        world, admin, public, created["object"], created["id"], reply["object"], await node.token("olga")
    )


@pytest.fixture
async def scene(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[Scene]:
    async with start_node() as node:
        yield await given_scene(node, peers)


def _missing(iri: str, origin: str) -> str:
    """The same kind of IRI, naming nothing."""
    path = iri.removeprefix(origin)
    kind = path.split("/")[1]
    return f"{origin}/{kind}/{MISSING_ID}"


# ---------------------------------------------------------------------------------------------
# 39. Existence oracle
# ---------------------------------------------------------------------------------------------


async def test_sec_39_hidden_answers_byte_for_byte_like_missing_on_every_channel(scene: Scene) -> None:
    """For every outsider, members-only object/activity/collection/API object == a missing one."""
    node, origin = scene.node, scene.node.uris.origin
    async with node.sessions.begin() as session:  # the member list is for members only
        await session.execute(
            update(Actor).where(Actor.iri == scene.world.group).values(members_visibility="members")
        )
    gone_object, gone_activity = _missing(scene.secret, origin), _missing(scene.secret_activity, origin)
    pairs = [
        (scene.secret, gone_object, AP),
        (scene.secret, gone_object, HTML),
        (scene.secret_activity, gone_activity, AP),
        *((f"{scene.secret}/{c}", f"{gone_object}/{c}", AP) for c in ("replies", "context", "history")),
        (f"/api/objects?iri={scene.secret}", f"/api/objects?iri={gone_object}", "application/json"),
        ("/groups/collectif/members", "/users/adele/members", AP),  # a Person has none
        ("/groups/collectif/inbox", "/groups/nobody/inbox", AP),
    ]
    readers = [
        *scene.outsiders(),
        # a signature that does not verify (made for another path) must not tell either
        Reader("bad signature", remote=scene.world.mallory, signed_path="/objects/elsewhere"),
    ]
    for reader in readers:
        for hidden, missing, accept in pairs:
            where = f"{reader.name}: {hidden} ({accept})"
            seen, absent = (
                await read(node, reader, hidden, accept=accept),
                await read(node, reader, missing, accept=accept),
            )
            assert seen.status in (401, 404), where
            assert seen.shape(hidden) == absent.shape(missing), where
            assert seen.header("ETag") is None and seen.header("Last-Modified") is None, where
            assert SECRET not in seen.text, where


async def test_sec_39_hidden_object_answers_like_missing_under_authorized_fetch(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """With authorized fetch on, an unsigned read of a hidden and of a missing object: the same 401
    for ActivityStreams; a browser (which cannot sign) gets the same 404 page for both."""
    async with start_node(federation={"authorized_fetch": True}) as node:
        scene = await given_scene(node, peers)
        origin = node.uris.origin
        for hidden, accept, status in (
            (scene.secret, AP, 401),
            (scene.secret, HTML, 404),
            (scene.secret_activity, AP, 401),
        ):
            seen = await read(node, Reader("anonymous"), hidden, accept=accept)
            absent = await read(node, Reader("anonymous"), _missing(hidden, origin), accept=accept)
            assert seen.status == status, hidden
            assert seen.shape(hidden) == absent.shape(_missing(hidden, origin)), hidden


# ---------------------------------------------------------------------------------------------
# 40. Secondary channels
# ---------------------------------------------------------------------------------------------


def _ids(scene: Scene) -> tuple[str, ...]:
    """What must never show: the marker and the hidden objects' ids."""
    return (SECRET, scene.secret.rsplit("/", 1)[1], scene.secret_reply.rsplit("/", 1)[1])


async def _a_public_reply_cannot_open_members_only_content(scene: Scene) -> None:
    """An admin's public reply to a members-only note is refused (it would open the thread)."""
    node = scene.node
    before = await scene.world.counts()
    response = await node.client.post(
        "/users/adele/outbox",
        json={
            "type": "Note",
            "content": "<p>Je réponds</p>",
            "inReplyTo": scene.secret,
            "visibility": "public",
        },
        headers={"Authorization": f"Bearer {scene.admin}"},
    )
    assert response.status == 400, await response.text()
    assert changed(before, await scene.world.counts()) == {}


async def _a_peers_public_reply_to_members_only_content_reveals_nothing(scene: Scene) -> None:
    """Mallory's public reply names the hidden note: it is kept as hers, the thread stays closed."""
    world, node = scene.world, scene.node
    reply = note(world.mallory, to=[AS_PUBLIC], inReplyTo=scene.secret)
    assert (await world.send(SHARED, create(world.mallory, reply), world.mallory)).status == 202
    await processed(node, reply["id"]) if await object_row(node, reply["id"]) else await settle(node)
    for reader in scene.outsiders():
        for path in (scene.secret, f"{scene.secret}/replies", f"{scene.secret}/context"):
            seen = await read(node, reader, path)
            assert seen.status == 404 and SECRET not in seen.text, (reader.name, path)
    assert await inboxes_of(node, reply["id"]) == set()  # not relayed by the association


async def test_sec_40_members_only_content_leaks_through_no_secondary_channel(scene: Scene) -> None:
    """Counts, replies, threads, previews, feeds, pages, listings, the API: nothing members-only."""
    node = scene.node
    channels: list[tuple[str, str]] = [
        ("/groups/collectif", AP),
        ("/groups/collectif", HTML),
        ("/groups/collectif/outbox", AP),
        ("/groups/collectif/outbox?page=true", AP),
        ("/groups/collectif/featured", AP),
        ("/groups/collectif/followers", AP),
        ("/groups/collectif/members", AP),
        ("/groups/collectif/inbox", AP),
        ("/users/adele", AP),
        ("/users/adele/outbox?page=true", AP),
        (scene.public, AP),
        (scene.public, HTML),  # its Open Graph and description meta tags too
        (f"{scene.public}/replies", AP),
        (f"{scene.public}/context", AP),
        ("/api/associations/collectif/posts", "application/json"),
        (f"/api/objects?iri={scene.public}", "application/json"),
        *((f"/groups/collectif/feed.{fmt}", "*/*") for fmt in ("atom", "rss", "json")),
        *((f"/groups/collectif/feeds/{k}.atom", "*/*") for k in ("alerts", "resources", "proposals")),
    ]
    for reader in scene.outsiders():
        answers = [await read(node, reader, path, accept=accept) for path, accept in channels]
        text = bodies(*answers)
        for hidden in _ids(scene):
            assert hidden not in text, (reader.name, hidden)
        outbox = answers[2].text
        assert '"totalItems":1' in outbox.replace(" ", ""), (reader.name, outbox)  # the public note only
    # (control) a member reads both through the same channels
    member = Reader("remote member", remote=scene.world.alice)
    text = bodies(
        await read(node, member, "/groups/collectif/outbox?page=true"),
        await read(node, member, f"{scene.public}/replies"),
    )
    assert SECRET in text and scene.secret_reply in text
    # the inReplyTo of a public reply to members-only content
    await _a_public_reply_cannot_open_members_only_content(scene)
    await _a_peers_public_reply_to_members_only_content_reveals_nothing(scene)


# ---------------------------------------------------------------------------------------------
# 41. Caches
# ---------------------------------------------------------------------------------------------


async def test_sec_41_a_members_view_is_never_cached_for_the_next_reader(scene: Scene) -> None:
    """Member reads (signed, bearer) are private, no-store; the anonymous read after them gets none of it."""
    node = scene.node
    cache = node.client.server.app[PAGE_CACHE]
    paths = [
        scene.secret,
        scene.secret_activity,
        f"{scene.public}/replies",
        f"{scene.public}/context",
        "/groups/collectif/outbox",
        "/groups/collectif/outbox?page=true",
    ]
    members = [Reader("remote member", remote=scene.world.alice), Reader("admin", token=scene.admin)]
    anonymous = Reader("anonymous")
    for member in members:
        for path in paths:
            cache.clear()
            await read(node, anonymous, path)  # warm the cache with the public view, if any
            seen = await read(node, member, path)
            where = f"{member.name}: {path}"
            assert seen.status == 200, where
            assert seen.header("Cache-Control") == "private, no-store", where
            assert {"signature", "authorization"} <= {
                v.strip().lower() for v in (seen.header("Vary") or "").split(",")
            }, where
            etag = seen.header("ETag")
            for headers in ({}, {"If-None-Match": etag or '"x"'}, {"If-None-Match": "*"}):
                again = await read(node, anonymous, path, headers=headers)
                assert again.status in (200, 404), (where, headers)
                assert all(h not in again.text for h in _ids(scene)), (where, headers)
                if path.endswith("/outbox"):
                    assert '"totalItems":1' in again.text.replace(" ", ""), where
            for entry in list(cache._entries.values()):
                assert all(h.encode() not in entry.body for h in _ids(scene)), where


# ---------------------------------------------------------------------------------------------
# 42. Announce, boost or Like of non-public content
# ---------------------------------------------------------------------------------------------


async def _reactions(node: Node, object_iri: str) -> list[tuple[str, str]]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(Reaction.type, Actor.iri)
            .join(Actor, Actor.id == Reaction.actor_id)
            .where(Reaction.object_iri == object_iri)
        )
        return sorted((r[0], r[1]) for r in rows)


async def _the_association_cannot_relay_its_members_only_content(scene: Scene) -> None:
    """An admin's Announce of a members-only note through the outbox: 400, nothing published."""
    before = await scene.world.counts()
    for obj in (scene.secret, {"id": scene.secret, "type": "Note"}):
        response = await scene.node.client.post(
            "/groups/collectif/outbox",
            json={"type": "Announce", "object": obj, "to": [AS_PUBLIC]},
            headers={"Authorization": f"Bearer {scene.admin}"},
        )
        assert response.status == 400, await response.text()
    await settle(scene.node)
    assert changed(before, await scene.world.counts()) == {}
    assert scene.world.peers.hits == []


async def test_sec_42_boosts_and_likes_of_members_only_content_are_dropped(scene: Scene) -> None:
    """Announce (three spellings of Public) by a member or not, Like by non-members: uncounted, unrelayed."""
    world, node = scene.world, scene.node
    sent: list[dict[str, Any]] = []
    for spelling in (AS_PUBLIC, "as:Public", "Public"):
        for who in (world.alice, world.mallory):
            sent.append(
                activity("Announce", who, scene.secret, to=[spelling], cc=[f"{who.iri}/followers"])
                | {"_who": who}
            )
    for who in (world.mallory, world.bob):
        sent.append(activity("Like", who, scene.secret) | {"_who": who})
    before = await world.counts()
    for doc in sent:
        who = doc.pop("_who")
        assert (await world.send(SHARED, doc, who)).status == 202
        assert await processed(node, doc["id"]) == "processed"
    await settle(node)
    assert await _reactions(node, scene.secret) == []
    diff = changed(before, await world.counts())
    assert set(diff) <= {"inbox_activities", "jobs"}, diff  # the inbox's own bookkeeping only
    assert posts_to(world.peers, "peer.example") == posts_to(world.peers, "evil.example") == []
    # (control) a member's Like of what she may read is counted
    like = activity("Like", world.alice, scene.secret)
    await _accepted(world, like, world.alice)
    assert await _reactions(node, scene.secret) == [("Like", world.alice.iri)]
    # a local relay attempt
    world.peers.hits.clear()
    await _the_association_cannot_relay_its_members_only_content(scene)


# ---------------------------------------------------------------------------------------------
# 43. Authorised fetch by peers and institutions
# ---------------------------------------------------------------------------------------------


async def test_sec_43_only_a_current_member_fetches_members_only_content(scene: Scene) -> None:
    """Signed fetches: the institution follower and the member's own instance actor get the
    missing-object 404; the remote member gets the note.

    Entraide's model is per actor, not Lemmy's per instance: membership is held by a person,
    and a node's Application actor signs fetches on behalf of anyone on that node (non-members
    too, such as bob), so accepting it would hand the content to the whole host.
    """
    node, world = scene.node, scene.world
    absent = await read(node, Reader("anonymous"), _missing(scene.secret, node.uris.origin))
    for reader in (
        Reader("institution follower", remote=world.bob),
        Reader("instance actor of alice's host", remote=instance_actor(world)),
        Reader("anonymous"),
    ):
        seen = await read(node, reader, scene.secret)
        assert seen.shape() == absent.shape(), reader.name
    seen = await read(node, Reader("remote member", remote=world.alice), scene.secret)
    assert seen.status == 200 and SECRET in seen.text
    # a member's key id, presented by someone else's signature, is not the member
    stolen_id = KeyPair(world.alice.key_id, world.alice.iri, world.mallory.key.private_key)
    forged = Reader("alice's keyId, mallory's key", remote=world.alice, signing_key=stolen_id)
    seen = await read(node, forged, scene.secret)
    assert seen.status == 401 and SECRET not in seen.text


# ---------------------------------------------------------------------------------------------
# 44. Stale audiences and moderation bypass
# ---------------------------------------------------------------------------------------------


async def test_sec_44_a_former_member_gets_no_new_or_old_members_only_content(scene: Scene) -> None:
    """After removal, then (rejoined) after a Leave: no delivery of new members-only content,
    no signed fetch of old or new."""
    node, world = scene.node, scene.world
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        adele = await session.scalar(select(Actor).where(Actor.handle == "adele"))
    assert group is not None and adele is not None
    for how in ("removed", "left"):
        if how == "removed":
            await membership.remove(node.fed, group, world.alice.iri, by=adele)
        else:
            await _policy(node, world.group, "open")
            await _accepted(world, activity("Join", world.alice, world.group), world.alice)
            assert await _membership(node, world.group, world.alice.iri) == "active"
            await _accepted(world, activity("Leave", world.alice, world.group), world.alice)
        await settle(node)
        assert await _membership(node, world.group, world.alice.iri) is None, how
        world.peers.hits.clear()
        fresh = (await _publish(node, scene.admin, "members", f"{SECRET}-{how}"))["object"]
        await settle(node)
        assert await inboxes_of(node, fresh) == set(), how
        assert posts_to(world.peers, "peer.example") == [], how
        former = Reader("former member", remote=world.alice)
        for iri in (scene.secret, fresh, f"{scene.secret}/context", scene.secret_reply):
            seen = await read(node, former, iri)
            assert seen.status == 404 and SECRET not in seen.text, (how, iri)
        outbox = await read(node, former, "/groups/collectif/outbox?page=true")
        assert SECRET not in outbox.text, how


async def test_sec_44_an_actor_on_a_blocked_domain_can_neither_read_nor_post(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """With evil.example blocked: mallory's signed read is 403, her post into the group 403, no delivery."""
    async with start_node(federation={"blocked_domains": ["evil.example"]}) as node:
        scene = await given_scene(node, peers, warm=("alice", "bob"))
        world = scene.world
        before = await world.counts()
        for iri in (scene.secret, "/groups/collectif/outbox?page=true"):
            seen = await read(node, Reader("blocked actor", remote=world.mallory), iri)
            # refused before any key fetch, as the inbox refuses it: 403 peer_not_allowed
            assert seen.status == 403 and "peer_not_allowed" in seen.text, seen
            assert SECRET not in seen.text
        post = create(world.mallory, note(world.mallory, to=[world.group], audience=world.group))
        assert_refused(await world.send(GROUP_INBOX, post, world.mallory), 403, "peer_not_allowed")
        join = activity("Join", world.mallory, world.group)
        assert_refused(await world.send(GROUP_INBOX, join, world.mallory), 403, "peer_not_allowed")
        assert changed(before, await world.counts()) == {}
        fresh = (await _publish(node, scene.admin, "members", f"{SECRET}-after"))["object"]
        await settle(node)
        assert await inboxes_of(node, fresh) == {f"{world.alice.iri}/inbox"}  # the one member
        assert peers.hits_on("evil.example") == []


# ---------------------------------------------------------------------------------------------
# 45. Integrity of votes and proposals
# ---------------------------------------------------------------------------------------------


async def _question(scene: Scene, name: str, **fields: Any) -> str:
    body = {
        "to": [AS_PUBLIC],
        "type": "Question",
        "name": name,
        "oneOf": ["Pour", "Contre"],
        "eligibility": "anyone",
        **fields,
    }
    created = await scene.node.post_outbox("/groups/collectif", scene.admin, body)
    await settle(scene.node)
    return str(created["object"])


async def _tallies(node: Node) -> dict[str, tuple[Any, ...]]:
    """Each local question's votes (voter, choice) and its published tally."""
    async with node.sessions() as session:
        questions = (
            await session.scalars(
                select(RemoteObject).where(RemoteObject.kind == "proposal", RemoteObject.local.is_(True))
            )
        ).all()
        result: dict[str, tuple[Any, ...]] = {}
        for q in questions:
            votes = await session.execute(
                select(Actor.iri, Vote.choice)
                .join(Actor, Actor.id == Vote.voter_id)
                .where(Vote.question_id == q.id)
            )
            counts = {o["name"]: o["replies"]["totalItems"] for o in q.document.get("oneOf", [])}
            result[q.iri] = (sorted((v[0], v[1]) for v in votes), counts, q.document.get("votersCount"))
    return result


async def _tallied(node: Node, question: str, voters: int) -> None:
    """Wait for the tally, then for what it queued (the fan-out of its ``Update``, which plans
    deliveries): a count of the tables taken after this does not move on its own."""

    async def done() -> bool:
        row = await object_row(node, question)
        return row is not None and row.document.get("votersCount") == voters

    await wait_until(done, what=f"the tally of {question}")
    await settle(node)


async def test_sec_45_forged_replayed_and_ineligible_votes_leave_every_tally_unchanged(scene: Scene) -> None:
    """Non-member, closed, new id, trailing space, signed by another, forged Update{Question}."""
    node, world = scene.node, scene.world
    members_vote = await _question(scene, "Assemblée", eligibility="members")
    members_only = await _question(scene, "Interne", visibility="members")
    closed = await _question(scene, "Close")
    async with node.sessions.begin() as session:  # its end time has passed
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == closed))
        assert row is not None
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
        row.document = {**row.document, "endTime": past}
    first = mastodon_vote(world.alice, members_vote, world.group, "Pour", 1)
    await _accepted(world, first, world.alice)
    await _tallied(node, members_vote, 1)
    tallies = await _tallies(node)
    assert tallies[members_vote][0] == [(world.alice.iri, "Pour")]
    before = await world.counts()
    refused = [
        (world.bob, mastodon_vote(world.bob, members_vote, world.group, "Pour", 2)),  # a follower only
        (world.mallory, mastodon_vote(world.mallory, members_vote, world.group, "Contre", 3)),  # a stranger
        (world.bob, mastodon_vote(world.bob, members_only, world.group, "Pour", 4)),  # cannot even read it
        (world.alice, mastodon_vote(world.alice, members_vote, world.group, "Contre", 5)),  # a new id
        (
            world.alice,
            mastodon_vote(world.alice, members_vote, world.group, "Pour", 6),
        ),  # a new id, same choice
        (world.alice, mastodon_vote(world.alice, members_only, world.group, "Pour ", 7)),  # trailing space
        (world.alice, mastodon_vote(world.alice, closed, world.group, "Pour", 8)),  # after the end
    ]
    # a forged tally: Update{Question} from a member and from a stranger (not the author)
    for who in (world.alice, world.mallory):
        forged = {
            "id": members_vote,
            "type": "Question",
            "attributedTo": world.group,
            "name": "Assemblée",
            "oneOf": [
                {"type": "Note", "name": n, "replies": {"type": "Collection", "totalItems": 99}}
                for n in ("Pour", "Contre")
            ],
            "votersCount": 99,
        }
        refused.append((who, activity("Update", who, forged, to=[AS_PUBLIC])))
    for who, doc in refused:
        await _accepted(world, doc, who)
    # the first vote replayed as is: deduplicated
    assert (await world.send(GROUP_INBOX, first, world.alice)).status in (200, 202)
    # a vote in alice's name signed by mallory: refused at the door
    stolen = mastodon_vote(world.alice, members_only, world.group, "Pour", 9)
    assert_refused(await world.send(GROUP_INBOX, stolen, world.mallory), 401)
    await settle(node)
    assert await _tallies(node) == tallies
    diff = changed(before, await world.counts())
    assert set(diff) <= {"inbox_activities", "inbox_items", "jobs", "actors", "actor_keys"}, diff
    # the same member votes twice at once (two ids, two choices): one vote, one tally
    question = await _question(scene, "Vite")
    votes = [
        mastodon_vote(world.alice, question, world.group, c, n) for n, c in ((10, "Pour"), (11, "Contre"))
    ]
    replies = await asyncio.gather(*(world.send(GROUP_INBOX, v, world.alice) for v in votes))
    assert [r.status for r in replies] == [202, 202]
    for vote in votes:
        await processed(node, vote["id"])
    await _tallied(node, question, 1)
    voters, counts, voters_count = (await _tallies(node))[question]
    assert len(voters) == 1 and sum(counts.values()) == 1 and voters_count == 1


# ---------------------------------------------------------------------------------------------
# 46. Forged Follow or Join
# ---------------------------------------------------------------------------------------------


async def test_sec_46_forged_answers_and_follows_grant_no_membership(scene: Scene) -> None:
    """A pending Join, Accepts forged by the joiner and a third party, a Join for someone else,
    a Follow: nothing granted, no members-only read, no members-only delivery."""
    node, world = scene.node, scene.world
    join = activity("Join", world.mallory, world.group)
    await _accepted(world, join, world.mallory)
    assert await _membership(node, world.group, world.mallory.iri) == "pending"
    embedded = {"id": join["id"], "type": "Join", "actor": world.mallory.iri, "object": world.group}
    forged = [
        (world.mallory, activity("Accept", world.mallory, join["id"])),  # by the joiner itself
        (world.mallory, activity("Accept", world.mallory, embedded, to=[world.group])),
        (world.bob, activity("Accept", world.bob, embedded)),  # by a third party
        (world.mallory, activity("Join", world.mallory, world.bob.iri)),  # a "Join" naming bob
        (world.mallory, activity("Follow", world.mallory, world.group)),  # a Follow is no membership
    ]
    for who, doc in forged:
        await _accepted(world, doc, who)
    # the group's own Accept forged by mallory: ignored unstored (an actor of ours never comes
    # in through the inbox); bob's Join signed by mallory: refused at the door
    before = await world.counts()
    as_group = activity("Accept", world.mallory, embedded) | {"actor": world.group}
    assert (await world.send(GROUP_INBOX, as_group, world.mallory)).status == 202
    for_bob = activity("Join", world.bob, world.group)
    assert_refused(await world.send(GROUP_INBOX, for_bob, world.mallory), 401)
    await settle(node)
    assert changed(before, await world.counts()) == {}
    assert await _membership(node, world.group, world.mallory.iri) == "pending"
    assert await _membership(node, world.group, world.bob.iri) is None
    for reader in (Reader("pending joiner", remote=world.mallory), Reader("follower", remote=world.bob)):
        seen = await read(node, reader, scene.secret)
        assert seen.status == 404 and SECRET not in seen.text, reader.name
    world.peers.hits.clear()
    fresh = (await _publish(node, scene.admin, "members", f"{SECRET}-after"))["object"]
    await settle(node)
    assert await inboxes_of(node, fresh) == {f"{world.alice.iri}/inbox"}
    assert posts_to(world.peers, "evil.example") == []


async def test_sec_47_blocked_domain_is_refused_403_without_fetching_its_key(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """With evil.example blocked, mallory's activity, or alice's signed with an evil keyId: 403, unfetched."""
    async with start_node(federation={"blocked_domains": ["evil.example"]}) as node:
        world = await given_world(node, peers, warm=("alice",))
        before = await world.counts()
        # Mallory as actor and signer
        reply = await world.send(
            SHARED, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
        )
        assert_refused(reply, 403, "peer_not_allowed")
        # Alice as actor, a keyId on the blocked domain
        reply = await world.sender.send(
            SHARED, create(world.alice, note(world.alice, to=[world.group])), world.mallory.key
        )
        assert_refused(reply, 403, "peer_not_allowed")
        assert peers.hits_on("evil.example") == []
        assert changed(before, await world.counts()) == {}


async def test_sec_47_allowlist_refuses_unlisted_actor_hosts_and_objects(
    start_node: NodeStarter, peers: StallingPeers
) -> None:
    """In a closed network of peer.example: mallory is 403 unfetched; alice boosting evil.example is 403."""
    async with start_node(federation={"network": "allowlist", "allowed_domains": ["peer.example"]}) as node:
        world = await given_world(node, peers, warm=("alice",))
        before = await world.counts()
        reply = await world.send(
            SHARED, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
        )
        assert_refused(reply, 403, "peer_not_allowed")
        assert peers.hits_on("evil.example") == []
        boost = activity("Announce", world.alice, world.mallory.iri_on_host("/notes/1"), to=[AS_PUBLIC])
        reply = await world.send(SHARED, boost, world.alice)
        assert_refused(reply, 403, "peer_not_allowed")
        await settle(node)
        assert changed(before, await world.counts()) == {}
        assert peers.hits_on("evil.example") == []
        # (control) alice herself is welcome
        follow = activity("Follow", world.alice, world.group)
        assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202
