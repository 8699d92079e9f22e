"""Content objects from peers: relevance, sanitising, storage, updates and tombstones."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import classify
from federation.errors import FederationError
from federation.fetch import DocumentGone, FetchTemporaryFailure
from federation.inbox import InboundActivity
from federation.iri import host_of
from federation.types import Iri
from federation.uris import OBJECT_CONTEXT
from federation.vocab.activities import Create
from federation.vocab.entraide import kind_of
from federation.vocab.objects import Content, Tombstone
from federation.vocab.parse import parse_object
from server.db.models import Actor, RemoteObject
from server.db.queries import objects as object_queries
from server.services.content.sanitize import plain_text, sanitize_html
from server.services.federation import Federation
from server.services.membership.members import is_active_member
from server.services.moderation import blocks

log = logging.getLogger(__name__)

THREAD_SUFFIX = OBJECT_CONTEXT.removeprefix("{object}")

STORED_TYPES = frozenset(
    {"Note", "Article", "Question", "Page", "Document", "Event", "Image", "Video", "Audio"}
)


# Remote attachments must be media (security case 38): a Note, an Actor or a Link is dropped.
ATTACHMENT_TYPES = frozenset({"Document", "Image", "Video", "Audio"})


def _http_url(value: Any, local_host: str | None) -> str | None:
    """``value`` if it is an absolute http(s) URL that is not on our own host, else None."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return None
    try:
        host = host_of(value)
    except ValueError:
        return None
    return None if host == local_host else value


def _links(value: Any, local_host: str | None) -> Any:
    """``url``: http(s) IRIs and Links with an http(s) ``href`` only (no javascript:, no data:)."""
    kept: list[Any] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            href = _http_url(item.get("href"), local_host)
            if href is not None:
                kept.append(
                    {k: plain_text(v) if k == "name" and isinstance(v, str) else v for k, v in item.items()}
                )
        elif _http_url(item, local_host) is not None:
            kept.append(item)
    return kept if isinstance(value, list) else (kept[0] if kept else None)


def _attachments(value: Any, local_host: str | None) -> list[dict[str, Any]]:
    """Media with an http(s) ``url`` off our host, with a plain-text ``name``; nothing else."""
    kept = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict) or item.get("type") not in ATTACHMENT_TYPES:
            continue
        url = _links(item.get("url"), local_host)
        if not url:
            continue
        doc = {**item, "url": url}
        if isinstance(doc.get("name"), str):
            doc["name"] = plain_text(doc["name"])
        kept.append(doc)
    return kept


def _tags(value: Any) -> list[dict[str, Any]]:
    """Hashtags and mentions with a plain-text ``name`` and an http(s) ``href`` (else none)."""
    kept = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            continue
        doc = {k: v for k, v in item.items() if k != "href"}
        if _http_url(item.get("href"), None) is not None:
            doc["href"] = item["href"]
        if isinstance(doc.get("name"), str):
            doc["name"] = plain_text(doc["name"])
        kept.append(doc)
    return kept


def sanitized_document(raw: dict[str, Any], *, local_host: str | None = None) -> dict[str, Any]:
    """The object's JSON with every HTML field sanitised (security case 35); ``bto``/``bcc`` dropped.

    Names of the object, its attachments and tags are plain text; ``url``, attachment URLs and
    tag links are http(s) only. Attachments are media only, and never our own URLs (``local_host``):
    a peer cannot show another association's uploads or one of our objects as its own (case 38).
    """
    doc = {k: v for k, v in raw.items() if k not in ("bto", "bcc")}
    for field in ("content", "summary"):
        if isinstance(doc.get(field), str):
            doc[field] = sanitize_html(doc[field])
    if isinstance(doc.get("name"), str):
        doc["name"] = plain_text(doc["name"])
    for field in ("contentMap", "summaryMap"):
        if isinstance(doc.get(field), dict):
            doc[field] = {k: sanitize_html(v) for k, v in doc[field].items() if isinstance(v, str)}
    if isinstance(doc.get("nameMap"), dict):
        doc["nameMap"] = {k: plain_text(v) for k, v in doc["nameMap"].items() if isinstance(v, str)}
    if "url" in doc:
        url = _links(doc["url"], None)
        if url:
            doc["url"] = url
        else:
            del doc["url"]
    if "attachment" in doc:
        doc["attachment"] = _attachments(doc["attachment"], local_host)
    if "tag" in doc:
        doc["tag"] = _tags(doc["tag"])
    return doc


async def fetch_object(fed: Federation, iri: str) -> tuple[Content | Tombstone, dict[str, Any]]:
    """Fetch an object from its origin, signed as the node's Application actor.

    Raises:
        FetchError subclasses, InvalidDocument.
    """
    document = await fed.fetch(iri)
    return parse_object(document), document


