"""Taking part in events, as Mobilizon does: ``Join``, the organiser's ``Accept``/``Reject``,
``Leave``.

On our events (the organiser is one of our associations):

* a ``Join`` (from a peer, or :func:`join` by one of our people) is refused with ``Reject`` when
  the event is cancelled or over, full, by invitation only, members-only and the person is not an
  active member, or the association blocked or suspended the person; nothing is stored then (our
  own suspended member is refused at once, 403 ``member_suspended``, as for every act);
* a free event accepts at once (``Accept``); a restricted one records a pending request that the
  association's admins and moderators accept or reject (:func:`decide`), capacity checked again;
* ``Leave`` ends the sender's own participation.

On a peer's event, our person's ``Join`` goes to the organiser and the answer is matched by the
``Join`` id and the answering actor (:func:`join_answered`), never by what the answer claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.vocab.events import EventStatus, JoinMode
from server.db import queue
from server.db.models import Actor, Block, Event, EventParticipant, RemoteObject
from server.db.queries.actors import membership
from server.services.content.local import audit
from server.services.content.sanitize import plain_text
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.services.events import remote as events_remote
from server.services.events.records import accepted_count, check_organiser, is_over, refresh_counts
from server.services.federation import Federation
from server.services.membership.members import is_active_member
from server.services.membership.standing import check_acting, is_suspended
from server.services.reading import visibility

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Target:
    """An event as participation needs it: the object row, its event row and its organiser."""

    row: RemoteObject
    event: Event
    organiser: Actor


def message_of(value: Any) -> str | None:
    """A participation message: plain text, at most :data:`MAX_MESSAGE_CHARS`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("message must be a string", field="message")
    cleaned = plain_text(value).replace("\x00", "").strip()
    return cleaned[:MAX_MESSAGE_CHARS] or None


async def _target(session: AsyncSession, event_iri: str) -> Target | None:
    row = await session.scalar(
        select(RemoteObject).where(
            RemoteObject.iri == event_iri, RemoteObject.kind == "event", RemoteObject.deleted_at.is_(None)
        )
    )
    event = await session.scalar(select(Event).where(Event.object_id == row.id)) if row is not None else None
    organiser = await session.get(Actor, row.attributed_to_id) if row is not None else None
    if row is None or event is None or organiser is None:
        return None
    return Target(row, event, organiser)


async def refusal(session: AsyncSession, target: Target, person: Actor, now: Any) -> str | None:
    """Why ``person`` may not take part in our event, or None. Checked in this order so the answer
    never says more than the person may know (a members-only event is simply refused)."""
    event, row, group = target.event, target.row, target.organiser
    if row.visibility == "members" and not await is_active_member(session, group.id, person.id):
        return "members only"
    if not await visibility.can_read_object(session, _viewer(person), row):
        return "not readable"  # a followers-only event, for someone who does not follow
    blocked = await session.scalar(
        select(Block.id).where(Block.blocker_id == group.id, Block.blocked_id == person.id)
    )
    if blocked is not None:
        return "blocked"
    if is_suspended(await membership(session, group.id, person.id), now):
        return "suspended"  # acts in nothing in the association (decision 76), a peer's member too
    if event.status == EventStatus.CANCELLED.value:
        return "cancelled"
    if is_over(event, now):
        return "over"
    if event.join_mode == JoinMode.INVITE.value:
        return "by invitation"
    if event.capacity and await accepted_count(session, event.id) >= event.capacity:
        return "full"
    return None


async def _answer(
    fed: Federation,
    session: AsyncSession,
    target: Target,
    person: Actor,
    join_iri: str,
    kind: str,
    *,
    now: Any,
) -> None:
    """``Accept``/``Reject`` of the ``Join`` (embedded, as Mobilizon and Mastodon read it) to the
    person; a local person gets it filed in their inbox."""
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": kind,
        "object": {"id": join_iri, "type": "Join", "actor": person.iri, "object": target.row.iri},
        "to": [person.iri],
    }
    await publish(
        session, target.organiser, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
    )


async def _admit(
    fed: Federation,
    session: AsyncSession,
    target: Target,
    person: Actor,
    join_iri: str,
    message: str | None,
    *,
    now: Any,
) -> str | None:
    """Decide a ``Join`` to our event and answer it; returns the state, or None when refused."""
    reason = await refusal(session, target, person, now)
    existing = await session.scalar(
        select(EventParticipant).where(
            EventParticipant.event_id == target.event.id, EventParticipant.actor_id == person.id
        )
    )
    if existing is not None and existing.state in ("accepted", "pending"):
        # The same person again (a retried Join): the answer already given stands.
        if existing.state == "accepted":
            await _answer(fed, session, target, person, existing.join_iri, "Accept", now=now)
        return existing.state
    if reason is not None:
        await _answer(fed, session, target, person, join_iri, "Reject", now=now)
        log.info("event join refused", extra={"event": target.row.iri, "actor": person.iri, "reason": reason})
        return None
    state = "accepted" if target.event.join_mode == JoinMode.FREE.value else "pending"
    if existing is None:
        existing = EventParticipant(event_id=target.event.id, actor_id=person.id, actor_iri=person.iri)
        session.add(existing)
    existing.join_iri, existing.state, existing.message, existing.at = join_iri, state, message, now
    await session.flush()
    if state == "accepted":
        await _answer(fed, session, target, person, join_iri, "Accept", now=now)
        await refresh_counts(session, target.event)
    return state


