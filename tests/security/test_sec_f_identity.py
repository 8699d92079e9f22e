"""Identity and attribution at node level (security.md §F, cases 36 and 37).

36: following ``user@host`` binds the handle only to an actor that WebFinger on *its own* host
confirms (the round trip); a host pointing its handles at actors elsewhere binds nothing, and
nothing is stored. 37: authorship is never taken from a payload that disagrees with the signer,
and nothing a peer sends is shown as verified. Both engines.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from federation.lookup import HandleMismatch
from server.db.models import Actor, Follow, RemoteObject
from server.services.actors.remote import lookup_account
from server.services.membership import following
from tests.support.fake_peers import actor_document, jrd
from tests.support.signed_inbox import changed, processed, settle
from tests.support.world import GROUP_INBOX, World, activity, create, note

JRD = "application/jrd+json"


def _serve_webfinger(
    world: World, user: str, host: str, *actors: str, subject_host: str | None = None
) -> str:
    """``acct:user@host`` answered with ``actors`` as self links (subject on ``subject_host``)."""
    name = f"{user}@{world.peers.authority(host)}"
    subject = f"acct:{user}@{world.peers.authority(subject_host or host)}"
    body = jrd(subject, *((iri, None) for iri in actors))
    world.peers.serve_json(world.peers.iri(host, f"/.well-known/webfinger?resource=acct:{name}"), body)
    return name


async def _lookup(world: World, handle: str) -> Actor:
    return await lookup_account(
        world.node.fed.node, world.node.fed.transport, handle, scheme="http", allow_http=True
    )


async def _actor_row(world: World, iri: str) -> Actor | None:
    async with world.node.sessions() as session:
        return await session.scalar(select(Actor).where(Actor.iri == iri))


async def test_sec_36_a_handle_pointing_at_another_hosts_actor_binds_nothing(world: World) -> None:
    """acct:asso@peer.example answered with evil.example's Group: refused, nothing stored."""
    evil_asso = world.peers.iri("evil.example", "/groups/asso")
    world.peers.serve_json(evil_asso, actor_document(evil_asso, username="asso", actor_type="Group"))
    handle = _serve_webfinger(world, "asso", "peer.example", evil_asso)
    _serve_webfinger(world, "asso", "evil.example", evil_asso)  # evil's own WebFinger is honest
    before = await world.counts()
    with pytest.raises(HandleMismatch):
        await _lookup(world, handle)
    assert changed(before, await world.counts()) == {}
    assert await _actor_row(world, evil_asso) is None


async def test_sec_36_an_actor_claiming_a_handle_on_another_host_is_refused(world: World) -> None:
    """evil.example says its alice is alice@peer.example; peer.example's WebFinger disagrees."""
    evil_alice = world.peers.iri("evil.example", "/users/alice")
    world.peers.serve_json(evil_alice, actor_document(evil_alice, username="alice"))
    handle = _serve_webfinger(world, "alice", "evil.example", evil_alice, subject_host="peer.example")
    _serve_webfinger(world, "alice", "peer.example", world.alice.iri)
    before = await world.counts()
    with pytest.raises(HandleMismatch):
        await _lookup(world, handle)
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize(
    "spelling",
    ["{user}@{host}", "@{user}@{host}", "{USER}@{HOST}"],
    ids=["plain", "at_prefixed", "upper_case"],
)
async def test_sec_36_a_confirmed_handle_binds_its_actor_in_any_spelling(world: World, spelling: str) -> None:
    """Control: alice@peer.example, confirmed by peer.example, is alice (case-insensitively)."""
    host = world.peers.authority("peer.example")
    _serve_webfinger(world, "alice", "peer.example", world.alice.iri)
    typed = spelling.format(user="alice", host=host, USER="ALICE", HOST=host.upper())
    if typed.lower().lstrip("@") != typed.lstrip("@"):
        # WebFinger is asked with the typed spelling: serve that resource too (hosts compare
        # case-insensitively; the round trip confirms the canonical account).
        world.peers.serve_json(
            world.peers.iri("peer.example", f"/.well-known/webfinger?resource=acct:{typed.lstrip('@')}"),
            jrd(f"acct:alice@{host}", (world.alice.iri, None)),
        )
    found = await _lookup(world, typed)
    assert found.iri == world.alice.iri


async def test_sec_36_following_by_a_lying_handle_creates_no_follow(world: World) -> None:
    """The same refusal through the follow path: no Follow row, no delivery queued."""
    evil_asso = world.peers.iri("evil.example", "/groups/asso")
    world.peers.serve_json(evil_asso, actor_document(evil_asso, username="asso", actor_type="Group"))
    handle = _serve_webfinger(world, "asso", "peer.example", evil_asso)
    _serve_webfinger(world, "asso", "evil.example", evil_asso)
    with pytest.raises(HandleMismatch):
        found = await _lookup(world, handle)
        await following.follow(world.node.fed, local_name="collectif", target_iri=found.iri)
    async with world.node.sessions() as session:
        assert (await session.scalars(select(Follow))).all() == []


@pytest.mark.parametrize("claimed", ["bob", "mallory", "group"])
async def test_sec_37_authorship_is_never_taken_from_the_payload(
    world: World, handler_spy: object, claimed: str
) -> None:
    """alice's signed Create of a Note attributed to bob (same host), mallory (other host) or our
    own association: nothing is stored under anyone's name."""
    author = {"bob": world.bob.iri, "mallory": world.mallory.iri, "group": world.group}[claimed]
    forged = note(world.alice, to=[world.group], attributedTo=author)
    create_ = create(world.alice, forged)
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, create_, world.alice)
    assert reply.status == 202
    await processed(world.node, create_["id"])
    await settle(world.node)
    async with world.node.sessions() as session:
        assert await session.scalar(select(RemoteObject).where(RemoteObject.iri == forged["id"])) is None
    assert set(changed(before, await world.counts())) <= {"inbox_activities", "inbox_items", "jobs"}


async def test_sec_37_a_peers_link_and_attribution_claims_are_never_shown(world: World) -> None:
    """mallory's profile claims a rel=me link whose text hides its real href, and attribution for
    hopital.example: after her Update and a post of hers in our thread, no channel of ours shows
    either claim (we show no verified badge at all, only actor IRIs)."""
    profile = actor_document(
        world.mallory.iri,
        username="mallory",
        keys=(world.mallory.key.public,),
        attachment=[
            {
                "type": "PropertyValue",
                "name": "Site officiel",
                "value": '<a rel="me" href="https://evil.example/?u=https://asso-diabete.org">'
                "https://asso-diabete.org</a>",
            }
        ],
        attributionDomains=["hopital.example"],
    )
    world.peers.serve_json(world.mallory.iri, profile)
    update = activity("Update", world.mallory, profile)
    assert (await world.send(GROUP_INBOX, update, world.mallory)).status == 202
    await processed(world.node, update["id"])
    post = note(world.mallory, to=[world.group, "https://www.w3.org/ns/activitystreams#Public"])
    create_ = create(world.mallory, post)
    assert (await world.send(GROUP_INBOX, create_, world.mallory)).status == 202
    await processed(world.node, create_["id"])
    await settle(world.node)
    pages = ["/groups/collectif", "/groups/collectif/outbox?page=true", "/groups/collectif/feed.json"]
    for path in pages:
        for accept in ("text/html", "application/activity+json"):
            response = await world.node.client.get(path, headers={"Accept": accept})
            text = await response.text()
            assert response.status == 200, (path, accept)
            assert "asso-diabete" not in text and "hopital.example" not in text, (path, accept)
            assert "verified" not in text.lower(), (path, accept)
