"""Publishing a new revision of one of our objects, who holds a copy of it, and the audit trail.

Shared by the edit pipeline (:func:`server.services.content.local.update`), the kinds whose
hooks revise another object (an alert superseding its predecessor), polls (a tally) and the
deletion of content: none of them needs the rest of the publishing pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE
from federation.vocab import entraide as wire
from server.db import queue
from server.db.models import (
    Activity,
    Actor,
    Delivery,
    Endorsement,
    Event,
    EventParticipant,
    Reaction,
    Relay,
    RemoteObject,
    Vote,
)
from server.services import audit as audit_log
from server.services.content.sanitize import text_paragraph
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.federation import Federation

MAX_HOLDERS = 500
"""Remote holders an edit or delete is also delivered to (beyond its audience), at most."""


async def publish_update(
    fed: Federation,
    session: AsyncSession,
    author: Actor,
    row: RemoteObject,
    document: Mapping[str, Any],
    *,
    now: datetime,
    by: Actor,
    action: str,
    priority: int = queue.Priority.NORMAL,
    note: str | None = None,
    changes: list[str] | None = None,
) -> str:
    """Store ``document`` as ``row``'s new revision and publish its ``Update`` (with ``note`` as
    the change note listed in the history), recorded in the audit log as ``action``."""
    revised = {k: v for k, v in document.items() if k != "@context"}
    revised["updated"] = wire.iso(now)
    row.document = {"@context": wire.CONTENT_CONTEXT, **revised}
    row.updated = now
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Update",
        "object": revised,
        "to": revised.get("to", []),
        "cc": revised.get("cc", []),
    }
    if note:
        activity["summary"] = text_paragraph(note)  # the change note, listed in the history
    # Holders beyond the audience get the new revision of public content only: a members-only
    # object's edit goes to whoever may read it now, not to whoever once replied to it.
    also = await holders(session, row) if row.visibility in PUBLICLY_READABLE else None
    published = await publish(
        session, author, activity, visibility=row.visibility, now=now, priority=priority, also=also
    )
    audit(session, author, by, action, row.iri, now, note=note, changed=changes)
    return published.iri


async def holders(session: AsyncSession, row: RemoteObject) -> list[str]:
    """Remote actors that hold a copy of our object without being in its audience: those whose
    inbox got it (followers who left since), those that relayed or liked it (an association's
    ``Announce`` reaches nodes that do not follow us; ``relays`` keeps members-only relays too),
    voted on it, replied to it, co-signed it, or take part in it (an event). Bounded by
    :data:`MAX_HOLDERS`. Only a publicly readable object's edit goes to them; its deletion (a
    tombstone) always does.
    Their nodes get its edits and its deletion (issue 13); an association relaying it relays the
    change on (decision 14)."""
    remote = select(Actor.id).where(Actor.local.is_(False))
    # Inboxes that got the object (its Create, an edit, a relay), whoever follows us today. An
    # association's FEP-1b12 relay wraps the Create (its ``object_iri`` is the Create's): the
    # ``relays`` row names the object, so the inboxes it reached are holders too (decision 85).
    relays = select(Relay.announce_iri).where(Relay.object_iri == row.iri)
    delivered = (
        select(Delivery.inbox_iri)
        .join(Activity, Activity.id == Delivery.activity_id)
        .where(or_(Activity.object_iri == row.iri, Activity.iri.in_(relays)), Delivery.state == "delivered")
    )
    sources = union(
        select(Actor.id.label("id")).where(
            or_(Actor.inbox_iri.in_(delivered), Actor.shared_inbox_iri.in_(delivered))
        ),
        select(Reaction.actor_id.label("id")).where(Reaction.object_iri == row.iri),
        select(Vote.voter_id.label("id")).where(Vote.question_id == row.id),
        select(RemoteObject.attributed_to_id.label("id")).where(
            RemoteObject.in_reply_to_iri == row.iri, RemoteObject.local.is_(False)
        ),
        select(Endorsement.endorser_id.label("id")).where(Endorsement.proposal_iri == row.iri),
        # Relays recorded from their Announce, members-only ones by an association too (FEP-1b12).
        select(Relay.relayer_id.label("id")).where(Relay.object_iri == row.iri),
        # An event's participants, followers or not: its changes and cancellation reach them.
        select(EventParticipant.actor_id.label("id"))
        .join(Event, Event.id == EventParticipant.event_id)
        .where(Event.object_id == row.id, EventParticipant.state.in_(("pending", "accepted"))),
    ).subquery()
    iris = await session.scalars(
        select(Actor.iri)
        .where(Actor.id.in_(select(sources.c.id)), Actor.id.in_(remote))
        .order_by(Actor.id)
        .limit(MAX_HOLDERS)
    )
    return list(iris)


def audit(
    session: Any,
    author: Actor,
    by: Actor,
    action: str,
    object_iri: str,
    now: datetime,
    **detail: Any,
) -> None:
    """Association actions record the member who did them (a member's own content is not audited)."""
    if author.type == "Group":
        audit_log.record(
            session,
            action,
            now=now,
            group=author,
            by=by,
            target=object_iri,
            detail={"object": object_iri, **{k: v for k, v in detail.items() if v is not None}},
        )
