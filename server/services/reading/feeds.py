"""Atom, RSS 2.0 and JSON Feed 1.1 of an association's public content (the institutions' view).

Institutions subscribe read-only, without an account, to a local association (``Group``): one
feed of all its content (posts, resources, alerts, proposals) and one per kind. What a feed may
list is decided in one place, :func:`server.services.reading.visibility.feed_levels` (public only), and
applied by the one scope function :func:`feed_scope` that both queries below go through.

Caching: :func:`feed_state` reads the feed's change markers (``feed_marks``, a few rows
kept by triggers), so a conditional GET that matches is answered 304 without rendering, at a
cost that does not grow with the association's content. The markers only ever move for rows the
feed may show (and tombstones of those), so a non-public write cannot be observed through them.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from feedgen.ext.base import BaseEntryExtension, BaseExtension  # type: ignore[import-untyped]
from feedgen.feed import FeedGenerator  # type: ignore[import-untyped]
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation import uris as paths
from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab import entraide as wire
from federation.vocab.entraide import CATEGORY_LABELS, SEVERITY_LABELS, AlertCategory, Severity, iso
from server.db.models import RemoteObject
from server.db.queries import bare
from server.services.content import kinds
from server.services.content.sanitize import plain_text
from server.services.errors import NotFound
from server.services.reading import visibility

MAX_ENTRIES: Final = 50
TITLE_CHARS: Final = 80
RENDER_VERSION: Final = "1"  # bump when the rendering changes, so every ETag changes with it

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
MEDIA_TYPES: Final[Mapping[str, str]] = {fmt: ct.split(";")[0] for fmt, ct in CONTENT_TYPES.items()}
FORMAT_LABELS: Final[Mapping[str, str]] = {"atom": "Atom", "rss": "RSS", "json": "JSON Feed"}

# Feed kind (URL) -> object kinds listed, from the kinds' registry: every listed kind in the feed
# of all content, and one feed per kind that has a feed path. Replies, votes and endorsements never
# appear.
OBJECT_KINDS: Final[Mapping[str | None, tuple[str, ...]]] = {
    None: tuple(k.kind.value for k in kinds.listed()),
    **{k.feed_path: (k.kind.value,) for k in kinds.listed() if k.feed_path is not None},
}
KIND_LABELS: Final[Mapping[str | None, str]] = {
    None: "tout le contenu",
    **{k.feed_path: k.feed_label or k.feed_path for k in kinds.listed() if k.feed_path is not None},
}

# Characters XML 1.0 cannot carry at all; lxml refuses them, so they are dropped, never a 500.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = re.compile(r"\s+")
_BLOCK_TAG = re.compile(r"</?(?:p|br|li|ul|ol|h[1-6]|blockquote|pre)\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """Which feed: ``fmt`` (atom, rss, json) and ``kind`` (alerts, resources, proposals, or None for all)."""

    fmt: str
    kind: str | None = None

    @property
    def object_kinds(self) -> tuple[str, ...]:
        return OBJECT_KINDS[self.kind]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]


def parse_feed_spec(fmt: str, kind: str | None = None) -> FeedSpec:
    """Raises NotFound for an unknown format or kind (the same answer as a missing association)."""
    if fmt not in CONTENT_TYPES or (kind is not None and kind not in OBJECT_KINDS):
        raise NotFound("no such feed")
    return FeedSpec(fmt, kind)


@dataclass(frozen=True, slots=True)
class FeedLink:
    """One ``<link rel="alternate">`` of an association's HTML page."""

    media_type: str
    href: Iri
    title: str


def feed_links(uris: UriScheme, owner_iri: Iri, owner_name: str) -> list[FeedLink]:
    """Every feed of an association: all content in the three formats first, then per kind."""
    return [
        FeedLink(MEDIA_TYPES[fmt], uris.feed(owner_iri, fmt, kind), _title(owner_name, kind, fmt))
        for kind in (None, *paths.FEED_KINDS)
        for fmt in paths.FEED_FORMATS
    ]


def _title(owner_name: str, kind: str | None, fmt: str | None = None) -> str:
    title = f"{owner_name} — {KIND_LABELS[kind]}"
    return f"{title} ({FORMAT_LABELS[fmt]})" if fmt else title


@dataclass(frozen=True, slots=True)
class FeedOwner:
    """What a feed needs of its association (a narrow read: the actor row carries its document)."""

    id: int
    iri: str
    url: str | None
    handle: str
    name: str
    summary: str
    created_at: datetime


