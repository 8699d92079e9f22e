"""Reliability between real nodes on loopback (docs/architecture.md, "The job queue" and
"Worker lanes"; docs/federation.md, "Outbox and delivery").

What a sender promises when its peers misbehave: a delivery to a peer that is down is retried
and arrives once the peer is back; a peer that stayed down longer than the retries catches up
from the sender's outbox; shared inboxes get one delivery per node; and a worker killed with
SIGKILL in the middle of deliveries loses nothing and makes the receiver store nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update

from federation import retry
from federation.retry import RetryPolicy
from federation.types import AS_PUBLIC, utc_now
from server.db.models import (
    Activity,
    Actor,
    Delivery,
    Follow,
    InboxActivity,
    InboxItem,
    Job,
    PeerHost,
    RemoteObject,
    SyncState,
)
from server.services.membership import following
from tests.support.cluster import InboxProbe, restartable_node
from tests.support.nodes import Node, running_node, wait_until
from tests.support.processes import ServiceProcess, service, write_config

NewDatabase = Callable[[int], Awaitable[str]]

# One retry every 0.75 s. Fast enough to watch a few attempts, slow enough that B is back
# before the fifth failure, which would open A's circuit breaker for B's host for 30 minutes
# (security.md §3.4 item 3) and hold the delivery far beyond this test. FAST would get there
# within a tenth of a second.
STEADY = RetryPolicy(
    base=timedelta(seconds=0.75),
    unit=timedelta(0),
    jitter=0.0,
    max_delay=timedelta(seconds=0.75),
    min_retry_after=timedelta(0),
    max_retry_after=timedelta(seconds=0.75),
)


# --- givens -------------------------------------------------------------------------------------


async def _association_with_admin(node: Node, handle: str) -> tuple[str, str]:
    """An association and a write token of its admin (who publishes through C2S)."""
    iri = await node.create_association(handle)
    await node.add_member(f"{handle}-admin", handle, role="admin")
    return iri, await node.token(f"{handle}-admin")


async def _follow(
    follower_node: Node, local_name: str, follower_iri: str, target: Node, target_iri: str
) -> None:
    """``local_name`` follows ``target_iri`` and both sides see the follow accepted."""
    await following.follow(follower_node.fed, local_name=local_name, target_iri=target_iri)
    await wait_until(
        lambda: _follow_is(target, follower_iri, target_iri, "accepted"), what=f"{target_iri} accepts"
    )
    await wait_until(
        lambda: _follow_is(follower_node, follower_iri, target_iri, "accepted"),
        what=f"{follower_iri} receives the Accept",
    )


async def _publish(node: Node, token: str, text: str) -> tuple[str, str]:
    """Publish a public note as alpha; returns (Create activity IRI, note IRI)."""
    created = await node.post_outbox(
        "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": f"<p>{text}</p>"}
    )
    return created["id"], created["object"]


# --- observations -------------------------------------------------------------------------------


async def _actor_id(node: Node, iri: str) -> int | None:
    result: int | None = await node.scalar(select(Actor.id).where(Actor.iri == iri))
    return result


async def _follow_is(node: Node, follower_iri: str, followed_iri: str, state: str | None) -> bool:
    async with node.sessions() as session:
        follower = await session.scalar(select(Actor.id).where(Actor.iri == follower_iri))
        followed = await session.scalar(select(Actor.id).where(Actor.iri == followed_iri))
        found = (
            None
            if follower is None or followed is None
            else await session.scalar(
                select(Follow.state).where(Follow.follower_id == follower, Follow.followed_id == followed)
            )
        )
    return found == state


async def _copies(node: Node, object_iri: str) -> int:
    """How many rows the node holds for an object (the unique IRI makes more than 1 a crash)."""
    return int(
        await node.scalar(
            select(func.count()).select_from(RemoteObject).where(RemoteObject.iri == object_iri)
        )
    )


async def _has(node: Node, object_iri: str) -> bool:
    return await _copies(node, object_iri) > 0


async def _has_all(node: Node, object_iris: list[str]) -> bool:
    return all([await _has(node, iri) for iri in object_iris])


async def _received(node: Node, activity_iri: str) -> int:
    """How many inbox rows the node stored for an activity."""
    return int(
        await node.scalar(
            select(func.count()).select_from(InboxActivity).where(InboxActivity.iri == activity_iri)
        )
    )


async def _deliveries(node: Node, activity_iri: str) -> list[Delivery]:
    async with node.sessions() as session:
        rows = await session.scalars(
            select(Delivery)
            .join(Activity, Activity.id == Delivery.activity_id)
            .where(Activity.iri == activity_iri)
            .order_by(Delivery.id)
        )
        return list(rows)


async def _all_delivered(node: Node, activity_iris: list[str]) -> bool:
    for iri in activity_iris:
        rows = await _deliveries(node, iri)
        if not rows or any(d.state != "delivered" for d in rows):
            return False
    return True


async def _job_of(node: Node, delivery: Delivery) -> Job | None:
    result: Job | None = await node.scalar(select(Job).where(Job.dedup_key == f"deliver:{delivery.id}"))
    return result


async def _peer(node: Node, host: str) -> PeerHost | None:
    async with node.sessions() as session:
        return await session.get(PeerHost, host)


async def _sync_state(node: Node, actor_id: int) -> SyncState | None:
    async with node.sessions() as session:
        return await session.get(SyncState, actor_id)


async def _jobs_by_state(node: Node, kinds: tuple[str, ...]) -> dict[str, int]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(Job.state, func.count()).where(Job.kind.in_(kinds)).group_by(Job.state)
        )
        return {state: int(count) for state, count in rows.all()}


# --- 1. a peer that is down, then back ----------------------------------------------------------


async def test_delivery_to_a_stopped_peer_is_retried_and_arrives_once_when_it_is_back(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    async with (
        restartable_node(tmp_path / "a", await new_database(0), retry_policy=STEADY) as a_handle,
        restartable_node(tmp_path / "b", await new_database(1)) as b_handle,
    ):
        a, b = a_handle.running, b_handle.running
        # Given beta on B following alpha on A
        alpha, token = await _association_with_admin(a, "alpha")
        beta = await b.create_association("beta")
        await _follow(b, "beta", beta, a, alpha)

        # When B stops (server closed; database and data directory kept) and alpha publishes
        await b_handle.stop()
        create, note = await _publish(a, token, "Collecte samedi")

        # Then A retries: the delivery records its attempts and the error, its job is queued again
        seen: dict[str, Any] = {}

        async def retried_twice() -> bool:
            rows = await _deliveries(a, create)  # none until the fan-out ran
            if len(rows) != 1:
                return False
            delivery = rows[0]
            job = await _job_of(a, delivery)
            if delivery.attempts >= 2 and job is not None and job.state == "queued":
                seen.update(delivery=delivery, job=job, peer=await _peer(a, delivery.host))
                return True
            return False

        await wait_until(retried_twice, what="a second failed attempt, queued for a retry")
        delivery, job, peer = seen["delivery"], seen["job"], seen["peer"]
        assert delivery.state == "pending" and delivery.last_status is None
        assert delivery.last_error, "the delivery keeps the reason of its last failure"
        assert job.attempts >= 2 and job.run_at > job.created_at
        assert job.last_error.startswith("retry: "), job.last_error
        # Still below the breaker's threshold: B's host is not held yet
        assert peer is not None and peer.breaker == "closed" and 2 <= peer.recent_failures < 5

        # When B starts again on the same port with the same database
        b = await b_handle.start()
        assert await _follow_is(b, beta, alpha, "accepted"), "B's follow survived the restart"

        # Then the next retry delivers the note, and B stores it exactly once
        await wait_until(lambda: _all_delivered(a, [create]), what="the retried delivery")
        await wait_until(lambda: _has(b, note), what="B stores the note")
        (delivery,) = await _deliveries(a, create)
        assert delivery.attempts >= 3 and delivery.last_error is None and delivery.delivered_at is not None
        job = await _job_of(a, delivery)
        assert job is not None and job.state == "done"
        peer = await _peer(a, delivery.host)
        assert peer is not None and peer.breaker == "closed" and peer.recent_failures == 0
        assert peer.last_success_at is not None
        assert b_handle.probe.count(create) == 1
        assert await _received(b, create) == 1
        assert await _copies(b, note) == 1


# --- 2. a peer that is down longer than the sender retries --------------------------------------


async def _give_up(node: Node, activity_iris: list[str]) -> None:
    """Where the sender ends when the peer stays down for days, without the wait.

    Retries run out after 16 attempts over 2 to 3 days (and deliveries held by an open circuit
    breaker are dropped after at most 7 days, security.md §3.4): the deliveries and their jobs
    end failed, so nothing will ever deliver these activities again and only the receiver's
    own catch-up can bring them.
    """
    async with node.sessions.begin() as session:
        ids = list(
            await session.scalars(
                select(Delivery.id)
                .join(Activity, Activity.id == Delivery.activity_id)
                .where(Activity.iri.in_(activity_iris))
            )
        )
        await session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(state="failed"))
        await session.execute(
            update(Job)
            .where(Job.dedup_key.in_([f"deliver:{i}" for i in ids]))
            .values(state="failed", locked_by=None, locked_until=None, last_error="attempts_exhausted")
        )


async def _forget_catch_ups_done(node: Node, actor_id: int) -> None:
    """Remove the finished catch-up jobs of one followed actor (where the next interval starts)."""
    async with node.sessions.begin() as session:
        await session.execute(
            delete(Job).where(
                Job.kind == following.SYNC_OUTBOX,
                Job.state == "done",
                Job.dedup_key.like(f"sync:{actor_id}:%"),
            )
        )


async def test_a_peer_down_beyond_the_senders_retries_catches_up_from_its_outbox_cursor(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    async with (
        restartable_node(tmp_path / "a", await new_database(0), retry_policy=retry.FAST) as a_handle,
        restartable_node(tmp_path / "b", await new_database(1)) as b_handle,
    ):
        a, b = a_handle.running, b_handle.running
        # Given an early note (backfilled when beta follows alpha) and one delivered live
        alpha, token = await _association_with_admin(a, "alpha")
        beta = await b.create_association("beta")
        early_create, early = await _publish(a, token, "Assemblée générale")
        await _follow(b, "beta", beta, a, alpha)
        found = await _actor_id(b, alpha)
        assert found is not None
        alpha_on_b: int = found

        async def cursor_at(activity_iri: str) -> bool:
            state = await _sync_state(b, alpha_on_b)
            return state is not None and state.newest_seen_iri == activity_iri

        await wait_until(lambda: cursor_at(early_create), what="the backfill sets B's cursor")
        assert await _has(b, early)
        _, live = await _publish(a, token, "Distribution mardi")
        await wait_until(lambda: _has(b, live), what="live delivery")
        before = await _sync_state(b, alpha_on_b)
        assert before is not None

        # When B stops, alpha publishes three notes, and A's deliveries of them fail and,
        # days later in production, are given up
        await b_handle.stop()
        missed = [await _publish(a, token, f"Pendant la panne {i}") for i in range(3)]
        missed_creates = [create for create, _ in missed]
        missed_notes = [note for _, note in missed]

        async def held_by_the_breaker() -> bool:
            rows = [d for iri in missed_creates for d in await _deliveries(a, iri)]
            peer = await _peer(a, rows[0].host) if rows else None
            return len(rows) == 3 and peer is not None and peer.breaker == "open"

        # (with FAST retries A fails five times within a fraction of a second, and its circuit
        # breaker then holds every delivery to B's host)
        await wait_until(held_by_the_breaker, what="A's deliveries to the stopped B fail")
        rows = [d for iri in missed_creates for d in await _deliveries(a, iri)]
        assert all(d.state == "pending" for d in rows) and any(d.last_error for d in rows)
        await _give_up(a, missed_creates)
        for iri in missed_creates:
            assert [d.state for d in await _deliveries(a, iri)] == ["failed"]

        # When B is back and its periodic catch-up runs (the sync_all job). A round of the
        # current 15-minute interval may already have run: the periodic job fires at each
        # boundary, here maybe between the follow and the stop (more likely on a busy machine,
        # where this test lasts longer). Its catch-up jobs would make this round a no-op until
        # the next interval (their dedup key is the interval), so they are forgotten, as the
        # next interval would.
        b = await b_handle.start()
        await _forget_catch_ups_done(b, alpha_on_b)
        assert await following.sync_all(b.fed) == 1
        b.fed.notify_worker()

        # Then B reads alpha's outbox down to its cursor and stores every missed note
        await wait_until(lambda: cursor_at(missed_creates[-1]), what="the catch-up moves the cursor")
        await wait_until(lambda: _has_all(b, missed_notes), what="the missed notes")
        after = await _sync_state(b, alpha_on_b)
        assert after is not None and after.last_error is None
        # From the cursor, not the whole outbox: the three missed notes and the live one
        assert after.items_fetched - before.items_fetched == 4
        # None twice, neither the missed notes nor the ones B already had
        for note in [early, live, *missed_notes]:
            assert await _copies(b, note) == 1, note
        assert b_handle.probe.posts == [], "nothing was delivered: B caught up by itself"
        # And another catch-up right away finds nothing new
        assert await following.sync_outbox(b.fed, alpha_on_b) == 0
        final = await _sync_state(b, alpha_on_b)
        assert final is not None and final.newest_seen_iri == missed_creates[-1]


# --- 3. three nodes, shared inboxes -------------------------------------------------------------


async def test_three_nodes_get_one_delivery_each_and_an_unfollow_stops_only_that_node(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        # Given alpha on A followed from B by beta and its member bob, and from C by gamma
        alpha, token = await _association_with_admin(a, "alpha")
        beta = await b.create_association("beta")
        bob = await b.add_member("bob", "beta")
        gamma = await c.create_association("gamma")
        await _follow(b, "beta", beta, a, alpha)
        await _follow(b, "bob", bob, a, alpha)
        await _follow(c, "gamma", gamma, a, alpha)

        # When alpha publishes
        first_create, first = await _publish(a, token, "Besoin de bénévoles")

        # Then both nodes receive it, through one delivery per node to its shared inbox
        await wait_until(lambda: _has(b, first), what="B receives")
        await wait_until(lambda: _has(c, first), what="C receives")
        await wait_until(lambda: _all_delivered(a, [first_create]), what="A records both deliveries")
        rows = await _deliveries(a, first_create)
        assert sorted(d.inbox_iri for d in rows) == sorted([b.uris.shared_inbox(), c.uris.shared_inbox()])
        assert await _received(b, first_create) == 1 and await _received(c, first_create) == 1

        # When gamma unfollows alpha
        async with c.sessions() as session:
            gamma_row = await session.scalar(select(Actor).where(Actor.iri == gamma))
            assert gamma_row is not None
            follow_iri = await session.scalar(
                select(Follow.follow_iri).where(Follow.follower_id == gamma_row.id)
            )
        assert follow_iri is not None
        await following.unfollow(c.fed, follower=gamma_row, follow_iri=follow_iri)
        await wait_until(lambda: _follow_is(a, gamma, alpha, None), what="A applies the Undo")

        # Then alpha's next note reaches B only
        second_create, second = await _publish(a, token, "Merci à tous")
        await wait_until(lambda: _has(b, second), what="B receives the second note")
        await wait_until(lambda: _all_delivered(a, [second_create]), what="A records the delivery")
        assert [d.inbox_iri for d in await _deliveries(a, second_create)] == [b.uris.shared_inbox()]
        assert not await _has(c, second)
        assert await _copies(b, first) == 1 and await _copies(b, second) == 1


# --- 4. a worker killed in the middle of deliveries ---------------------------------------------


def _while_alive(
    process: ServiceProcess, predicate: Callable[[], Awaitable[bool]]
) -> Callable[[], Awaitable[bool]]:
    """``predicate``, failing at once (with the process's log) if the worker process died."""

    async def check() -> bool:
        if not process.alive:
            raise AssertionError(f"the worker process exited\n{process.log()}")
        return await predicate()

    return check


async def _expire_leases(node: Node) -> int:
    """Jump past the leases of the killed worker's jobs (5 minutes in production).

    A job claimed by a worker that died stays ``running`` until its lease ends, then any
    worker claims it again (security.md §3.4 item 6). Moving ``locked_until`` into the past
    is that wait, fast-forwarded.
    """
    async with node.sessions.begin() as session:
        result = await session.execute(
            update(Job)
            .where(Job.state == "running")
            .values(locked_until=utc_now() - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def test_a_worker_killed_mid_delivery_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    notes = 6
    async with (
        # A delivers only through `entraide worker` processes, two deliveries at a time
        restartable_node(
            tmp_path / "a", await new_database(0), worker={"in_process": False, "concurrency": 2}
        ) as a_handle,
        restartable_node(tmp_path / "b", await new_database(1)) as b_handle,
    ):
        a, b = a_handle.running, b_handle.running
        worker_args = ["worker", "--config", str(write_config(a.settings, tmp_path / "a-worker.toml"))]
        alpha, token = await _association_with_admin(a, "alpha")
        beta = await b.create_association("beta")
        probe = b_handle.probe

        async with service(worker_args, log_path=tmp_path / "worker-1.log") as first_worker:
            # Given beta following alpha, A's side handled by A's worker process
            await following.follow(b.fed, local_name="beta", target_iri=alpha)
            await wait_until(
                _while_alive(first_worker, lambda: _follow_is(b, beta, alpha, "accepted")),
                what="the follow accepted through A's worker process",
            )
            # and B slow to answer: it stores what it receives, but holds its answers after two
            mark = len(probe.posts)
            probe.hold(after=2)

            # When alpha publishes six notes (each accepted: 201)
            published = [await _publish(a, token, f"Alerte {i}") for i in range(notes)]
            creates = [create for create, _ in published]

            # and the worker is killed with SIGKILL while two deliveries wait for B's answer
            await wait_until(
                _while_alive(first_worker, lambda: _holding(probe, 2)),
                what="two deliveries in flight",
            )
            in_flight = probe.posts[mark + 2 :]
            await first_worker.kill()
        probe.release()

        # Then B has the in-flight activities while A still sees their deliveries pending
        assert len(in_flight) == 2 and set(in_flight) <= set(creates)
        for create in in_flight:
            assert [d.state for d in await _deliveries(a, create)] == ["pending"]
            assert await _received(b, create) == 1, "B stored it before holding its answer"
        assert not await _all_delivered(a, creates)
        assert (await _jobs_by_state(a, ("deliver",))).get("running", 0) == 2

        # When the killed worker's leases run out and a new worker starts
        assert await _expire_leases(a) == 2
        async with service(worker_args, log_path=tmp_path / "worker-2.log") as second_worker:
            await wait_until(
                _while_alive(second_worker, lambda: _all_delivered(a, creates)),
                what="every delivery delivered after the restart",
            )
            await wait_until(lambda: _has_all(b, [note for _, note in published]), what="B stores every note")
            assert await second_worker.terminate() == 0, second_worker.log()

        # Then nothing accepted was lost: every note's delivery ended delivered, no job failed
        for create in creates:
            (delivery,) = await _deliveries(a, create)
            assert delivery.state == "delivered" and delivery.inbox_iri == b.uris.shared_inbox()
        assert set(await _jobs_by_state(a, ("deliver", "fanout"))) == {"done"}
        # and nothing was duplicated: the in-flight ones arrived twice, and were stored once
        for create in in_flight:
            assert probe.count(create) == 2
        for create, note in published:
            assert await _received(b, create) == 1 and await _copies(b, note) == 1
        async with b.sessions() as session:
            duplicates = (
                await session.execute(
                    select(InboxItem.actor_id, InboxItem.inbox_activity_id)
                    .group_by(InboxItem.actor_id, InboxItem.inbox_activity_id)
                    .having(func.count() > 1)
                )
            ).all()
        assert duplicates == []


async def test_a_node_run_by_worker_processes_keeps_its_periodic_catch_up_scheduled(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    # Given a node whose jobs run only in `entraide worker` processes (no in-process worker)
    async with running_node(tmp_path / "b", await new_database(0), worker={"in_process": False}) as b:
        assert not await _sync_round_queued(b)
        config = write_config(b.settings, tmp_path / "b-worker.toml")
        # When a worker process starts
        async with service(["worker", "--config", str(config)], log_path=tmp_path / "worker.log") as worker:
            # Then the next periodic catch-up round (sync_all) is queued, as `serve` does with
            # its own worker: without it, nothing published while this node was down would
            # ever be fetched (security.md §3.4 item 4)
            await wait_until(
                _while_alive(worker, lambda: _sync_round_queued(b)),
                what="a queued sync_all round",
            )
            assert await worker.terminate() == 0, worker.log()


async def _sync_round_queued(node: Node) -> bool:
    """Is a future periodic catch-up round (``sync_all``) waiting in the queue?"""
    count = await node.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.kind == following.SYNC_ALL, Job.state == "queued", Job.run_at > utc_now())
    )
    return int(count) > 0


async def _holding(probe: InboxProbe, count: int) -> bool:
    return probe.held >= count
