"""Uploads (``POST /api/media``) and safe serving (``GET /media/{key}``) of attachments.

The body of an upload is read as a stream (``request.multipart()`` / ``request.content``),
which ``client_max_size`` does not cap: ``media.max_bytes`` is the limit here, checked chunk by
chunk in :mod:`server.services.media.uploads`. Served files carry headers that stop a browser from
running them as a page on our origin (nosniff, a sandboxing CSP, ``attachment`` for anything
that is not an image or a PDF).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from federation import uris as paths
from server.appkeys import NODE
from server.http.auth import viewer_of
from server.http.problems import problem
from server.services.actors import directory
from server.services.context import NodeContext
from server.services.errors import Forbidden, InvalidInput, NotFound, ServiceError, Unauthorized
from server.services.media import uploads as media_service
from server.services.reading import visibility
from server.services.reading.visibility import ViewerKind
from server.services.types import Actor, Media

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

UPLOAD_CHUNK_BYTES: Final = 64 * 1024
MAX_FIELD_BYTES: Final = 8 * 1024  # a 1500-character description is at most 6000 bytes of UTF-8
TEXT_FIELDS: Final = ("description", "as", "filename")
UPLOADER_ROLES: Final = ("admin", "moderator")
# Not in server/http/problems.py's table: only this module raises them, and it answers them here.
REFUSED: Final[dict[type[ServiceError], int]] = {
    media_service.MediaTooLarge: 413,
    media_service.UnsupportedMedia: 415,
}


async def _uploader(request: web.Request) -> Actor:
    viewer = await viewer_of(request, require_for_authorized_fetch=False)
    if viewer.kind is not ViewerKind.LOCAL or viewer.actor_id is None:
        raise Unauthorized("a bearer token with the write scope is required")
    if viewer.scope not in ("write", "admin"):
        raise Forbidden("this token's scope does not allow writing")
    async with request.app[NODE].sessions() as session:
        actor = await directory.by_id(session, viewer.actor_id)
    if actor is None:
        raise Unauthorized("invalid or revoked token")
    return actor


async def _owner(node: NodeContext, uploader: Actor, slug: str | None) -> Actor:
    """The uploader itself, or the association ``slug`` if the uploader is its admin or moderator."""
    if not slug:
        return uploader
    async with node.sessions() as session:
        group = await directory.local_by_handle(session, "Group", slug)
        if group is None:
            raise InvalidInput(f"no association {slug!r} on this node", field="as")
        viewer = visibility.Viewer(ViewerKind.LOCAL, actor_id=uploader.id, actor_iri=uploader.iri)
        role = await visibility.role_in(session, viewer, group)
    if role not in UPLOADER_ROLES:
        raise Forbidden(f"only admins and moderators of {slug!r} may upload files for it")
    return group


async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
        yield chunk


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"{part.name} is too long", field=part.name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{part.name} is not UTF-8 text", field=part.name) from None


def check_encoding(part: BodyPartReader) -> None:
    # RFC 7578 §4.7 deprecates Content-Transfer-Encoding; we take the bytes as sent, so an
    # encoded part would be stored encoded. Refuse rather than guess.
    encoding = part.headers.get("Content-Transfer-Encoding", "binary").lower()
    if (
        encoding not in ("binary", "8bit", "7bit")
        or part.headers.get("Content-Encoding", "identity").lower() != "identity"
    ):
        raise InvalidInput("encoded form parts are not supported; send the file's bytes", field="file")


async def _multipart_upload(request: web.Request, uploader: Actor) -> Media:
    node = request.app[NODE]
    fields: dict[str, str] = {name: request.query.get(name, "") for name in TEXT_FIELDS}
    owner = await _owner(node, uploader, fields["as"]) if fields["as"] else None
    try:
        reader = await request.multipart()
    except (KeyError, ValueError):
        raise InvalidInput("malformed multipart body: no valid boundary", field="file") from None
    staged: media_service.StagedUpload | None = None
    try:
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise InvalidInput("nested multipart bodies are not supported", field="file")
                if part.name == "file":
                    if staged is not None:
                        raise InvalidInput("send one file per request", field="file")
                    check_encoding(part)
                    staged = await media_service.stage_upload(
                        node, part_chunks(part), filename=part.filename or fields["filename"]
                    )
                elif part.name in TEXT_FIELDS:
                    fields[part.name] = await _read_field(part)
                else:
                    raise InvalidInput(f"unexpected form field {part.name!r}", field=part.name or "file")
        except (ValueError, AssertionError, BadHttpMessage):
            raise InvalidInput("malformed multipart body", field="file") from None
        if staged is None:
            raise InvalidInput("the form has no file part", field="file")
        if owner is None or fields["as"] != request.query.get("as", ""):
            owner = await _owner(node, uploader, fields["as"])  # `as` came after the file part
        commit, staged = staged, None
        return await media_service.commit_upload(
            node, commit, owner=owner, uploaded_by=uploader, description=fields["description"]
        )
    finally:
        if staged is not None:
            staged.discard()


async def _raw_upload(request: web.Request, uploader: Actor) -> Media:
    node = request.app[NODE]
    owner = await _owner(node, uploader, request.query.get("as"))
    length = request.content_length
    if length is not None and length > node.settings.media.max_bytes:
        # Known too large: answer before reading anything.
        raise media_service.MediaTooLarge(
            f"the file is larger than {node.settings.media.max_bytes} bytes", field="file"
        )
    return await media_service.store_upload(
        node,
        owner=owner,
        uploaded_by=uploader,
        data=request.content.iter_chunked(UPLOAD_CHUNK_BYTES),
        filename=request.query.get("filename", ""),
        description=request.query.get("description", ""),
    )


@routes.post("/api/media")
async def post_media(request: web.Request) -> web.Response:
    """Upload one file: ``multipart/form-data`` (``file``, ``description``, ``as``) or raw bytes."""
    uploader = await _uploader(request)
    content_type = request.content_type
    try:
        if content_type == "multipart/form-data":
            media = await _multipart_upload(request, uploader)
        elif content_type == "application/octet-stream":
            media = await _raw_upload(request, uploader)
        else:
            raise web.HTTPUnsupportedMediaType(
                text="send multipart/form-data with a file part, or application/octet-stream"
            )
    except (media_service.MediaTooLarge, media_service.UnsupportedMedia) as exc:
        return problem(REFUSED[type(exc)], exc.detail, code=exc.code, field="file")
    uris = request.app[NODE].uris
    url = uris.media(media.key)
    return web.json_response(
        {
            "key": media.key,
            "url": url,
            "mediaType": media.content_type,
            "size": media.size,
            "sha256": media.sha256,
            "attachment": media_service.attachment_document(uris, media),
        },
        status=201,
        headers={"Location": url},
    )


def _served_headers(media: Media, *, private: bool) -> dict[str, str]:
    """``private``: media of non-public content, served to its readers only and never cached."""
    disposition = "inline" if media_service.is_inline(media.content_type) else "attachment"
    name = quote(media.filename or media.key, safe="")
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}",
        "Cache-Control": "public, max-age=31536000, immutable",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if private:
        headers.update({"Cache-Control": "private, no-store", "Vary": "Authorization, Signature"})
    return headers


def _not_modified(request: web.Request, sha256: str) -> bool:
    try:
        etags = request.if_none_match
    except ValueError:
        return False
    return etags is not None and any(etag.value in (sha256, "*") for etag in etags)


@routes.get(paths.MEDIA.replace("{key}", "{key:.+}"))  # any path: a bad key is the usual 404 problem
async def get_media(request: web.Request) -> web.StreamResponse:
    """The file, with the stored (sniffed) type; its SHA-256 is the ETag. HEAD is routed here too."""
    node = request.app[NODE]
    viewer = await viewer_of(request, require_for_authorized_fetch=False)
    media, private = await media_service.read(node, request.match_info["key"], viewer)
    headers = _served_headers(media, private=private)
    if _not_modified(request, media.sha256):
        unchanged = web.Response(status=304, headers=headers)
        unchanged.etag = media.sha256
        return unchanged
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = media.content_type
    if media.content_type.startswith("text/"):
        response.charset = "utf-8"
    response.etag = media.sha256
    async with node.media_store.open(media.key) as stored:
        if stored is None:
            log.warning("media file missing", extra={"key": media.key})
            raise NotFound("no such media")
        response.content_length = stored.size
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in stored.chunks:
                await response.write(chunk)
    await response.write_eof()
    return response