def feed_scope(owner: FeedOwner, spec: FeedSpec) -> list[ColumnElement[bool]]:
    """The one filter of what a feed may contain: the association's own local objects of the
    feed's kinds, at the feeds channel's visibility levels, not replies. Tombstones are left to
    the caller (the validators count them, the entries do not)."""
    return [
        RemoteObject.attributed_to_id == owner.id,
        RemoteObject.local.is_(True),
        RemoteObject.visibility.in_(visibility.feed_levels()),
        RemoteObject.kind.in_(spec.object_kinds),
        # A reply stored as a plain post must not surface either (kinds are set by the publisher).
        RemoteObject.in_reply_to_iri.is_(None),
    ]


@dataclass(frozen=True, slots=True)
class Validators:
    """A strong ``etag`` (quoted, as sent) and ``last_modified`` (UTC, whole seconds)."""

    etag: str
    last_modified: datetime


_OWNER_AND_MARKS = (
    "SELECT a.id, a.iri, a.url, a.handle, a.name, a.summary, a.created_at, m.kind, m.version, m.changed_at"
    " FROM actors a LEFT JOIN feed_marks m ON m.actor_id = a.id AND m.kind IN ({kinds})"
    " WHERE a.local = ? AND a.type = 'Group' AND a.handle = ? AND a.deleted_at IS NULL ORDER BY m.kind"
)


async def feed_state(session: bare.Source, handle: str, spec: FeedSpec) -> tuple[FeedOwner, Validators]:
    """The local association whose feed is asked for, and the feed's validators; NotFound for
    anything else (a Person too).

    One statement through the bare driver (decisions 91 and 96): the association's row joined to
    its ``feed_marks`` rows of the feed's kinds (a primary-key read of at most four rows), run by
    every feed request that the page cache does not answer.
    """
    rows = []
    if paths.is_valid_handle(handle):
        kinds = sorted(spec.object_kinds)
        sql = _OWNER_AND_MARKS.format(kinds=bare.marks(len(kinds)))
        rows = await bare.fetch(session, sql, [*kinds, True, handle])
    if not rows:
        raise NotFound("no such feed")
    actor_id, iri, url, found, name, summary, created_at = rows[0][:7]
    owner = FeedOwner(actor_id, iri, url, found, name, summary, bare.utc(created_at))
    marks = [(kind, int(version), bare.utc(at)) for *_, kind, version, at in rows if kind is not None]
    return owner, feed_validators(owner, spec, marks)


