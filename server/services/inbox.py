"""The inbox's durable half: store a verified activity with its processing job, then process it.

``accept`` runs in the request: one transaction inserts the activity (unique on its IRI, so the
database is the last line of idempotency, security case 5) and its ``process_inbox`` job; the
request is answered 202 after the commit. ``process`` runs in a worker: it rebuilds the typed
activity from the stored document and dispatches it to the handlers in ``inbox_handlers``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.inbox import InboundActivity, InboxRouter, dispatch, restore
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from server.db import queue
from server.db.models import InboxActivity, InboxItem
from server.services.federation import Federation

log = logging.getLogger(__name__)

PROCESS_INBOX = "process_inbox"


class DatabaseReplayGuard:
    """``seen(iri)``: is this activity already stored? (read-only; the unique row is authoritative)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def seen(self, activity_id: Iri) -> bool:
        async with self._sessions() as session:
            return bool(await session.scalar(select(exists().where(InboxActivity.iri == activity_id))))


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _add_inbox_item(session: AsyncSession, actor_id: int, inbox_activity_id: int) -> None:
    stmt = (
        _insert(session)(InboxItem)
        .values(actor_id=actor_id, inbox_activity_id=inbox_activity_id)
        .on_conflict_do_nothing(index_elements=["actor_id", "inbox_activity_id"])
    )
    await session.execute(stmt)


async def accept(fed: Federation, inbound: InboundActivity, *, recipient_id: int | None) -> int | None:
    """Store a verified activity and queue its processing, in one transaction.

    ``recipient_id`` is the local actor whose personal inbox received it (None for the shared
    inbox). Returns the new row's id, or None when the activity was already stored (a
    duplicate delivery: answered 202, processed once).
    """
    activity = inbound.activity
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        stmt = (
            _insert(session)(InboxActivity)
            .values(
                iri=activity.id,
                actor_iri=activity.actor,
                type=activity.type[:32],
                object_iri=activity.object_id,
                signer_key_iri=inbound.signer.key_id,
                document=inbound.document,
                state="queued",
                received_at=inbound.received_at,
            )
            .on_conflict_do_nothing(index_elements=["iri"])
            .returning(InboxActivity.id)
        )
        new_id = (await session.execute(stmt)).scalar_one_or_none()
        if new_id is None:
            existing = await session.scalar(select(InboxActivity.id).where(InboxActivity.iri == activity.id))
            if existing is not None and recipient_id is not None:
                await _add_inbox_item(session, recipient_id, existing)
            return None
        if recipient_id is not None:
            await _add_inbox_item(session, recipient_id, new_id)
        await queue.enqueue(
            session,
            PROCESS_INBOX,
            {"inbox_activity_id": new_id},
            dedup_key=f"inbox:{new_id}",
            priority=queue.Priority.INTERACTIVE,
            now=now,
        )
    fed.notify_worker()
    log.info(
        "inbox accepted",
        extra={
            "activity_id": activity.id,
            "type": activity.type,
            "actor": activity.actor,
            "key_id": inbound.signer.key_id,
        },
    )
    return new_id


async def process(fed: Federation, router: InboxRouter[Federation], inbox_activity_id: int) -> str:
    """Run the handler of one stored activity; returns the row's final state.

    Handler exceptions propagate (the job is retried); the row is marked ``processed`` only
    after the handler returned.
    """
    async with fed.node.sessions() as session:
        row = await session.get(InboxActivity, inbox_activity_id)
    if row is None or row.state != "queued":
        return row.state if row else "missing"
    # The signature was verified when the row was stored; keep what it proved.
    signer = VerifiedSigner(
        Iri(row.signer_key_iri), Iri(row.actor_iri), KeyAlgorithm.RSA_V1_5_SHA256, "cavage"
    )
    inbound = restore(row.document, signer=signer, received_at=row.received_at, uris=fed.node.uris)
    state = "ignored" if inbound is None else "processed"
    if inbound is not None:
        await dispatch(router, inbound, fed)
    await mark(fed, inbox_activity_id, state, now=fed.node.clock())
    return state


async def mark(
    fed: Federation, inbox_activity_id: int, state: str, *, now: datetime, error: str | None = None
) -> None:
    async with fed.node.sessions.begin() as session:
        row = await session.get(InboxActivity, inbox_activity_id)
        if row is not None:
            row.state, row.processed_at, row.error = state, now, (error or None) and error[:1024]


async def add_inbox_items(fed: Federation, activity_iri: str, actor_ids: set[int]) -> None:
    """File a processed activity in the inboxes of local actors it concerns (C2S ``GET {inbox}``)."""
    if not actor_ids:
        return
    async with fed.node.sessions.begin() as session:
        row_id = await session.scalar(select(InboxActivity.id).where(InboxActivity.iri == activity_iri))
        if row_id is None:
            return
        for actor_id in sorted(actor_ids):
            await _add_inbox_item(session, actor_id, row_id)
