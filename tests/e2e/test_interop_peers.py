"""Interop with recorded peers: fake Mastodon, Lemmy, Mobilizon and Fedify against a real node.

The peers (``tests/support/peer_world.py``) serve the recorded actor documents of
``tests/fixtures/peers/`` and send the recorded payloads of ``tests/fixtures/payloads/``,
rewritten only to point at the fake hosts and at our node (``tests/fixtures/peers/README.md``),
signed for real. The node runs with its in-process worker, on SQLite and on PostgreSQL. Each
test asserts the rows the node stored and the requests the peers received, whose signatures
are checked the way a peer checks them (key read from the node's published actor document).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from federation.vocab.objects import Question
from federation.vocab.parse import parse_actor, parse_object
from server.db.models import (
    Activity,
    Actor,
    ActorKey,
    Delivery,
    Follow,
    InboxActivity,
    InboxItem,
    Job,
    Membership,
    RemoteObject,
)
from server.services.content.sanitize import sanitize_html
from server.services.membership import following
from tests.schemas.helpers import load_payload
from tests.support.nodes import Node, running_node, wait_until
from tests.support.peer_world import (
    FEDIFY_ACTOR,
    LEMMY_COMMUNITY,
    LEMMY_USER,
    MASTODON_ACCOUNT,
    MOBILIZON_GROUP,
    MOBILIZON_PERSON,
    PeerActor,
    PeerWorld,
    peer_world,
)

HANDLE = "collectif"
RECORDED_FOLLOWED = "https://ds9.lemmy.ml/c/testcom"  # what the recorded Mastodon Follow/Undo follow
RECORDED_LEMMY_FOLLOWER = "http://ds9.lemmy.ml/u/lemmy_alpha"
RECORDED_LEMMY_FOLLOW = "http://ds9.lemmy.ml/activities/follow/6abcd50b-b8ca-4952-86b0-a6dd8cc12866"
RECORDED_DELETED_STATUS = "https://mastodon.madrid/users/felix/statuses/107773559874184870"
RECORDED_CREATED_STATUS = "https://mastodon.madrid/users/felix/statuses/107224289116410645"
RECORDED_JOINED_EVENT = "http://mobilizon.test/events/some-uuid"


@dataclass(frozen=True, slots=True)
class Association:
    """Our association on the node under test, with a token of one of its admins."""

    iri: str
    path: str
    token: str
    shared_inbox: str  # the node's endpoints.sharedInbox

    @property
    def inbox(self) -> str:
        return f"{self.iri}/inbox"


@pytest.fixture
async def world() -> AsyncIterator[PeerWorld]:
    async with peer_world() as running:
        yield running


@pytest.fixture
async def entraide(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]], world: PeerWorld
) -> AsyncIterator[Node]:
    """One real node (SQLite or PostgreSQL) whose outbound transport reaches the fake peers."""
    async with running_node(tmp_path / "node", await new_database(0), transport=world.transport) as node:
        yield node


@pytest.fixture
async def association(entraide: Node) -> Association:
    iri = await entraide.create_association(HANDLE, "Collectif d'entraide")
    await entraide.add_member("alice", HANDLE, role="admin")
    return Association(
        iri=iri,
        path=f"/groups/{HANDLE}",
        token=await entraide.token("alice"),
        shared_inbox=entraide.uris.shared_inbox(),
    )


# --- reading the node's rows -----------------------------------------------------------------


async def _actor_id(node: Node, iri: str) -> int | None:
    result: int | None = await node.scalar(select(Actor.id).where(Actor.iri == iri))
    return result


async def _follow(node: Node, follower_iri: str, followed_iri: str) -> Follow | None:
    follower, followed = await _actor_id(node, follower_iri), await _actor_id(node, followed_iri)
    if follower is None or followed is None:
        return None
    row: Follow | None = await node.scalar(
        select(Follow).where(Follow.follower_id == follower, Follow.followed_id == followed)
    )
    return row


async def _follow_state(node: Node, follower_iri: str, followed_iri: str) -> str | None:
    row = await _follow(node, follower_iri, followed_iri)
    return None if row is None else row.state


async def _object(node: Node, iri: str) -> RemoteObject | None:
    row: RemoteObject | None = await node.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    return row


async def _inbox_row(node: Node, activity_iri: str) -> InboxActivity | None:
    row: InboxActivity | None = await node.scalar(
        select(InboxActivity).where(InboxActivity.iri == activity_iri)
    )
    return row


async def _processed(node: Node, activity_iri: str) -> InboxActivity:
    """Wait until the worker has run the activity's handler; its row must end ``processed``."""

    async def done() -> bool:
        row = await _inbox_row(node, activity_iri)
        return row is not None and row.state != "queued"

    await wait_until(done, what=f"processing of {activity_iri}")
    row = await _inbox_row(node, activity_iri)
    assert row is not None
    assert (row.state, row.error) == ("processed", None)
    return row