async def receive_join(
    fed: Federation, *, join_iri: str, event_iri: str, person: Actor, message: str | None
) -> str | None:
    """A peer's ``Join`` of one of our events; returns the state (None: refused or not ours)."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        target = await _target(session, event_iri)
        if target is None or not target.row.local or person.local:
            return None
        state = await _admit(fed, session, target, person, join_iri, message_of(message), now=now)
    fed.notify_worker()
    log.info("event join received", extra={"event": event_iri, "actor": person.iri, "state": state})
    return state


async def join(fed: Federation, person: Actor, event_iri: Any, message: Any = None) -> str:
    """One of our people asks to take part in an event (ours, or a peer's held here). Returns the
    state: ``accepted``, ``pending``; a refusal is an error saying why in general terms."""
    if not person.local or person.type != "Person":
        raise InvalidInput("only a local member takes part in an event", field="actor")
    if not isinstance(event_iri, str):
        raise InvalidInput("event must be the IRI of an event", field="event")
    text = message_of(message)
    async with fed.node.sessions() as session:
        held = await _target(session, event_iri) is not None
    if not held:
        await events_remote.hold(fed, event_iri)  # a peer's event, fetched once from its origin
    now = fed.node.clock()
    join_iri = new_activity_iri(fed.node.uris)
    async with fed.node.sessions.begin() as session:
        target = await _target(session, event_iri)
        if target is None or not await visibility.can_read_object(session, _viewer(person), target.row):
            raise NotFound("no such event")
        if target.row.local:
            await check_acting(session, target.organiser, [person], now=now)  # 403, as for every act
            state = await _admit(fed, session, target, person, join_iri, text, now=now)
            if state is None:
                raise Conflict(
                    "this event takes no more participants from you (cancelled, over, full or closed)"
                )
        else:
            state = await _ask_remote(session, target, person, join_iri, text, now=now)
    fed.notify_worker()
    return state


async def _ask_remote(
    session: AsyncSession, target: Target, person: Actor, join_iri: str, message: str | None, *, now: Any
) -> str:
    """Our person's ``Join`` of a peer's event, to its organiser; pending until answered."""
    if target.event.status == EventStatus.CANCELLED.value or is_over(target.event, now):
        raise Conflict("this event is cancelled or over")
    existing = await session.scalar(
        select(EventParticipant).where(
            EventParticipant.event_id == target.event.id, EventParticipant.actor_id == person.id
        )
    )
    if existing is not None and existing.state in ("accepted", "pending"):
        raise Conflict(
            "already taking part" if existing.state == "accepted" else "already asked to take part"
        )
    if existing is None:
        existing = EventParticipant(event_id=target.event.id, actor_id=person.id, actor_iri=person.iri)
        session.add(existing)
    existing.join_iri, existing.state, existing.message, existing.at = join_iri, "pending", message, now
    activity: dict[str, Any] = {
        "id": join_iri,
        "type": "Join",
        "object": target.row.iri,
        "to": [_organiser_iri(target)],
    }
    if message:
        activity["participationMessage"] = message  # Mobilizon's term
        activity["content"] = message
    await publish(
        session, person, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
    )
    return "pending"


def _organiser_iri(target: Target) -> str:
    """Who answers for a peer's event: Mobilizon's ``actor`` (the organiser, who may be a person
    of a group) when it is on the event's host, else the author."""
    declared = target.row.document.get("actor")
    if isinstance(declared, str) and declared.split("/")[2:3] == target.row.iri.split("/")[2:3]:
        return declared
    return target.organiser.iri


def _viewer(actor: Actor) -> visibility.Viewer:
    kind = visibility.ViewerKind.LOCAL if actor.local else visibility.ViewerKind.REMOTE
    return visibility.Viewer(kind, actor_id=actor.id, actor_iri=actor.iri)


async def decide(
    fed: Federation, group: Actor, event_iri: Any, participant_iri: Any, *, by: Actor, accept: bool
) -> str:
    """The organisers accept or reject a pending request (capacity checked again on accept)."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        await check_organiser(session, group, by)
        await check_acting(session, group, [by], now=now)  # a suspended organiser decides nothing
        target = await _target(session, event_iri) if isinstance(event_iri, str) else None
        if target is None or target.organiser.id != group.id:
            raise NotFound("no such event")
        row = await session.scalar(
            select(EventParticipant).where(
                EventParticipant.event_id == target.event.id, EventParticipant.actor_iri == participant_iri
            )
        )
        if row is None or row.state != "pending":
            raise NotFound("no pending request from this participant")
        person = await session.get(Actor, row.actor_id)
        assert person is not None
        if (
            accept
            and target.event.capacity
            and await accepted_count(session, target.event.id) >= target.event.capacity
        ):
            raise Conflict("the event is full")
        row.state, row.at = ("accepted" if accept else "rejected"), now
        await _answer(fed, session, target, person, row.join_iri, "Accept" if accept else "Reject", now=now)
        await session.flush()
        await refresh_counts(session, target.event)
        audit(
            session,
            group,
            by,
            "event.accept" if accept else "event.reject",
            target.row.iri,
            now,
            participant=person.iri,
        )
    fed.notify_worker()
    return row.state


async def receive_leave(fed: Federation, *, event_iri: str, person: Actor) -> bool:
    """``Leave`` ends the sender's own participation (it names no one else)."""
    async with fed.node.sessions.begin() as session:
        target = await _target(session, event_iri)
        if target is None:
            return False
        row = await session.scalar(
            select(EventParticipant).where(
                EventParticipant.event_id == target.event.id, EventParticipant.actor_id == person.id
            )
        )
        if row is None:
            return False
        await session.delete(row)
        await session.flush()
        await refresh_counts(session, target.event)
    log.info("event participant left", extra={"event": event_iri, "actor": person.iri})
    return True


async def leave(fed: Federation, person: Actor, event_iri: Any) -> None:
    """One of our people stops taking part; a peer's organiser gets the ``Leave``."""
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        target = await _target(session, event_iri) if isinstance(event_iri, str) else None
        row = (
            await session.scalar(
                select(EventParticipant).where(
                    EventParticipant.event_id == target.event.id, EventParticipant.actor_id == person.id
                )
            )
            if target is not None
            else None
        )
        if target is None or row is None:
            raise NotFound("not taking part in this event")
        await session.delete(row)
        await session.flush()
        if target.row.local:
            await refresh_counts(session, target.event)
        else:
            activity = {
                "id": new_activity_iri(fed.node.uris),
                "type": "Leave",
                "object": target.row.iri,
                "to": [_organiser_iri(target)],
            }
            await publish(session, person, activity, visibility="direct", now=now)
    fed.notify_worker()


async def join_answered(fed: Federation, *, join_iri: str, answerer_iri: str, accepted: bool) -> set[int]:
    """A peer organiser's ``Accept``/``Reject`` of one of our ``Join`` s. Matched by the ``Join``
    id and the answering actor (the event's author or its declared organiser on the same host);
    returns the local actors concerned (empty when nothing matched)."""
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(select(EventParticipant).where(EventParticipant.join_iri == join_iri))
        event = await session.get(Event, row.event_id) if row is not None else None
        target = await _target_by_id(session, event.object_id) if event is not None else None
        if row is None or target is None or target.row.local:
            return set()
        if answerer_iri not in (target.organiser.iri, _organiser_iri(target)) or row.state != "pending":
            return set()
        row.state, row.at = ("accepted" if accepted else "rejected"), fed.node.clock()
        actor_id = row.actor_id
    log.info("event join answered", extra={"event": target.row.iri, "accepted": accepted})
    return {actor_id}


async def _target_by_id(session: AsyncSession, object_id: int) -> Target | None:
    iri = await session.scalar(select(RemoteObject.iri).where(RemoteObject.id == object_id))
    return await _target(session, iri) if iri is not None else None


@dataclass(frozen=True, slots=True)
class Participant:
    actor_iri: str
    state: str
    message: str | None
    at: Any


async def participants(fed: Federation, group: Actor, event_iri: Any, *, by: Actor) -> list[Participant]:
    """The participant list, for the association's admins and moderators only."""
    async with fed.node.sessions() as session:
        await check_organiser(session, group, by)
        target = await _target(session, event_iri) if isinstance(event_iri, str) else None
        if target is None or target.organiser.id != group.id:
            raise NotFound("no such event")
        rows = await session.scalars(
            select(EventParticipant)
            .where(EventParticipant.event_id == target.event.id)
            .order_by(EventParticipant.id)
        )
        return [Participant(r.actor_iri, r.state, r.message, r.at) for r in rows]


async def state_of(session: AsyncSession, event_id: int, actor_id: int) -> str | None:
    found = await session.scalar(
        select(EventParticipant.state).where(
            EventParticipant.event_id == event_id, EventParticipant.actor_id == actor_id
        )
    )
    return str(found) if found is not None else None


async def local_person(fed: Federation, actor_id: int | None) -> Actor:
    """The caller of the JSON API as the person who takes part (Forbidden for anyone else)."""
    async with fed.node.sessions() as session:
        actor = await session.get(Actor, actor_id) if actor_id is not None else None
    if actor is None or not actor.local or actor.type != "Person":
        raise Forbidden("only a person takes part in an event")
    return actor
