"""Publishing content as our actors: posts, resources, alerts, proposals and replies.

One entry point per verb (:func:`create`, :func:`update`, :func:`delete`) takes the client's
object (C2S or JSON API, same shape), checks every field it uses, renders the wire document
with :mod:`federation.vocab.entraide`, stores it and publishes the activity through the
transactional outbox in the same transaction. Edits and deletes are for the author only (for an
association: its admins and moderators, recorded in the audit log), and reach every node that
received the object (its audience).

:func:`create` and :func:`update` are the same pipeline for every kind: what a kind adds (its
own fields, its rendering, what follows once it is stored) is its module in
:mod:`server.services.content.kinds`, looked up in that registry; threads are
:mod:`server.services.content.replies`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE, Visibility, address, classify
from federation.types import AS_PUBLIC, Iri
from federation.vocab import entraide as wire
from federation.vocab.entraide import AlertStatus, Kind
from server.db.models import Activity, Actor, Endorsement, Relay, RemoteObject
from server.db.queries import actors as actor_queries
from server.services.content import kinds, replies
from server.services.content.fields import (
    MAX_ATTACHMENTS,
    MAX_CONTENT_CHARS,
    MAX_NAME_CHARS,
    MAX_RECIPIENTS,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
    choice,
    hashtags,
    iri_list,
    iri_value,
    language_of,
    text,
    when,
)
from server.services.content.kinds.proposal import POLL_CLOSE
from server.services.content.replies import as_viewer
from server.services.content.revisions import MAX_HOLDERS, audit, holders, publish_update
from server.services.content.sanitize import plain_text, sanitize_html
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.media import uploads as media_service
from server.services.membership import members as membership_service
from server.services.membership.standing import check_acting
from server.services.reading import visibility

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_CONTENT_CHARS",
    "MAX_HOLDERS",
    "MAX_NAME_CHARS",
    "MAX_RECIPIENTS",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "POLL_CLOSE",
    "Published",
    "announce",
    "audit",
    "change_note",
    "check_fields_apply",
    "choice",
    "create",
    "delete",
    "group_of",
    "hashtags",
    "holders",
    "iri_list",
    "iri_value",
    "language_of",
    "list_content",
    "local_author",
    "owned",
    "relay_change",
    "relay_member_activity",
    "retract_alert",
    "status_of",
    "text",
    "update",
    "when",
]

log = logging.getLogger(__name__)

REMOVABLE = frozenset({"name", "summary", "tag", "license", "sensitive"})
"""What a partial ``Update`` may remove by setting it to ``null``."""
EDITABLE = frozenset({"name", "content", "tag", "changeNote"})
"""What an edit changes in every kind (a kind adds its own fields, :func:`editable`)."""
SERVER_KEPT = frozenset({"@context", "updated"})
"""What the server writes on every edit: a client's copy, however old, is no change request."""


@dataclass(frozen=True, slots=True)
class Published:
    activity_iri: str | None
    object_iri: str | None


# --- addressing -----------------------------------------------------------------------------------


def members_collection(group: Actor | None, uris: Any) -> str | None:
    """An association's members collection: ours by construction, a peer's from its document."""
    if group is None or group.type != "Group":
        return None
    if group.local:
        return str(uris.members(Iri(group.iri)))
    members = (group.document or {}).get("members")
    return members if isinstance(members, str) else None


def blind_recipients(obj: Mapping[str, Any]) -> list[str]:
    """``bto`` and ``bcc``: actors to deliver to without naming them in anything stored or
    served (ActivityPub §6, §7.1.1). The public collection is no blind recipient: dropped."""
    blind = [*iri_list(obj.get("bto"), "bto"), *iri_list(obj.get("bcc"), "bcc")]
    for iri in blind:
        if iri != AS_PUBLIC:
            iri_value(iri, "bcc")
    return list(dict.fromkeys(iri for iri in blind if iri != AS_PUBLIC))