def is_relevant(fed: Federation, content: Content, facts: object_queries.StoringFacts) -> bool:
    """Do we keep this object? Only when a local actor follows its author, is addressed by it,
    or it replies to one of our objects (Mastodon: "no relevance to local activity"). From a
    silenced domain, only when a local actor follows its author: nobody else here would be shown
    it, replies and mentions included (decision 79). ``facts``: read by ``store_object`` in the
    same statement as the rest of what it checks."""
    if facts.followed:
        return True
    if facts.silenced:
        return False
    addressed = (*content.to, *content.cc, *content.audience, *content.mentions)
    if any(fed.node.uris.local_actor_ref(iri) is not None for iri in addressed):
        return True
    return content.in_reply_to is not None and fed.node.uris.is_local(content.in_reply_to)


def members_of(author: Actor) -> str | None:
    """A peer association's members collection, from its document: content it addresses there is
    members-only (read here by our accounts that are its members), not direct."""
    members = (author.document or {}).get("members") if author.type == "Group" else None
    return members if isinstance(members, str) else None


async def store_object(
    fed: Federation,
    content: Content,
    raw: dict[str, Any],
    author: Actor,
    *,
    now: datetime,
    require_relevance: bool = True,
) -> RemoteObject | None:
    """Store a peer's object once. Never resurrects a tombstone, never takes over another
    author's object (security cases 5 and 15). Returns the row, or None when dropped."""
    async with fed.node.sessions.begin() as session:
        return await store_object_in(
            session, fed, content, raw, author, now=now, require_relevance=require_relevance
        )


async def store_object_in(
    session: AsyncSession,
    fed: Federation,
    content: Content,
    raw: dict[str, Any],
    author: Actor,
    *,
    now: datetime,
    require_relevance: bool = True,
) -> RemoteObject | None:
    """:func:`store_object` in the caller's transaction (the inbox files a ``Create`` in the same
    one: decision 89); the new row is flushed, so later statements of the transaction see it."""
    if content.id is None or content.type not in STORED_TYPES:
        return None
    if host_of(content.id) != author.host or content.author != author.iri:
        log.info(
            "object dropped: author or origin mismatch", extra={"object": content.id, "author": author.iri}
        )
        return None
    facts = await _storing_facts(session, content.id, author.id)
    if facts.known:
        existing = await session.scalar(select(RemoteObject).where(RemoteObject.iri == content.id))
        if existing is not None:
            if existing.attributed_to_id != author.id:
                log.warning("object dropped: id owned by another actor", extra={"object": content.id})
            return None if existing.attributed_to_id != author.id or existing.deleted_at else existing
    if require_relevance and not is_relevant(fed, content, facts):
        _dropped_as_irrelevant(content)
        return None
    parent = (
        await session.scalar(select(RemoteObject).where(RemoteObject.iri == content.in_reply_to))
        if content.in_reply_to is not None
        else None
    )
    if parent is not None and not await _may_reply(session, parent, author):
        log.info("reply refused: replies from members only", extra={"object": content.id})
        return None
    visibility = classify(
        content.to, content.cc, followers_iri=author.followers_iri or "", members_iri=members_of(author)
    )
    row = RemoteObject(
        iri=content.id,
        local=False,
        type=content.type,
        kind=kind_of(content).value,
        attributed_to_id=author.id,
        audience_id=author.id if author.type == "Group" else None,  # an association's own content
        in_reply_to_iri=content.in_reply_to,
        context_iri=_held_thread(fed, content, parent),
        visibility=visibility.value,
        document=_without_rejected_media(fed, raw, reject_media=facts.rejects_media),
        published=content.published or now,
        updated=content.updated,
        received_at=now,
    )
    session.add(row)
    await session.flush()
    log.info(
        "object stored", extra={"object": content.id, "type": content.type, "visibility": row.visibility}
    )
    return row


def _dropped_as_irrelevant(content: Content) -> None:
    log.debug("object dropped: not relevant to this node", extra={"object": content.id})


_FACTS_READER: ContextVar[object_queries.FactsReader | None] = ContextVar(
    "entraide_facts_reader", default=None
)

_EARLY_FACTS: ContextVar[list[tuple[str, int, object_queries.StoringFacts]] | None] = ContextVar(
    "entraide_early_facts", default=None
)


