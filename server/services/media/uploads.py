"""Uploaded files (attachments of association resources): store, attach, read.

The type of a file is what its bytes are, sniffed with ``filetype``; what the client claimed is
never trusted, and only a short list of types that browsers cannot run as a page is accepted
(no HTML, no SVG, no office documents). Files are stored under ``media.dir`` by a random key,
never by their name: the name is metadata only. The size limit holds while the upload streams,
so at most one chunk beyond the limit is ever held in memory.

Storing is two steps so that an HTTP handler can read the rest of a form after the file:
:func:`stage_upload` checks and writes the bytes to a temporary file, :func:`commit_upload`
moves it into place (atomically) and inserts the row. :func:`store_upload` does both.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import filetype  # type: ignore[import-untyped]
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from federation.audience import PUBLICLY_READABLE
from federation.uris import UriScheme
from server.db.models import Actor, Media, RemoteObject
from server.services.context import NodeContext
from server.services.errors import InvalidInput, NotFound, ServiceError
from server.services.federation import Federation
from server.services.media.store import local_path
from server.services.reading import visibility

log = logging.getLogger(__name__)

KEY_RE: Final = re.compile(r"[0-9a-f]{32}")
MAX_FILENAME_CHARS: Final = 255  # media.filename column
MAX_DESCRIPTION_CHARS: Final = 1500  # media.description column
SNIFF_BYTES: Final = 8192  # what filetype reads of a file
# An animated PNG is a PNG that every browser displays; filetype names it apart.
TYPE_ALIASES: Final = {"image/apng": "image/png"}
# Text is refused when a browser would sniff it as a page or a scripted image (WHATWG MIME
# Sniffing, "identifying a resource with an unknown MIME type"), or when it is JSON that a careless
# peer could take for an object of ours (docs/security.md, case 12).
REFUSED_TEXT_STARTS: Final = (b"<", b"{", b"[")
MARKUP_MARKERS: Final = (
    b"<!doctype",
    b"<html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<svg",
    b"<?xml",
)
MARKUP_WINDOW: Final = 1024
# What a member may show as their avatar: images every fediverse client displays.
AVATAR_TYPES: Final = ("image/png", "image/jpeg", "image/webp", "image/gif")
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750

Chunks = bytes | AsyncIterable[bytes]


class MediaTooLarge(ServiceError):
    """The file is larger than ``media.max_bytes``."""

    code = "media_too_large"


class UnsupportedMedia(ServiceError):
    """The file's bytes are not of a type this node accepts."""

    code = "unsupported_media_type"


@dataclass(slots=True)
class StagedUpload:
    """A checked upload in a temporary file, not yet visible: commit it or discard it."""

    key: str
    temp_path: Path
    content_type: str
    size: int
    sha256: str
    filename: str

    def discard(self) -> None:
        self.temp_path.unlink(missing_ok=True)


MEDIA_CLEANUP: Final = "media_cleanup"
UNATTACHED_TTL: Final = timedelta(hours=24)
"""An upload no object uses this long after it was made is deleted (row and file)."""
CLEANUP_INTERVAL: Final = timedelta(hours=1)
CLEANUP_BATCH: Final = 500


async def remove_unattached(
    node: NodeContext, *, now: datetime, older_than: timedelta = UNATTACHED_TTL
) -> int:
    """Delete up to :data:`CLEANUP_BATCH` uploads that no object uses and that are older than
    ``older_than``: their rows first (so nothing can attach them any more), then their files.
    Returns how many were removed."""
    async with node.sessions.begin() as session:
        rows = (
            await session.scalars(
                select(Media)
                .where(
                    Media.object_id.is_(None),
                    Media.avatar_of_id.is_(None),  # an avatar in use is used by its actor
                    Media.created_at < now - older_than,
                )
                .order_by(Media.id)
                .limit(CLEANUP_BATCH)
            )
        ).all()
        keys = [row.key for row in rows]
        for row in rows:
            await session.delete(row)
    for key in keys:
        await node.media_store.delete(key)
    if keys:
        log.info("unattached uploads removed", extra={"count": len(keys)})
    return len(keys)


def is_inline(content_type: str) -> bool:
    """Whether browsers may display the type in place (images, PDF) rather than download it."""
    return content_type.startswith("image/") or content_type == "application/pdf"


def _strip_controls(value: str, *, keep: str = "") -> str:
    # Cc: C0/C1 controls; Cf: format characters such as U+202E, which can disguise "gpj.exe".
    return "".join(c for c in value if c in keep or unicodedata.category(c) not in ("Cc", "Cf"))


def sanitize_filename(name: str) -> str:
    """The file's name as metadata: no directories, no control characters, at most 255 chars."""
    base = re.split(r"[/\\]", name)[-1]
    cleaned = _strip_controls(base).strip()
    if cleaned in (".", ".."):
        return ""
    return cleaned[:MAX_FILENAME_CHARS]


