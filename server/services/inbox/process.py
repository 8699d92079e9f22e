"""The inbox's processing half: a worker rebuilds a stored activity and dispatches it.

Storing happens in :mod:`server.services.inbox.writer` (group commit: the activity, unique on its
IRI, and its ``process_inbox`` job in one transaction, answered 202 after the commit). The worker
loads queued rows (many at once in its inbox lane), rebuilds each typed activity from the stored
document, dispatches it to the handlers in ``inbox_handlers`` and marks the rows it finished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncSession

from federation.errors import FederationError
from federation.inbox import InboundActivity, InboxRouter, dispatch, restore
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from server.db.models import Actor, InboxActivity, InboxItem
from server.db.queries import actors as actor_queries
from server.db.queries import inbox as inbox_queries
from server.db.upsert import insert_for
from server.services.federation import Federation

log = logging.getLogger(__name__)

PROCESS_INBOX = "process_inbox"


Loaded = InboundActivity | FederationError | None
"""A queued activity rebuilt for its handler; ``None``: no activity the router handles (it ends
``ignored``); an error: the stored document no longer parses (its job fails alone, retried)."""


OBJECT_ORDERED = frozenset({"Create", "Update", "Delete", "Announce", "Like"})
"""Activity types ordered per object, not per actor (decision 69): an actor's activities on
different objects run alongside; on one object, in arrival order."""


def ordering_key(document: dict[str, Any], actor_iri: str) -> str | None:
    """The object whose earlier activities (from the same actor) this one must follow, or
    ``None``: it must follow *all* of the actor's earlier activities, and the later ones it.

    ``Create``, ``Update``, ``Delete``, ``Announce`` and ``Like`` of an object other than the
    actor itself are keyed by that object, so an ``Update`` or a ``Delete`` never overtakes the
    ``Create`` of its object, while a burst of new posts from one actor (a relay, a Lemmy
    community) is processed concurrently. Everything else (``Follow``, ``Undo``, ``Accept``,
    ``Block``, ``Move``, an actor's ``Update`` or ``Delete`` of itself, an object without an
    id, unknown types) is a barrier: it runs after every earlier activity of the actor and
    before every later one, so an ``Undo`` never overtakes what it undoes.
    """
    if document.get("type") not in OBJECT_ORDERED:
        return None
    target = document.get("object")
    if isinstance(target, dict):
        target = target.get("id")
    if not isinstance(target, str) or not target or target == actor_iri:
        return None
    return target


@dataclass(frozen=True, slots=True)
class Queued:
    """A stored activity still queued: who sent it, what its handler gets, and the object it
    is ordered by (:func:`ordering_key`; ``None``: ordered after all the actor's earlier ones)."""

    actor_iri: str
    activity: Loaded
    ordering: str | None = None
    sender: Actor | None = None
    """The sender's stored row, read with the batch (``load(senders=True)``), or ``None``."""


async def load(fed: Federation, ids: Sequence[int], *, senders: bool = False) -> dict[int, Queued]:
    """The activities among ``ids`` still queued, rebuilt for their handlers (one query), and
    with ``senders`` the stored rows of the remote actors who sent them (one more).

    An activity this process's inbox writer handed over (:class:`VerifiedActivities`) is taken as it
    was verified; only whether its row is still queued is read (decision 102). Rows already
    processed, or gone, are left out.
    """
    handed: dict[int, InboundActivity] = {}
    for row_id in ids:
        inbound = fed.verified.take(row_id)
        if inbound is not None:
            handed[row_id] = inbound
    async with fed.node.sessions() as session:
        rows = await inbox_queries.queued_activities(session, [i for i in ids if i not in handed])
        queued = await inbox_queries.still_queued(session, list(handed))
        actor_iris = {row.actor_iri for row in rows} | {handed[i].activity.actor for i in queued}
        remote = {iri for iri in actor_iris if not fed.node.uris.is_local(iri)}
        actors = await actor_queries.detached_by_iris(session, remote) if senders else {}
    loaded: dict[int, Queued] = {}
    for row in rows:
        # The signature was verified when the row was stored; keep what it proved.
        signer = VerifiedSigner(
            Iri(row.signer_key_iri), Iri(row.actor_iri), KeyAlgorithm.RSA_V1_5_SHA256, "cavage"
        )
        activity: Loaded
        try:
            activity = restore(row.document, signer=signer, received_at=row.received_at, uris=fed.node.uris)
        except FederationError as exc:
            activity = exc
        document = row.document if isinstance(row.document, dict) else {}
        loaded[row.id] = Queued(
            row.actor_iri, activity, ordering_key(document, row.actor_iri), actors.get(row.actor_iri)
        )
    for row_id in queued:
        inbound = handed[row_id]
        actor_iri = inbound.activity.actor
        loaded[row_id] = Queued(
            actor_iri, inbound, ordering_key(inbound.document, actor_iri), actors.get(actor_iri)
        )
    return loaded


async def run(fed: Federation, router: InboxRouter[Federation], inbound: Loaded) -> str:
    """Run the handler of one loaded activity; returns the state to record.

    Handler exceptions propagate (and a document that no longer parses raises): the caller
    records nothing, the row stays queued and the job is retried.
    """
    if isinstance(inbound, FederationError):
        raise inbound
    if inbound is None:
        return "ignored"
    await dispatch(router, inbound, fed)
    return "processed"


async def process(fed: Federation, router: InboxRouter[Federation], inbox_activity_id: int) -> str:
    """Load, run and mark one stored activity; returns the row's final state.

    The worker's inbox lane does the same for many at once (:class:`server.jobs.tasks.InboxLane`);
    this path serves single runs (``Worker.run_batch``, tests). The row is marked only after
    the handler returned.
    """
    loaded = await load(fed, [inbox_activity_id])
    if inbox_activity_id not in loaded:
        async with fed.node.sessions() as session:
            state = await session.scalar(
                select(InboxActivity.state).where(InboxActivity.id == inbox_activity_id)
            )
        return "missing" if state is None else str(state)
    state = await run(fed, router, loaded[inbox_activity_id].activity)
    async with fed.node.sessions.begin() as session:
        await inbox_queries.mark_processed(session, [(inbox_activity_id, state)], now=fed.node.clock())
    return state


async def add_inbox_items(fed: Federation, activity_iri: str, actor_ids: set[int]) -> None:
    """Processing accepted this activity: list it in the inboxes of the local actors it concerns
    (C2S ``GET {inbox}``, security case 50), whichever inbox it came through.

    Handlers call this on their accepting path only, so an activity that processing refused or
    dropped is never listed; one filed on arrival at a personal inbox that does not concern its
    owner stays hidden (a peer cannot show one actor's message to another through our inbox).
    """
    if not actor_ids:
        return
    async with fed.node.sessions.begin() as session:
        await file_in_inboxes(session, activity_iri, actor_ids)


async def file_in_inboxes(session: AsyncSession, activity_iri: str, actor_ids: set[int]) -> None:
    """:func:`add_inbox_items` in the caller's transaction: one statement whatever the number of
    actors (the stored activity's id is read by the insert itself; decision 89)."""
    if not actor_ids:
        return
    rows = (
        select(Actor.id, InboxActivity.id, true())
        .join(InboxActivity, InboxActivity.iri == activity_iri)
        .where(Actor.id.in_(sorted(actor_ids)))
    )
    stmt = (
        insert_for(session, InboxItem)
        .from_select(["actor_id", "inbox_activity_id", "accepted"], rows)
        .on_conflict_do_update(index_elements=["actor_id", "inbox_activity_id"], set_={"accepted": True})
    )
    await session.execute(stmt)
