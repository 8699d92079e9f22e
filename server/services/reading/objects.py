"""Reading stored objects and activities: one object, the pages of a collection, a thread.

What the JSON API, the ActivityPub GETs (``server/http/outbox.py``, ``server/http/threads.py``)
and the pages read (decision 71). Every list goes through the single read filter
(:mod:`server.services.reading.visibility`); the lookups by IRI or id return the row and leave the
verdict to the caller only where the caller then applies :func:`visibility.can_read_object`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE, Visibility
from federation.vocab.entraide import Kind
from server.db.models import Activity, Actor, RemoteObject
from server.services.content.current import current_documents
from server.services.errors import NotFound
from server.services.reading import visibility
from server.services.reading.visibility import Viewer

PAGE_SIZE: Final = 50
"""Items in one page of an object's collections (replies, thread, history)."""
MAX_SCAN: Final = 4 * PAGE_SIZE
"""Rows read at most for one page of replies or of a thread, whoever asks (case 51)."""
THREAD_LIMIT: Final = 200
"""Replies and versions shown at most on an object's page."""


# --- one object or activity -------------------------------------------------------------------------


async def local_object(session: AsyncSession, iri: str) -> RemoteObject | None:
    """One of our objects by IRI (deleted ones too: they answer 410), whoever may read it."""
    query = select(RemoteObject).where(RemoteObject.iri == iri, RemoteObject.local.is_(True))
    return await session.scalar(query)


async def held_object(session: AsyncSession, iri: str) -> RemoteObject | None:
    """An object this node holds, ours or a peer's copy, by IRI."""
    return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def object_by_id(session: AsyncSession, object_id: int) -> RemoteObject | None:
    return await session.get(RemoteObject, object_id)


async def readable_object(
    session: AsyncSession, viewer: Viewer, iri: str, *, kinds: Collection[str], held: bool = False
) -> tuple[RemoteObject, Actor]:
    """One of our objects of ``kinds`` that ``viewer`` may read, and its author (with ``held``,
    a peer's object that this node holds too).

    Raises:
        NotFound: absent, of another kind, or not readable (the same answer, case 39).
    """
    row = await (held_object(session, iri) if held else local_object(session, iri))
    owner = await session.get(Actor, row.attributed_to_id) if row is not None else None
    if (
        row is None
        or owner is None
        or row.kind not in kinds
        or not await visibility.can_read_object(session, viewer, row)
    ):
        raise NotFound("no such object")
    return row, owner


async def readable_local_object(session: AsyncSession, viewer: Viewer, iri: str) -> RemoteObject:
    """One of our objects that ``viewer`` may read, of any kind.

    Raises:
        NotFound: absent, or not readable by ``viewer`` (the same answer).
    """
    row = await local_object(session, iri)
    if row is None or not await visibility.can_read_object(session, viewer, row):
        raise NotFound("no such object")
    return row


async def readable_copy(session: AsyncSession, viewer: Viewer, object_id: int) -> RemoteObject:
    """An object this node holds, by its row id (``/read/{id}``), if ``viewer`` may read it.

    Raises:
        NotFound: absent, or not readable by ``viewer`` (the same answer).
    """
    row = await object_by_id(session, object_id)
    if row is None or not await visibility.can_read_object(session, viewer, row):
        raise NotFound("no such object")
    return row


async def activity_by_iri(session: AsyncSession, iri: str) -> Activity | None:
    """One of our activities by IRI."""
    return await session.scalar(select(Activity).where(Activity.iri == iri))


async def _activity_audience(session: AsyncSession, document: dict[str, Any]) -> Actor | None:
    """The association an activity's object was posted into (FEP-1b12 ``audience``), if ours."""
    obj = document.get("object")
    iri = obj.get("audience") if isinstance(obj, dict) else None
    if not isinstance(iri, str):
        return None
    return await session.scalar(select(Actor).where(Actor.iri == iri, Actor.local.is_(True)))