async def _deliveries_of(node: Node, activity_iri: str) -> list[Delivery]:
    async with node.sessions() as session:
        rows = await session.scalars(
            select(Delivery)
            .join(Activity, Activity.id == Delivery.activity_id)
            .where(Activity.iri == activity_iri)
        )
        return list(rows)


async def _queue_idle(node: Node) -> bool:
    """No job due now is waiting or running (the periodic catch-up, due later, does not count)."""
    now = node.fed.node.clock()
    busy = await node.scalar(
        select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running")), Job.run_at <= now)
    )
    return int(busy) == 0


async def _all_delivered(node: Node, activity_iri: str) -> bool:
    rows = await _deliveries_of(node, activity_iri)
    return bool(rows) and all(row.state == "delivered" for row in rows)


# --- Givens shared by several tests ----------------------------------------------------------


async def _mastodon_follows_us(node: Node, world: PeerWorld, association: Association) -> dict[str, Any]:
    """The recorded Mastodon ``Follow``, aimed at our association, sent and accepted."""
    follow = world.payload("mastodon/follow.json", replace={RECORDED_FOLLOWED: association.iri})
    assert await world.post(MASTODON_ACCOUNT, association.inbox, follow) == 202
    peertube = world.iri(MASTODON_ACCOUNT)

    async def accepted() -> bool:
        return await _follow_state(node, peertube, association.iri) == "accepted"

    await wait_until(accepted, what="the Mastodon follower recorded as accepted")
    return follow


async def _we_follow(node: Node, world: PeerWorld, association: Association, actor: PeerActor) -> str:
    """Our association follows ``actor``; the peer receives the Follow and answers an Accept.

    Returns our Follow's id. The Accept is in Mastodon's serializer shape (no recorded Mastodon
    or Fedify Accept exists among the payloads); Lemmy's recorded Accept has its own test.
    """
    target = world.iri(actor)
    requested = await following.follow(node.fed, local_name=HANDLE, target_iri=target)
    received = await world.next_post(world.document(actor)["inbox"], "Follow")
    assert (await world.verify(received)).owner == association.iri
    assert received.document["id"] == requested.follow_iri
    assert await world.post(actor, association.inbox, world.accept_follow(actor, received.document)) == 202

    async def accepted() -> bool:
        return await _follow_state(node, association.iri, target) == "accepted"

    await wait_until(accepted, what=f"our follow of {target} accepted")
    return requested.follow_iri


async def _everything_we_sent_was_signed(node: Node, world: PeerWorld) -> None:
    """Every request the node made to the peers carries a signature of one of the node's actors."""
    assert world.received, "the node made no request to the peers"
    for received in world.received:
        assert received.is_signed, f"unsigned {received.method} {received.host}{received.target}"
        signer = await world.verify(received)
        assert node.uris.is_local(signer.owner), signer


# --- Mastodon --------------------------------------------------------------------------------


