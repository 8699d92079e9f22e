"""What the inbox lane no longer does for an activity its own process accepted (decision 102).

The inbox writer hands the activities it stored, as :func:`federation.inbox.receive` verified
them, to the inbox lane of the same process: the lane takes them instead of parsing their rows
again, still claims their jobs and still skips a row that is no longer queued; whatever was not
handed over is rebuilt from its row as before. A ``Create`` nobody here follows or is addressed
by is dropped on the storing facts the lane read before its run, without a session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from federation.inbox import InboundActivity, InboxRouter
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import AS_PUBLIC, Iri
from federation.vocab.activities import Activity, Create
from federation.vocab.parse import parse_activity
from server.appkeys import INBOX_WRITER
from server.db.models import Actor, Follow, InboxActivity, RemoteObject
from server.db.queries import actors as actor_queries
from server.db.queries import bare
from server.db.queries import inbox as inbox_queries
from server.jobs import tasks
from server.jobs.registry import JobRegistry
from server.jobs.tasks import default_registry
from server.jobs.worker import Worker
from server.services.content import remote
from server.services.federation import Federation
from server.services.inbox import process
from server.services.inbox.verified import KEPT_FOR_AT_MOST_S, VerifiedActivities
from tests.support.nodes import Node, running_node, wait_until

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _inbound(host: str, user: str, n: int) -> InboundActivity:
    actor = f"https://{host}/users/{user}"
    document = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor}/activities/{n}",
        "type": "Create",
        "actor": actor,
        "to": [AS_PUBLIC],
        "object": {
            "id": f"{actor}/notes/{n}",
            "type": "Note",
            "attributedTo": actor,
            "to": [AS_PUBLIC],
            "content": f"<p>{n}</p>",
        },
    }
    signer = VerifiedSigner(Iri(f"{actor}#main-key"), Iri(actor), KeyAlgorithm.RSA_V1_5_SHA256, "cavage")
    return InboundActivity(
        activity=parse_activity(document),
        signer=signer,
        document=document,
        received_at=datetime.now(UTC),
    )


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """A node without its in-process worker: each test builds the lane when it wants it."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _drain(node: Node, registry: JobRegistry, ids: list[int]) -> None:
    worker = Worker(node.fed.node, registry, concurrency=8, poll_interval_s=0.05, shutdown_timeout_s=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def finished() -> bool:
        async with node.sessions() as session:
            rows = await session.execute(select(InboxActivity.state).where(InboxActivity.id.in_(ids)))
            return all(state != "queued" for (state,) in rows.all())

    try:
        await wait_until(finished, what="the stored activities processed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_kept_until_taken_bounded_and_closed_until_opened() -> None:
    now = [0.0]
    kept = VerifiedActivities(clock=lambda: now[0])
    first, second, third = (_inbound("a.example", "ann", n) for n in range(3))
    # Closed: nothing is kept (a node whose worker runs elsewhere)
    kept.keep(1, first)
    assert kept.take(1) is None
    # Open: kept until taken, once
    kept.open(2)
    kept.keep(1, first)
    kept.keep(2, second)
    assert kept.take(2) is second and kept.take(2) is None
    # Full of recent ones: the newest is not kept (the lane takes the oldest first)
    now[0] = KEPT_FOR_AT_MOST_S / 2
    kept.keep(2, second)
    kept.keep(3, third)
    assert len(kept) == 2 and kept.take(3) is None
    # One kept too long (claimed by another process, or waiting for a retry) makes room
    now[0] = KEPT_FOR_AT_MOST_S + 1
    kept.keep(3, third)
    assert kept.take(1) is None and kept.take(3) is third and kept.take(2) is second


async def test_the_lane_takes_what_its_writer_verified_instead_of_parsing_the_row_again(
    quiet_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[InboundActivity] = []
    router: InboxRouter[Federation] = InboxRouter()

    @router.on(Create)
    async def on_create(fed: Federation, activity: Activity, inbound: InboundActivity) -> None:
        seen.append(inbound)

    monkeypatch.setattr(tasks, "router", router)
    restored: list[str] = []
    original_restore = process.restore

    def restore(document: Any, **kwargs: Any) -> Any:
        restored.append(document["id"])
        return original_restore(document, **kwargs)

    monkeypatch.setattr(process, "restore", restore)
    writer = quiet_node.client.server.app[INBOX_WRITER]
    # Given one activity stored before this process had an inbox lane, then the lane built (as
    # serve builds its worker) and three activities stored by the writer
    before = _inbound("a.example", "ann", 0)
    before_id = await writer.submit(before, recipient_id=None)
    registry = default_registry(quiet_node.fed)
    handed = [_inbound("a.example", "ann", n) for n in range(1, 4)]
    ids = list(await asyncio.gather(*(writer.submit(i, recipient_id=None) for i in handed)))
    assert before_id is not None and all(isinstance(i, int) for i in ids)
    # When the lane processes them
    await _drain(quiet_node, registry, [before_id, *ids])
    # Then the three ran as they were verified, not parsed again; the first was rebuilt from its row
    assert restored == [before.document["id"]]
    assert len(seen) == 4
    assert all(any(i is h for i in seen) for h in handed)
    assert not any(i is before for i in seen)
    assert len(quiet_node.fed.verified) == 0


async def test_a_handed_over_activity_whose_row_is_no_longer_queued_is_not_run(
    quiet_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    router: InboxRouter[Federation] = InboxRouter()

    @router.on(Create)
    async def on_create(fed: Federation, activity: Activity, inbound: InboundActivity) -> None:
        ran.append(activity.id)

    monkeypatch.setattr(tasks, "router", router)
    registry = default_registry(quiet_node.fed)
    writer = quiet_node.client.server.app[INBOX_WRITER]
    done, pending = _inbound("a.example", "ann", 1), _inbound("a.example", "ann", 2)
    done_id = await writer.submit(done, recipient_id=None)
    pending_id = await writer.submit(pending, recipient_id=None)
    assert done_id is not None and pending_id is not None
    # Given a row another run processed meanwhile (its job still queued here)
    async with quiet_node.sessions.begin() as session:
        await inbox_queries.mark_processed(session, [(done_id, "processed")], now=NOW)
    # When the lane runs, only the one still queued runs
    await _drain(quiet_node, registry, [done_id, pending_id])
    assert ran == [pending.activity.id]


async def test_a_create_nobody_here_wants_is_dropped_on_facts_read_before_its_run(
    quiet_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two known authors, one followed by a local actor
    async with quiet_node.sessions.begin() as session:
        local = await session.scalar(select(Actor).where(Actor.local.is_(True)))
        assert local is not None
        authors = {
            name: Actor(
                iri=f"https://{host}/users/{name}",
                local=False,
                type="Person",
                handle=name,
                host=host,
                created_at=NOW,
                updated_at=NOW,
                fetched_at=datetime.now(UTC),  # fresh: not fetched again
            )
            for name, host in (("ann", "followed.example"), ("dan", "plain.example"))
        }
        session.add_all(authors.values())
        await session.flush()
        session.add(
            Follow(follower_id=local.id, followed_id=authors["ann"].id, state="accepted", created_at=NOW)
        )
    stored: list[str] = []
    original_store = remote.store_object_in

    async def store_object_in(session: Any, fed: Any, content: Any, *args: Any, **kwargs: Any) -> Any:
        stored.append(content.id)
        return await original_store(session, fed, content, *args, **kwargs)

    monkeypatch.setattr(remote, "store_object_in", store_object_in)
    registry = default_registry(quiet_node.fed)
    writer = quiet_node.client.server.app[INBOX_WRITER]
    kept, dropped = _inbound("followed.example", "ann", 1), _inbound("plain.example", "dan", 1)
    ids = [await writer.submit(kept, recipient_id=None), await writer.submit(dropped, recipient_id=None)]
    assert all(isinstance(i, int) for i in ids)
    # When the lane processes a Create of each, with the production handlers
    await _drain(quiet_node, registry, [i for i in ids if i is not None])
    # Then the followed author's note is stored; the other one was dropped before any session
    # was opened for storing it
    assert stored == ["https://followed.example/users/ann/notes/1"]
    async with quiet_node.sessions() as session:
        held = (await session.scalars(select(RemoteObject.iri).where(RemoteObject.local.is_(False)))).all()
        states = dict((await session.execute(select(InboxActivity.id, InboxActivity.state))).all())
    assert held == ["https://followed.example/users/ann/notes/1"]
    assert {states[i] for i in ids if i is not None} == {"processed"}


async def test_senders_read_through_the_bare_driver_are_the_orm_rows_detached(quiet_node: Node) -> None:
    """The lane's senders (``detached_by_iris``) are what ``by_iris`` gives once its session is
    closed: the same values, detached, so that a handler adding one to its session updates it."""
    async with quiet_node.sessions.begin() as session:
        session.add(
            Actor(
                iri="https://a.example/users/ann",
                local=False,
                type="Person",
                handle="ann",
                host="a.example",
                document={"big": 10**15, "name": "Ann"},
                created_at=NOW,
                updated_at=NOW,
                fetched_at=NOW,
            )
        )
    iris = ["https://a.example/users/ann", "https://a.example/users/nobody"]
    async with quiet_node.sessions() as session:
        orm = await actor_queries.by_iris(session, iris)
    async with quiet_node.sessions() as session:
        built = await actor_queries.detached_by_iris(session, iris)
    assert list(built) == list(orm) == ["https://a.example/users/ann"]
    ann, expected = built["https://a.example/users/ann"], orm["https://a.example/users/ann"]
    columns = [c.key for c in Actor.__table__.columns]
    assert [getattr(ann, c) for c in columns] == [getattr(expected, c) for c in columns]
    assert inspect(ann).detached
    async with quiet_node.sessions.begin() as session:
        session.add(ann)
        ann.handle = "ann2"
    async with quiet_node.sessions() as session:
        handles = (await session.scalars(select(Actor.handle).where(Actor.host == "a.example"))).all()
    assert handles == ["ann2"]


async def test_a_list_of_values_is_one_statement_text_on_postgresql(quiet_node: Node) -> None:
    """``bare.any_of``: on PostgreSQL the lane's statements over a batch's ids keep one text
    whatever the batch's size (asyncpg prepares each text once); SQLite lists the values."""
    async with quiet_node.sessions() as session:
        application = await session.scalar(select(Actor.id).where(Actor.local.is_(True)))
        one, _ = bare.any_of(session, "id", [application])
        three, params = bare.any_of(session, "id", [application, -1, -2])
        if bare.on_postgresql(session):
            assert (one, three, params) == ("id = ANY(?)", "id = ANY(?)", [[application, -1, -2]])
        else:
            assert (three, params) == ("id IN (?, ?, ?)", [application, -1, -2])
        assert await bare.fetch(session, f"SELECT id FROM actors WHERE {three}", params) == [(application,)]