def feed_validators(
    owner: FeedOwner, spec: FeedSpec, marks: Sequence[tuple[str, int, datetime]]
) -> Validators:
    """ETag and Last-Modified of a feed from the feed's change markers (decision 47), ``marks``
    being its ``feed_marks`` rows (kind, version, changed_at in UTC) ordered by kind.

    ``feed_marks`` holds, per association and kind, a version that every insert, update or
    delete of a row in the feeds' scope moves (triggers, migration 0014) and the newest
    ``coalesce(deleted_at, updated, published)`` of those changes: one primary-key read of at
    most four rows, whatever the association published. The ETag hashes the rendering version,
    the feed (format, kind), what the feed shows of the association and the kinds' versions;
    Last-Modified is the newest change (the association's creation for an empty feed).
    """
    newest_change = max((changed for _, _, changed in marks), default=None)
    last_modified = newest_change if newest_change is not None else owner.created_at
    shown = (owner.id, owner.iri, owner.url, owner.handle, owner.name, owner.summary)
    versions = ",".join(f"{kind}:{version}" for kind, version, _ in marks) or "-"
    change = newest_change.isoformat() if newest_change is not None else "-"
    state = "\x1f".join(map(str, (RENDER_VERSION, spec.fmt, spec.kind, *shown, versions, change)))
    digest = hashlib.sha256(state.encode()).hexdigest()[:32]
    return Validators(f'"{digest}"', last_modified.replace(microsecond=0))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- entries --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    url: str
    media_type: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One entry, format-neutral: HTML fields are the sanitised HTML stored with the object."""

    id: str
    url: str
    title: str
    content_html: str
    summary_html: str | None
    published: datetime
    updated: datetime
    tags: tuple[tuple[str, str], ...]  # (term, label)
    attachments: tuple[Attachment, ...]


async def feed_items(session: AsyncSession, owner: FeedOwner, spec: FeedSpec) -> list[FeedItem]:
    """The ``MAX_ENTRIES`` newest listable objects (by insertion, i.e. publication), newest first."""
    stmt = (
        select(
            RemoteObject.iri,
            RemoteObject.kind,
            RemoteObject.document,
            RemoteObject.published,
            RemoteObject.updated,
        )
        .where(*feed_scope(owner, spec), RemoteObject.deleted_at.is_(None))
        .order_by(RemoteObject.id.desc())
        .limit(MAX_ENTRIES)
    )
    rows = (await session.execute(stmt)).all()
    return [item_of(iri, kind, doc, published, updated) for iri, kind, doc, published, updated in rows]


def _http(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def _link_href(value: Any) -> str | None:
    """``url`` of an AS2 object: an IRI, a Link, or a list of either (the first http(s) one)."""
    for candidate in value if isinstance(value, list) else [value]:
        href = _http(candidate.get("href") if isinstance(candidate, dict) else candidate)
        if href:
            return href
    return None


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _excerpt(html_text: str) -> str:
    # Paragraphs and line breaks become spaces, or "<p>a</p><p>b</p>" would read "ab".
    text = _SPACES.sub(" ", plain_text(_BLOCK_TAG.sub(" ", html_text))).strip()
    return text if len(text) <= TITLE_CHARS else text[:TITLE_CHARS].rstrip() + "…"


def _tags(doc: Mapping[str, Any], kind: str) -> tuple[tuple[str, str], ...]:
    tags: dict[str, str] = {}
    if kind == "alert":
        severity = _enum(Severity, doc.get("severity"))
        if severity is not None:
            tags[severity.value] = SEVERITY_LABELS[severity]
        category = _enum(AlertCategory, doc.get("category"))
        if category is not None:
            tags[category.value] = CATEGORY_LABELS[category]
    raw = doc.get("tag")
    for tag in raw if isinstance(raw, list) else [raw]:
        name = tag.get("name") if isinstance(tag, dict) and tag.get("type", "Hashtag") == "Hashtag" else None
        if isinstance(name, str) and name.strip("#").strip():
            term = name.strip().lstrip("#")[:100]
            tags.setdefault(term, term)
    return tuple(tags.items())


def _enum(cls: Any, value: Any) -> Any:
    try:
        return cls(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _attachments(doc: Mapping[str, Any]) -> tuple[Attachment, ...]:
    raw = doc.get("attachment")
    found = []
    for item in raw if isinstance(raw, list) else [raw]:
        if not isinstance(item, dict):
            continue
        url = _link_href(item.get("url")) or _http(item.get("href"))
        if url is None:
            continue
        media_type = item.get("mediaType")
        name = item.get("name")
        found.append(
            Attachment(
                url,
                media_type
                if isinstance(media_type, str) and "/" in media_type
                else "application/octet-stream",
                plain_text(name)[:200] if isinstance(name, str) and name else None,
            )
        )
    return tuple(found)


def _proposal_html(doc: Mapping[str, Any]) -> str:
    """A proposal's options and closing time, which readers outside the fediverse cannot poll."""
    options = doc.get("anyOf") if isinstance(doc.get("anyOf"), list) else doc.get("oneOf")
    names = [o["name"] for o in options or [] if isinstance(o, dict) and isinstance(o.get("name"), str)]
    out = "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in names) + "</ul>" if names else ""
    end = wire.parse_time(doc.get("endTime"))
    if end is not None:
        out += f"<p>Fin du vote : {end.strftime('%Y-%m-%d %H:%M')} UTC</p>"
    return out


def item_of(
    iri: str, kind: str, doc: Mapping[str, Any], published: datetime, updated: datetime | None
) -> FeedItem:
    """Map one stored object to an entry (total: any document gives an entry, never an exception)."""
    content = _str(doc, "content")
    if kind == "proposal":
        content += _proposal_html(doc)
    title = plain_text(_str(doc, "name")).strip() or _excerpt(content) or _excerpt(_str(doc, "summary"))
    if not title:
        title = published.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    severity = _enum(Severity, doc.get("severity")) if kind == "alert" else None
    if severity is not None:
        title = f"[{SEVERITY_LABELS[severity]}] {title}"
    published = _utc(published).replace(microsecond=0)
    return FeedItem(
        id=iri,
        url=_link_href(doc.get("url")) or iri,
        title=title,
        content_html=content,
        summary_html=_str(doc, "summary") or None,
        published=published,
        updated=_utc(updated).replace(microsecond=0) if updated is not None else published,
        tags=_tags(doc, kind),
        attachments=_attachments(doc),
    )


# --- rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """What a feed says about itself."""

    feed_iri: Iri
    home_iri: Iri
    title: str
    description: str
    author_name: str
    author_iri: Iri
    updated: datetime