async def readable_activity(
    session: AsyncSession, viewer: Viewer, iri: str
) -> tuple[Activity, dict[str, Any]] | None:
    """One of our activities that ``viewer`` may read, with its document as served now (the
    objects it embeds in their current state); None when absent or not readable (the same).

    A report we forwarded (``Flag``) is readable by nobody: its comment and targets were for the
    origin's moderators, in the delivery, and it is addressed to the reported party (decision 86).
    """
    row = await activity_by_iri(session, iri)
    if row is None or row.type == "Flag":
        return None
    owner = await session.get(Actor, row.actor_id)
    readable = (
        owner is not None
        and await visibility.can_read(
            session,
            viewer,
            owner,
            row.visibility,
            addressed=visibility.addressed_in(row.document),
            audience=await _activity_audience(session, row.document),
        )
    ) or await visibility.activity_filed_for(session, viewer, row.iri)
    if not readable:
        return None
    document = (await current_documents(session, [row.document]))[0]
    return (row, document) if document is not None else None


# --- lists ---------------------------------------------------------------------------------------------


async def kind_page(
    session: AsyncSession,
    group: Actor,
    kind: Kind,
    *,
    levels: Sequence[str],
    before: int | None,
    limit: int,
) -> Sequence[RemoteObject]:
    """The association's live objects of ``kind`` at ``levels`` (``visibility.outbox_levels``),
    newest first: up to ``limit + 1`` rows, the last one telling that a next page exists."""
    query = select(RemoteObject).where(
        RemoteObject.attributed_to_id == group.id,
        RemoteObject.kind == kind.value,
        RemoteObject.local.is_(True),
        RemoteObject.deleted_at.is_(None),
        RemoteObject.visibility.in_(levels),
    )
    if before is not None:
        query = query.where(RemoteObject.id < before)
    return (await session.scalars(query.order_by(RemoteObject.id.desc()).limit(limit + 1))).all()


async def group_tab(
    session: AsyncSession, viewer: Viewer, group: Actor, kind: str, *, size: int
) -> list[RemoteObject]:
    """The readable live top-level items of one kind by or posted into the association, newest
    first (an association page's tab)."""
    rows = (
        await session.scalars(
            select(RemoteObject)
            .where(
                or_(RemoteObject.attributed_to_id == group.id, RemoteObject.audience_id == group.id),
                RemoteObject.kind == kind,
                RemoteObject.deleted_at.is_(None),
                RemoteObject.in_reply_to_iri.is_(None),
            )
            .order_by(RemoteObject.published.desc(), RemoteObject.id.desc())
            .limit(size * 3)
        )
    ).all()
    return [row for row in rows if await visibility.can_read_object(session, viewer, row)][:size]


