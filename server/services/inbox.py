"""The inbox's processing half: a worker rebuilds a stored activity and dispatches it.

Storing happens in :mod:`server.services.inbox_writer` (group commit: the activity, unique on its
IRI, and its ``process_inbox`` job in one transaction, answered 202 after the commit). ``process``
runs in a worker: it rebuilds the typed activity from the stored document and dispatches it to
the handlers in ``inbox_handlers``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from federation.inbox import InboxRouter, dispatch, restore
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from server.db.models import InboxActivity, InboxItem
from server.services.federation import Federation

log = logging.getLogger(__name__)

PROCESS_INBOX = "process_inbox"


async def _add_inbox_item(session: AsyncSession, actor_id: int, inbox_activity_id: int) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(InboxItem)
        .values(actor_id=actor_id, inbox_activity_id=inbox_activity_id)
        .on_conflict_do_nothing(index_elements=["actor_id", "inbox_activity_id"])
    )
    await session.execute(stmt)


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