def feed_meta(uris: UriScheme, owner: FeedOwner, spec: FeedSpec, validators: Validators) -> FeedMeta:
    owner_iri = Iri(owner.iri)
    name = owner.name or owner.handle
    title = name if spec.kind is None else _title(name, spec.kind)
    return FeedMeta(
        feed_iri=uris.feed(owner_iri, spec.fmt, spec.kind),
        home_iri=Iri(owner.url or owner.iri),
        title=title,
        description=_SPACES.sub(" ", plain_text(owner.summary)).strip() or title,
        author_name=name,
        author_iri=owner_iri,
        updated=validators.last_modified,
    )


def render_feed(spec: FeedSpec, meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    """The feed's bytes; the same inputs always give the same bytes (the ETag is strong)."""
    if spec.fmt == "json":
        return render_json_feed(meta, items)
    return _render_xml(spec.fmt, meta, items)


def _x(value: str) -> str:
    return _NOT_XML.sub("", value)


class _AtomEntryLinks(BaseEntryExtension):  # type: ignore[misc]
    """Writes an Atom entry's ``<link>`` elements: feedgen 1.0 drops their ``rel`` and ``type``
    (``FeedEntry.atom_entry`` reads them from the new element instead of the link's data), which
    would turn an enclosure into an alternate link."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []

    def extend_atom(self, entry: Any) -> Any:
        for attributes in self.links:
            entry.append(entry.makeelement("link", attributes))  # an lxml element, from feedgen
        return entry


def _render_xml(fmt: str, meta: FeedMeta, items: Iterable[FeedItem]) -> bytes:
    fg = FeedGenerator()
    if fmt == "rss":
        fg.load_extension("dc", atom=False, rss=True)  # RSS <author> must be an e-mail: dc:creator
    else:
        fg.register_extension("entraide_links", BaseExtension, _AtomEntryLinks, atom=True, rss=False)
    fg.id(meta.feed_iri)
    fg.title(_x(meta.title))
    fg.subtitle(_x(meta.description))
    fg.description(_x(meta.description))
    fg.author({"name": _x(meta.author_name), "uri": meta.author_iri})
    # feedgen defaults these to "now": fixed here, or equal feeds would differ byte for byte.
    fg.updated(meta.updated)
    fg.generator("Entraide")
    fg.link(href=meta.feed_iri, rel="self", type=MEDIA_TYPES[fmt])
    fg.link(href=meta.home_iri, rel="alternate", type="text/html")  # last: RSS's <link>
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.id)
        entry.title(_x(item.title))
        links = [{"href": item.url, "rel": "alternate", "type": "text/html"}]
        links += [{"href": a.url, "rel": "enclosure", "type": a.media_type} for a in item.attachments]
        if fmt == "rss":
            entry.link(links)  # <link>: the alternate; <enclosure>: the last attachment (RSS has one)
        else:
            entry.entraide_links.links = [{k: _x(v) for k, v in link.items()} for link in links]
        if item.summary_html:
            entry.summary(_x(item.summary_html), type="html")
        # Escaped as text by lxml (type="html"): the HTML was sanitised when it was stored.
        if item.content_html:
            entry.content(_x(item.content_html), type="html")
        entry.published(item.published)
        entry.updated(item.updated)
        entry.author({"name": _x(meta.author_name), "uri": meta.author_iri})
        if fmt == "rss":
            entry.dc.dc_creator(_x(meta.author_name))
        for term, label in item.tags:
            entry.category(term=_x(term), label=_x(label))
    out: bytes = fg.atom_str() if fmt == "atom" else fg.rss_str()
    return out


def render_json_feed(meta: FeedMeta, items: Iterable[FeedItem]) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    author = {"name": meta.author_name, "url": meta.author_iri}
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "home_page_url": meta.home_iri,
        "feed_url": meta.feed_iri,
        "description": meta.description,
        "authors": [author],
        "items": [_json_item(item, author) for item in items],
    }
    return orjson.dumps(doc)


def _json_item(item: FeedItem, author: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,
        "url": item.url,
        "title": item.title,
        "content_html": item.content_html,
        "date_published": iso(item.published),
        "date_modified": iso(item.updated),
        "authors": [author],
    }
    if item.summary_html:
        out["summary"] = _SPACES.sub(" ", plain_text(item.summary_html)).strip()
    if item.tags:
        out["tags"] = [term for term, _ in item.tags]
    if item.attachments:
        out["attachments"] = [
            {"url": a.url, "mime_type": a.media_type, **({"title": a.title} if a.title else {})}
            for a in item.attachments
        ]
    return out
