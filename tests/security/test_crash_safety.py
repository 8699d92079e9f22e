"""Crash safety: ``kill -9`` the server and the worker at random points (security.md §3.4 items 1, 5, 6).

Real ``entraide serve`` and ``entraide worker`` processes are killed with SIGKILL at a point a
seeded ``random.Random`` picks: during inbox intake, during inbox processing, in the middle of
an alert's fan-out. After a restart nothing accepted is lost (every activity answered 202 is
stored and processed, every planned delivery ends delivered) and nothing is applied twice (one
inbox row, one object, one follow, one Accept, one delivery row per inbox; only requests that
were in flight at the kill may reach a peer twice). The remote actors live on fake peers on
127.0.0.1, which the real processes reach like any peer (private addresses allowed).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, unused_port
from sqlalchemy import func, select, update

from federation.types import AS_PUBLIC, utc_now
from server.db.models import (
    Activity,
    Actor,
    Delivery,
    Follow,
    InboxActivity,
    InboxItem,
    Job,
    RemoteObject,
)
from server.jobs.tasks import INBOX_LANE_WIDTH
from server.services.delivery.fanout import DELIVER, FANOUT
from server.services.inbox import handlers as inbox_handlers
from server.services.inbox import process as inbox_service
from server.services.inbox.process import PROCESS_INBOX
from tests.support.crash import (
    PacedPeers,
    Site,
    Tripwire,
    assert_sqlite_intact,
    expire_leases,
    open_site,
    sigkill,
    signed_post,
)
from tests.support.fake_peers import actor_document
from tests.support.nodes import Node, node_settings, running_node, wait_until
from tests.support.processes import ServiceProcess, service, wait_for_http, write_config
from tests.support.signed_inbox import (
    InboxSender,
    RemoteAccount,
    accept_deliveries,
    changed,
    fixed_key,
    remote_account,
)
from tests.support.world import GROUP_INBOX, activity, create, note

ServerFactory = Callable[..., Awaitable[TestServer]]
AP = {"Accept": "application/activity+json"}
HOST = "127.0.0.1"  # the fake peers' name: real processes resolve it without a test resolver


# --- givens -------------------------------------------------------------------------------------


async def _peers(aiohttp_server: ServerFactory, **kwargs: Any) -> PacedPeers:
    peers = PacedPeers(**kwargs)
    peers.server = await aiohttp_server(peers.app(), host=HOST)
    return peers


def _authors(peers: PacedPeers) -> list[RemoteAccount]:
    authors = [
        remote_account(peers, HOST, "alice", "rsa-alice.pem"),
        remote_account(peers, HOST, "bob", "rsa-bob.pem"),
    ]
    accept_deliveries(*authors)
    return authors


def _messages(
    authors: list[RemoteAccount], group: str, count: int
) -> list[tuple[dict[str, Any], RemoteAccount]]:
    """``count`` distinct Creates of notes addressed to ``group``, with who signs each."""
    out = []
    for i in range(count):
        author = authors[i % len(authors)]
        out.append((create(author, note(author, to=[group], content=f"<p>Message {i}</p>")), author))
    return out


def _while_alive(
    process: ServiceProcess, predicate: Callable[[], Awaitable[bool]]
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        if not process.alive:
            raise AssertionError(f"the process exited\n{process.log()}")
        return await predicate()

    return check


# --- oracles ------------------------------------------------------------------------------------


async def _scalar(db: Site | Node, stmt: Any) -> Any:
    return await db.scalar(stmt)


async def _count(db: Site | Node, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)))


async def _rows(db: Site | Node, stmt: Any) -> list[Any]:
    async with db.sessions() as session:
        return list((await session.execute(stmt)).all())


async def _inbox_jobs(db: Site | Node) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """Per stored activity IRI: its inbox row id and the (state, attempts) of its process_inbox jobs."""
    stored = {iri: row_id for iri, row_id in await _rows(db, select(InboxActivity.iri, InboxActivity.id))}
    jobs: dict[str, list[tuple[str, int]]] = {}
    for key, state, attempts in await _rows(
        db, select(Job.dedup_key, Job.state, Job.attempts).where(Job.kind == PROCESS_INBOX)
    ):
        jobs.setdefault(key, []).append((state, attempts))
    return {iri: (row_id, jobs.get(f"inbox:{row_id}", [])) for iri, row_id in stored.items()}


async def _due(db: Site | Node) -> int:
    now = utc_now()
    return await _count(db, Job, (Job.state == "running") | ((Job.state == "queued") & (Job.run_at <= now)))


async def _all_processed(db: Site | Node, total: int) -> bool:
    processed = await _count(db, InboxActivity, InboxActivity.state != "queued")
    return processed == total and await _due(db) == 0


async def _assert_inbox_items_unique(db: Site | Node) -> None:
    duplicates = await _rows(
        db,
        select(InboxItem.actor_id, InboxItem.inbox_activity_id)
        .group_by(InboxItem.actor_id, InboxItem.inbox_activity_id)
        .having(func.count() > 1),
    )
    assert duplicates == []


async def _assert_no_failed_job(db: Site | Node) -> None:
    failed = await _rows(db, select(Job.kind, Job.last_error).where(Job.state == "failed"))
    assert failed == []


async def _assert_each_processed_once(db: Site | Node, iris: list[str], *, max_attempts: int) -> None:
    """One inbox row per activity, processed, with exactly one process_inbox job, done."""
    inbox = await _inbox_jobs(db)
    assert sorted(inbox) == sorted(iris)
    for iri in iris:
        _, jobs = inbox[iri]
        assert len(jobs) == 1 and jobs[0][0] == "done" and 1 <= jobs[0][1] <= max_attempts, (iri, jobs)
    states = dict(await _rows(db, select(InboxActivity.iri, InboxActivity.state)))
    assert set(states.values()) == {"processed"}, states


async def _assert_objects_once(db: Site | Node, note_iris: list[str]) -> None:
    copies = dict(
        await _rows(
            db,
            select(RemoteObject.iri, func.count())
            .where(RemoteObject.iri.in_(note_iris))
            .group_by(RemoteObject.iri),
        )
    )
    assert copies == {iri: 1 for iri in note_iris}


# --- 1. the server killed during inbox intake ---------------------------------------------------


async def _send_until_killed(
    http: aiohttp.ClientSession,
    url: str,
    messages: list[tuple[dict[str, Any], RemoteAccount]],
    wire: Tripwire,
    *,
    in_flight: int,
) -> dict[str, int | str]:
    """POST every message, ``in_flight`` at a time, until the tripwire has fired; returns what
    each sent POST got (a status, or the name of the connection error)."""
    gate = asyncio.Semaphore(in_flight)
    answers: dict[str, int | str] = {}

    async def one(doc: dict[str, Any], author: RemoteAccount) -> None:
        async with gate:
            if wire.fired_at is not None:
                return  # never sent: the sender sees a dead server and will retry later
            try:
                status = await signed_post(http, url, doc, author.key)
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers[doc["id"]] = type(exc).__name__
                return
            answers[doc["id"]] = status
            if status == 202:
                wire.hit()

    await asyncio.gather(*(one(doc, author) for doc, author in messages))
    return answers


@pytest.mark.parametrize("seed", [14])
async def test_a_server_killed_during_intake_loses_no_accepted_activity_and_stores_none_twice(
    tmp_path: Path, database_url: str, aiohttp_server: ServerFactory, seed: int
) -> None:
    """Every activity answered 202 before ``kill -9`` is stored once, with its job, and processed once."""
    rng = random.Random(seed)
    total = 60
    peers = await _peers(aiohttp_server, post_delay_s=0.0)
    authors = _authors(peers)
    port = unused_port()
    settings = node_settings(tmp_path / "node", database_url, port=port, worker={"in_process": False})
    config = str(write_config(settings, tmp_path / "entraide.toml"))
    async with (
        open_site(settings) as site,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):
        # Given a node run as `entraide serve` (intake only: its jobs wait for a worker process)
        group = await site.create_association("collectif")
        messages = _messages(authors, group, total)
        url = f"{site.origin}{GROUP_INBOX}"

        # When a peer POSTs 60 signed activities, 6 at a time, and the server is killed
        # with SIGKILL right after the k-th 202 (k seeded) while others are in flight
        async with service(["serve", "--config", config], log_path=tmp_path / "serve-1.log") as server:
            await wait_for_http(f"{site.origin}/groups/collectif", process=server, headers=AP)
            wire = Tripwire(after=rng.randint(total // 6, total // 2), action=sigkill(server))
            answers = await _send_until_killed(http, url, messages, wire, in_flight=6)
            assert wire.fired_at is not None, server.log()
            await server.kill()
        accepted = [iri for iri, status in answers.items() if status == 202]
        assert len(accepted) >= wire.after
        assert all(status in (202,) or isinstance(status, str) for status in answers.values()), answers

        # Then, before any restart: every accepted activity is stored once with its job,
        # and no stored activity lacks its job (nothing half-stored)
        inbox = await _inbox_jobs(site)
        assert set(accepted) <= set(inbox)
        assert all(len(jobs) == 1 and jobs[0][0] == "queued" for _, jobs in inbox.values()), inbox
        assert_sqlite_intact(database_url)

        # When the server is back, the peer re-sends everything not answered 202 (a stored
        # activity whose 202 was lost is a duplicate: 202 again, not stored twice), and a
        # worker process runs until nothing is due
        async with (
            service(["serve", "--config", config], log_path=tmp_path / "serve-2.log") as server,
            service(["worker", "--config", config], log_path=tmp_path / "worker.log") as worker,
        ):
            await wait_for_http(f"{site.origin}/groups/collectif", process=server, headers=AP)
            for doc, author in messages:
                if answers.get(doc["id"]) != 202:
                    assert await signed_post(http, url, doc, author.key) == 202, server.log()
            await wait_until(
                _while_alive(worker, lambda: _all_processed(site, total)),
                what="every stored activity processed",
            )

        # Then each activity is stored once, processed once (one job, one attempt), one object each
        await _assert_each_processed_once(site, [doc["id"] for doc, _ in messages], max_attempts=1)
        await _assert_objects_once(site, [doc["object"]["id"] for doc, _ in messages])
        await _assert_inbox_items_unique(site)
        await _assert_no_failed_job(site)
    assert_sqlite_intact(database_url)


# --- 2. the worker killed during inbox processing -----------------------------------------------


@pytest.mark.parametrize("seed", [7])
async def test_a_worker_killed_during_inbox_processing_applies_each_activity_exactly_once(
    tmp_path: Path, database_url: str, aiohttp_server: ServerFactory, seed: int
) -> None:
    """After ``kill -9`` of the worker and a restart: one object, one follow, one Accept each."""
    rng = random.Random(seed)
    # Several times the inbox lane's width (32): the first worker is killed inside its first
    # claims, with a backlog left even on a fast database
    total = 4 * INBOX_LANE_WIDTH
    peers = await _peers(aiohttp_server, post_delay_s=0.0)
    authors = _authors(peers)
    async with running_node(
        tmp_path / "node", database_url, worker={"in_process": False, "concurrency": 2}
    ) as node:
        # Given 128 stored activities: two Follows of the association and 126 notes addressed
        # to it, in a seeded order, waiting for a worker process
        group = await node.create_association("collectif")
        follows = [(activity("Follow", author, group), author) for author in authors]
        creates = _messages(authors, group, total - len(follows))
        incoming = follows + creates
        rng.shuffle(incoming)
        sender = InboxSender(node)
        for doc, author in incoming:
            reply = await sender.send(GROUP_INBOX, doc, author.key)
            assert reply.status == 202, reply
        config = str(write_config(node.settings, tmp_path / "worker.toml"))

        # When a worker process is killed with SIGKILL once k activities are processed (k seeded,
        # plus a seeded delay: the kill may land inside a handler or between its commits)
        async with service(["worker", "--config", config], log_path=tmp_path / "worker-1.log") as first:
            k = rng.randint(3, INBOX_LANE_WIDTH)

            async def processed_k() -> bool:
                return await _count(node, Job, Job.kind == PROCESS_INBOX, Job.state == "done") >= k

            await wait_until(_while_alive(first, processed_k), interval_s=0.01, what=f"{k} jobs done")
            await asyncio.sleep(rng.uniform(0, 0.05))
            await first.kill()
        interrupted = await _count(node, Job, Job.state == "running")
        left = await _count(node, InboxActivity, InboxActivity.state == "queued")
        assert left > 0, f"killed too late: all {total} processed (k={k})"

        # and, its leases run out, a new worker finishes the work
        assert await expire_leases(node.sessions) == interrupted
        async with service(["worker", "--config", config], log_path=tmp_path / "worker-2.log") as second:
            await wait_until(
                _while_alive(second, lambda: _all_processed(node, total)), what="every activity processed"
            )

        # Then each activity was processed once to completion (a re-run at most for the
        # interrupted ones), its effect applied once:
        await _assert_each_processed_once(node, [doc["id"] for doc, _ in incoming], max_attempts=2)
        # one object per note,
        await _assert_objects_once(node, [doc["object"]["id"] for doc, _ in creates])
        # one accepted follow per Follow, answered by one Accept, delivered once,
        follow_rows = await _rows(node, select(Follow.follow_iri, Follow.state))
        assert sorted(follow_rows) == sorted((doc["id"], "accepted") for doc, _ in follows)
        accepts = await _rows(node, select(Activity.id, Activity.document).where(Activity.type == "Accept"))
        assert sorted(doc["object"]["id"] for _, doc in accepts) == sorted(doc["id"] for doc, _ in follows)
        deliveries = await _rows(
            node,
            select(Delivery.inbox_iri, Delivery.state).where(
                Delivery.activity_id.in_([i for i, _ in accepts])
            ),
        )
        assert sorted(deliveries) == sorted((f"{author.iri}/inbox", "delivered") for author in authors)
        # each filed once in the association's inbox, and no job failed
        await _assert_inbox_items_unique(node)
        await _assert_no_failed_job(node)
    assert_sqlite_intact(database_url)


# --- 3. the worker killed in the middle of a fan-out --------------------------------------------


ALERT = {
    "to": [AS_PUBLIC],
    "type": "Note",
    "entraideKind": "Alert",
    "name": "Pénurie de lévothyroxine",
    "content": "<p>Les pharmacies manquent de Levothyrox 50.</p>",
    "severity": "critical",
    "category": "shortage",
}


async def _followers(node: Node, peers: list[PacedPeers], group: str, per_host: int) -> list[str]:
    """``per_host`` remote followers of ``group`` on each fake peer; returns the inboxes to reach.

    The last peer's followers share a shared inbox (one delivery for all of them); the others
    have personal inboxes only.
    """
    iris: list[str] = []
    inboxes: set[str] = set()
    for index, peer in enumerate(peers):
        shared = index == len(peers) - 1
        for n in range(per_host):
            iri = peer.iri(HOST, f"/users/member{n}")
            key = fixed_key("rsa-alice.pem", f"{iri}#main-key", iri)
            extra: dict[str, Any] = {} if shared else {"endpoints": {}}
            doc = actor_document(iri, username=f"member{n}", keys=(key.public,), **extra)
            peer.serve_json(iri, doc)
            peer.serve_json(f"{iri}/inbox", {}, status=202)
            iris.append(iri)
            inboxes.add(doc["endpoints"]["sharedInbox"] if shared else doc["inbox"])
        if shared:
            peer.serve(HOST, "/inbox", b"", status=202, content_type=None)
    actors = await asyncio.gather(*(node.fed.actor(iri) for iri in iris))
    group_id = await node.scalar(select(Actor.id).where(Actor.iri == group))
    now = utc_now()
    async with node.sessions.begin() as session:
        for actor in actors:
            session.add(
                Follow(
                    follower_id=actor.id,
                    followed_id=group_id,
                    follow_iri=f"{actor.iri}#follows/collectif",
                    state="accepted",
                    created_at=now,
                    accepted_at=now,
                )
            )
    return sorted(inboxes)


@pytest.mark.parametrize("seed", [9])
async def test_a_worker_killed_mid_fan_out_delivers_to_every_inbox_and_plans_no_delivery_twice(
    tmp_path: Path, database_url: str, aiohttp_server: ServerFactory, seed: int
) -> None:
    """After ``kill -9`` mid fan-out: every inbox reached, one delivery row each, delivered once."""
    rng = random.Random(seed)
    wire = Tripwire(after=0)
    peers = [await _peers(aiohttp_server, post_delay_s=0.05, tripwire=wire) for _ in range(5)]
    async with running_node(
        tmp_path / "node", database_url, worker={"in_process": False, "concurrency": 4}
    ) as node:
        # Given an association followed by 50 remote actors on 5 hosts (41 inboxes: the
        # followers on the fifth host share one) and an admin who publishes
        group = await node.create_association("collectif")
        await node.add_member("admin", "collectif", role="admin")
        token = await node.token("admin")
        inboxes = await _followers(node, peers, group, per_host=10)
        config = str(write_config(node.settings, tmp_path / "worker.toml"))

        # When the admin publishes an alert and the worker process delivering it is killed
        # with SIGKILL when the k-th POST (k seeded) reaches a peer, before its answer
        async with service(["worker", "--config", config], log_path=tmp_path / "worker-1.log") as first:
            wire.after = rng.randint(1, len(inboxes) * 3 // 4)
            wire.action = sigkill(first)
            created = await node.post_outbox("/groups/collectif", token, ALERT)

            async def fired() -> bool:
                return wire.fired_at is not None

            await wait_until(fired, what="the k-th delivery POST")
            await first.kill()
        create_iri = created["id"]
        activity_id = await node.scalar(select(Activity.id).where(Activity.iri == create_iri))
        rows = await _rows(
            node, select(Delivery.id, Delivery.inbox_iri).where(Delivery.activity_id == activity_id)
        )
        inbox_of = {f"deliver:{row_id}": inbox for row_id, inbox in rows}
        running = await _rows(node, select(Job.dedup_key).where(Job.kind == DELIVER, Job.state == "running"))
        in_flight = {inbox_of[key] for (key,) in running}

        # and, its leases run out, a new worker takes over
        await expire_leases(node.sessions)

        async def all_delivered() -> bool:
            states = await _rows(node, select(Delivery.state).where(Delivery.activity_id == activity_id))
            return (
                len(states) == len(inboxes)
                and {s for (s,) in states} == {"delivered"}
                and await _due(node) == 0
            )

        async with service(["worker", "--config", config], log_path=tmp_path / "worker-2.log") as second:
            await wait_until(_while_alive(second, all_delivered), what="every delivery delivered")

        # Then the fan-out was planned once: one delivery row per inbox, each delivered, each
        # with one deliver job, done; the fan-out job done
        rows = await _rows(
            node,
            select(Delivery.id, Delivery.inbox_iri, Delivery.state).where(
                Delivery.activity_id == activity_id
            ),
        )
        assert sorted(inbox for _, inbox, _ in rows) == inboxes
        jobs = await _rows(node, select(Job.dedup_key, Job.state).where(Job.kind == DELIVER))
        assert sorted(jobs) == sorted((f"deliver:{row_id}", "done") for row_id, _, _ in rows)
        assert await _rows(node, select(Job.state).where(Job.kind == FANOUT)) == [("done",)]
        # and every inbox received the alert at least once; only requests in flight at the
        # kill were sent twice (their answer never reached the dead worker)
        per_inbox: dict[str, int] = {}
        for peer in peers:
            for (target, iri), count in peer.activities.items():
                if iri == create_iri:
                    per_inbox[f"http://{HOST}:{peer.port}{target}"] = count
        assert sorted(per_inbox) == inboxes
        twice = {inbox: n for inbox, n in per_inbox.items() if n > 1}
        assert set(twice) <= in_flight and all(n == 2 for n in twice.values()), (twice, in_flight)
        await _assert_no_failed_job(node)
    assert_sqlite_intact(database_url)


# --- 2b. the worst point, exactly: after the handler committed, before the row was marked --------


@pytest.mark.parametrize("kind", ["Follow", "Create"])
async def test_an_activity_re_run_after_its_handler_committed_is_not_applied_twice(
    tmp_path: Path, database_url: str, aiohttp_server: ServerFactory, kind: str
) -> None:
    """A crash between a handler's commit and ``processed``: the re-run changes nothing."""
    peers = await _peers(aiohttp_server, post_delay_s=0.0)
    alice, _ = _authors(peers)
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as node:
        group = await node.create_association("collectif")
        doc = activity("Follow", alice, group) if kind == "Follow" else create(alice, note(alice, to=[group]))
        assert (await InboxSender(node).send(GROUP_INBOX, doc, alice.key)).status == 202
        row_id = await node.scalar(select(InboxActivity.id).where(InboxActivity.iri == doc["id"]))
        # Given the activity processed once, then the worker killed before the row was marked
        # (its job's lease then expires and the job runs again)
        assert await inbox_service.process(node.fed, inbox_handlers.router, row_id) == "processed"
        before = await node.row_counts()
        async with node.sessions.begin() as session:
            await session.execute(
                update(InboxActivity).where(InboxActivity.id == row_id).values(state="queued")
            )
        # When it runs again
        assert await inbox_service.process(node.fed, inbox_handlers.router, row_id) == "processed"
        # Then nothing more was applied: no second Accept, delivery, object or inbox item
        assert changed(before, await node.row_counts()) == {}
