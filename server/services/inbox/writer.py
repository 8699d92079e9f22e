"""Group commit for the inbox: one writer task stores verified activities in batches.

One transaction per inbox POST caps a node at about 1.5k activities/s on SQLite, most of it
spent in per-transaction overhead (docs/performance.md). Here each request hands its
verified activity to a single writer task and waits; the writer takes everything waiting (up
to ``max_batch``), stores it with its processing jobs in **one** transaction, and only then
releases the requests, which answer 202. Nothing is acknowledged before it is committed, so
the durability promise is unchanged (docs/architecture.md, "Receiving"). A batch that fails is
retried row by row, so one bad row cannot fail the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from federation.inbox import InboundActivity
from federation.iri import host_of
from federation.types import Iri, JsonObject
from server.db import queue
from server.db.queries.inbox import ProcessingJob, Received, store_received
from server.services.federation import Federation
from server.services.inbox.process import PROCESS_INBOX

log = logging.getLogger(__name__)

MAX_BATCH = 200
RECENT_IRIS = 50_000


@dataclass(slots=True)
class _Pending:
    inbound: InboundActivity
    recipient_id: int | None
    done: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class RecentActivities:
    """Activity IRIs this process stored lately: a cheap first answer for the replay guard.

    Not authoritative (it forgets, and other processes have their own): the unique index on
    ``inbox_activities.iri`` is, and a duplicate that slips past this check is dropped there.
    """

    def __init__(self, capacity: int = RECENT_IRIS) -> None:
        self._capacity = capacity
        self._iris: OrderedDict[str, None] = OrderedDict()

    def add(self, iri: str) -> None:
        self._iris[iri] = None
        self._iris.move_to_end(iri)
        while len(self._iris) > self._capacity:
            self._iris.popitem(last=False)

    async def seen(self, activity_id: Iri) -> bool:
        return activity_id in self._iris


_PROCESSING = ProcessingJob(
    PROCESS_INBOX, priority=queue.Priority.INTERACTIVE, max_attempts=queue.DEFAULT_MAX_ATTEMPTS
)


def _json_text(document: JsonObject) -> str:
    """The stored text of a received document: orjson (a few times faster than ``json.dumps``),
    or ``json.dumps`` for what orjson refuses and ``json.loads`` accepted (an integer beyond
    64 bits). Either reads back as the same document; NUL and lone surrogates were already
    replaced when the body was decoded."""
    try:
        return orjson.dumps(document).decode()
    except orjson.JSONEncodeError:
        return json.dumps(document)


class InboxWriter:
    """The single writer task of one process. ``start`` it, ``submit`` from requests, ``close`` it."""

    def __init__(
        self, fed: Federation, *, max_batch: int = MAX_BATCH, recent: RecentActivities | None = None
    ):
        self._fed = fed
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.recent = recent or RecentActivities()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="entraide-inbox-writer")

    async def close(self) -> None:
        """Finish what was submitted, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def submit(self, inbound: InboundActivity, *, recipient_id: int | None) -> int | None:
        """Store one activity; returns its new row id, or None for a duplicate. Raises what storing raised."""
        if self._task is None:
            raise RuntimeError("the inbox writer is not running")
        pending = _Pending(inbound, recipient_id)
        await self._queue.put(pending)
        return await pending.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception:
                log.warning("inbox batch failed; storing its rows one by one", exc_info=True)
                for pending in batch:
                    try:
                        await self._write([pending])
                    except Exception as exc:  # reported to that request only (its 5xx is ours)
                        if not pending.done.done():
                            pending.done.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
            self._fed.notify_worker({PROCESS_INBOX})

    async def _write(self, batch: list[_Pending]) -> None:
        fed = self._fed
        now = fed.node.clock()
        by_iri: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_iri.setdefault(pending.inbound.activity.id, []).append(pending)
        rows: list[Received] = []
        for iri, group in by_iri.items():
            inbound = group[0].inbound
            activity = inbound.activity
            rows.append(
                Received(
                    iri=iri,
                    actor_iri=activity.actor,
                    type=activity.type[:32],
                    object_iri=activity.object_id,
                    signer_key_iri=inbound.signer.key_id,
                    document=_json_text(inbound.document),
                    received_at=inbound.received_at,
                )
            )
        filed = [
            (iri, pending.recipient_id)
            for iri, group in by_iri.items()
            for pending in group
            if pending.recipient_id is not None
        ]
        async with fed.node.sessions() as session:
            created = await store_received(
                session,
                rows,
                filed=filed,
                hosts=sorted({host_of(iri) for iri in by_iri}),
                job=_PROCESSING,
                now=now,
            )
        for iri, group in by_iri.items():
            self.recent.add(iri)
            if iri in created:  # for an in-process worker, instead of parsing it again (decision 102)
                fed.verified.keep(created[iri], group[0].inbound)
            for index, pending in enumerate(group):
                # Only the first submission of a new activity reports it as new; the rest are duplicates.
                result = created.get(iri) if index == 0 else None
                if not pending.done.done():
                    pending.done.set_result(result)
        if created:
            log.debug("inbox batch stored", extra={"stored": len(created), "batch": len(batch)})
