"""The visibility matrix: every visibility level, every kind of reader, every read channel.

One association publishes one object per level (public, unlisted, followers, members, direct to
one member), each carrying a unique marker. Each reader then reads through every channel — the
object as JSON-LD and as HTML (with its meta tags), the association's outbox and its count, the
object's thread and replies collections, the feeds, the JSON API's list and object routes, the
association's HTML page — and must see exactly the levels the single read filter allows, with
a non-readable object answering exactly like a missing one. Deliveries are checked too:
members-only content goes only to members' personal inboxes, never to a shared inbox.

Readers: anonymous; a local account that is not a member; a remote actor that is not a member
(signed fetch); an institution following the association read-only (signed fetch); a remote
member (joined with ``Join``, signed fetch); a local member (the direct message's addressee);
an admin of the association. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update

from federation.http import Headers, OutgoingRequest
from federation.signatures import sign_request
from federation.types import utc_now
from server.db.models import Activity, Actor, Delivery
from server.http.cache import PAGE_CACHE
from server.services.membership import members as membership
from tests.support.signed_inbox import RemoteAccount, StallingPeers, processed, settle
from tests.support.world import (
    GROUP_INBOX,
    NodeStarter,
    World,
    activity,
    given_world,
)

AP = "application/activity+json"
LEVELS = ("public", "unlisted", "followers", "members", "direct")
ALL = frozenset(LEVELS)
OPEN = frozenset({"public", "unlisted"})


@dataclass(frozen=True)
class Reader:
    name: str
    sees: frozenset[str]
    token: str | None = None
    remote: RemoteAccount | None = None


@dataclass
class Scene:
    world: World
    objects: dict[str, str]  # level -> object IRI
    readers: list[Reader]

    @property
    def node(self) -> Any:
        return self.world.node


@pytest.fixture
async def scene(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[Scene]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("adele", "collectif", role="admin")
        mia_iri = await node.add_member("mia", "collectif", role="member")
        await node.create_association("voisins", "Voisins")
        await node.add_member("olga", "voisins", role="member")
        # alice (peer.example) joins the association (open for this scene); bob follows it read-only
        async with node.sessions.begin() as session:
            await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy="open"))
        join = activity("Join", world.alice, world.group)
        assert (await world.send(GROUP_INBOX, join, world.alice)).status == 202
        follow = activity("Follow", world.bob, world.group)
        assert (await world.send(GROUP_INBOX, follow, world.bob)).status == 202
        for sent in (join, follow):
            assert await processed(node, sent["id"]) == "processed"
        adele = await node.token("adele")
        objects: dict[str, str] = {}
        for level in LEVELS:
            body: dict[str, Any] = {
                "type": "Note",
                "content": f"<p>MARK-{level} du collectif</p>",
                "summary": f"Résumé MARK-{level}",
                "visibility": level,
            }
            if level == "direct":
                body["to"] = [mia_iri]
            objects[level] = (await node.post_outbox("/groups/collectif", adele, body))["object"]
        await settle(node)
        readers = [
            Reader("anonymous", OPEN),
            Reader("local non-member", OPEN, token=await node.token("olga")),
            Reader("remote non-member", OPEN, remote=world.mallory),
            Reader("institution follower", OPEN | {"followers"}, remote=world.bob),
            Reader("remote member", OPEN | {"followers", "members"}, remote=world.alice),
            Reader("local member", ALL, token=await node.token("mia")),
            Reader("admin", ALL, token=adele),
        ]
        yield Scene(world, objects, readers)


async def _get(scene: Scene, reader: Reader, path_or_iri: str, accept: str = AP) -> tuple[int, str]:
    node = scene.node
    node.client.server.app[PAGE_CACHE].clear()
    path = path_or_iri.removeprefix(node.uris.origin)
    headers: dict[str, str] = {"Accept": accept}
    if reader.token is not None:
        headers["Authorization"] = f"Bearer {reader.token}"
    if reader.remote is not None:
        request = OutgoingRequest("GET", node.uris.origin + path, Headers({"Accept": accept}))
        signed = sign_request(request, reader.remote.key, now=utc_now(), spec="cavage")
        headers = {name: signed.headers[name] for name in signed.headers}
    response = await node.client.get(path, headers=headers)
    return response.status, await response.text()


def _marks(text: str) -> set[str]:
    return set(re.findall(r"MARK-(\w+)", text))


def _missing_body(text: str) -> dict[str, Any]:
    import json

    body = json.loads(text)
    body.pop("instance", None)
    return body


async def test_every_reader_sees_exactly_what_the_read_filter_allows_on_every_channel(scene: Scene) -> None:
    node = scene.node
    missing_status, missing_text = await _get(scene, Reader("anonymous", OPEN), f"/objects/{'0' * 32}")
    assert missing_status == 404
    for reader in scene.readers:
        for level, iri in scene.objects.items():
            readable = level in reader.sees
            where = f"{reader.name} reading {level}"
            # the object, as JSON-LD and as HTML with its meta tags
            status, text = await _get(scene, reader, iri)
            assert status == (200 if readable else 404), where
            if not readable:
                assert _missing_body(text) == _missing_body(missing_text), where
            status, page = await _get(scene, reader, iri, accept="text/html")
            assert status == (200 if readable else 404), where
            assert (f"MARK-{level}" in page) is readable, where
            # its thread and replies collections
            for collection in ("context", "replies"):
                status, _ = await _get(scene, reader, f"{iri}/{collection}")
                assert status == (200 if readable else 404), f"{where}: {collection}"
            # the JSON API's object route (accounts and anonymous)
            if reader.remote is None:
                status, _ = await _get(scene, reader, f"/api/objects?iri={iri}", accept="application/json")
                assert status == (200 if readable else 404), f"{where}: API"
        # the outbox, its count and the API's list: a direct message is listed to the association's
        # admins only; its addressees read it by its IRI (it reached their inbox)
        listed_levels = reader.sees if reader.name == "admin" else reader.sees - {"direct"}
        _, first = await _get(scene, reader, "/groups/collectif/outbox?page=true")
        assert _marks(first) == set(listed_levels), reader.name
        _, root = await _get(scene, reader, "/groups/collectif/outbox")
        total = int(re.findall(r'"totalItems":(\d+)', root.replace(" ", ""))[0])
        # (the admin also counts the association's direct answers to Join and Follow)
        assert total == len(listed_levels) if reader.name != "admin" else total >= 5, reader.name
        if reader.remote is None:
            _, listed = await _get(
                scene, reader, "/api/associations/collectif/posts", accept="application/json"
            )
            assert _marks(listed) == set(listed_levels), reader.name
        # feeds ignore credentials: public only, for everyone
        for fmt in ("atom", "rss", "json"):
            _, feed = await _get(scene, reader, f"/groups/collectif/feed.{fmt}", accept="*/*")
            assert _marks(feed) == {"public"}, f"{reader.name}: {fmt}"
        # the association's HTML page shows no content at all
        _, page = await _get(scene, reader, "/groups/collectif", accept="text/html")
        assert _marks(page) == set(), reader.name
    assert node is not None


async def test_deliveries_follow_the_same_rule(scene: Scene) -> None:
    """Followers-level content goes to the follower's shared inbox; members-only content only to
    the member's personal inbox (never a shared inbox, which could serve non-members on that
    host); a direct message to a local member leaves the node not at all."""
    node = scene.node
    alice, bob = scene.world.alice, scene.world.bob
    async with node.sessions() as session:
        rows = (
            await session.execute(
                select(Activity.object_iri, Delivery.inbox_iri).join(
                    Delivery, Delivery.activity_id == Activity.id
                )
            )
        ).all()
    inboxes: Mapping[str, set[str]] = {
        level: {inbox for obj, inbox in rows if obj == iri} for level, iri in scene.objects.items()
    }
    shared = alice.iri_on_host("/inbox")
    for level in ("public", "unlisted", "followers"):
        assert inboxes[level] == {shared}, (level, inboxes[level])
    assert inboxes["members"] == {f"{alice.iri}/inbox"}, inboxes["members"]
    assert inboxes["direct"] == set()
    assert bob.host == alice.host  # the shared inbox would have reached bob, a non-member
    assert membership is not None
