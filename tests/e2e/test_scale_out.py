"""Scale-out on PostgreSQL: two `entraide serve` and two `entraide worker` processes, one node.

All four processes share one PostgreSQL database, one data directory (node secret, media) and
one configuration. What one web process publishes the other serves; an inbox load sent to both
web processes and a fan-out are worked off by both workers, each activity processed once and
each delivery made once; a worker killed with SIGKILL in the middle loses nothing; and a rolling
restart of the web processes under load fails no request (graceful drain: on SIGTERM a process
serves on for ``server.drain_s`` with ``/healthz`` at 503, so the balancer stops choosing it
before it closes its listener; with ``drain_s = 0`` requests sent in the balancer's blind window
are refused and this test fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Activity, Delivery, InboxActivity, Job
from server.services.delivery.fanout import DELIVER
from server.services.inbox.process import PROCESS_INBOX
from tests.security.test_crash_safety import (
    ALERT,
    ServerFactory,
    _all_processed,
    _assert_each_processed_once,
    _assert_inbox_items_unique,
    _assert_no_failed_job,
    _assert_objects_once,
    _authors,
    _count,
    _followers,
    _messages,
    _peers,
    _rows,
)
from tests.server.test_media import bearer, form, png
from tests.support.balancer import Balancer, restart_one_by_one
from tests.support.crash import expire_leases, signed_post
from tests.support.databases import PostgresRun, pg_required
from tests.support.nodes import running_node, wait_until
from tests.support.processes import ServiceProcess, service, wait_for_http, write_config
from tests.support.world import GROUP_INBOX

AS_JSON = {"Accept": "application/activity+json"}


@asynccontextmanager
async def _running(processes: dict[int, ServiceProcess]) -> AsyncIterator[dict[int, ServiceProcess]]:
    """Start every process; at the end close what the dict holds (restarted ones included)."""
    try:
        for process in processes.values():
            await process.start()
        yield processes
    finally:
        for process in processes.values():
            await process.close()


def _alive(*processes: ServiceProcess) -> None:
    for process in processes:
        assert process.alive, f"`entraide {' '.join(process.args)}` exited\n{process.log()}"


async def test_two_web_and_two_worker_processes_on_postgresql(
    tmp_path: Path, postgres_run: PostgresRun, aiohttp_server: ServerFactory
) -> None:
    if postgres_run.error:
        if pg_required():
            pytest.fail(postgres_run.error)
        pytest.skip(postgres_run.error)
    url = await postgres_run.database(0)
    peers = [await _peers(aiohttp_server, post_delay_s=0.02) for _ in range(3)]
    authors = _authors(peers[0])
    # The test's own handle on the node (set-up and oracles); its worker is off: the two
    # worker processes do every job.
    off = {"in_process": False, "concurrency": 4}
    drain = {"drain_s": 1.0, "shutdown_timeout_s": 2.0}
    async with running_node(tmp_path / "node", url, worker=off, server=drain) as node:
        group = await node.create_association("collectif")
        await node.add_member("admin", "collectif", role="admin")
        token = await node.token("admin")
        inboxes = await _followers(node, peers, group, per_host=4)
        config = str(write_config(node.settings, tmp_path / "entraide.toml"))
        ports = [unused_port(), unused_port()]

        def web(port: int) -> ServiceProcess:
            args = ["serve", "--config", config, "--port", str(port)]
            return ServiceProcess(args, log_path=tmp_path / f"web-{port}.log")

        worker = ["worker", "--config", config]
        async with (
            _running({port: web(port) for port in ports}) as webs,
            service(worker, log_path=tmp_path / "worker-1.log") as worker1,
            service(worker, log_path=tmp_path / "worker-2.log") as worker2,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http,
        ):
            web1, web2 = webs.values()
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base, process in zip(bases, (web1, web2), strict=True):
                await wait_for_http(f"{base}/healthz", process=process, timeout_s=40)

            # Content published through one web process is served by the other
            async with http.post(
                f"{bases[0]}/groups/collectif/outbox",
                json={"to": [AS_PUBLIC], "type": "Note", "content": "<p>Bonjour</p>"},
                headers=bearer(token),
            ) as response:
                assert response.status == 201, await response.text()
                note_iri = (await response.json(content_type=None))["object"]
            upload = form(png(3, 3))
            async with http.post(f"{bases[0]}/api/media", data=upload, headers=bearer(token)) as response:
                assert response.status == 201, await response.text()
                media = await response.json()
            served: list[Any] = []
            for base in bases:
                path = note_iri.removeprefix(node.settings.server.origin)
                async with http.get(base + path, headers=AS_JSON) as response:
                    assert response.status == 200, (base, await response.text())
                    served.append(await response.json(content_type=None))
                media_path = media["url"].removeprefix(node.settings.server.origin)
                async with http.get(base + media_path) as response:
                    assert response.status == 200
                    served.append(await response.read())
            assert served[0] == served[2] and served[1] == served[3]

            # When 40 signed activities arrive, half through each web process, while the
            # association's alert fans out to every follower's inbox
            incoming = _messages(authors, group, 40)
            statuses = await asyncio.gather(
                *(
                    signed_post(http, bases[i % 2] + GROUP_INBOX, doc, author.key)
                    for i, (doc, author) in enumerate(incoming)
                )
            )
            assert set(statuses) == {202}
            async with http.post(
                f"{bases[1]}/groups/collectif/outbox", json=ALERT, headers=bearer(token)
            ) as response:
                assert response.status == 201, await response.text()
                create_iri = (await response.json(content_type=None))["id"]

            # and one worker is killed with SIGKILL once a few jobs are done
            async def some_done() -> bool:
                _alive(worker1, worker2)
                return await _count(node, Job, Job.kind == PROCESS_INBOX, Job.state == "done") >= 5

            await wait_until(some_done, interval_s=0.01, what="five inbox jobs done", timeout_s=40)
            await worker1.kill()
            assert await _count(node, InboxActivity, InboxActivity.state == "queued") > 0, "killed too late"
            await expire_leases(node.sessions)  # its leases, fast-forwarded

            # Then the other worker finishes everything
            activity_id = await node.scalar(select(Activity.id).where(Activity.iri == create_iri))

            async def finished() -> bool:
                _alive(web1, web2, worker2)
                planned = select(Delivery.state).where(Delivery.activity_id == activity_id)
                states = await _rows(node, planned)
                delivered = len(states) == len(inboxes) and {s for (s,) in states} == {"delivered"}
                # and every deliver job settled: a job the killed worker held runs again once its
                # lease expires, possibly after its delivery was already marked delivered
                jobs = await _rows(node, select(Job.state).where(Job.kind == DELIVER))
                settled = all(state == "done" for (state,) in jobs)
                return delivered and settled and await _all_processed(node, len(incoming))

            await wait_until(finished, what="every activity processed, every delivery made", timeout_s=60)
            assert await worker2.terminate() == 0, worker2.log()

            # When the web processes are restarted one by one under a steady load
            balancer = Balancer(ports)
            tasks = [asyncio.create_task(balancer.poll(http))]
            tasks += [asyncio.create_task(balancer.load(http)) for _ in range(4)]
            try:
                async with asyncio.timeout(120):
                    await restart_one_by_one(balancer, webs, web)
            finally:
                balancer.stop.set()
                await asyncio.gather(*tasks)
            # Then no request failed, and both served
            assert balancer.failures == []
            assert all(balancer.served[port] > 10 for port in ports), balancer.served

        # each activity processed once (a re-run at most for the killed worker's), applied once
        await _assert_each_processed_once(node, [doc["id"] for doc, _ in incoming], max_attempts=2)
        await _assert_objects_once(node, [doc["object"]["id"] for doc, _ in incoming])
        await _assert_inbox_items_unique(node)
        # one delivery row and one deliver job per inbox, each done
        rows = await _rows(
            node, select(Delivery.id, Delivery.inbox_iri).where(Delivery.activity_id == activity_id)
        )
        assert sorted(inbox for _, inbox in rows) == inboxes
        jobs = await _rows(node, select(Job.dedup_key, Job.state).where(Job.kind == DELIVER))
        assert {(f"deliver:{row_id}", "done") for row_id, _ in rows} <= set(jobs)
        # and every inbox received the alert, at most twice for a POST in flight at the kill
        per_inbox = {
            f"http://127.0.0.1:{peer.port}{target}": count
            for peer in peers
            for (target, iri), count in peer.activities.items()
            if iri == create_iri
        }
        assert sorted(per_inbox) == inboxes and set(per_inbox.values()) <= {1, 2}
        assert await _count(node, InboxActivity) == len(incoming)
        await _assert_no_failed_job(node)
