"""The security rig: a real node, fake peers on 127.0.0.1 that it reaches by name, and a cast.

``world`` (a fixture, registered for the whole suite by ``tests/conftest.py``) is a node with the
association "collectif" and three remote actors whose documents fake peers really serve with the
fixed keys of ``tests/fixtures/keys``: alice and bob on ``peer.example``, mallory on
``evil.example``. Requests to the node are really signed (draft-cavage or RFC 9421, at an
injectable time, :class:`~tests.support.signed_inbox.InboxSender`). The oracles: the row count of
every table (:meth:`World.counts`: no inbox row, no job, no delivery, no object after a
refusal) and :class:`HandlerSpy`, which records every inbox handler the worker runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from federation.ports import Transport
from federation.transport import AiohttpTransport
from federation.types import Iri, JsonObject
from server.db.models import Actor, Follow, InboxActivity, RemoteObject
from server.services.actors.signing import actor_key_pair, instance_key_pair
from server.services.inbox import handlers as inbox_handlers
from tests.support.fake_peers import peer_transport
from tests.support.nodes import Node, running_node
from tests.support.signed_inbox import (
    AS_CONTEXT,
    InboxSender,
    RemoteAccount,
    Reply,
    StallingPeers,
    accept_deliveries,
    process_jobs,
    processed,
    remote_account,
    settle,
)

ServerFactory = Callable[..., Awaitable[TestServer]]
NodeStarter = Callable[..., AbstractAsyncContextManager[Node]]

SHARED = "/inbox"
GROUP_INBOX = "/groups/collectif/inbox"
OTHER_GROUP_INBOX = "/groups/voisins/inbox"
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Fixtures: fake peers, a node that reaches them by name, and the cast
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def peers(aiohttp_server: ServerFactory) -> StallingPeers:
    fake = StallingPeers()
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as outbound:
        yield outbound


@pytest.fixture
def start_node(tmp_path: Path, database_url: str, transport: AiohttpTransport) -> NodeStarter:
    """``async with start_node(**settings) as node``: a node whose transport reaches the fake peers."""

    def start(*, outbound: Transport | None = None, **overrides: Any) -> AbstractAsyncContextManager[Node]:
        return running_node(tmp_path / "node", database_url, transport=outbound or transport, **overrides)

    return start


@dataclass
class World:
    """A node with an association (collectif), and three remote actors."""

    node: Node
    peers: StallingPeers
    sender: InboxSender
    alice: RemoteAccount
    bob: RemoteAccount
    mallory: RemoteAccount
    group: Iri

    async def counts(self) -> dict[str, int]:
        return await self.node.row_counts()

    async def send(self, target: str, activity: JsonObject, who: RemoteAccount, **kwargs: Any) -> Reply:
        return await self.sender.send(target, activity, who.key, **kwargs)


async def given_world(
    node: Node, peers: StallingPeers, *, warm: tuple[str, ...] = ("alice", "bob", "mallory")
) -> World:
    """Set the scene; the keys of ``warm`` actors are fetched now, as for peers we already know,
    so that a later refusal must leave every table exactly as it was."""
    group = Iri(await node.create_association("collectif", "Collectif"))
    cast = {
        "alice": remote_account(peers, "peer.example", "alice", "rsa-alice.pem"),
        "bob": remote_account(peers, "peer.example", "bob", "rsa-bob.pem"),
        "mallory": remote_account(peers, "evil.example", "mallory", "rsa-mallory.pem"),
    }
    accept_deliveries(*cast.values())
    # The fake peers verify what the node signs: its Application actor (fetches), its groups (deliveries).
    peers.trust(await instance_key_pair(node.fed.node))
    async with node.sessions() as session:
        row = await session.scalar(select(Actor).where(Actor.iri == group))
    assert row is not None
    peers.trust(await actor_key_pair(node.fed.node, row))
    await asyncio.gather(*(node.fed.keys.resolve(cast[name].key_id) for name in warm))
    await settle(node)
    peers.hits.clear()
    return World(node, peers, InboxSender(node), cast["alice"], cast["bob"], cast["mallory"], group)


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        yield await given_world(node, peers)


# ---------------------------------------------------------------------------------------------
# Payloads (shaped like Mastodon's)
# ---------------------------------------------------------------------------------------------


def note(
    author: RemoteAccount, *, to: list[str], content: str = "<p>Réunion jeudi</p>", **extra: Any
) -> JsonObject:
    doc: JsonObject = {
        "id": author.new_id("notes"),
        "type": "Note",
        "attributedTo": author.iri,
        "content": content,
        "to": to,
        "published": "2025-03-01T12:00:00Z",
    }
    doc.update(extra)
    return doc


def activity(kind: str, actor: RemoteAccount, obj: Any, **extra: Any) -> JsonObject:
    doc: JsonObject = {
        "@context": AS_CONTEXT,
        "id": actor.new_id(),
        "type": kind,
        "actor": actor.iri,
        "object": obj,
    }
    doc.update(extra)
    return doc


def create(author: RemoteAccount, obj: JsonObject) -> JsonObject:
    return activity("Create", author, obj, to=obj.get("to", []))


async def object_row(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def inbox_rows(node: Node, iri: str) -> int:
    return int(
        await node.scalar(select(func.count()).select_from(InboxActivity).where(InboxActivity.iri == iri))
    )


async def follow_state(node: Node, follower: str, followed: str) -> str | None:
    async with node.sessions() as session:
        ids = dict(
            (r[0], r[1])
            for r in await session.execute(
                select(Actor.iri, Actor.id).where(Actor.iri.in_((follower, followed)))
            )
        )
        if len(ids) < 2:
            return None
        return await session.scalar(
            select(Follow.state).where(
                Follow.follower_id == ids[follower], Follow.followed_id == ids[followed]
            )
        )


def assert_refused(reply: Reply, status: int, code: str | None = None) -> None:
    """A problem+json answer with ``status`` (and the stable ``code`` when given)."""
    assert reply.status == status, reply
    assert reply.is_problem, reply
    if code is not None:
        assert reply.code == code, reply


async def assert_stored_and_processed_once(world: World, activity_iri: str) -> None:
    assert await processed(world.node, activity_iri) == "processed"
    assert await inbox_rows(world.node, activity_iri) == 1
    assert await process_jobs(world.node, activity_iri) == [("done", 1)]


# ---------------------------------------------------------------------------------------------
# The handler spy: which inbox handlers ran
# ---------------------------------------------------------------------------------------------


@dataclass
class HandlerSpy:
    """Wraps every handler of the node's inbox router; ``calls`` lists ``(type, activity id)``."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def ran_for(self, activity_iri: str) -> list[str]:
        return [kind for kind, iri in self.calls if iri == activity_iri]


@pytest.fixture
def handler_spy(monkeypatch: pytest.MonkeyPatch) -> HandlerSpy:
    """Record each dispatch to an inbox handler (the handler still runs)."""
    spy = HandlerSpy()
    wrapped: dict[type[Any], Any] = {}
    for kind, handler in inbox_handlers.router._handlers.items():

        async def recording(ctx: Any, act: Any, inbound: Any, _h: Any = handler) -> None:
            spy.calls.append((type(act).__name__, str(act.id)))
            await _h(ctx, act, inbound)

        wrapped[kind] = recording
    monkeypatch.setattr(inbox_handlers.router, "_handlers", wrapped)
    return spy