async def test_mastodon_follow_is_accepted_and_notes_reach_the_shared_inbox_exactly_once(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given the fake Mastodon serving the recorded actor document (with endpoints.sharedInbox)
    peertube = world.iri(MASTODON_ACCOUNT)
    shared_inbox = world.document(MASTODON_ACCOUNT)["endpoints"]["sharedInbox"]

    # When its account sends the recorded Follow to our association
    follow = await _mastodon_follows_us(entraide, world, association)

    # Then the follower is stored, with the Follow's id
    row = await _follow(entraide, peertube, association.iri)
    assert row is not None and row.follow_iri == follow["id"] and row.accepted_at is not None
    follower = await entraide.scalar(select(Actor).where(Actor.iri == peertube))
    assert (follower.local, follower.type, follower.handle, follower.shared_inbox_iri) == (
        False,
        "Person",
        "peertube",
        shared_inbox,
    )
    # and the Mastodon inbox receives an Accept signed by the association, embedding the Follow
    accept = await world.next_post(world.document(MASTODON_ACCOUNT)["inbox"], "Accept")
    signer = await world.verify(accept)
    assert (signer.key_id, signer.owner) == (f"{association.iri}#main-key", association.iri)
    assert accept.document["actor"] == association.iri
    assert accept.document["object"] == {
        "id": follow["id"],
        "type": "Follow",
        "actor": peertube,
        "object": association.iri,
    }

    # When the association publishes a note (C2S)
    created = await entraide.post_outbox(
        association.path,
        association.token,
        {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Distribution de colis samedi</p>"},
    )
    await wait_until(lambda: _all_delivered(entraide, created["id"]), what="delivery of the note")

    # Then the Mastodon shared inbox received it exactly once, signed by the association
    creates = [r for r in world.posts_to(shared_inbox) if r.document["type"] == "Create"]
    assert [r.document["id"] for r in creates] == [created["id"]]
    assert (await world.verify(creates[0])).owner == association.iri
    assert [(d.inbox_iri, d.state) for d in await _deliveries_of(entraide, created["id"])] == [
        (shared_inbox, "delivered")
    ]
    # and it reads as a Mastodon Note: content, public addressing, the group as author
    note = creates[0].document["object"]
    assert note["id"] == created["object"] and note["type"] == "Note"
    assert note["content"] == "<p>Distribution de colis samedi</p>"
    assert AS_PUBLIC in note["to"] and note["attributedTo"] == association.iri
    assert "https://www.w3.org/ns/activitystreams" in creates[0].document["@context"]
    await _everything_we_sent_was_signed(entraide, world)


async def test_mastodon_undo_follow_removes_the_follower_and_stops_deliveries(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given the Mastodon account follows our association (recorded Follow, accepted)
    await _mastodon_follows_us(entraide, world, association)
    peertube = world.iri(MASTODON_ACCOUNT)

    # When the recorded Undo{Follow} arrives (it embeds the same Follow id)
    undo = world.payload("mastodon/undo_follow.json", replace={RECORDED_FOLLOWED: association.iri})
    assert await world.post(MASTODON_ACCOUNT, association.inbox, undo) == 202
    await _processed(entraide, undo["id"])

    # Then the follower is gone
    assert await _follow(entraide, peertube, association.iri) is None
    # and a note published afterwards goes nowhere near Mastodon
    created = await entraide.post_outbox(
        association.path, association.token, {"to": [AS_PUBLIC], "type": "Note", "content": "après"}
    )
    await wait_until(lambda: _queue_idle(entraide), what="the fan-out of the note")
    assert await _deliveries_of(entraide, created["id"]) == []
    shared_inbox = world.document(MASTODON_ACCOUNT)["endpoints"]["sharedInbox"]
    assert [r for r in world.posts_to(shared_inbox) if r.document["type"] == "Create"] == []
    await _everything_we_sent_was_signed(entraide, world)


async def test_mastodon_note_from_a_followed_account_is_stored_sanitised_then_tombstoned(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given our association follows the Mastodon account
    await _we_follow(entraide, world, association, MASTODON_ACCOUNT)
    peertube = world.iri(MASTODON_ACCOUNT)

    # When the recorded Create{Note} arrives at our shared inbox (where Mastodon delivers
    # statuses to followers)
    create = world.payload("mastodon/create_note.json")
    note_iri = create["object"]["id"]
    assert await world.post(MASTODON_ACCOUNT, association.shared_inbox, create) == 202
    await _processed(entraide, create["id"])

    # Then the note is stored with sanitised HTML (nh3 adds rel="nofollow noopener noreferrer")
    row = await _object(entraide, note_iri)
    assert row is not None and not row.local and row.type == "Note" and row.deleted_at is None
    recorded_html = load_payload("mastodon/create_note.json")["object"]["content"]
    assert row.document["content"] == sanitize_html(recorded_html) != recorded_html
    assert "i have never been disappointed by a thinkpad" in row.document["content"]
    assert row.attributed_to_id == await _actor_id(entraide, peertube)
    assert row.in_reply_to_iri == "https://mamot.fr/users/retiolus/statuses/107224244380204526"
    # Its visibility is Mastodon's "unlisted": the recorded note has Public in cc, not in to
    assert (create["object"]["to"], AS_PUBLIC in create["object"]["cc"]) == (
        [f"{peertube}/followers"],
        True,
    )
    assert row.visibility == "unlisted"
    # and it is filed in our association's inbox (public-ish, from an account it follows)
    inbox_row = await _inbox_row(entraide, create["id"])
    assert inbox_row is not None
    group_id = await _actor_id(entraide, association.iri)
    assert (
        await entraide.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.actor_id == group_id, InboxItem.inbox_activity_id == inbox_row.id)
        )
        == 1
    )

    # When the recorded Delete arrives (its status id rewritten to the note just created)
    delete = world.payload(
        "mastodon/delete_note.json", replace={RECORDED_DELETED_STATUS: RECORDED_CREATED_STATUS}
    )
    assert delete["object"]["id"] == note_iri and delete["id"] == f"{note_iri}#delete"
    assert await world.post(MASTODON_ACCOUNT, association.shared_inbox, delete) == 202
    await _processed(entraide, delete["id"])

    # Then the note is a tombstone that keeps its former type
    row = await _object(entraide, note_iri)
    assert row is not None and row.deleted_at is not None
    assert row.document == {"id": note_iri, "type": "Tombstone", "formerType": "Note"}
    await _everything_we_sent_was_signed(entraide, world)


async def test_mastodon_poll_arrives_as_a_question_with_its_options(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given our association follows the Mastodon account
    await _we_follow(entraide, world, association, MASTODON_ACCOUNT)
    # and the recorded poll, in the recorded Create envelope as Mastodon sends it: one
    # @context (the poll's) at the top, the activity id "<status>/activity", the poll's addressing
    question = world.payload("mastodon/question.json")
    create = world.payload("mastodon/create_note.json")
    create.update(
        {
            "@context": question.pop("@context"),
            "id": f"{question['id']}/activity",
            "published": question["published"],
            "to": question["to"],
            "cc": question["cc"],
            "object": question,
        }
    )

    # When it arrives at our shared inbox
    assert await world.post(MASTODON_ACCOUNT, association.shared_inbox, create) == 202
    await _processed(entraide, create["id"])

    # Then it is stored as a public Question whose options keep their names and counts
    row = await _object(entraide, question["id"])
    assert row is not None and row.type == "Question" and row.visibility == "public"
    stored = parse_object(row.document)
    assert isinstance(stored, Question)
    assert [(o.name, o.votes) for o in stored.options] == [("Option 1", 6), ("Option 2", 4)]
    assert (stored.multiple, stored.closed, stored.voters_count) == (False, True, 10)
    assert row.document["content"] == "<p>Example Poll</p>"
    await _everything_we_sent_was_signed(entraide, world)


# --- Lemmy -----------------------------------------------------------------------------------


async def test_lemmy_accept_completes_our_follow_and_an_announced_page_is_fetched_from_its_origin(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given our association asks to follow the recorded Lemmy community
    community = world.iri(LEMMY_COMMUNITY)
    requested = await following.follow(entraide.fed, local_name=HANDLE, target_iri=community)
    received = await world.next_post(world.document(LEMMY_COMMUNITY)["inbox"], "Follow")
    assert (await world.verify(received)).owner == association.iri
    assert (received.document["id"], received.document["object"]) == (requested.follow_iri, community)
    assert await _follow_state(entraide, association.iri, community) == "pending"

    # When the community answers with the recorded Lemmy Accept (embedding our Follow), at our
    # shared inbox as Lemmy sends everything
    accept = world.payload(
        "lemmy/accept_follow.json",
        replace={RECORDED_LEMMY_FOLLOW: requested.follow_iri, RECORDED_LEMMY_FOLLOWER: association.iri},
    )
    assert await world.post(LEMMY_COMMUNITY, association.shared_inbox, accept) == 202
    await _processed(entraide, accept["id"])

    # Then our follow is accepted
    assert await _follow_state(entraide, association.iri, community) == "accepted"

    # When the community relays a post with the recorded Announce{Create{Page}}
    announce = world.payload("lemmy/announce_create_page.json")
    page_iri = announce["object"]["object"]["id"]
    assert page_iri == world.origin("lemmy.example") + "/post/7"
    assert await world.post(LEMMY_COMMUNITY, association.shared_inbox, announce) == 202
    await _processed(entraide, announce["id"])

    # Then the Page was fetched from its origin, signed by our node
    fetches = world.gets_of(page_iri)
    assert len(fetches) == 1
    assert (await world.verify(fetches[0])).owner == entraide.uris.application_actor()
    # and stored as a public post of its Lemmy author (fetched too)
    row = await _object(entraide, page_iri)
    assert row is not None and row.type == "Page" and row.visibility == "public"
    assert row.document["name"] == "post 4"
    assert row.attributed_to_id == await _actor_id(entraide, world.iri(LEMMY_USER))
    await _everything_we_sent_was_signed(entraide, world)


# --- Mobilizon -------------------------------------------------------------------------------


async def test_mobilizon_group_receives_our_follow_and_a_join_is_handled_without_error(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given the fake Mobilizon serving the recorded group (PKCS#1 key, Mobilizon collections)
    mobilizon_group = world.iri(MOBILIZON_GROUP)

    # When our association follows it
    requested = await following.follow(entraide.fed, local_name=HANDLE, target_iri=mobilizon_group)

    # Then the group is stored as a remote Group with its key
    group = await entraide.scalar(select(Actor).where(Actor.iri == mobilizon_group))
    assert (group.type, group.handle, group.inbox_iri) == (
        "Group",
        "contribateliers",
        f"{mobilizon_group}/inbox",
    )
    keys = await entraide.scalar(
        select(func.count()).select_from(ActorKey).where(ActorKey.actor_id == group.id)
    )
    assert keys == 1
    # and the Follow reaches the group's inbox, signed by our association
    received = await world.next_post(f"{mobilizon_group}/inbox", "Follow")
    assert (await world.verify(received)).owner == association.iri
    assert received.document["id"] == requested.follow_iri
    assert (received.document["actor"], received.document["object"]) == (association.iri, mobilizon_group)
    await wait_until(lambda: _all_delivered(entraide, requested.follow_iri), what="delivery of the Follow")
    assert await _follow_state(entraide, association.iri, mobilizon_group) == "pending"

    # When a Mobilizon person sends the recorded Join (its event replaced by our association)
    join = world.payload("mobilizon/join.json", replace={RECORDED_JOINED_EVENT: association.iri})
    person = world.iri(MOBILIZON_PERSON)
    assert await world.post(MOBILIZON_PERSON, association.inbox, join) == 202

    # Then it is processed as a request to join the association: the association requires
    # approval (the default), so the membership is pending and no answer is sent yet; no follow.
    row = await _processed(entraide, join["id"])
    assert (row.type, row.actor_iri, row.object_iri) == ("Join", person, association.iri)
    person_id = await _actor_id(entraide, person)
    assert person_id is not None
    assert (
        await entraide.scalar(select(func.count()).select_from(Follow).where(Follow.follower_id == person_id))
        == 0
    )
    assert (
        await entraide.scalar(select(Membership.state).where(Membership.member_id == person_id)) == "pending"
    )
    await _everything_we_sent_was_signed(entraide, world)


# --- Fedify ----------------------------------------------------------------------------------


async def test_fedify_actor_with_multikeys_is_stored_and_its_rfc9421_signed_note_accepted(
    entraide: Node, world: PeerWorld, association: Association
) -> None:
    # Given our association follows the recorded Fedify actor (publicKey + two Multikeys)
    alice = world.iri(FEDIFY_ACTOR)
    await _we_follow(entraide, world, association, FEDIFY_ACTOR)

    # Then the actor is stored, its assertionMethod Multikeys read
    actor = await entraide.scalar(select(Actor).where(Actor.iri == alice))
    assert (actor.type, actor.handle, actor.shared_inbox_iri) == (
        "Person",
        "alice",
        world.origin("fedify.example") + "/inbox",
    )
    assert actor.document is not None
    assert [k.key_id for k in parse_actor(actor.document).multikeys] == [
        f"{alice}#multikey-1",
        f"{alice}#multikey-2",
    ]
    async with entraide.sessions() as session:
        rows = await session.execute(
            select(ActorKey.key_iri, ActorKey.kind).where(ActorKey.actor_id == actor.id)
        )
        keys = {key_iri: kind for key_iri, kind in rows}
    # the RSA publicKey and the Ed25519 Multikey verify; the RSA Multikey (the same RSA key
    # in multibase form) is not a usable key type for us and is skipped, not an error
    assert keys == {f"{alice}#main-key": "rsa", f"{alice}#multikey-2": "ed25519"}

    # When Fedify sends its recorded Create{Note}, signed with RFC 9421
    create = world.payload("fedify/create_note.json")
    assert await world.post(FEDIFY_ACTOR, association.inbox, create, spec="rfc9421") == 202

    # Then it is accepted, verified with the actor's main key, and the note stored as public
    row = await _processed(entraide, create["id"])
    assert row.signer_key_iri == f"{alice}#main-key"
    note = await _object(entraide, create["object"]["id"])
    assert note is not None and note.type == "Note" and note.visibility == "public"
    assert note.document["content"] == "<p>Hello from Fedify</p>"
    await _everything_we_sent_was_signed(entraide, world)
