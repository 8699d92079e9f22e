"""Publishing from our actors (C2S outbox): create, edit and delete notes and articles, follow.

Objects are stored with the audience computed from their addressing, and every change goes
out through the transactional outbox (``outbox.publish``). Only the author edits or deletes
(for an association: its admins and moderators, recorded in the audit log).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from federation.audience import Visibility, classify
from federation.types import AS_PUBLIC, PUBLIC_ALIASES, Iri
from federation.vocab.context import AS2
from server.db.models import Actor, AuditEntry, RemoteObject
from server.services import following
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.outbox import new_activity_iri, publish
from server.services.sanitize import plain_text, sanitize_html

PUBLISHABLE_TYPES = frozenset({"Note", "Article"})
MAX_CONTENT_CHARS = 100_000
MAX_NAME_CHARS = 500
MAX_RECIPIENTS = 200


@dataclass(frozen=True, slots=True)
class Published:
    activity_iri: str
    object_iri: str | None


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _iris(value: Any, field: str) -> list[str]:
    items = (
        [value]
        if isinstance(value, str)
        else value
        if isinstance(value, list)
        else []
        if value is None
        else None
    )
    if items is None or not all(isinstance(i, str) for i in items) or len(items) > MAX_RECIPIENTS:
        raise InvalidInput(f"{field} must be an IRI or a list of at most {MAX_RECIPIENTS} IRIs", field=field)
    return [AS_PUBLIC if i in PUBLIC_ALIASES else i for i in items]


def _text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return value


def _addressing(author: Actor, obj: dict[str, Any]) -> tuple[list[str], list[str], Visibility]:
    to, cc = _iris(obj.get("to"), "to"), _iris(obj.get("cc"), "cc")
    if not to and not cc:  # default: public, like Mastodon's
        to, cc = [AS_PUBLIC], [author.followers_iri or ""]
    visibility = classify(tuple(map(Iri, to)), tuple(map(Iri, cc)), followers_iri=author.followers_iri or "")
    return to, cc, visibility


async def create_object(fed: Federation, author: Actor, obj: dict[str, Any], *, by: Actor) -> Published:
    """Create a Note or Article authored by ``author`` (``by`` is the member who did it)."""
    kind = obj.get("type")
    if kind not in PUBLISHABLE_TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(sorted(PUBLISHABLE_TYPES))} in this version", field="type"
        )
    content = _text(obj.get("content"), "content", MAX_CONTENT_CHARS)
    if not content:
        raise InvalidInput("content is required", field="content")
    name = _text(obj.get("name"), "name", MAX_NAME_CHARS)
    summary = _text(obj.get("summary"), "summary", MAX_NAME_CHARS * 4)
    in_reply_to = _text(obj.get("inReplyTo"), "inReplyTo", 2048)
    to, cc, visibility = _addressing(author, obj)
    now = fed.node.clock()
    object_iri = fed.node.uris.object(uuid.uuid4().hex)
    document: dict[str, Any] = {
        "id": object_iri,
        "type": kind,
        "attributedTo": author.iri,
        "content": sanitize_html(content),
        "published": _iso(now),
        "to": to,
        "cc": cc,
        "url": object_iri,
    }
    if name:
        document["name"] = plain_text(name)
    if summary:
        document["summary"] = sanitize_html(summary)
    if in_reply_to:
        document["inReplyTo"] = in_reply_to
    if obj.get("sensitive") is True:
        document["sensitive"] = True
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Create",
        "object": document,
        "to": to,
        "cc": cc,
    }
    async with fed.node.sessions.begin() as session:
        session.add(
            RemoteObject(
                iri=object_iri,
                local=True,
                type=kind,
                attributed_to_id=author.id,
                in_reply_to_iri=in_reply_to,
                visibility=visibility.value,
                document={"@context": [AS2], **document},
                published=now,
                received_at=now,
            )
        )
        row = await publish(session, author, activity, visibility=visibility.value, now=now)
        _audit(session, author, by, "object.create", object_iri, now)
    fed.notify_worker()
    return Published(row.iri, object_iri)


async def _owned(fed: Federation, author: Actor, object_iri: Any) -> RemoteObject:
    if not isinstance(object_iri, str):
        raise InvalidInput("object must be the IRI of one of your objects", field="object")
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
    if row is None or row.deleted_at is not None or not row.local:
        raise NotFound("no such object")
    if row.attributed_to_id != author.id:
        raise Forbidden("only the author may change this object")
    return row


async def update_object(fed: Federation, author: Actor, obj: dict[str, Any], *, by: Actor) -> Published:
    """Edit the content, name or summary of one of ``author``'s objects; the audience is kept."""
    row = await _owned(fed, author, obj.get("id"))
    now = fed.node.clock()
    document = dict(row.document)
    for field, limit in (("content", MAX_CONTENT_CHARS), ("summary", MAX_NAME_CHARS * 4)):
        value = _text(obj.get(field), field, limit)
        if value is not None:
            document[field] = sanitize_html(value)
    name = _text(obj.get("name"), "name", MAX_NAME_CHARS)
    if name is not None:
        document["name"] = plain_text(name)
    document["updated"] = _iso(now)
    body = {k: v for k, v in document.items() if k != "@context"}
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Update",
        "object": body,
        "to": document.get("to", []),
        "cc": document.get("cc", []),
    }
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        stored.document, stored.updated = document, now
        published = await publish(session, author, activity, visibility=row.visibility, now=now)
        _audit(session, author, by, "object.update", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


async def delete_object(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Delete one of ``author``'s objects: a tombstone stays (410), a Delete goes to its audience."""
    row = await _owned(fed, author, object_iri)
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Delete",
        "object": {"id": row.iri, "type": "Tombstone"},
        "to": row.document.get("to", []),
        "cc": row.document.get("cc", []),
    }
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        stored.deleted_at = now
        stored.document = {"id": row.iri, "type": "Tombstone", "formerType": row.type, "deleted": _iso(now)}
        published = await publish(session, author, activity, visibility=row.visibility, now=now)
        _audit(session, author, by, "object.delete", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


async def post_to_outbox(fed: Federation, author: Actor, body: dict[str, Any], *, by: Actor) -> Published:
    """Handle one C2S outbox POST: an activity, or a bare object wrapped in ``Create``."""
    kind = body.get("type")
    if kind in PUBLISHABLE_TYPES:
        return await create_object(fed, author, body, by=by)
    obj = body.get("object")
    if kind == "Create" and isinstance(obj, dict):
        merged = {**obj, **{k: body[k] for k in ("to", "cc") if k in body and k not in obj}}
        return await create_object(fed, author, merged, by=by)
    if kind == "Update" and isinstance(obj, dict):
        return await update_object(fed, author, obj, by=by)
    if kind == "Delete":
        return await delete_object(fed, author, obj.get("id") if isinstance(obj, dict) else obj, by=by)
    if kind == "Follow" and isinstance(obj, str):
        result = await following.follow(fed, local_name=author.handle, target_iri=obj, as_actor=author)
        return Published(result.follow_iri, None)
    if kind == "Undo" and isinstance(obj, str | dict):
        target = obj if isinstance(obj, str) else obj.get("id")
        undo = await following.unfollow(fed, follower=author, follow_iri=str(target))
        return Published(undo, None)
    raise InvalidInput(
        "supported: Note, Article, Create, Update, Delete, Follow, Undo (of a Follow)", field="type"
    )


def _audit(session: Any, author: Actor, by: Actor, action: str, object_iri: str, now: datetime) -> None:
    if author.type == "Group":
        session.add(
            AuditEntry(
                group_id=author.id,
                by_actor_id=by.id,
                action=action,
                detail={"object": object_iri},
                created_at=now,
            )
        )