def unaddressed(obj: Mapping[str, Any]) -> bool:
    """The client named no recipient at all: no ``to``, ``cc``, ``bto``, ``bcc``, ``audience``
    (empty lists count as none) and no ``visibility``."""
    return obj.get("visibility") is None and not any(obj.get(key) for key in ADDRESSING)


ADDRESSING = ("to", "cc", "bto", "bcc", "audience")


def _addressing(
    author: Actor,
    obj: Mapping[str, Any],
    uris: Any,
    group: Actor | None,
    *,
    blind: bool = False,
    self_only: bool = False,
) -> tuple[list[str], list[str], Visibility]:
    """``visibility`` (our term) when given, else the client's ``to``/``cc``, else public — or,
    with ``self_only`` (the C2S outbox, decision 37), nobody but the author.

    ``group`` is the association the content belongs to: the author itself, or the one a member
    posts into (``audience``, or the thread's). Members-only content is addressed to its members
    collection — and, from a member, to the association too, which relays it (FEP-1b12).
    ``blind``: the client named ``bto``/``bcc`` recipients, so an empty ``to``/``cc`` is direct
    to them, never the public default.
    """
    members = members_collection(group, uris)
    requested = obj.get("visibility")
    if requested is not None:
        level = choice(Visibility, requested, "visibility")
        if level is Visibility.MEMBERS and members is None:
            raise InvalidInput(
                "members-only content belongs to an association: publish it as the association, "
                "or post it into one you are a member of (audience)",
                field="visibility",
            )
        mentions = _direct_recipients(obj, author, members) if level is Visibility.DIRECT else []
        if level is Visibility.DIRECT and not mentions:
            raise InvalidInput("direct content needs recipients in to", field="to")
        addressed_to, addressed_cc = address(
            level,
            actor_followers=Iri(author.followers_iri or ""),
            group=Iri(group.iri) if group is not None and group.id != author.id else None,
            group_members=Iri(members) if members else None,
            mentions=[Iri(m) for m in mentions],
        )
        return list(addressed_to), list(addressed_cc), level
    to, cc = iri_list(obj.get("to"), "to"), iri_list(obj.get("cc"), "cc")
    if not to and not cc and not blind:
        if self_only:  # C2S: a client that addressed nobody reaches nobody (decision 37)
            return [], [], Visibility.DIRECT
        to, cc = [AS_PUBLIC], [author.followers_iri or ""]  # our API, CLI and pages: public
    level = classify(to, cc, followers_iri=author.followers_iri or "", members_iri=members)
    return to, cc, level


def _direct_recipients(obj: Mapping[str, Any], author: Actor, members: str | None) -> list[str]:
    """The actors a direct message names in ``to``: never the public collection nor a followers
    or members collection, whatever the client put there (security case 55), so direct content
    is never delivered or classified wider than the actors it names."""
    collections = {AS_PUBLIC, author.followers_iri, members}
    return [iri for iri in iri_list(obj.get("to"), "to") if iri not in collections]


async def _posting_group(
    session: AsyncSession, fed: Federation, author: Actor, obj: Mapping[str, Any], parent: RemoteObject | None
) -> tuple[Actor | None, bool, list[str]]:
    """The association the content belongs to, whether the author names it as ``audience``, and
    the other ``audience`` values (ordinary addressing: they are added to ``cc``).

    An association's own content belongs to it. A person's belongs to the first association it
    names in ``audience`` (a string or a list; FEP-1b12: only its active members post into it,
    403 otherwise), else to the association of the thread it replies in.
    """
    named = [iri for iri in iri_list(obj.get("audience"), "audience") if iri != author.iri]
    for iri in named:
        if iri != AS_PUBLIC:
            iri_value(iri, "audience")
    found = (
        await session.scalars(
            select(Actor).where(Actor.iri.in_(named), Actor.type == "Group", Actor.deleted_at.is_(None))
        )
        if named and author.type != "Group"
        else None
    )
    groups = {g.iri: g for g in found or ()}
    group = next((groups[iri] for iri in named if iri in groups), None)
    others = [iri for iri in named if group is None or iri != group.iri]
    if author.type == "Group":
        return author, False, others
    if group is not None:
        if not await membership_service.is_active_member(session, group.id, author.id):
            raise Forbidden("only the association's active members post into it")
        return group, True, others
    if parent is not None and parent.audience_id is not None:
        return await session.get(Actor, parent.audience_id), False, others
    return None, False, others


