"""Likes (ActivityPub §6.8, §7.10): our actors' C2S ``Like`` and ``Undo{Like}``, and the
``likes`` and ``liked`` collections.

A Like, ours or a peer's, is one row in ``reactions`` (one per actor and object). Ours is
published as a ``Like`` addressed to the object's author: delivered, signed, through the
transactional outbox when the author is a peer's actor, filed in the author's C2S inbox when it
is one of ours. An object the liker may not read answers exactly like a missing one.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.vocab.entraide import Kind
from server.db.models import Activity, Actor, Reaction, RemoteObject
from server.services.content.local import Published, audit, group_of
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.membership.standing import check_acting
from server.services.reading import visibility

log = logging.getLogger(__name__)

UNLIKABLE = frozenset({Kind.VOTE.value, Kind.ENDORSEMENT.value})
"""Kinds that are no content of their own: a vote is counted, an endorsement is announced."""


def _iri_of(value: Any, field: str = "object") -> str:
    iri = value.get("id") if isinstance(value, dict) else value
    if not isinstance(iri, str) or not iri.startswith(("https://", "http://")):
        raise InvalidInput(f"{field} must be an http(s) IRI", field=field)
    return iri


def _as_viewer(actor: Actor) -> visibility.Viewer:
    return visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=actor.id, actor_iri=actor.iri)


async def _existing(session: AsyncSession, actor: Actor, object_iri: str) -> str | None:
    return await session.scalar(
        select(Reaction.activity_iri).where(
            Reaction.type == "Like", Reaction.actor_id == actor.id, Reaction.object_iri == object_iri
        )
    )


async def like(fed: Federation, author: Actor, target: Any, *, by: Actor) -> Published:
    """``author`` likes an object held here (ours or a peer's) that it may read.

    Liking twice is one Like: the first one's IRI is answered again and nothing is sent.

    Raises:
        NotFound: no such live object here, or one ``author`` may not read (the same answer).
    """
    object_iri = _iri_of(target)
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
        readable = (
            row is not None
            and row.deleted_at is None
            and row.kind not in UNLIKABLE
            and await visibility.can_read_object(session, _as_viewer(author), row)
        )
        if row is None or not readable:
            raise NotFound("no such object")
        owner = await session.get(Actor, row.attributed_to_id)
        if owner is not None:  # liking in an association is acting in it (decision 76)
            group = await group_of(session, owner, row)
            await check_acting(session, group, [author, by], now=fed.node.clock())
        existing = await _existing(session, author, object_iri)
    if existing is not None or owner is None:
        return Published(existing, object_iri)
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Like",
        "object": object_iri,
        "to": [owner.iri],
    }
    try:
        async with fed.node.sessions.begin() as session:
            session.add(
                Reaction(
                    activity_iri=activity["id"],
                    type="Like",
                    actor_id=author.id,
                    object_iri=object_iri,
                    created_at=now,
                )
            )
            await session.flush()  # a concurrent Like of the same object by the same actor stops here
            published = await publish(session, author, activity, visibility="direct", now=now)
            audit(session, author, by, f"{row.kind}.like", object_iri, now)
    except IntegrityError:
        async with fed.node.sessions() as session:
            return Published(await _existing(session, author, object_iri), object_iri)
    fed.notify_worker()
    log.info("like published", extra={"actor": author.iri, "object": object_iri})
    return Published(published.iri, object_iri)


async def undo(fed: Federation, author: Actor, target: Any, *, by: Actor) -> Published | None:
    """Undo one of ``author``'s Likes (by the Like's IRI); ``None`` when ``target`` is no Like.

    The ``Undo`` goes where the Like went. Its answer names the Like it undid.

    Raises:
        Forbidden: the Like is someone else's.
    """
    like_iri = target.get("id") if isinstance(target, dict) else target
    if not isinstance(like_iri, str):
        return None
    async with fed.node.sessions() as session:
        reaction = await session.scalar(
            select(Reaction).where(Reaction.activity_iri == like_iri, Reaction.type == "Like")
        )
        sent = await session.scalar(select(Activity).where(Activity.iri == like_iri))
    if reaction is None:
        return None
    if reaction.actor_id != author.id:
        raise Forbidden("only the actor of a Like may undo it")
    to = sent.document.get("to", []) if sent is not None else []
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Undo",
        "object": {"id": like_iri, "type": "Like", "actor": author.iri, "object": reaction.object_iri},
        "to": to,
    }
    async with fed.node.sessions.begin() as session:
        removed = await session.execute(
            delete(Reaction).where(Reaction.id == reaction.id, Reaction.actor_id == author.id)
        )
        if not getattr(removed, "rowcount", 1):
            raise NotFound("no such like")  # undone meanwhile
        published = await publish(session, author, activity, visibility="direct", now=now)
        audit(session, author, by, "like.undo", reaction.object_iri, now)
    fed.notify_worker()
    return Published(published.iri, like_iri)


async def likes_count(session: AsyncSession, object_iris: list[str]) -> dict[str, int]:
    """Likes per object (ours and peers'), for the objects given."""
    if not object_iris:
        return {}
    rows = await session.execute(
        select(Reaction.object_iri, func.count())
        .where(Reaction.type == "Like", Reaction.object_iri.in_(sorted(set(object_iris))))
        .group_by(Reaction.object_iri)
    )
    return {iri: int(count) for iri, count in rows.all()}


async def likers_page(
    session: AsyncSession, object_iri: str, *, after: int, limit: int
) -> tuple[list[str], int | None]:
    """The actors that like an object, oldest first: one page and the next cursor."""
    rows = (
        await session.execute(
            select(Reaction.id, Actor.iri)
            .join(Actor, Actor.id == Reaction.actor_id)
            .where(Reaction.type == "Like", Reaction.object_iri == object_iri, Reaction.id > after)
            .order_by(Reaction.id)
            .limit(limit)
        )
    ).all()
    return [iri for _, iri in rows], rows[-1][0] if len(rows) == limit else None


async def liked_page(
    session: AsyncSession, actor_id: int, *, before: int | None, limit: int
) -> tuple[int, list[tuple[int, str]]]:
    """What an actor likes, newest first: the total and one page of (cursor, object IRI)."""
    cond = (Reaction.type == "Like", Reaction.actor_id == actor_id)
    total = int((await session.execute(select(func.count()).select_from(Reaction).where(*cond))).scalar_one())
    stmt = select(Reaction.id, Reaction.object_iri).where(*cond)
    if before is not None:
        stmt = stmt.where(Reaction.id < before)
    rows = (await session.execute(stmt.order_by(Reaction.id.desc()).limit(limit))).all()
    return total, [(r[0], r[1]) for r in rows]
