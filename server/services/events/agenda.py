"""Agendas and the facts of one event, for the web pages (issue 18, decision 74).

Two agendas: an association's (its own events) and the node's (the events of the node's
associations, and, for a signed-in member, those of the actors they follow). Each shows the
upcoming events first, soonest first and paged by a keyset cursor on ``(start, id)``, then on
its first page the events that ended in the last :data:`PAST_DAYS` days (at most
:data:`PAST_LIMIT`, latest first). Every row goes through the single read filter
(:func:`server.services.reading.visibility.readable_by` in SQL, then
:func:`~server.services.reading.visibility.can_read_object` per row), so a members-only event
is listed only to those who may read it; the node's agenda leaves ``unlisted`` events out, as
the feeds do (a listing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import Visibility
from federation.vocab.events import EventInfo, EventStatus, JoinMode, local_time
from server.db.models import Actor, Event, EventParticipant, Follow, RemoteObject
from server.services.events.participation import state_of
from server.services.events.records import ORGANISING_ROLES, accepted_count, info_of, is_over
from server.services.reading import visibility
from server.services.reading.visibility import Viewer

PAGE_SIZE: Final = 20
PAST_DAYS: Final = 90
PAST_LIMIT: Final = 10
_CURSOR_TIME: Final = "%Y%m%dT%H%M%S%f"


@dataclass(frozen=True, slots=True)
class AgendaEntry:
    """One event in an agenda: its row, its facts and its organiser."""

    row: RemoteObject
    info: EventInfo
    organiser: Actor | None
    state: str | None = None
    """The reader's participation: ``accepted``, ``pending``, ``rejected`` or None."""

    @property
    def starts(self) -> datetime:
        return local_time(self.info.start, self.info.timezone)


@dataclass(frozen=True, slots=True)
class Agenda:
    """One page of an agenda: the upcoming events, the recent past (first page only), the cursor
    of the next page (None on the last)."""

    upcoming: list[AgendaEntry]
    past: list[AgendaEntry]
    next_cursor: str | None


def cursor_of(start: datetime, object_id: int) -> str:
    """The keyset cursor after an event: its start in UTC (to the microsecond) and its object id."""
    return f"{start.astimezone(UTC).strftime(_CURSOR_TIME)}-{object_id}"


def parse_cursor(value: str) -> tuple[datetime, int] | None:
    """``(start, object id)`` of a cursor, or None for anything malformed (the first page)."""
    when, _, ident = value.partition("-")
    try:
        start = datetime.strptime(when, _CURSOR_TIME).replace(tzinfo=UTC)
        return (start, int(ident)) if ident.isdigit() and len(ident) <= 18 else None
    except ValueError:
        return None


def _ends() -> ColumnElement[Any]:
    return func.coalesce(Event.end_at, Event.start_at)


async def _entries(
    session: AsyncSession, viewer: Viewer, scope: list[ColumnElement[bool]], stmt: Any, limit: int
) -> tuple[list[AgendaEntry], str | None]:
    """The readable events among the first ``limit`` rows of a statement, and the cursor after
    them when there are more."""
    rows = (
        await session.execute(
            stmt.where(
                RemoteObject.kind == "event",
                RemoteObject.deleted_at.is_(None),
                visibility.readable_by(viewer),
                *scope,
            ).limit(limit + 1)
        )
    ).all()
    states = await _states(session, viewer, [event.id for _, event in rows[:limit]])
    found: list[AgendaEntry] = []
    for row, event in rows[:limit]:
        if await visibility.can_read_object(session, viewer, row):
            organiser = await session.get(Actor, row.attributed_to_id)  # once per organiser (identity map)
            found.append(AgendaEntry(row, info_of(event, row.document), organiser, states.get(event.id)))
    last = rows[limit - 1] if len(rows) > limit else None
    return found, cursor_of(last[1].start_at, last[0].id) if last is not None else None


async def _states(session: AsyncSession, viewer: Viewer, event_ids: list[int]) -> dict[int, str]:
    """The reader's participation in each of these events, in one statement."""
    if viewer.actor_id is None or not event_ids:
        return {}
    rows = await session.execute(
        select(EventParticipant.event_id, EventParticipant.state).where(
            EventParticipant.event_id.in_(event_ids), EventParticipant.actor_id == viewer.actor_id
        )
    )
    return {event_id: str(state) for event_id, state in rows.all()}