async def recent_public_alerts(session: AsyncSession, *, limit: int) -> list[tuple[RemoteObject, Actor]]:
    """This node's latest public alerts with their associations (public only: the same for everyone)."""
    stmt = (
        select(RemoteObject, Actor)
        .join(Actor, Actor.id == RemoteObject.attributed_to_id)
        .where(
            RemoteObject.local.is_(True),
            RemoteObject.kind == Kind.ALERT.value,
            RemoteObject.visibility == Visibility.PUBLIC.value,
            RemoteObject.deleted_at.is_(None),
        )
        .order_by(RemoteObject.published.desc(), RemoteObject.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def objects_by_iris(session: AsyncSession, iris: Iterable[str]) -> dict[str, RemoteObject]:
    """The objects this node holds among ``iris``, by IRI, in one statement."""
    wanted = set(iris)
    if not wanted:
        return {}
    rows = (await session.scalars(select(RemoteObject).where(RemoteObject.iri.in_(wanted)))).all()
    return {row.iri: row for row in rows}


# --- an object's collections ---------------------------------------------------------------------------


async def _collection_page(
    session: AsyncSession, viewer: Viewer, condition: ColumnElement[bool], after: int, *, embed: bool
) -> tuple[list[Any], int | None, bool]:
    """One page (oldest first) of the readable live objects matching ``condition``, and whether
    it lists any non-public one (the page is then this viewer's own: never cached, case 41).

    The database leaves out what the viewer certainly may not read (``visibility.readable_by``:
    for an anonymous reader, exactly the non-public rows) and votes; the read filter then decides
    on each row left. At most :data:`MAX_SCAN` rows are read for one page: a thread full of
    objects this viewer may not read gives short pages that carry on (the cursor is the last row
    read), never an unbounded scan (case 51).
    """
    rows = (
        await session.scalars(
            select(RemoteObject)
            .where(
                condition,
                RemoteObject.id > after,
                RemoteObject.deleted_at.is_(None),
                RemoteObject.kind != Kind.VOTE.value,
                visibility.readable_by(viewer),
            )
            .order_by(RemoteObject.id)
            .limit(MAX_SCAN)
        )
    ).all()
    # The authors and associations of the page in one statement, held while the read filter
    # asks for them (the session's identity map only keeps what something references).
    actor_ids = {row.attributed_to_id for row in rows} | {row.audience_id for row in rows if row.audience_id}
    actors = (await session.scalars(select(Actor).where(Actor.id.in_(actor_ids)))).all() if rows else []
    await visibility.preload_delivered(
        session, viewer, [row.iri for row in rows if row.visibility not in PUBLICLY_READABLE]
    )
    items: list[Any] = []
    cursor = after
    hidden = False
    for row in rows:
        cursor = row.id
        if not await visibility.can_read_object(session, viewer, row):
            continue
        document = {k: v for k, v in row.document.items() if k != "@context"}
        items.append(document if embed else row.iri)
        hidden = hidden or row.visibility not in PUBLICLY_READABLE
        if len(items) == PAGE_SIZE:
            break
    del actors
    return items, cursor if len(items) == PAGE_SIZE or len(rows) == MAX_SCAN else None, hidden


async def replies_page(
    session: AsyncSession, viewer: Viewer, object_iri: str, *, after: int
) -> tuple[list[Any], int | None, bool]:
    """``replies``: the IRIs of the readable direct replies, with the next cursor and whether the
    page lists non-public content."""
    condition = RemoteObject.in_reply_to_iri == object_iri
    return await _collection_page(session, viewer, condition, after, embed=False)


async def thread_page(
    session: AsyncSession, viewer: Viewer, object_iri: str, context_iri: str, *, after: int
) -> tuple[list[Any], int | None, bool]:
    """``context`` (FEP-7888/f228): the thread's readable objects, root included, embedded."""
    condition = (RemoteObject.context_iri == context_iri) | (RemoteObject.iri == object_iri)
    return await _collection_page(session, viewer, condition, after, embed=True)


async def revisions(
    session: AsyncSession, row: RemoteObject, *, after: int = 0, limit: int
) -> Sequence[Activity]:
    """The author's ``Create`` and ``Update`` of the object, oldest first (its ``history``,
    FEP-bad1): up to ``limit`` after the cursor ``after``."""
    return (
        await session.scalars(
            select(Activity)
            .where(
                Activity.object_iri == row.iri,
                Activity.actor_id == row.attributed_to_id,
                Activity.type.in_(("Create", "Update")),
                Activity.id > after,
            )
            .order_by(Activity.id)
            .limit(limit)
        )
    ).all()


async def thread_replies(
    session: AsyncSession, viewer: Viewer, row: RemoteObject, *, limit: int = THREAD_LIMIT
) -> list[tuple[RemoteObject, Actor]]:
    """The readable live replies in the object's thread with their authors, oldest first (an
    object's page)."""
    condition = (
        (RemoteObject.context_iri == row.context_iri)
        if row.context_iri
        else (RemoteObject.in_reply_to_iri == row.iri)
    )
    rows = (
        await session.execute(
            select(RemoteObject, Actor)
            .join(Actor, Actor.id == RemoteObject.attributed_to_id)
            .where(condition, RemoteObject.id != row.id, RemoteObject.deleted_at.is_(None))
            .order_by(RemoteObject.id)
            .limit(limit)
        )
    ).all()
    return [
        (reply, author)
        for reply, author in rows
        if reply.kind == Kind.REPLY.value and await visibility.can_read_object(session, viewer, reply)
    ]
