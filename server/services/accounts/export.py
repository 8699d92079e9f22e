"""A member's archive of their data (GDPR art. 15 and 20): a zip of ActivityStreams JSON files
with a readable ``index.html``.

It holds what the node stores about the account and by it: the profile (the actor document),
the posts, replies and votes it authored (deleted ones left out), and its memberships with their
states. It is built in memory: one account's content is bounded by what a person writes.
"""

from __future__ import annotations

import html
import io
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.uris import UriScheme
from federation.vocab.actors import render_actor
from server.db.models import Actor, Membership, RemoteObject
from server.services.actors.profiles import local_actor_value

AS_CONTEXT: Final = "https://www.w3.org/ns/activitystreams"
FILES: Final = {
    "posts.json": "Posts, alerts, resources and proposals you wrote",
    "replies.json": "Your replies",
    "votes.json": "Your votes",
    "memberships.json": "Your memberships and their states",
}


def _collection(name: str, items: list[Any]) -> bytes:
    doc = {"@context": AS_CONTEXT, "type": "OrderedCollection", "name": name, "totalItems": len(items)}
    doc["orderedItems"] = items
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


async def _authored(session: AsyncSession, actor_id: int) -> dict[str, list[dict[str, Any]]]:
    rows = (
        await session.scalars(
            select(RemoteObject)
            .where(RemoteObject.attributed_to_id == actor_id, RemoteObject.deleted_at.is_(None))
            .order_by(RemoteObject.id)
        )
    ).all()
    groups: dict[str, list[dict[str, Any]]] = {"posts.json": [], "replies.json": [], "votes.json": []}
    for row in rows:
        key = {"reply": "replies.json", "vote": "votes.json"}.get(row.kind, "posts.json")
        groups[key].append({k: v for k, v in row.document.items() if k != "@context"})
    return groups


async def _memberships(session: AsyncSession, actor_id: int) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(Membership, Actor)
            .join(Actor, Actor.id == Membership.group_id)
            .where(Membership.member_id == actor_id)
            .order_by(Membership.id)
        )
    ).all()
    return [
        {
            "type": "Join",
            "object": group.iri,
            "name": group.name or group.handle,
            "entraide:role": membership.role,
            "entraide:state": membership.state,
            "published": membership.created_at.isoformat(),
        }
        for membership, group in rows
    ]


def _index(actor: Actor, host: str, counts: dict[str, int], now: datetime) -> bytes:
    rows = "".join(
        f'<li><a href="{name}">{name}</a>: {html.escape(what)} ({counts[name]})</li>'
        for name, what in FILES.items()
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Entraide archive</title></head><body>"
        f"<h1>Archive of @{html.escape(actor.handle)}@{html.escape(host)}</h1>"
        f"<p>Made on {html.escape(now.isoformat())}. Each file is ActivityStreams 2.0 JSON.</p>"
        f'<ul><li><a href="profile.json">profile.json</a>: your profile (name, summary, keys)</li>{rows}</ul>'
        "</body></html>"
    )
    return page.encode()


async def archive(
    session: AsyncSession,
    uris: UriScheme,
    actor: Actor,
    *,
    now: datetime,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """The zip archive of ``actor``'s data; ``progress`` hears of each step (the CLI prints them)."""
    say = progress or (lambda _message: None)
    say("profile")
    profile = render_actor(await local_actor_value(session, uris, actor))
    say("posts, replies and votes")
    files = await _authored(session, actor.id)
    say(", ".join(f"{len(items)} {name.removesuffix('.json')}" for name, items in files.items()))
    memberships = await _memberships(session, actor.id)
    say(f"{len(memberships)} memberships")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive_file:
        archive_file.writestr("profile.json", orjson.dumps(profile, option=orjson.OPT_INDENT_2))
        for name, items in files.items():
            archive_file.writestr(name, _collection(FILES[name], items))
        archive_file.writestr("memberships.json", _collection(FILES["memberships.json"], memberships))
        counts = {**{name: len(items) for name, items in files.items()}, "memberships.json": len(memberships)}
        archive_file.writestr("index.html", _index(actor, uris.host, counts, now))
    return buffer.getvalue()