async def _agenda(
    session: AsyncSession, viewer: Viewer, scope: list[ColumnElement[bool]], *, now: datetime, cursor: str
) -> Agenda:
    base = select(RemoteObject, Event).join(Event, Event.object_id == RemoteObject.id)
    upcoming = base.where(_ends() > now).order_by(Event.start_at, RemoteObject.id)
    after = parse_cursor(cursor)
    if after is not None:
        upcoming = upcoming.where(
            or_(Event.start_at > after[0], and_(Event.start_at == after[0], RemoteObject.id > after[1]))
        )
    shown, next_cursor = await _entries(session, viewer, scope, upcoming, PAGE_SIZE)
    past: list[AgendaEntry] = []
    if after is None:
        recent = base.where(_ends() <= now, _ends() >= now - timedelta(days=PAST_DAYS))
        ordered = recent.order_by(Event.start_at.desc(), RemoteObject.id.desc())
        past, _ = await _entries(session, viewer, scope, ordered, PAST_LIMIT)
    return Agenda(shown, past, next_cursor)


async def association_agenda(
    session: AsyncSession, viewer: Viewer, group: Actor, *, now: datetime, cursor: str = ""
) -> Agenda:
    """One of our associations' events that ``viewer`` may read."""
    scope = [RemoteObject.attributed_to_id == group.id, RemoteObject.local.is_(True)]
    return await _agenda(session, viewer, scope, now=now, cursor=cursor)


async def node_agenda(session: AsyncSession, viewer: Viewer, *, now: datetime, cursor: str = "") -> Agenda:
    """The node's associations' events, and those of the actors a signed-in member follows."""
    ours: ColumnElement[bool] = RemoteObject.local.is_(True)
    if viewer.actor_id is not None:
        followed = select(Follow.followed_id).where(
            Follow.follower_id == viewer.actor_id, Follow.state == "accepted"
        )
        ours = or_(ours, RemoteObject.attributed_to_id.in_(followed))
    scope = [ours, RemoteObject.visibility != Visibility.UNLISTED.value]
    return await _agenda(session, viewer, scope, now=now, cursor=cursor)


# --- one event ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventView:
    """What an event's page shows and offers its reader."""

    info: EventInfo
    starts: datetime
    ends: datetime | None
    remaining: int | None
    state: str | None
    """The reader's participation: ``accepted``, ``pending``, ``rejected`` or None."""
    closed: str | None
    """Why joining is not offered: ``cancelled``, ``over``, ``full``, ``invite``, or None."""
    organiser: bool
    pending: int
    calendar: bool
    """Whether the event has its own ``.ics`` (a public event of ours)."""


def _closed(info: EventInfo, event: Event, remaining: int | None, now: datetime) -> str | None:
    if info.status is EventStatus.CANCELLED:
        return "cancelled"
    if is_over(event, now):
        return "over"
    if info.join_mode is JoinMode.INVITE:
        return "invite"
    if remaining == 0:
        return "full"
    return None


async def event_view(
    session: AsyncSession, viewer: Viewer, row: RemoteObject, *, now: datetime
) -> EventView | None:
    """The facts of an event the reader may read (the caller checked), or None without its row."""
    event = await session.scalar(select(Event).where(Event.object_id == row.id))
    if event is None:
        return None
    count = await accepted_count(session, event.id)
    info = info_of(event, row.document, count)
    if not row.local and isinstance(row.document.get("participantCount"), int):
        count = row.document["participantCount"]
    remaining = max(info.capacity - count, 0) if info.capacity else None
    organiser = row.local and await _organises(session, viewer, row)
    pending = await _pending(session, event.id) if organiser else 0
    return EventView(
        info=info,
        starts=local_time(info.start, info.timezone),
        ends=local_time(info.end, info.timezone) if info.end is not None else None,
        remaining=remaining,
        state=await state_of(session, event.id, viewer.actor_id) if viewer.actor_id is not None else None,
        closed=_closed(info, event, remaining, now),
        organiser=organiser,
        pending=pending,
        calendar=row.local and row.visibility in visibility.feed_levels(),
    )


async def _organises(session: AsyncSession, viewer: Viewer, row: RemoteObject) -> bool:
    group = await session.get(Actor, row.attributed_to_id)
    if group is None or group.type != "Group":
        return False
    return await visibility.role_in(session, viewer, group) in ORGANISING_ROLES


async def _pending(session: AsyncSession, event_id: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(EventParticipant)
            .where(EventParticipant.event_id == event_id, EventParticipant.state == "pending")
        )
        or 0
    )