@contextmanager
def facts_read_together(
    reader: object_queries.FactsReader, early: tuple[str, int, object_queries.StoringFacts] | None = None
) -> Iterator[None]:
    """Within the block (one task), :func:`store_object_in` reads what it decides on through
    ``reader``, together with the other runs of the inbox lane (decision 95), whenever its session
    has not begun: nothing is then written in it that a read elsewhere would miss.

    ``early``: ``(object IRI, author id, facts)`` the lane read for this run before it started
    (:func:`facts_wanted`), once its ordering let it start, together with the other runs started
    meanwhile; :func:`dropped_early` may drop the object on them before any session is opened
    (decision 102)."""
    token = _FACTS_READER.set(reader)
    early_token = _EARLY_FACTS.set([early] if early is not None else None)
    try:
        yield
    finally:
        _EARLY_FACTS.reset(early_token)
        _FACTS_READER.reset(token)


def facts_wanted(inbound: InboundActivity, author: Actor | None) -> tuple[str, int] | None:
    """The object and author whose storing facts processing ``inbound`` will read first, when the
    inbox lane can read them before the run (a ``Create`` with its object embedded, from a known
    author): see :func:`dropped_early`."""
    activity = inbound.activity
    target = activity.object
    if (
        author is None
        or not isinstance(activity, Create)
        or target is None
        or target.id is None
        or not isinstance(target.value, Content)
    ):
        return None
    return target.id, author.id


def dropped_early(fed: Federation, content: Content, author: Actor) -> bool:
    """Whether :func:`store_object_in` would drop ``content`` as not relevant, on the facts the
    inbox lane read for this run before it started (``facts_read_together(early=…)``), without
    opening a session: most of the ``Create`` activities a busy node receives end there (decision 102).

    Only ever drops: an object that is known, relevant, or not the one read early goes through
    :func:`store_object_in`, which reads its facts again. The facts are used once."""
    early = _EARLY_FACTS.get()
    if not early:
        return False
    object_iri, author_id, facts = early.pop()
    if (
        object_iri != content.id
        or author_id != author.id
        or content.type not in STORED_TYPES
        or host_of(content.id) != author.host
        or content.author != author.iri
        or facts.known
        or is_relevant(fed, content, facts)
    ):
        return False
    _dropped_as_irrelevant(content)
    return True


async def _storing_facts(
    session: AsyncSession, object_iri: str, author_id: int
) -> object_queries.StoringFacts:
    """What :func:`store_object_in` decides on: through the inbox lane's reader when one is set and
    ``session`` has neither begun nor anything pending, else on ``session``'s own connection."""
    reader = _FACTS_READER.get()
    if (
        reader is not None
        and not session.in_transaction()
        and not (session.new or session.dirty or session.deleted)
    ):
        return await reader.facts(object_iri, author_id)
    return await object_queries.storing_facts(session, object_iri, author_id)


async def _shown_document(
    session: AsyncSession, fed: Federation, raw: dict[str, Any], author: Actor
) -> dict[str, Any]:
    """The sanitised document, without its media when the author's domain is blocked with
    ``reject_media`` (its attachments are then neither stored nor shown: decision 63)."""
    return _without_rejected_media(fed, raw, reject_media=await blocks.rejects_media(session, author.id))


def _without_rejected_media(fed: Federation, raw: dict[str, Any], *, reject_media: bool) -> dict[str, Any]:
    document = sanitized_document(raw, local_host=host_of(fed.node.uris.origin))
    return blocks.without_media(document) if reject_media else document


def _held_thread(fed: Federation, content: Content, parent: RemoteObject | None) -> Iri | None:
    """The thread a peer's object joins, from its ``inReplyTo`` chain as we hold it (FEP-7888):
    its parent's thread, else the parent itself. A peer's ``context`` is kept only when it names
    none of our collections: a claim about one of our threads never files an object into it,
    members-only ones included (security case 49)."""
    if parent is not None:
        return Iri(parent.context_iri or parent.iri)
    if content.in_reply_to is not None:
        return content.in_reply_to
    claimed = content.context
    return claimed if claimed is not None and not fed.node.uris.is_local(claimed) else None


async def thread_association(session: AsyncSession, parent: RemoteObject) -> Actor | None:
    """The local association whose content ``parent`` is part of: the one it was posted into,
    else its thread root's. A reply to ``parent`` is a reply into that association's content."""
    audience_id = parent.audience_id
    if audience_id is None and parent.context_iri is not None and parent.context_iri.endswith(THREAD_SUFFIX):
        root_iri = parent.context_iri.removesuffix(THREAD_SUFFIX)
        audience_id = await session.scalar(
            select(RemoteObject.audience_id).where(
                RemoteObject.iri == root_iri, RemoteObject.context_iri == parent.context_iri
            )
        )
    group = await session.get(Actor, audience_id) if audience_id is not None else None
    return group if group is not None and group.local and group.type == "Group" else None