def clean_description(description: str) -> str:
    """The alt text, without control characters (line breaks and tabs stay).

    Raises:
        InvalidInput: longer than 1500 characters (field ``description``).
    """
    cleaned = _strip_controls(description, keep="\n\t").strip()
    if len(cleaned) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"description is longer than {MAX_DESCRIPTION_CHARS} characters", field="description"
        )
    return cleaned


def _node_of(fed_or_node: Federation | NodeContext) -> NodeContext:
    return fed_or_node.node if isinstance(fed_or_node, Federation) else fed_or_node


async def _iterate(data: Chunks) -> AsyncIterable[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
        return
    async for chunk in data:
        yield chunk


def _open_exclusive(path: Path) -> BinaryIO:
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask must not change what the docs promise
    return os.fdopen(fd, "wb")


def _finish(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _is_markup_or_json(head: bytes) -> bool:
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0c")
    window = head[:MARKUP_WINDOW].lower()
    return start.startswith(REFUSED_TEXT_STARTS) or any(marker in window for marker in MARKUP_MARKERS)


def _sniff(head: bytes, *, is_text: bool, allowed: tuple[str, ...]) -> str:
    kind = filetype.guess(head)
    content_type: str
    if kind is not None:
        content_type = TYPE_ALIASES.get(str(kind.mime), str(kind.mime))
    elif is_text and not _is_markup_or_json(head):
        content_type = "text/plain"  # no magic number: valid UTF-8 without NUL, over the whole file
    else:
        raise UnsupportedMedia("the file's type is not recognised or not accepted", field="file")
    if content_type not in allowed:
        raise UnsupportedMedia(f"files of type {content_type} are not accepted", field="file")
    return content_type


async def stage_upload(
    fed_or_node: Federation | NodeContext,
    data: Chunks,
    *,
    filename: str,
    allowed: tuple[str, ...] | None = None,
) -> StagedUpload:
    """Check an upload and write it to a temporary file next to its final place.

    ``data`` is the whole file or an async stream of chunks; it is consumed once. The size
    limit is checked on every chunk, before the chunk is written. ``allowed`` narrows the
    node's ``media.allowed_types`` (an avatar is one of :data:`AVATAR_TYPES`).

    Raises:
        MediaTooLarge: more than ``media.max_bytes`` (field ``file``).
        UnsupportedMedia: the bytes are not of an allowed type (field ``file``).
        InvalidInput: the file is empty (field ``file``).
    """
    settings = _node_of(fed_or_node).settings.media
    key = secrets.token_hex(16)
    temp_path = local_path(settings.dir, key).with_name(f".{key}.part")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = bytearray()
    size = 0
    is_text = True
    handle = await asyncio.to_thread(_open_exclusive, temp_path)
    try:
        async for chunk in _iterate(data):
            size += len(chunk)
            if size > settings.max_bytes:
                raise MediaTooLarge(f"the file is larger than {settings.max_bytes} bytes", field="file")
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            if is_text:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    is_text = False
                is_text = is_text and b"\x00" not in chunk
            digest.update(chunk)
            await asyncio.to_thread(handle.write, chunk)
        if size == 0:
            raise InvalidInput("the file is empty", field="file")
        if is_text:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                is_text = False
        accepted = settings.allowed_types
        if allowed is not None:
            accepted = tuple(t for t in accepted if t in allowed)
        content_type = _sniff(bytes(head), is_text=is_text, allowed=accepted)
        await asyncio.to_thread(_finish, handle)
    except BaseException:
        # Also on cancellation (the client went away): nothing of a refused upload stays on disk.
        handle.close()
        temp_path.unlink(missing_ok=True)
        raise
    return StagedUpload(
        key=key,
        temp_path=temp_path,
        content_type=content_type,
        size=size,
        sha256=digest.hexdigest(),
        filename=sanitize_filename(filename),
    )


async def commit_upload(
    fed_or_node: Federation | NodeContext,
    staged: StagedUpload,
    *,
    owner: Actor,
    uploaded_by: Actor,
    description: str,
) -> Media:
    """Move a staged upload into place, then record it. The staged file is consumed either way.

    The row is inserted only once the file is in place, and the file is removed if the insert
    fails, so a row never points at a missing file and a failure leaves nothing behind.

    Raises:
        InvalidInput: description too long; ``owner`` is not a local actor.
    """
    node = _node_of(fed_or_node)
    try:
        description = clean_description(description)
        if not owner.local:
            raise InvalidInput("media can only belong to a local actor", field="as")
        await node.media_store.put(staged.key, staged.temp_path, content_type=staged.content_type)
    except BaseException:
        staged.discard()
        raise
    try:
        async with node.sessions.begin() as session:
            media = Media(
                key=staged.key,
                owner_id=owner.id,
                uploaded_by_id=uploaded_by.id,
                content_type=staged.content_type,
                size=staged.size,
                sha256=staged.sha256,
                filename=staged.filename,
                description=description,
                created_at=node.clock(),
            )
            session.add(media)
    except BaseException:
        await node.media_store.delete(staged.key)
        raise
    log.info(
        "media stored",
        extra={"key": media.key, "owner_id": owner.id, "type": media.content_type, "size": media.size},
    )
    return media


async def store_upload(
    fed_or_node: Federation | NodeContext,
    *,
    owner: Actor,
    uploaded_by: Actor,
    data: Chunks,
    filename: str,
    description: str,
) -> Media:
    """Check, store and record an upload of ``uploaded_by`` that belongs to ``owner``.

    Raises:
        MediaTooLarge, UnsupportedMedia: the file is refused (field ``file``).
        InvalidInput: empty file, description too long, ``owner`` not local.
    """
    clean_description(description)  # refuse before reading the bytes
    staged = await stage_upload(fed_or_node, data, filename=filename)
    return await commit_upload(
        fed_or_node, staged, owner=owner, uploaded_by=uploaded_by, description=description
    )


def attachment_document(uris: UriScheme, media: Media) -> dict[str, Any]:
    """The AS2 attachment of ``media``, with only the fields Mastodon and Lemmy read."""
    document: dict[str, Any] = {
        "type": "Image" if media.content_type.startswith("image/") else "Document",
        "mediaType": media.content_type,
        "url": uris.media(media.key),
    }
    name = media.description or media.filename
    if name:
        document["name"] = name
    return document


def icon_document(uris: UriScheme, media: Media) -> dict[str, Any]:
    """An actor's ``icon`` (its avatar), in the shape Mastodon reads."""
    return {"type": "Image", "mediaType": media.content_type, "url": uris.media(media.key)}


async def avatar_of(session: AsyncSession, actor_id: int) -> Media | None:
    """The upload ``actor_id`` shows as their avatar, if any."""
    return await session.scalar(select(Media).where(Media.avatar_of_id == actor_id))


async def attach(session: AsyncSession, *, owner: Actor, keys: list[str], object_id: int) -> list[Media]:
    """Link media uploaded for ``owner`` to the object ``object_id``; returns them in ``keys`` order.

    Attaching again to the same object is a no-op. On error the caller's transaction must be
    rolled back (the usual ``sessions.begin()`` block does that).

    Raises:
        InvalidInput: a key is unknown, belongs to another owner, or is attached to another
            object (field ``attachment``; foreign and unknown keys get the same answer).
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return []
    unknown = InvalidInput("unknown media key in attachment", field="attachment")
    if not all(isinstance(key, str) and KEY_RE.fullmatch(key) for key in wanted):
        raise unknown
    rows = {m.key: m for m in await session.scalars(select(Media).where(Media.key.in_(wanted)))}
    for key in wanted:
        media = rows.get(key)
        if media is None or media.owner_id != owner.id:
            raise unknown
        if media.avatar_of_id is not None:
            raise InvalidInput(f"media {key} is an avatar", field="attachment")
        if media.object_id is not None and media.object_id != object_id:
            raise InvalidInput(f"media {key} is already attached to another object", field="attachment")
    # Conditional, so that two publications racing for one upload cannot both take it.
    result = await session.execute(
        update(Media)
        .where(
            Media.key.in_(wanted),
            Media.owner_id == owner.id,
            Media.avatar_of_id.is_(None),
            (Media.object_id.is_(None)) | (Media.object_id == object_id),
        )
        .values(object_id=object_id)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != len(wanted):
        raise InvalidInput("media is already attached to another object", field="attachment")
    for media in rows.values():
        set_committed_value(media, "object_id", object_id)  # the UPDATE above already wrote it
    return [rows[key] for key in wanted]


async def read(
    fed_or_node: Federation | NodeContext, key: str, viewer: visibility.Viewer
) -> tuple[Media, bool]:
    """The media ``key`` and whether it is private (served to ``viewer`` only).

    Its file is read with ``node.media_store.open``.

    Served: media not attached yet (the key is an unguessable capability), and media of a live
    object that ``viewer`` may read: the read filter decides, as for the object itself, so the
    members of an association download the attachments of its members-only content (security
    case 60). Anything else answers like an unknown key.

    Raises:
        NotFound: bad or unknown key, unreadable or deleted object.
    """
    node = _node_of(fed_or_node)
    missing = NotFound("no such media")
    if not KEY_RE.fullmatch(key):
        raise missing
    private = False
    async with node.sessions() as session:
        media = await session.scalar(select(Media).where(Media.key == key))
        if media is None:
            raise missing
        if media.object_id is not None:
            obj = await session.get(RemoteObject, media.object_id)
            if (
                obj is None
                or obj.deleted_at is not None
                or not await visibility.can_read_object(session, viewer, obj)
            ):
                raise missing
            private = obj.visibility not in PUBLICLY_READABLE
    return media, private
