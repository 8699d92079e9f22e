"""Security cases 77-80 (issue 17, blocks and the node policy in the database).

77: a block stored in the database refuses the peer at the inbox before any key is fetched from it,
in every process (the one that made it at once, the others at their next poll). 78: a blocked
actor's or domain's stored content still readable through a read channel (the read filter, the C2S
inbox). 79: a block list fetched by URL used to reach private addresses. 80: a shared list that
removes or weakens blocks made by hand, by the configuration or by another list, or whose preview
differs from what applying it does. 86: an association's block of an actor bypassed: the actor's
content still read in the association's context (its collections, its members' timelines), or served
from a page cached before the block. 87: a silenced domain reaching people who do not follow its
actors: its content stored for them (a mention, a reply to our object), or its media kept after
``reject_media``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from federation.errors import FederationError
from federation.policy import LivePolicy, PeerPolicy
from federation.types import AS_PUBLIC
from server.db.models import DomainBlock, RemoteObject
from server.services.moderation import blocklists, blocks
from tests.server.test_association_blocks import _block, _collection, _group_post, _reply
from tests.server.test_blocks import _block_actor, _block_domain, _readable, _stored_note
from tests.support.signed_inbox import changed, gets_to, processed
from tests.support.world import GROUP_INBOX, World, assert_refused, create, note, object_row


async def test_sec_77_a_stored_block_refuses_before_any_key_fetch_in_every_process(world: World) -> None:
    other_process = LivePolicy(PeerPolicy.open_network())
    await blocks.refresh(world.node.sessions, other_process)
    await _block_domain(world, "evil.example")
    world.peers.hits.clear()
    before = await world.counts()
    reply = await world.send(
        GROUP_INBOX, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
    )
    assert_refused(reply, 403, "peer_not_allowed")
    assert gets_to(world.peers, "evil.example") == [] and changed(before, await world.counts()) == {}
    # another process (its own policy object) sees the block at its next poll
    assert other_process.allows("evil.example")
    await blocks.refresh(world.node.sessions, other_process)
    assert not other_process.allows("evil.example") and not other_process.allows("x.EVIL.example.")


async def test_sec_78_blocked_content_is_read_through_no_channel(world: World) -> None:
    theirs = await _stored_note(world, world.alice)
    await _block_actor(world, world.alice.iri)
    assert not await _readable(world, theirs)
    bobs = await _stored_note(world, world.bob)
    assert await _readable(world, bobs)  # the same host, another actor: still shown


async def test_sec_79_a_block_list_url_cannot_reach_private_addresses(world: World) -> None:
    for url in ("http://127.0.0.1:5432/", "http://10.0.0.1/list.csv", "http://[::1]/x", "http://localhost/x"):
        with pytest.raises(FederationError):
            await blocklists.fetch_list(world.node.fed, url)


async def test_sec_80_a_list_never_removes_or_weakens_other_blocks(world: World) -> None:
    async with world.node.sessions.begin() as session:
        await blocks.block_domain(session, by=None, domain="evil.example", severity="suspend")
        await blocklists.import_domain_csv(session, "other.example\n", name="a", by=None, apply=True)
    weaker = "#domain,#severity\nevil.example,silence\nother.example,silence\n"
    async with world.node.sessions() as session:
        preview = await blocklists.import_domain_csv(session, weaker, name="b", by=None, apply=False)
    async with world.node.sessions.begin() as session:
        applied = await blocklists.import_domain_csv(session, weaker, name="b", by=None, apply=True)
        # an empty version of list "b" removes nothing of the others
        await blocklists.import_domain_csv(session, "", name="b", by=None, apply=True)
    assert preview == applied and preview.kept == ("evil.example", "other.example") and preview.adds == ()
    async with world.node.sessions() as session:
        rows = {r.domain: (r.severity, r.source) for r in await session.scalars(select(DomainBlock))}
    assert rows == {"evil.example": ("suspend", "manual"), "other.example": ("suspend", "import:a")}


async def test_sec_86_an_association_block_is_not_bypassed_by_a_cached_page(world: World) -> None:
    post = await _group_post(world)
    spam = await _reply(world, world.mallory, post, "Achetez maintenant")
    other = await _reply(world, world.alice, post, "Bonjour")
    assert spam in await _collection(world, post, "replies")  # cached for anonymous readers
    assert spam in await _collection(world, post, "context")
    await _block(world, world.mallory.iri, by_group=True)
    for name in ("replies", "context"):
        assert spam not in await _collection(world, post, name), name
    # a node's block that sends nothing (no follows to sever) empties the cache too
    assert other in await _collection(world, post, "replies")
    await _block(world, world.alice.iri, by_group=False)
    assert other not in await _collection(world, post, "replies")


async def test_sec_87_a_silenced_domain_reaches_no_one_who_does_not_follow_it(world: World) -> None:
    await world.node.add_member("ana", "collectif")
    theirs = note(world.mallory, to=[AS_PUBLIC, world.group])
    theirs["attachment"] = [{"type": "Image", "mediaType": "image/png", "url": "https://evil.example/a.png"}]
    await _stored_note_by(world, theirs)
    await _block_domain(world, "evil.example", severity="silence", reject_media=True)
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == theirs["id"]))
    assert row is not None and "attachment" not in row.document
    ana = world.node.uris.iri("/users/ana")
    mention = note(world.mallory, to=[ana], tag=[{"type": "Mention", "href": ana}])
    sent = create(world.mallory, mention)
    assert (await world.send("/users/ana/inbox", sent, world.mallory)).status == 202
    await processed(world.node, sent["id"])
    assert await object_row(world.node, mention["id"]) is None


async def _stored_note_by(world: World, obj: dict[str, object]) -> None:
    sent = create(world.mallory, obj)
    assert (await world.send(GROUP_INBOX, sent, world.mallory)).status == 202
    await processed(world.node, sent["id"])
    assert await object_row(world.node, str(obj["id"])) is not None