# --- create ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where new content goes: the object it answers, if any, and the association it belongs
    to (``into``: the author named it as ``audience``), with the other ``audience`` values."""

    parent: replies.Parent | None
    group: Actor | None
    into: bool
    others: list[str]


async def create(
    fed: Federation, author: Actor, obj: Mapping[str, Any], *, by: Actor, c2s: bool = False
) -> Published:
    """Create a post, resource, alert, proposal or reply authored by ``author``.

    ``by`` is the account that did it (an admin or moderator when ``author`` is an association).
    ``c2s``: the client's ActivityPub outbox, where content that addresses nobody is readable by
    its author only and delivered to no one (decision 37); our API, CLI and pages default to
    public instead.

    The steps, the same for every kind: the kind (:func:`kinds.requested`); where the content
    goes (its parent, its association); its addressing; the fields every kind shares; its
    thread and association; the kind's own fields (:meth:`~kinds.ContentKind.build`); then, in
    one transaction, the row, its attachments, the ``Create`` and the kind's hooks
    (:meth:`~kinds.ContentKind.after_store`).
    """
    self_only = c2s and unaddressed(obj)
    kind = kinds.requested(obj, author)
    now = fed.node.clock()
    place = await _placement(fed, author, obj, by)
    blind = blind_recipients(obj)
    addressed = {**obj, "cc": [*iri_list(obj.get("cc"), "cc"), *place.others]} if place.others else obj
    to, cc, level = _addressing(
        author, addressed, fed.node.uris, place.group, blind=bool(blind), self_only=self_only
    )
    document = _shared_document(fed, kind, author, obj, fed.node.uris.object(uuid.uuid4().hex), now, to, cc)
    relays = await _join(fed, author, place, document, level, self_only=self_only)
    await kind.build(kinds.Draft(fed, author, obj, document, now))
    _refresh_content_map(document)
    attachment_keys = _attachment_keys(fed, obj.get("attachment"))
    async with fed.node.sessions.begin() as session:
        row = await _store(session, fed, kind, author, document, place, level, now, attachment_keys)
        published = await publish(
            session,
            author,
            {"id": new_activity_iri(fed.node.uris), "type": "Create", "to": to, "cc": cc, "object": document},
            visibility=level.value,
            now=now,
            priority=kind.priority,
            also=blind,
        )
        audit(session, author, by, f"{kind.kind.value}.create", row.iri, now)
        await kind.after_store(kinds.Stored(fed, session, author, by, row, document, now))
    fed.notify_worker()
    if relays and place.group is not None:
        # FEP-1b12: the association relays what its members post into it, as it does for members
        # on other nodes (inbox_handlers), so its followers (or members) get it.
        await relay_member_activity(fed, place.group, published.document, row)
    return Published(published.iri, row.iri)


async def _placement(fed: Federation, author: Actor, obj: Mapping[str, Any], by: Actor) -> _Placement:
    """The parent (checked first, case 54; a peer's we do not hold is fetched from its origin)
    and the association the content belongs to, in which neither the author nor ``by`` may be
    suspended (``membership/standing.py``)."""
    in_reply_to = iri_value(obj.get("inReplyTo"), "inReplyTo")
    async with fed.node.sessions() as session:
        held = await replies.readable_parent(session, fed, author, in_reply_to)
        group, into, others = await _posting_group(session, fed, author, obj, held)
        await check_acting(session, group, [author, by], now=fed.node.clock())
    if in_reply_to is None:
        return _Placement(None, group, into, others)
    fetched = (
        await replies.fetch_parent(fed, in_reply_to)
        if held is None and not fed.node.uris.is_local(in_reply_to)
        else None
    )
    return _Placement(replies.Parent(in_reply_to, held, fetched), group, into, others)


def _shared_document(
    fed: Federation,
    kind: kinds.ContentKind,
    author: Actor,
    obj: Mapping[str, Any],
    object_iri: Iri,
    now: datetime,
    to: list[str],
    cc: list[str],
) -> dict[str, Any]:
    """The wire document with the fields every kind has, read and checked by ``kind``'s rules
    (whether content and name are required, the name's length, whether a summary applies)."""
    uris = fed.node.uris
    body = text(obj.get("content"), "content", MAX_CONTENT_CHARS, required=kind.content_required)
    name = text(obj.get("name"), "name", kind.name_chars, required=kind.named)
    summary = text(obj.get("summary"), "summary", MAX_SUMMARY_CHARS)
    # An association's content without a language is in the association's default one, if set.
    language = language_of(obj.get("language")) or (author.language if author.type == "Group" else None)
    document: dict[str, Any] = {
        "id": object_iri,
        "type": obj.get("type") or kind.types[0],
        "attributedTo": author.iri,
        "content": sanitize_html(body or ""),
        "published": wire.iso(now),
        "to": to,
        "cc": cc,
        "url": object_iri,
        "replies": uris.replies(object_iri),
        "likes": uris.likes(object_iri),
    }
    if language:
        document["contentMap"] = {language: document["content"]}
    if name:
        document["name"] = plain_text(name)
    if summary and kind.takes_summary:
        document["summary"] = sanitize_html(summary)
    if obj.get("sensitive") is True and kind.takes_summary:
        document["sensitive"] = True
    tags = hashtags(fed, obj.get("tag"))
    if tags:
        document["tag"] = tags
    return document


def _refresh_content_map(document: dict[str, Any]) -> None:
    """``contentMap`` says the content again, in its language: after a kind rendered it anew."""
    if "contentMap" in document:
        document["contentMap"] = {next(iter(document["contentMap"])): document["content"]}


async def _join(
    fed: Federation,
    author: Actor,
    place: _Placement,
    document: dict[str, Any],
    level: Visibility,
    *,
    self_only: bool,
) -> bool:
    """Put the content in its thread (``context``) and its association (``audience``), after
    the checks of both; returns whether the association relays it (FEP-1b12)."""
    group = place.group
    context_iri = fed.node.uris.context(document["id"])
    async with fed.node.sessions() as session:
        if place.parent is not None:
            context_iri = await replies.join_thread(
                session,
                author,
                place.parent,
                document,
                level,
                audience_id=group.id if group is not None else None,
                self_only=self_only,
            )
        await replies.check_replies_policy(session, author, place.parent.held if place.parent else None)
        member = await _posts_as_member(session, author, group, level)
    document["context"] = context_iri
    if group is not None and group.id != author.id and (place.into or level is Visibility.MEMBERS):
        # FEP-1b12: a post into an association names it as audience and addresses it.
        document["audience"] = group.iri
        if group.iri not in document["to"] and group.iri not in document["cc"]:
            document["cc"].append(group.iri)
    return group is not None and group.local and member and level is not Visibility.DIRECT


async def _posts_as_member(
    session: AsyncSession, author: Actor, group: Actor | None, level: Visibility
) -> bool:
    """Whether ``author`` posts into another association as one of its active members; only
    they publish its members-only content."""
    member = (
        group is not None
        and group.id != author.id
        and await membership_service.is_active_member(session, group.id, author.id)
    )
    if level is Visibility.MEMBERS and group is not None and group.id != author.id and not member:
        raise InvalidInput("members-only content of an association is for its members", field="visibility")
    return member


async def _store(
    session: AsyncSession,
    fed: Federation,
    kind: kinds.ContentKind,
    author: Actor,
    document: dict[str, Any],
    place: _Placement,
    level: Visibility,
    now: datetime,
    attachment_keys: list[str],
) -> RemoteObject:
    """The new object's row, with its attachments (uploads of ``author``'s) in its document."""
    row = RemoteObject(
        iri=document["id"],
        local=True,
        type=document["type"],
        kind=kind.kind.value,
        attributed_to_id=author.id,
        audience_id=place.group.id if place.group is not None else None,
        in_reply_to_iri=place.parent.iri if place.parent is not None else None,
        context_iri=document["context"],
        visibility=level.value,
        document={},
        published=now,
        received_at=now,
    )
    session.add(row)
    await session.flush()
    if attachment_keys:
        attached = await media_service.attach(session, owner=author, keys=attachment_keys, object_id=row.id)
        document["attachment"] = [media_service.attachment_document(fed.node.uris, m) for m in attached]
    row.document = {"@context": wire.CONTENT_CONTEXT, **document}
    return row


def _attachment_keys(fed: Federation, value: Any) -> list[str]:
    """``attachment``: media keys from ``POST /api/media``, or their URLs (as C2S clients send)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise InvalidInput(
            f"attachment must be a list of at most {MAX_ATTACHMENTS} uploads", field="attachment"
        )
    keys = []
    prefix = fed.node.uris.media("")
    for item in value:
        ref = item.get("url") if isinstance(item, dict) else item
        if isinstance(ref, str) and ref.startswith(prefix):
            ref = ref[len(prefix) :]
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("each attachment must be an uploaded media key or URL", field="attachment")
        keys.append(ref)
    return keys


# --- update and delete ----------------------------------------------------------------------------


async def owned(fed: Federation, author: Actor, object_iri: Any) -> RemoteObject:
    """One of ``author``'s live objects (NotFound / Forbidden otherwise)."""
    if not isinstance(object_iri, str):
        raise InvalidInput("object must be the IRI of one of your objects", field="object")
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
        readable = row is not None and await visibility.can_read_object(session, as_viewer(author), row)
    if row is None or not readable or row.deleted_at is not None or not row.local:
        # Someone who may not read the object gets the answer of a missing one (case 54).
        raise NotFound("no such object")
    if row.attributed_to_id != author.id:
        raise Forbidden("only the author may change this object")
    return row


async def update(fed: Federation, author: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Edit one of ``author``'s objects; the audience, the kind and a poll's options are kept.

    Every edit is an ``Update`` carrying the whole object with ``updated``: the object's
    ``history`` collection (FEP-bad1) lists them all. The shared fields (name, tags, removals)
    are edited here, the rest by the object's kind (:meth:`~kinds.ContentKind.edit`).
    """
    row = await owned(fed, author, obj.get("id"))
    kind = kinds.get(row.kind)
    if kind is None:
        raise InvalidInput(f"a {row.kind} cannot be edited", field="type")
    note = change_note(obj.get(CHANGE_NOTE))
    obj = edits(obj, row, kind)
    document = {k: v for k, v in row.document.items() if k != "@context"}
    _remove_nulled(document, {k: v for k, v in obj.items() if k != CHANGE_NOTE}, kind)
    name = text(obj.get("name"), "name", kind.name_chars)
    content = text(obj.get("content"), "content", MAX_CONTENT_CHARS)
    if name is not None:
        document["name"] = plain_text(name)
    if obj.get("tag") is not None:
        document["tag"] = hashtags(fed, obj.get("tag"))
    kind.edit(kinds.Edit(fed, obj, row.document, document, name, content))
    _refresh_content_map(document)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        await check_acting(session, await group_of(session, author, stored), [author, by], now=now)
        published = await publish_update(
            fed,
            session,
            author,
            stored,
            document,
            now=now,
            by=by,
            action=kind.update_action(stored.document, document),
            priority=kind.priority,
            note=note,
            changes=_changed(obj),
        )
        await kind.after_update(kinds.Stored(fed, session, author, by, stored, stored.document, now))
    fed.notify_worker()
    return Published(published, row.iri)


async def group_of(session: AsyncSession, author: Actor, row: RemoteObject) -> Actor | None:
    """The association an object belongs to: its author's, or the one it was posted into."""
    if author.type == "Group":
        return author
    return await session.get(Actor, row.audience_id) if row.audience_id is not None else None


CHANGE_NOTE = "changeNote"
MAX_CHANGE_NOTE_CHARS = 500


def check_fields_apply(kind: str, obj: Mapping[str, Any]) -> None:
    """Fields that do not apply to this kind are refused rather than silently ignored (the JSON API
    and the command line; a C2S ``Update`` carries the whole object and keeps what applies)."""
    spec = kinds.by_kind(kind)
    others = frozenset().union(*(k.own_fields for k in kinds.registered() if k is not spec))
    for field in obj:
        not_its_own = field in others and field not in spec.own_fields
        if not_its_own or (field == "summary" and not spec.takes_summary):
            raise InvalidInput(f"{field} does not apply to a {kind}", field=field)


def change_note(value: Any) -> str | None:
    """A revision's change note: plain text, shown in the object's history (the ``Update``'s
    ``summary``)."""
    note = text(value, CHANGE_NOTE, MAX_CHANGE_NOTE_CHARS)
    if note is not None and "\x00" in note:
        raise InvalidInput(f"{CHANGE_NOTE} must not contain NUL characters", field=CHANGE_NOTE)
    return note.strip() or None if note is not None else None


def editable(kind: kinds.ContentKind) -> frozenset[str]:
    """The properties an edit of ``kind`` may change; every other one is fixed at publication."""
    summary = frozenset({"summary", "sensitive"}) if kind.takes_summary else frozenset()
    return EDITABLE | summary | kind.own_fields | kind.removable


def edits(obj: Mapping[str, Any], row: RemoteObject, kind: kinds.ContentKind) -> dict[str, Any]:
    """What an ``Update``'s object really changes (ActivityPub §6.3.1: each key given replaces
    the current value), with its ``id``.

    A client may send the whole object back, as many do: a property whose value is the stored
    one changes nothing and is left out (so a kind never renders again what it rendered, such as
    an event's or an alert's readable content); the counters and stamps the server keeps are
    ignored. A real change of a property fixed at publication (its type, author, audience,
    options…) is refused by name (decision 87).
    """
    current = {**row.document, "visibility": row.visibility}
    changes: dict[str, Any] = {"id": obj.get("id")}
    allowed = editable(kind)
    for key, value in obj.items():
        if key == "id" or key in SERVER_KEPT | kind.server_kept or _same(key, value, current.get(key)):
            continue
        if key not in allowed and not (value is None and key in REMOVABLE):
            raise InvalidInput(f"{key} cannot be changed after publication", field=key)
        changes[key] = value
    return changes


def _same(key: str, sent: Any, stored: Any) -> bool:
    """Whether ``sent`` says what is stored (addressing in any order, a poll's options by name)."""
    if sent == stored:
        return True
    if key in ADDRESSING:  # a set of IRIs: in any order, one as a string
        iris = _iri_set(sent)
        return iris is not None and iris == _iri_set(stored)
    if key in ("oneOf", "anyOf") and isinstance(sent, list) and isinstance(stored, list):
        return [_option_name(o) for o in sent] == [_option_name(o) for o in stored]
    return key == "sensitive" and not sent and not stored


def _iri_set(value: Any) -> frozenset[Any] | None:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def _option_name(option: Any) -> Any:
    return option.get("name") if isinstance(option, dict) else option


def _changed(obj: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in obj if k not in ("id", CHANGE_NOTE))


async def retract_alert(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Withdraw one of ``author``'s active alerts (an ``Update`` with ``alertStatus: retracted``)."""
    row = await owned(fed, author, object_iri)
    if row.kind != Kind.ALERT.value:
        raise InvalidInput(f"only an alert is retracted; this is a {row.kind}", field="object")
    status = row.document.get("alertStatus", AlertStatus.ACTIVE.value)
    if status != AlertStatus.ACTIVE.value:
        raise InvalidInput(f"this alert is already {status}", field="object")
    return await update(fed, author, {"id": row.iri, "alertStatus": AlertStatus.RETRACTED.value}, by=by)


LISTED_KINDS = tuple(k.kind.value for k in kinds.listed())
"""The kinds listed with an association's content (replies, votes and endorsements are not)."""


async def list_content(
    session: AsyncSession,
    author: Actor,
    *,
    kinds: tuple[str, ...] = LISTED_KINDS,
    include_deleted: bool = False,
    limit: int = 50,
    before: int | None = None,
) -> list[RemoteObject]:
    """``author``'s own objects of ``kinds``, newest first, for those who manage them (every
    visibility: callers check that the reader may manage ``author``'s content)."""
    query = select(RemoteObject).where(
        RemoteObject.attributed_to_id == author.id,
        RemoteObject.local.is_(True),
        RemoteObject.kind.in_(kinds),
    )
    if not include_deleted:
        query = query.where(RemoteObject.deleted_at.is_(None))
    if before is not None:
        query = query.where(RemoteObject.id < before)
    return list((await session.scalars(query.order_by(RemoteObject.id.desc()).limit(limit))).all())


def status_of(row: RemoteObject, now: datetime) -> str:
    """One word for lists: deleted, retracted, superseded, expired, closed, open or published."""
    if row.deleted_at is not None:
        return "deleted"
    return kinds.by_kind(row.kind).status(row.document, now)


def _remove_nulled(document: dict[str, Any], obj: Mapping[str, Any], kind: kinds.ContentKind) -> None:
    """A property set to ``null`` in a partial ``Update`` is removed (ActivityPub §6.3.1).

    Only the optional properties a client edits may go; a property the kind requires, or one
    the object cannot exist without, is refused rather than silently kept.
    """
    for key in (k for k, v in obj.items() if v is None and k in document):
        if key not in REMOVABLE | kind.removable or (key == "name" and kind.named):
            raise InvalidInput(f"{key} cannot be removed from a {kind.kind.value}", field=key)
        del document[key]


async def delete(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Delete one of ``author``'s objects: a tombstone stays (410), a Delete goes to its audience."""
    row = await owned(fed, author, object_iri)
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Delete",
        "object": {"id": row.iri, "type": "Tombstone"},
        "to": row.document.get("to", []),
        "cc": row.document.get("cc", []),
    }
    priority = kinds.by_kind(row.kind).priority
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        stored.deleted_at = now
        stored.document = {
            "id": row.iri,
            "type": "Tombstone",
            "formerType": row.type,
            "deleted": wire.iso(now),
        }
        if row.kind == Kind.ENDORSEMENT.value:
            await session.execute(
                sa_update(Endorsement).where(Endorsement.iri == row.iri).values(withdrawn_at=now)
            )
        published = await publish(
            session,
            author,
            activity,
            visibility=row.visibility,
            now=now,
            priority=priority,
            also=await holders(session, stored),
        )
        audit(session, author, by, f"{row.kind}.delete", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


RELAYABLE = LISTED_KINDS
"""What an association relays: what it lists (never replies, votes or endorsements)."""


async def announce(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Relay (``Announce``) a public object — typically another association's alert — to
    ``author``'s followers. Members-only and private objects are never relayed (case 42)."""
    iri = iri_value(object_iri, "object")
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        original = await session.get(Actor, row.attributed_to_id) if row is not None else None
    if (
        row is None
        or original is None
        or row.deleted_at is not None
        or row.visibility not in PUBLICLY_READABLE
        or row.kind not in RELAYABLE
    ):
        raise InvalidInput(
            "object names no public post, resource, alert or proposal known here", field="object"
        )
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Announce",
        "object": row.iri,
        "to": [AS_PUBLIC],
        "cc": [author.followers_iri or "", original.iri],
    }
    priority = kinds.by_kind(row.kind).priority
    async with fed.node.sessions.begin() as session:
        await check_acting(session, author, [by], now=now)
        published = await publish(session, author, activity, visibility="public", now=now, priority=priority)
        audit(session, author, by, f"{row.kind}.announce", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


async def relay_member_activity(
    fed: Federation, group: Actor, activity: Mapping[str, Any], row: RemoteObject
) -> None:
    """FEP-1b12: the association relays a member's activity in an ``Announce`` to its followers
    (members only for members-only content; never direct messages). The activity keeps its id,
    actor and addressing; its object is the copy we stored, sanitised (receivers refetch it from
    its origin anyway, and our outbox never serves a peer's raw HTML)."""
    uris = fed.node.uris
    level = Visibility(row.visibility)
    members = uris.members(Iri(group.iri))
    if level is Visibility.DIRECT and members in visibility.addressed_in(row.document):
        # A member addressed the association's members collection: members-only content of this
        # association (our classification of a peer's object only knows its author's followers).
        level = Visibility.MEMBERS
    if level is Visibility.DIRECT:
        return
    to, cc = address(
        level,
        actor_followers=Iri(group.followers_iri or ""),
        group_members=members,
    )
    now = fed.node.clock()
    relayed = dict(activity)
    if isinstance(relayed.get("object"), dict):
        # The object as stored, sanitised (security case 35): our outbox never serves a peer's raw
        # HTML. Integrity proofs of the original no longer hold and are not relayed.
        relayed = {k: v for k, v in relayed.items() if k not in ("signature", "proof")}
        relayed["object"] = row.document
    announce = {
        "id": new_activity_iri(uris),
        "type": "Announce",
        "object": relayed,
        "to": list(to),
        "cc": list(cc),
    }
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        if stored is not None and stored.audience_id is None:
            stored.audience_id = group.id
        if stored is not None and stored.audience_id == group.id:
            stored.visibility = level.value
        await publish(session, group, announce, visibility=level.value, now=now)
    fed.notify_worker()
    log.info("member activity relayed", extra={"group": group.iri, "object": row.iri})


async def relay_change(fed: Federation, object_iri: str) -> int:
    """A peer's object that our associations relayed was edited or deleted: relay it again, so
    that nodes which got it only through us refetch it from its origin. Returns the relays.

    The relays are read from ``relays`` (which names the object also when the ``Announce``
    wrapped its ``Create``, FEP-1b12, and loses the rows a relayer undid); each association
    relays again to the audience of its latest relay, at that relay's visibility (decision 85)."""
    async with fed.node.sessions() as session:
        rows = (
            await session.execute(
                select(Activity.actor_id, Activity.document, Activity.visibility)
                .join(Relay, Relay.announce_iri == Activity.iri)
                .join(Actor, Actor.id == Activity.actor_id)
                .where(Relay.object_iri == object_iri, Actor.local.is_(True))
                .order_by(Activity.id)
            )
        ).all()
    relayers = {actor_id: (document, level) for actor_id, document, level in rows}
    if not relayers:
        return 0
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        for actor_id, (previous, level) in relayers.items():
            actor = await session.get(Actor, actor_id)
            assert actor is not None
            activity = {
                "id": new_activity_iri(fed.node.uris),
                "type": "Announce",
                "object": object_iri,
                "to": previous.get("to", [AS_PUBLIC]),
                "cc": previous.get("cc", []),
            }
            await publish(session, actor, activity, visibility=level, now=now)
    fed.notify_worker()
    return len(relayers)


async def local_author(session: AsyncSession, iri: str) -> Actor | None:
    actor = await actor_queries.by_iri(session, iri)
    return actor if actor is not None and actor.local else None
