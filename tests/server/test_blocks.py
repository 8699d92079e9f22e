"""Blocks kept in the database: a domain or an actor blocked by the node is refused at the inbox
before any key is fetched, gets no delivery, its stored content disappears from every read
channel, and the follows with it are severed with the right activities (docs/decisions.md 62-64).

Runs on SQLite and PostgreSQL; peers are the fake ones of ``tests/support/world.py`` (alice and
bob on ``peer.example``, mallory on ``evil.example``).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from federation.errors import FederationError
from server.db.models import Activity, Actor, AuditEntry, Delivery, DomainBlock, Follow, RemoteObject
from server.services.errors import InvalidInput
from server.services.moderation import blocklists, blocks
from server.services.reading import visibility
from tests.server.test_api import Api
from tests.support.signed_inbox import changed, gets_to, posts_to, processed, settle
from tests.support.world import (
    GROUP_INBOX,
    World,
    activity,
    assert_refused,
    assert_stored_and_processed_once,
    create,
    follow_state,
    note,
    object_row,
)


async def _block_domain(world: World, domain: str, **kwargs: Any) -> None:
    async with world.node.sessions.begin() as session:
        await blocks.block_domain(session, by=None, domain=domain, channel="cli", **kwargs)


async def _block_actor(world: World, iri: str, *, group: str | None = None) -> None:
    async with world.node.sessions.begin() as session:
        owner = None
        if group is not None:
            owner = await session.scalar(select(Actor).where(Actor.iri == group))
        await blocks.block_actor(
            session, uris=world.node.uris, by=None, actor_iri=iri, group=owner, reason="spam"
        )


async def _stored_note(world: World, who: Any) -> str:
    obj = note(who, to=["https://www.w3.org/ns/activitystreams#Public", world.group])
    create_ = create(who, obj)
    reply = await world.send(GROUP_INBOX, create_, who)
    assert reply.status == 202
    await assert_stored_and_processed_once(world, create_["id"])
    return str(obj["id"])


async def _readable(world: World, iri: str) -> bool:
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        assert row is not None
        one = await visibility.can_read_object(session, visibility.ANONYMOUS, row)
        listed = await session.scalar(
            select(RemoteObject.id).where(
                RemoteObject.iri == iri, visibility.readable_by(visibility.ANONYMOUS)
            )
        )
        assert one == (listed is not None)  # the per-row rule and the listing filter agree
        return one


async def test_a_blocked_domain_is_refused_at_the_inbox_before_any_key_fetch(world: World) -> None:
    # Given evil.example blocked in the database (not in the configuration file)
    await _block_domain(world, "EVIL.example.")
    await world.node.fed.keys.resolve(world.alice.key_id)
    world.peers.hits.clear()
    before = await world.counts()
    # When mallory, whose key was never fetched again, posts a Create
    reply = await world.send(
        GROUP_INBOX, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
    )
    # Then 403 peer_not_allowed, nothing stored, no request to evil.example
    assert_refused(reply, 403, "peer_not_allowed")
    assert changed(before, await world.counts()) == {}
    assert gets_to(world.peers, "evil.example") == []
    # and a subdomain is refused too, while peer.example still gets through
    assert not world.node.fed.policy.allows("a.evil.example")
    assert world.node.fed.policy.allows("peer.example")


async def test_unblocking_a_domain_takes_effect_at_once(world: World) -> None:
    await _block_domain(world, "evil.example")
    async with world.node.sessions.begin() as session:
        await blocks.unblock_domain(session, by=None, domain="evil.example")
    assert world.node.fed.policy.allows("evil.example")
    await _stored_note(world, world.mallory)


async def test_another_process_sees_a_block_at_its_next_poll(world: World) -> None:
    """A change made through another process's sessions (no commit listener registered for this
    policy) reaches it by the version poll."""
    from federation.policy import LivePolicy, PeerPolicy

    other = LivePolicy(PeerPolicy.open_network(), version=0)
    await blocks.refresh(world.node.sessions, other)
    assert other.allows("evil.example")
    await _block_domain(world, "evil.example")
    assert await blocks.refresh(world.node.sessions, other)
    assert not other.allows("evil.example")
    assert not await blocks.refresh(world.node.sessions, other)  # same version: nothing read again


async def test_a_blocked_domain_content_is_hidden_from_every_reader(world: World) -> None:
    # Given a public note by mallory and one by alice, both stored
    theirs = await _stored_note(world, world.mallory)
    ours = await _stored_note(world, world.alice)
    assert await _readable(world, theirs)
    # When evil.example is suspended
    await _block_domain(world, "evil.example")
    # Then mallory's note is hidden (per row and in listings), alice's is not
    assert not await _readable(world, theirs)
    assert await _readable(world, ours)
    # and the object page answers 404 like an unknown object
    response = await world.node.client.get(f"/objects?iri={theirs}")
    assert response.status in (404, 400)


async def test_a_silenced_domain_is_hidden_from_anonymous_readers_only(world: World) -> None:
    theirs = await _stored_note(world, world.mallory)
    await _block_domain(world, "evil.example", severity="silence")
    assert world.node.fed.policy.allows("evil.example")  # still federating
    assert not await _readable(world, theirs)


async def test_a_silenced_domain_reaches_only_the_followers_of_its_actors(world: World) -> None:
    """Decision 79: from a silenced domain, the inbox keeps content only when a local actor follows
    its author; replies to our objects and mentions of our actors from others are dropped."""
    await world.node.add_member("ana", "collectif", role="admin")
    await world.node.configure("collectif", replies_policy="anyone")
    token = await world.node.token("ana")
    ours = await world.node.post_outbox(
        "/groups/collectif",
        token,
        {"type": "Note", "content": "<p>Réunion</p>", "to": ["https://www.w3.org/ns/activitystreams#Public"]},
    )
    await _block_domain(world, "evil.example", severity="silence")
    public = "https://www.w3.org/ns/activitystreams#Public"
    # Given nobody here follows mallory: a post to the association and a reply to its post are dropped
    dropped = [
        note(world.mallory, to=[public, world.group]),
        note(world.mallory, to=[public, world.group], inReplyTo=ours["object"]),
    ]
    for obj in dropped:
        sent = create(world.mallory, obj)
        assert (await world.send(GROUP_INBOX, sent, world.mallory)).status == 202
        await processed(world.node, sent["id"])
        assert await object_row(world.node, obj["id"]) is None
    # When ana follows mallory, mallory's next post is kept, shown to ana and to no one else
    async with world.node.sessions.begin() as session:
        ana = await session.scalar(select(Actor).where(Actor.handle == "ana", Actor.local.is_(True)))
        mallory = await session.scalar(select(Actor).where(Actor.iri == world.mallory.iri))
        assert ana is not None and mallory is not None
        session.add(
            Follow(follower_id=ana.id, followed_id=mallory.id, state="accepted", created_at=ana.created_at)
        )
    kept = note(world.mallory, to=[public, world.group])
    await _stored_note_of(world, kept)
    async with world.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == kept["id"]))
        assert row is not None
        follower = visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=ana.id, actor_iri=ana.iri)
        assert await visibility.can_read_object(session, follower, row)
    assert not await _readable(world, str(kept["id"]))


async def _stored_note_of(world: World, obj: dict[str, Any]) -> None:
    sent = create(world.mallory, obj)
    assert (await world.send(GROUP_INBOX, sent, world.mallory)).status == 202
    await assert_stored_and_processed_once(world, sent["id"])


async def test_suspending_a_domain_severs_follows_both_ways(world: World) -> None:
    # Given mallory follows the association
    reply = await world.send(GROUP_INBOX, activity("Follow", world.mallory, world.group), world.mallory)
    assert reply.status == 202
    await settle(world.node)
    assert await follow_state(world.node, world.mallory.iri, world.group) == "accepted"
    world.peers.hits.clear()
    # When evil.example is suspended
    await _block_domain(world, "evil.example", public_comment="spam")
    # Then the follow is gone, nothing is delivered there, and the block is audited
    assert await follow_state(world.node, world.mallory.iri, world.group) is None
    await settle(world.node)
    assert posts_to(world.peers, "evil.example") == []
    async with world.node.sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "domain.block"))
        assert entry is not None and entry.channel == "cli" and entry.target == "evil.example"
        assert entry.detail["follows_severed"] == 1


async def _evil_deliveries(world: World) -> int:
    async with world.node.sessions() as session:
        hosts = list(await session.scalars(select(Delivery.host)))
    return sum(1 for h in hosts if h.split(":")[0] == "evil.example")


async def test_no_delivery_is_planned_for_a_blocked_domain(world: World) -> None:
    # Given evil.example suspended, and a follow row of mallory's left over (written after the
    # block, as a concurrent transaction could)
    await _block_domain(world, "evil.example")
    async with world.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        mallory = await session.scalar(select(Actor).where(Actor.iri == world.mallory.iri))
        assert group is not None and mallory is not None
        session.add(
            Follow(
                follower_id=mallory.id, followed_id=group.id, state="accepted", created_at=group.created_at
            )
        )
    before = await _evil_deliveries(world)
    world.peers.hits.clear()
    # When the association publishes to its followers
    await world.node.add_member("ana", "collectif", role="admin")
    token = await world.node.token("ana")
    await world.node.post_outbox(
        "/groups/collectif",
        token,
        {"type": "Note", "content": "Bonjour", "to": ["https://www.w3.org/ns/activitystreams#Public"]},
    )
    await settle(world.node)
    # Then nothing is planned for, nor sent to, evil.example
    assert await _evil_deliveries(world) == before
    assert posts_to(world.peers, "evil.example") == []


async def test_blocking_an_actor_refuses_it_and_rejects_its_follow(world: World) -> None:
    # Given alice follows the association
    follow = activity("Follow", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202
    await settle(world.node)
    world.peers.hits.clear()
    # When the node blocks alice (not bob, on the same host)
    await _block_actor(world, world.alice.iri)
    # Then a Reject of her Follow goes to her, the follow is gone
    async with world.node.sessions() as session:
        sent = list(await session.scalars(select(Activity).where(Activity.type == "Reject")))
    assert len(sent) == 1 and sent[0].document["object"]["id"] == follow["id"]
    assert await follow_state(world.node, world.alice.iri, world.group) is None
    await settle(world.node)
    assert len(posts_to(world.peers, "peer.example")) == 1
    # and her activities are refused, bob's are not
    reply = await world.send(
        GROUP_INBOX, create(world.alice, note(world.alice, to=[world.group])), world.alice
    )
    assert_refused(reply, 403, "peer_not_allowed")
    await _stored_note(world, world.bob)


async def test_an_association_block_sends_block_and_undo_of_our_follow(world: World) -> None:
    # Given the association follows alice (accepted)
    async with world.node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == world.group))
        alice = await session.scalar(select(Actor).where(Actor.iri == world.alice.iri))
        assert group is not None and alice is not None
        session.add(
            Follow(
                follower_id=group.id,
                followed_id=alice.id,
                follow_iri=f"{world.group}#follows/1",
                state="accepted",
                created_at=group.created_at,
            )
        )
    # When the association blocks her
    await _block_actor(world, world.alice.iri, group=world.group)
    # Then Undo{Follow} and Block go out, and the node as a whole still federates with her
    async with world.node.sessions() as session:
        kinds = sorted(
            await session.scalars(select(Activity.type).where(Activity.type.in_(("Undo", "Block"))))
        )
    assert kinds == ["Block", "Undo"]
    assert world.node.fed.policy.allows_actor(world.alice.iri)


async def test_config_blocked_domains_are_seeded_as_config_blocks(world: World) -> None:
    async with world.node.sessions.begin() as session:
        from dataclasses import replace

        settings = replace(world.node.settings.federation, blocked_domains=("spam.example",))
        await blocks.seed_from_config(session, settings, now=session.sync_session.info.get("now") or _utc())
    async with world.node.sessions() as session:
        rows = {r.domain: r.source for r in await session.scalars(select(DomainBlock))}
    assert rows == {"spam.example": "config"}
    assert not world.node.fed.policy.allows("spam.example")


def _utc() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Shared lists: Mastodon's CSV, the preview, lists by URL
# ---------------------------------------------------------------------------------------------

MASTODON_CSV = """#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate
evil.example,suspend,true,true,Harcèlement,false
noisy.example,silence,false,false,"spam, beaucoup",true
ex*mple.org,suspend,false,false,,true
quiet.example,noop,true,false,,false
"""


async def test_a_mastodon_csv_round_trips(world: World) -> None:
    async with world.node.sessions.begin() as session:
        plan = await blocklists.import_domain_csv(
            session, MASTODON_CSV, name="shared.csv", by=None, apply=True
        )
    assert [i.line for i in plan.invalid] == [4, 5]  # obfuscated and noop lines are not applied
    async with world.node.sessions() as session:
        exported = await blocklists.export_domain_csv(session)
    assert exported.splitlines() == [
        "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate",
        "evil.example,suspend,true,true,Harcèlement,false",
        'noisy.example,silence,false,false,"spam, beaucoup",true',
    ]
    parsed = blocklists.parse_domain_csv(exported)
    assert parsed.invalid == () and [e.domain for e in parsed.entries] == ["evil.example", "noisy.example"]
    assert not world.node.fed.policy.allows("evil.example")
    assert world.node.fed.policy.allows("noisy.example")


async def test_the_preview_is_exactly_what_the_import_does(world: World) -> None:
    # Given a first version of a list applied, and a block made by hand
    first = "evil.example\nold.example\nsame.example\n"
    async with world.node.sessions.begin() as session:
        await blocklists.import_domain_csv(session, first, name="list", by=None, apply=True)
        await blocks.block_domain(session, by=None, domain="manual.example", severity="silence")
    second = (
        "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
        "evil.example,silence,false,false,,false\n"  # changed
        "same.example,suspend,false,false,,false\n"  # unchanged
        "new.example,suspend,false,false,,false\n"  # added
        "manual.example,suspend,false,false,,false\n"  # kept as made by hand
    )  # old.example: removed
    before = await world.counts()
    async with world.node.sessions() as session:
        preview = await blocklists.import_domain_csv(session, second, name="list", by=None, apply=False)
    assert changed(before, await world.counts()) == {}  # the preview stores nothing
    assert [a.domain for a in preview.adds] == ["new.example"]
    assert [(c.before.severity, c.after.severity) for c in preview.changes] == [("suspend", "silence")]
    assert preview.removals == ("old.example",) and preview.kept == ("manual.example",)
    assert preview.unchanged == 1
    async with world.node.sessions.begin() as session:
        applied = await blocklists.import_domain_csv(session, second, name="list", by=None, apply=True)
    assert applied == preview
    async with world.node.sessions() as session:
        rows = {r.domain: (r.severity, r.source) for r in await session.scalars(select(DomainBlock))}
    assert rows == {
        "evil.example": ("silence", "import:list"),
        "same.example": ("suspend", "import:list"),
        "new.example": ("suspend", "import:list"),
        "manual.example": ("silence", "manual"),
    }


async def test_a_list_by_url_is_fetched_through_the_transport_with_its_etag(world: World) -> None:
    url = world.peers.iri("third.example", "/blocklist.csv")
    world.peers.serve(
        "third.example", "/blocklist.csv", MASTODON_CSV, content_type="text/csv", headers={"ETag": '"v1"'}
    )
    # A preview first: nothing stored
    preview = await blocklists.preview_url(world.node.fed, url)
    assert [a.domain for a in preview.adds] == ["evil.example", "noisy.example"]
    async with world.node.sessions.begin() as session:
        await blocklists.subscribe(session, by=None, url=url, refresh_interval_s=3600)
        sub = (await blocklists.list_subscriptions(session))[0]
    # The subscription's refresh applies it and keeps the ETag
    assert await blocklists.refresh_subscription(world.node.fed, sub.id) == "updated"
    assert not world.node.fed.policy.allows("evil.example")
    async with world.node.sessions() as session:
        row = (await blocklists.list_subscriptions(session))[0]
        assert row.etag == '"v1"' and row.last_error is None
    # An unchanged list answers 304: nothing changes
    world.peers.serve("third.example", "/blocklist.csv", b"", status=304, content_type=None)
    assert await blocklists.refresh_subscription(world.node.fed, sub.id) == "unchanged"
    # Unsubscribing removes the list's blocks
    async with world.node.sessions.begin() as session:
        await blocklists.unsubscribe(session, by=None, url=url)
    assert world.node.fed.policy.allows("evil.example")


async def test_a_list_url_on_a_private_address_is_refused_by_the_address_guard(world: World) -> None:
    with pytest.raises(FederationError):
        await blocklists.fetch_list(world.node.fed, "http://10.0.0.1/list.csv")
    with pytest.raises(InvalidInput):
        await blocklists.fetch_list(world.node.fed, "file:///etc/passwd")


async def test_an_allowlist_closes_the_network(world: World) -> None:
    async with world.node.sessions.begin() as session:
        domains = await blocklists.import_allowlist(
            session, "# partenaires\npeer.example\n*.univ.example\n", by=None
        )
        await blocks.set_node_policy(session, by=None, federation_mode="allowlist")
    assert domains == ["peer.example", "*.univ.example"]
    assert world.node.fed.policy.allows("peer.example") and world.node.fed.policy.allows("a.univ.example")
    assert not world.node.fed.policy.allows("evil.example")
    async with world.node.sessions() as session:
        assert await blocklists.export_allowlist(session) == "*.univ.example\npeer.example\n"
    reply = await world.send(
        GROUP_INBOX, create(world.mallory, note(world.mallory, to=[world.group])), world.mallory
    )
    assert_refused(reply, 403, "peer_not_allowed")


@pytest.mark.parametrize(
    "bad", ["", "not a domain", "http://evil.example/", "*.evil.example", "evil.example:443"]
)
async def test_a_bad_domain_is_refused_and_nothing_is_stored(world: World, bad: str) -> None:
    before = await world.counts()
    with pytest.raises(InvalidInput):
        async with world.node.sessions.begin() as session:
            await blocks.block_domain(session, by=None, domain=bad)
    assert changed(before, await world.counts()) == {}


# ---------------------------------------------------------------------------------------------
# The JSON API (node admins, admin-scope token)
# ---------------------------------------------------------------------------------------------


async def _admin_token(world: World, *, node_admin: bool = True, scope: str = "admin") -> dict[str, str]:
    from server.services.actors import local as actor_service

    await world.node.add_member("ana", "collectif", role="admin")
    async with world.node.sessions.begin() as session:
        await actor_service.set_node_admin(session, username="ana", node_admin=node_admin, now=_utc())
    return {"Authorization": f"Bearer {await world.node.token('ana', scope=scope)}"}


async def test_the_api_blocks_previews_imports_exports_and_lifts(world: World) -> None:
    headers = await _admin_token(world)
    client = world.node.client
    response = await client.post(
        "/api/admin/domain-blocks", json={"domain": "evil.example", "rejectMedia": True}, headers=headers
    )
    assert response.status == 201 and (await response.json())["rejectMedia"] is True
    assert not world.node.fed.policy.allows("evil.example")
    preview = await client.post(
        "/api/admin/domain-blocks/import", json={"csv": MASTODON_CSV, "name": "shared"}, headers=headers
    )
    plan = await preview.json()
    assert preview.status == 200 and [a["domain"] for a in plan["adds"]] == ["noisy.example"]
    assert plan["kept"] == ["evil.example"] and [i["line"] for i in plan["invalid"]] == [4, 5]
    applied = await client.post(
        "/api/admin/domain-blocks/import",
        json={"csv": MASTODON_CSV, "name": "shared", "apply": True},
        headers=headers,
    )
    assert (await applied.json()) == plan
    exported = await client.get("/api/admin/domain-blocks/export", headers=headers)
    assert exported.content_type == "text/csv"
    assert (await exported.text()).splitlines()[1:] == [
        "evil.example,suspend,true,false,,false",
        'noisy.example,silence,false,false,"spam, beaucoup",true',
    ]
    response = await client.post("/api/admin/actor-blocks", json={"actor": world.alice.iri}, headers=headers)
    assert response.status == 201
    response = await client.put(
        "/api/admin/federation", json={"associationCreators": "members"}, headers=headers
    )
    view = await response.json()
    assert view["associationCreators"] == "members" and len(view["domainBlocks"]) == 2
    assert [a["actor"] for a in view["actorBlocks"]] == [world.alice.iri]
    response = await client.delete(
        "/api/admin/domain-blocks", params={"domain": "evil.example"}, headers=headers
    )
    assert response.status == 204 and world.node.fed.policy.allows("evil.example")
    response = await client.delete(
        "/api/admin/actor-blocks", params={"actor": world.alice.iri}, headers=headers
    )
    assert response.status == 204 and world.node.fed.policy.allows_actor(world.alice.iri)
    async with world.node.sessions() as session:
        channels = set(
            await session.scalars(select(AuditEntry.channel).where(AuditEntry.action.like("domain.%")))
        )
    assert channels == {"api"}


@pytest.mark.parametrize(("node_admin", "scope"), [(False, "admin"), (True, "write")])
async def test_the_api_is_for_node_admins_with_an_admin_token(
    world: World, node_admin: bool, scope: str
) -> None:
    headers = await _admin_token(world, node_admin=node_admin, scope=scope)
    before = await world.counts()
    response = await world.node.client.post(
        "/api/admin/domain-blocks", json={"domain": "evil.example"}, headers=headers
    )
    assert response.status == 403 and response.content_type == "application/problem+json"
    response = await world.node.client.get("/api/admin/federation", headers=headers)
    assert response.status == 403
    assert changed(before, await world.counts()) == {}
    assert (await world.node.client.get("/api/admin/federation")).status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"domain": "ex*mple.org"},
        {"domain": "evil.example", "severity": "noop"},
        {"domain": "a", "extra": 1},
        {},
    ],
)
async def test_the_api_refuses_bad_blocks_with_a_problem(world: World, body: dict[str, Any]) -> None:
    headers = await _admin_token(world)
    before = await world.counts()
    response = await world.node.client.post("/api/admin/domain-blocks", json=body, headers=headers)
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert changed(before, await world.counts()) == {}


async def test_the_api_subscribes_lists_and_unsubscribes_block_lists(world: World) -> None:
    headers = await _admin_token(world)
    client, path = world.node.client, "/api/admin/blocklist-subscriptions"
    url = "https://lists.example/blocks.csv"
    response = await client.post(path, json={"url": url, "refreshIntervalS": 7200}, headers=headers)
    assert response.status == 201
    assert (await response.json()) == {
        "url": url,
        "kind": "blocks",
        "refreshIntervalS": 7200,
        "lastFetched": None,
        "error": None,
    }
    # a block the list brought in, to see it go with the list
    async with world.node.sessions.begin() as session:
        await blocklists.import_domain_csv(session, "noisy.example\n", name=url, by=None, apply=True)
    listed = await (await client.get(path, headers=headers)).json()
    assert [s["url"] for s in listed["subscriptions"]] == [url]
    response = await client.delete(path, params={"url": url}, headers=headers)
    assert response.status == 204
    assert (await (await client.get(path, headers=headers)).json()) == {"subscriptions": []}
    async with world.node.sessions() as session:
        assert await session.scalar(select(DomainBlock.domain)) is None
        actions = set(await session.scalars(select(AuditEntry.action).where(AuditEntry.channel == "api")))
    assert {"blocklist.subscribe", "blocklist.unsubscribe"} <= actions
    response = await client.delete(path, params={"url": url}, headers=headers)
    assert response.status == 404 and response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://lists.example/x"},
        {"url": "https://lists.example/x", "refreshIntervalS": 60},
        {"url": "https://lists.example/x", "kind": "other"},
        {"url": "https://lists.example/x", "extra": 1},
        {},
    ],
)
async def test_the_api_refuses_bad_subscriptions_with_a_problem(world: World, body: dict[str, Any]) -> None:
    headers = await _admin_token(world)
    before = await world.counts()
    response = await world.node.client.post("/api/admin/blocklist-subscriptions", json=body, headers=headers)
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize(("node_admin", "scope"), [(False, "admin"), (True, "write")])
async def test_block_list_subscriptions_are_for_node_admins_with_an_admin_token(
    world: World, node_admin: bool, scope: str
) -> None:
    headers = await _admin_token(world, node_admin=node_admin, scope=scope)
    path = "/api/admin/blocklist-subscriptions"
    before = await world.counts()
    response = await world.node.client.post(path, json={"url": "https://lists.example/x"}, headers=headers)
    assert response.status == 403 and response.content_type == "application/problem+json"
    assert (await world.node.client.get(path, headers=headers)).status == 403
    assert changed(before, await world.counts()) == {}
    assert (await world.node.client.get(path)).status == 401


async def test_rejecting_media_purges_what_is_stored_and_what_comes_again(world: World) -> None:
    # Given mallory's note with an attachment, and mallory's stored actor document with an avatar
    image = {"type": "Image", "mediaType": "image/png", "url": "https://evil.example/media/a.png"}
    first = note(world.mallory, to=["https://www.w3.org/ns/activitystreams#Public", world.group])
    first["attachment"] = [image]
    sent = create(world.mallory, first)
    assert (await world.send(GROUP_INBOX, sent, world.mallory)).status == 202
    await assert_stored_and_processed_once(world, sent["id"])
    ours = await _stored_note(world, world.alice)
    async with world.node.sessions.begin() as session:
        mallory = await session.scalar(select(Actor).where(Actor.iri == world.mallory.iri))
        assert mallory is not None and isinstance(mallory.document, dict)
        mallory.document = {**mallory.document, "icon": image}
        stored = await session.scalar(select(RemoteObject).where(RemoteObject.iri == first["id"]))
        assert stored is not None and stored.document["attachment"]
    # When evil.example gets reject_media (silenced, still federating)
    await _block_domain(world, "evil.example", severity="silence", reject_media=True)
    # Then the stored attachment and avatar are gone, alice's note is untouched, and the audit counts them
    async with world.node.sessions() as session:
        stored = await session.scalar(select(RemoteObject).where(RemoteObject.iri == first["id"]))
        mallory = await session.scalar(select(Actor).where(Actor.iri == world.mallory.iri))
        kept = await session.scalar(select(RemoteObject).where(RemoteObject.iri == ours))
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "domain.block"))
    assert stored is not None and "attachment" not in stored.document
    assert mallory is not None and "icon" not in (mallory.document or {})
    assert kept is not None and kept.document["content"]
    assert entry is not None and entry.detail["media_purged"] == 2
    # and an edit that brings the attachment again does not store it
    edited = {**first, "content": "<p>Modifié</p>", "updated": "2025-03-02T12:00:00Z"}
    update = activity("Update", world.mallory, edited, to=first["to"])
    assert (await world.send(GROUP_INBOX, update, world.mallory)).status == 202
    await settle(world.node)
    async with world.node.sessions() as session:
        stored = await session.scalar(select(RemoteObject).where(RemoteObject.iri == first["id"]))
    assert stored is not None and "Modifié" in stored.document["content"]
    assert "attachment" not in stored.document
    # and changing the block again without turning media off and on purges nothing more
    await _block_domain(world, "evil.example", severity="silence", reject_media=True, public_comment="x")
    async with world.node.sessions() as session:
        details = [
            e.detail
            for e in await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "domain.block.update")
            )
        ]
    assert details and details[-1]["media_purged"] == 0


async def _answers(world: World, kind: str, by: str) -> int:
    """``kind`` activities (Accept, Reject) ``by`` published."""
    async with world.node.sessions() as session:
        found = await session.scalars(
            select(Activity.id)
            .join(Actor, Actor.id == Activity.actor_id)
            .where(Activity.type == kind, Actor.iri == by)
        )
        return len(list(found))


async def test_a_follow_from_a_silenced_domain_waits_for_the_member_or_an_admin(world: World) -> None:
    """Decision 88: a Follow from a silenced domain is held (no Accept) until the member followed,
    or an admin of the association followed, approves it (Accept) or refuses it (Reject)."""
    api = Api(world.node)
    await world.node.add_member("ana", "collectif", role="admin")
    await world.node.add_member("mia", "collectif")
    ana, mia = await world.node.token("ana"), await world.node.token("mia")
    mia_iri = world.node.uris.person("mia")
    await _block_domain(world, "evil.example", severity="silence")
    for target, inbox in ((world.group, GROUP_INBOX), (mia_iri, "/users/mia/inbox")):
        follow = activity("Follow", world.mallory, target)
        assert (await world.send(inbox, follow, world.mallory)).status == 202
        await assert_stored_and_processed_once(world, follow["id"])
    # alice's domain is not silenced: accepted at once, as before
    assert (
        await world.send(GROUP_INBOX, activity("Follow", world.alice, world.group), world.alice)
    ).status == 202
    await settle(world.node)
    assert await follow_state(world.node, world.alice.iri, world.group) == "accepted"
    for target in (world.group, mia_iri):
        assert await follow_state(world.node, world.mallory.iri, target) == "pending"
        assert await _answers(world, "Accept", target) == (1 if target == world.group else 0)  # alice's only
    # the association's requests: to its admins only
    associations = "/api/associations/collectif/follow-requests"
    assert (await api.call("GET", associations, token=mia))[0] == 403
    status, page, _ = await api.call("GET", associations, token=ana)
    assert status == 200 and [r["follower"] for r in page["items"]] == [world.mallory.iri]
    decision = {"follower": world.mallory.iri, "decision": "approve"}
    status, answer, _ = await api.call("POST", associations, token=ana, body=decision)
    assert (status, answer["state"]) == (200, "accepted")
    assert await follow_state(world.node, world.mallory.iri, world.group) == "accepted"
    assert await _answers(world, "Accept", world.group) == 2
    assert (await api.call("POST", associations, token=ana, body=decision))[0] == 404  # answered already
    # the member's: to the member only, who refuses (Reject, the follow gone)
    members = "/api/users/mia/follow-requests"
    assert (await api.call("GET", members, token=ana))[0] == 403
    status, page, _ = await api.call("GET", members, token=mia)
    assert status == 200 and [r["follower"] for r in page["items"]] == [world.mallory.iri]
    refusal = {"follower": world.mallory.iri, "decision": "refuse"}
    status, answer, _ = await api.call("POST", members, token=mia, body=refusal)
    assert (status, answer["state"]) == (200, "refused")
    assert await follow_state(world.node, world.mallory.iri, mia_iri) is None
    assert (await _answers(world, "Reject", mia_iri), await _answers(world, "Accept", mia_iri)) == (1, 0)
    await settle(world.node)
    assert len(posts_to(world.peers, "evil.example")) == 2  # the Accept and the Reject, nothing more