async def _may_reply(session: AsyncSession, parent: RemoteObject, author: Actor) -> bool:
    """The replies policy of the association whose content ``parent`` is, for every reply into
    it, whatever the reply addresses (security case 49)."""
    group = await thread_association(session, parent)
    if group is None or group.replies_policy != "members" or group.id == author.id:
        return True
    return await is_active_member(session, group.id, author.id)


async def update_object(
    fed: Federation, content: Content, raw: dict[str, Any], author: Actor, *, now: datetime
) -> bool:
    """Apply an ``Update`` from the object's stored author only (security case 18)."""
    if content.id is None:
        return False
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == content.id))
        if row is None or row.attributed_to_id != author.id or row.deleted_at is not None or row.local:
            return False
        if content.updated is not None and row.updated is not None and content.updated < row.updated:
            # An older revision arriving late (a delivery retried after a catch-up applied a newer
            # one): the copy we hold is already newer, and stays (issue 13).
            return True
        row.document = await _shown_document(session, fed, raw, author)
        row.updated = content.updated or now
        row.visibility = classify(
            content.to, content.cc, followers_iri=author.followers_iri or "", members_iri=members_of(author)
        ).value
    return True


async def tombstone(fed: Federation, object_iri: str, author: Actor, *, now: datetime) -> bool:
    """Delete by the stored owner only; keep a tombstone so the object never comes back.

    A ``Delete`` arriving before its ``Create`` leaves a tombstone too (Mastodon keeps such
    Deletes for hours; a permanent tombstone is simpler and stricter).
    """
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
        if row is None:
            if host_of(object_iri) != author.host:
                return False
            session.add(
                RemoteObject(
                    iri=object_iri,
                    local=False,
                    type="Tombstone",
                    attributed_to_id=author.id,
                    visibility="direct",
                    document={"id": object_iri, "type": "Tombstone"},
                    published=now,
                    received_at=now,
                    deleted_at=now,
                )
            )
            return True
        if row.attributed_to_id != author.id or row.local:
            log.warning("delete refused: not the owner", extra={"object": object_iri, "actor": author.iri})
            return False
        if row.deleted_at is not None:
            return True  # already a tombstone (a catch-up meets the Delete and the Create's Tombstone)
        row.deleted_at = now
        row.document = {"id": object_iri, "type": "Tombstone", "formerType": row.type}
    return True


async def resolve_content(
    fed: Federation, ref_id: Iri | None, embedded: object, raw_embedded: object
) -> tuple[Content | None, dict[str, Any] | None]:
    """The object of an activity: the embedded value when the inbox kept it (same origin),
    else fetched from its origin. Local ids are never fetched (security case 17)."""
    if isinstance(embedded, Content) and isinstance(raw_embedded, dict):
        return embedded, raw_embedded
    if ref_id is None or fed.node.uris.is_local(ref_id):
        return None, None
    try:
        content, raw = await fetch_object(fed, ref_id)
    except FetchTemporaryFailure:
        raise  # the job is retried later
    except FederationError as exc:
        log.info("object fetch failed", extra={"object": ref_id, "code": exc.code})
        return None, None
    return (content, raw) if isinstance(content, Content) else (None, None)


async def refresh(fed: Federation, row: RemoteObject, *, now: datetime) -> None:
    """Refetch a peer's object we hold from its origin: apply its edits, or its deletion
    (404/410 or a ``Tombstone``). The stored author must still be the author."""
    async with fed.node.sessions() as session:
        author = await session.get(Actor, row.attributed_to_id)
    if author is None:
        return
    try:
        content, raw = await fetch_object(fed, row.iri)
    except FetchTemporaryFailure:
        raise
    except DocumentGone:
        await tombstone(fed, row.iri, author, now=now)
        return
    except FederationError as exc:
        log.info("object refresh failed", extra={"object": row.iri, "code": exc.code})
        return
    if isinstance(content, Tombstone):
        await tombstone(fed, row.iri, author, now=now)
    elif content.author == author.iri and content.updated != row.updated:
        await update_object(fed, content, raw, author, now=now)


async def object_of_activity(fed: Federation, activity_iri: str) -> str | None:
    """The object IRI of a ``Create`` fetched from its origin, when the object lives on that
    same origin (what a group relays across hosts is checked at the source, case 16)."""
    if fed.node.uris.is_local(activity_iri):
        return None
    try:
        document = await fed.fetch(activity_iri)
    except FetchTemporaryFailure:
        raise
    except FederationError as exc:
        log.info("relayed activity fetch failed", extra={"activity": activity_iri, "code": exc.code})
        return None
    if document.get("type") != "Create" or document.get("id") != activity_iri:
        return None
    inner = document.get("object")
    inner_iri = inner.get("id") if isinstance(inner, dict) else inner
    if not isinstance(inner_iri, str) or host_of(inner_iri) != host_of(activity_iri):
        return None
    return inner_iri
