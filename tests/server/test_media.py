"""Attachments: upload (type sniffed from the bytes, size limit while streaming), safe serving, attach."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from federation.uris import UriScheme
from server.cli import main
from server.config import ConfigError, load_settings
from server.db.models import Actor, Job, Media, RemoteObject
from server.services.actors.keys import create_secret_file
from server.services.errors import InvalidInput
from server.services.media import uploads as media_service
from tests.support.nodes import Node, running_node

PROBLEM = "application/problem+json"
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "public, max-age=31536000, immutable",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
AS2_NOTE = (
    b'\xef\xbb\xbf  {"@context":"https://www.w3.org/ns/activitystreams","type":"Note",'
    b'"attributedTo":"https://asso.example/users/alice","content":"Alice soutient..."}'
)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="4"/></svg>'


def png(width: int = 1, height: int = 1, *, noise: bool = False) -> bytes:
    """A real PNG (8-bit RGB); ``noise`` makes it incompressible, hence about 3 bytes a pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rng = random.Random(7)
    rows = b"".join(
        b"\x00" + (rng.randbytes(3 * width) if noise else b"\xff\x00\x00" * width) for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def form(data: bytes, *, filename: str = "photo.png", content_type: str = "image/png", **fields: str) -> Any:
    body = aiohttp.FormData(quote_fields=False)  # as browsers send names: UTF-8, not %-encoded
    body.add_field("file", data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        body.add_field(name, value)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def files_on_disk(node: Node) -> list[Path]:
    root = node.settings.media.dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def alice(node: Node, role: str = "admin") -> str:
    """An association ``demo`` with alice as ``role``; alice's token."""
    await node.create_association("demo")
    await node.add_member("alice", "demo", role=role)
    return await node.token("alice")


async def upload(node: Node, token: str, body: Any, **params: str) -> aiohttp.ClientResponse:
    return await node.client.post("/api/media", data=body, params=params, headers=bearer(token))


async def assert_refused(
    node: Node, response: aiohttp.ClientResponse, status: int, before: dict[str, int]
) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    problem: dict[str, Any] = await response.json(content_type=None)
    assert problem["status"] == status
    assert await node.row_counts() == before
    assert files_on_disk(node) == []
    return problem


@pytest.fixture
async def small_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """A node whose uploads may be 4 KiB, more than its 1 KiB request body limit."""
    async with running_node(
        tmp_path / "small", database_url, server={"max_body_bytes": 1024}, media={"max_bytes": 4096}
    ) as running:
        yield running


# --- upload and serve --------------------------------------------------------------------------


async def test_png_upload_is_served_back_with_safe_headers(node: Node) -> None:
    # Given a member's token and a real PNG
    token = await alice(node)
    image = png(2, 2)
    # When it is uploaded with a description
    response = await upload(node, token, form(image, description="Un carré rouge"))
    # Then it is stored under a random key and described as an AS2 Image
    assert response.status == 201, await response.text()
    body = await response.json()
    key = body["key"]
    url = node.uris.media(key)
    assert body == {
        "key": key,
        "url": url,
        "mediaType": "image/png",
        "size": len(image),
        "sha256": hashlib.sha256(image).hexdigest(),
        "attachment": {"type": "Image", "mediaType": "image/png", "url": url, "name": "Un carré rouge"},
    }
    assert response.headers["Location"] == url
    [stored] = files_on_disk(node)
    assert stored == node.settings.media.dir / key[:2] / key
    assert stored.read_bytes() == image and stored.stat().st_mode & 0o777 == 0o640
    # And it is served back, byte for byte, with headers that keep browsers from running it
    served = await node.client.get(f"/media/{key}")
    assert served.status == 200
    assert await served.read() == image
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"].startswith("inline")
    assert served.headers["ETag"] == f'"{body["sha256"]}"'
    assert served.headers["Content-Length"] == str(len(image))
    for name, value in SAFE_HEADERS.items():
        assert served.headers[name] == value, name
    # And a cache that holds it is told it has not changed
    again = await node.client.get(f"/media/{key}", headers={"If-None-Match": served.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == served.headers["ETag"]
    other = await node.client.get(f"/media/{key}", headers={"If-None-Match": '"0000"'})
    assert other.status == 200
    head = await node.client.head(f"/media/{key}")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(image))


async def test_claimed_type_is_ignored_png_sent_as_html_is_served_as_png(node: Node) -> None:
    token = await alice(node)
    response = await upload(node, token, form(png(), filename="page.html", content_type="text/html"))
    assert response.status == 201
    key = (await response.json())["key"]
    served = await node.client.get(f"/media/{key}")
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"] == "inline; filename*=UTF-8''page.html"


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (HTML, "photo.png"),  # HTML claiming to be a PNG
        (SVG, "logo.svg"),  # SVG runs scripts when opened
        (b"Bonjour,\n<script>alert(1)</script>", "notes.txt"),  # text that a browser would run
        (AS2_NOTE, "tract.json"),  # type confusion: JSON a careless peer would take for our Note
        (b"bonjour\x00le monde", "notes.txt"),  # text with a NUL is not text
        (b"caf\xe9 au lait", "latin1.txt"),  # not UTF-8
        (b"PK\x03\x04" + bytes(200), "guide.docx"),  # office documents are out
    ],
    ids=["html-as-png", "svg", "script-in-text", "as2-json", "text-with-nul", "latin-1-text", "zip"],
)
async def test_refused_types_are_415_and_change_nothing(node: Node, data: bytes, filename: str) -> None:
    token = await alice(node)
    before = await node.row_counts()
    response = await upload(node, token, form(data, filename=filename, content_type="image/png"))
    problem = await assert_refused(node, response, 415, before)
    assert problem["code"] == "unsupported_media_type" and problem["field"] == "file"


async def test_plain_text_is_accepted_and_served_as_a_download(node: Node) -> None:
    token = await alice(node)
    text = "Permanence le mardi — 14 h à 17 h\n".encode()
    response = await upload(node, token, form(text, filename="horaires été.txt", content_type="text/html"))
    assert response.status == 201
    body = await response.json()
    assert body["mediaType"] == "text/plain" and body["attachment"]["type"] == "Document"
    served = await node.client.get(f"/media/{body['key']}")
    assert await served.read() == text
    assert served.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert (
        served.headers["Content-Disposition"] == "attachment; filename*=UTF-8''horaires%20%C3%A9t%C3%A9.txt"
    )
    assert served.headers["Content-Security-Policy"] == SAFE_HEADERS["Content-Security-Policy"]


async def test_pdf_is_served_inline_as_a_document(node: Node) -> None:
    token = await alice(node)
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    response = await upload(node, token, form(pdf, filename="guide.pdf", content_type="text/html"))
    body = await response.json()
    assert body["mediaType"] == "application/pdf"
    assert body["attachment"] == {
        "type": "Document",
        "mediaType": "application/pdf",
        "url": body["url"],
        "name": "guide.pdf",
    }
    served = await node.client.get(f"/media/{body['key']}")
    assert served.headers["Content-Type"] == "application/pdf"
    assert served.headers["Content-Disposition"] == "inline; filename*=UTF-8''guide.pdf"


async def test_raw_octet_stream_upload(node: Node) -> None:
    token = await alice(node)
    image = png(3, 1)
    response = await node.client.post(
        "/api/media",
        data=image,
        params={"filename": "../../etc/passwd\x1b[31m", "description": "Plan d'accès"},
        headers={**bearer(token), "Content-Type": "application/octet-stream"},
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["mediaType"] == "image/png" and body["size"] == len(image)
    async with node.sessions() as session:
        row = await session.scalar(select(Media).where(Media.key == body["key"]))
    assert row is not None
    assert row.filename == "passwd[31m"  # no directories, no control characters: metadata only
    assert row.description == "Plan d'accès"
    assert (await (await node.client.get(f"/media/{body['key']}")).read()) == image


async def test_other_request_types_are_415(node: Node) -> None:
    token = await alice(node)
    before = await node.row_counts()
    response = await node.client.post(
        "/api/media", data=png(), headers={**bearer(token), "Content-Type": "image/png"}
    )
    await assert_refused(node, response, 415, before)


async def test_malformed_multipart_is_400(node: Node) -> None:
    token = await alice(node)
    before = await node.row_counts()
    for content_type, data in [
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nab',
        ),
        ("multipart/form-data", b"no boundary at all"),
        ("multipart/form-data; boundary=xyz", b"garbage without a boundary"),
    ]:
        response = await node.client.post(
            "/api/media", data=data, headers={**bearer(token), "Content-Type": content_type}
        )
        await assert_refused(node, response, 400, before)
    no_file = aiohttp.FormData()
    no_file.add_field("description", "rien", content_type="text/plain")  # forces multipart
    problem = await assert_refused(node, await upload(node, token, no_file), 400, before)
    assert problem["field"] == "file"


async def test_empty_file_and_long_description_are_400(node: Node) -> None:
    token = await alice(node)
    before = await node.row_counts()
    problem = await assert_refused(node, await upload(node, token, form(b"")), 400, before)
    assert problem["field"] == "file"
    response = await upload(node, token, form(png(), description="x" * 1501))
    assert (await assert_refused(node, response, 400, before))["field"] == "description"
    # also when the description comes after the file part
    late = aiohttp.FormData()
    late.add_field("file", png(), filename="a.png", content_type="image/png")
    late.add_field("description", "y" * 1501)
    assert (await assert_refused(node, await upload(node, token, late), 400, before))[
        "field"
    ] == "description"


# --- size ------------------------------------------------------------------------------------------


async def test_oversize_upload_is_413_naming_file_and_leaves_nothing(small_node: Node) -> None:
    node = small_node
    token = await alice(node)
    before = await node.row_counts()
    big = png(40, 40, noise=True)
    assert len(big) > 4096
    problem = await assert_refused(node, await upload(node, token, form(big)), 413, before)
    assert problem["code"] == "media_too_large" and problem["field"] == "file"
    raw = await node.client.post(
        "/api/media", data=big, headers={**bearer(token), "Content-Type": "application/octet-stream"}
    )
    assert (await assert_refused(node, raw, 413, before))["field"] == "file"

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    chunked = await node.client.post(
        "/api/media", data=stream(), headers={**bearer(token), "Content-Type": "application/octet-stream"}
    )
    assert (await assert_refused(node, chunked, 413, before))["field"] == "file"


async def test_upload_limit_is_media_max_bytes_not_the_request_body_limit(small_node: Node) -> None:
    node = small_node
    token = await alice(node)
    image = png(30, 30, noise=True)
    assert node.settings.server.max_body_bytes < len(image) <= node.settings.media.max_bytes
    response = await upload(node, token, form(image))
    assert response.status == 201, await response.text()
    raw = await node.client.post(
        "/api/media", data=image, headers={**bearer(token), "Content-Type": "application/octet-stream"}
    )
    assert raw.status == 201, await raw.text()
    assert await (await node.client.get(f"/media/{(await raw.json())['key']}")).read() == image


async def test_store_upload_streams_and_stops_at_the_limit(small_node: Node) -> None:
    """The service refuses on the chunk that crosses the limit and never reads further."""
    node = small_node
    await alice(node)
    read: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1_000):
            read.append(i)
            yield b"a" * 1000

    async with node.sessions() as session:
        person = await session.scalar(select(Actor).where(Actor.handle == "alice"))
    assert person is not None
    with pytest.raises(media_service.MediaTooLarge):
        await media_service.store_upload(
            node.fed, owner=person, uploaded_by=person, data=endless(), filename="a.txt", description=""
        )
    assert len(read) == 5  # 5 000 bytes > 4 096
    assert files_on_disk(node) == []


async def test_file_is_removed_when_the_row_cannot_be_inserted(node: Node) -> None:
    await alice(node)
    async with node.sessions() as session:
        person = await session.scalar(select(Actor).where(Actor.handle == "alice"))
    assert person is not None
    ghost = Actor(id=987_654, local=True, type="Person", handle="ghost", iri="http://x/ghost")
    before = await node.row_counts()
    with pytest.raises(IntegrityError):  # the owner does not exist: the foreign key refuses the row
        await media_service.store_upload(
            node.fed, owner=ghost, uploaded_by=person, data=png(), filename="a.png", description=""
        )
    assert await node.row_counts() == before
    assert files_on_disk(node) == []


# --- who may upload ----------------------------------------------------------------------------------


async def test_upload_without_or_with_a_bad_token_is_401(node: Node) -> None:
    await alice(node)
    before = await node.row_counts()
    response = await node.client.post("/api/media", data=form(png()))
    await assert_refused(node, response, 401, before)
    response = await node.client.post("/api/media", data=form(png()), headers=bearer("ent_nope"))
    await assert_refused(node, response, 401, before)


async def test_read_scope_token_is_403(node: Node) -> None:
    await alice(node)
    token = await node.token("alice", scope="read")
    before = await node.row_counts()
    await assert_refused(node, await upload(node, token, form(png())), 403, before)


async def test_member_may_not_upload_as_the_association(node: Node) -> None:
    token = await alice(node, role="member")
    before = await node.row_counts()
    response = await upload(node, token, form(png()), **{"as": "demo"})
    await assert_refused(node, response, 403, before)
    # the same when `as` is a form field that comes after the file
    late = form(png())
    late.add_field("as", "demo")
    await assert_refused(node, await upload(node, token, late), 403, before)
    unknown = await upload(node, token, form(png()), **{"as": "nowhere"})
    assert (await assert_refused(node, unknown, 400, before))["field"] == "as"


@pytest.mark.parametrize("role", ["admin", "moderator"])
async def test_admins_and_moderators_upload_for_the_association(node: Node, role: str) -> None:
    token = await alice(node, role=role)
    response = await upload(node, token, form(png(), **{"as": "demo"}))
    assert response.status == 201, await response.text()
    async with node.sessions() as session:
        row = await session.scalar(select(Media).where(Media.key == (await response.json())["key"]))
        assert row is not None
        owner = await session.get(Actor, row.owner_id)
        uploader = await session.get(Actor, row.uploaded_by_id)
    assert owner is not None and owner.handle == "demo" and owner.type == "Group"
    assert uploader is not None and uploader.handle == "alice"


async def test_without_as_the_uploader_owns_the_file(node: Node) -> None:
    token = await alice(node, role="member")
    response = await upload(node, token, form(png()))
    assert response.status == 201
    async with node.sessions() as session:
        row = await session.scalar(select(Media))
        assert row is not None
        owner = await session.get(Actor, row.owner_id)
    assert owner is not None and owner.handle == "alice" and row.uploaded_by_id == owner.id


# --- serving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/media/..%2F..%2Fentraide.toml",
        "/media/%2e%2e%2fsecret.key",
        "/media/../secret.key",
        "/media/" + "A" * 32,
        "/media/" + "a" * 31,
        "/media/" + "a" * 33,
        "/media/" + "0" * 32,  # well formed, unknown
        "/media/" + "0" * 30 + "/x",
    ],
)
async def test_bad_or_unknown_keys_are_the_usual_404(node: Node, path: str) -> None:
    # Written on the socket as is: an HTTP client would resolve the dot segments first.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.settings.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"404", head
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["code"] == "not_found"


async def _public_note(node: Node, token: str) -> RemoteObject:
    result = await node.post_outbox(
        "/groups/demo",
        token,
        {"type": "Note", "content": "<p>Guide</p>", "to": ["https://www.w3.org/ns/activitystreams#Public"]},
    )
    async with node.sessions() as session:
        obj = await session.scalar(select(RemoteObject).where(RemoteObject.iri == result["object"]))
    assert obj is not None and obj.visibility == "public"
    return obj


async def test_attach_links_own_media_and_refuses_foreign_keys(node: Node) -> None:
    token = await alice(node)
    await node.add_member("bob", "demo", role="member")
    group_key = (await (await upload(node, token, form(png(), **{"as": "demo"}))).json())["key"]
    alice_key = (await (await upload(node, token, form(png(2, 1)))).json())["key"]
    obj = await _public_note(node, token)
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "demo"))
    assert group is not None
    # Given an upload of the association, attached to its note
    async with node.sessions.begin() as session:
        [attached] = await media_service.attach(session, owner=group, keys=[group_key], object_id=obj.id)
        assert attached.object_id == obj.id
    async with node.sessions.begin() as session:  # again: a no-op
        await media_service.attach(session, owner=group, keys=[group_key, group_key], object_id=obj.id)
    # Then keys of another owner, unknown keys and malformed keys are refused, changing nothing
    before = await node.row_counts()
    for keys in ([alice_key], ["0" * 32], ["../x"], [group_key, alice_key]):
        with pytest.raises(InvalidInput) as refused:
            async with node.sessions.begin() as session:
                await media_service.attach(session, owner=group, keys=keys, object_id=obj.id)
        assert refused.value.context["field"] == "attachment"
    # And media already attached elsewhere cannot be taken by another object
    other = await _public_note(node, token)
    with pytest.raises(InvalidInput):
        async with node.sessions.begin() as session:
            await media_service.attach(session, owner=group, keys=[group_key], object_id=other.id)
    assert (await node.row_counts())["media"] == before["media"]
    async with node.sessions() as session:
        rows = {m.key: m.object_id for m in await session.scalars(select(Media))}
    assert rows == {group_key: obj.id, alice_key: None}


async def test_media_of_a_non_public_object_is_404(node: Node) -> None:
    token = await alice(node)
    key = (await (await upload(node, token, form(png(), **{"as": "demo"}))).json())["key"]
    obj = await _public_note(node, token)
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "demo"))
        assert group is not None
        await media_service.attach(session, owner=group, keys=[key], object_id=obj.id)
    assert (await node.client.get(f"/media/{key}")).status == 200
    async with node.sessions.begin() as session:
        row = await session.get(RemoteObject, obj.id)
        assert row is not None
        row.visibility = "members"
    hidden = await node.client.get(f"/media/{key}")
    assert hidden.status == 404 and hidden.content_type == PROBLEM


def test_attachment_document_names_a_document_by_its_file() -> None:
    uris = UriScheme("https://asso.example")
    media = Media(key="ab" * 16, content_type="application/pdf", filename="guide.pdf", description="")
    assert media_service.attachment_document(uris, media) == {
        "type": "Document",
        "mediaType": "application/pdf",
        "url": f"https://asso.example/media/{'ab' * 16}",
        "name": "guide.pdf",
    }


# --- configuration -----------------------------------------------------------------------------------

MINIMAL = '[server]\norigin = "https://asso.example"\n[database]\nurl = "sqlite+aiosqlite:///db.sqlite3"\n'


def test_media_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "entraide.toml"
    path.write_text(MINIMAL + '[storage]\ndata_dir = "data"\n')
    settings = load_settings(path, environ={})
    assert settings.media.dir == tmp_path.resolve() / "data" / "media"
    assert settings.media.max_bytes == 20 * 1024 * 1024
    assert settings.media.allowed_types == (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
    )


def test_media_settings_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "entraide.toml"
    path.write_text(MINIMAL + '[media]\ndir = "/srv/uploads"\nmax_bytes = 5000\n')
    env = {"ENTRAIDE_MEDIA__MAX_BYTES": "2048", "ENTRAIDE_MEDIA__ALLOWED_TYPES": "image/png, application/pdf"}
    settings = load_settings(path, environ=env)
    assert settings.media.dir == Path("/srv/uploads")
    assert settings.media.max_bytes == 2048
    assert settings.media.allowed_types == ("image/png", "application/pdf")
    assert settings.as_document()["media"]["allowed_types"] == ["image/png", "application/pdf"]


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (MINIMAL + '[media]\nallowed_types = ["image/svg+xml"]\n', {}),
        (MINIMAL, {"ENTRAIDE_MEDIA__ALLOWED_TYPES": "text/html"}),
        (MINIMAL, {"ENTRAIDE_MEDIA__MAX_BYTES": "ten"}),
        (MINIMAL + "[media]\ncolour = 1\n", {}),
    ],
)
def test_invalid_media_settings_name_the_key(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "entraide.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"media\."):
        load_settings(path, environ=env)


def test_config_check_accepts_the_media_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "entraide.toml"
    path.write_text(MINIMAL + '[media]\nmax_bytes = 1048576\nallowed_types = ["image/png", "text/plain"]\n')
    create_secret_file(tmp_path / "secret.key")
    assert main(["config", "check", "--offline", "--show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out and "[media]" in out and "max_bytes = 1048576" in out


async def test_uploads_no_object_uses_are_removed_after_a_day_with_their_files(node: Node) -> None:
    token = await alice(node)
    attached_key = (await (await upload(node, token, form(png(), **{"as": "demo"}))).json())["key"]
    orphan_key = (await (await upload(node, token, form(png(2, 1)))).json())["key"]
    obj = await _public_note(node, token)
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "demo"))
        assert group is not None
        await media_service.attach(session, owner=group, keys=[attached_key], object_id=obj.id)
    now = node.fed.node.clock()
    # Within the day nothing is removed; a day later only the upload no object uses goes
    assert await media_service.remove_unattached(node.fed.node, now=now) == 0
    later = now + media_service.UNATTACHED_TTL + timedelta(minutes=1)
    assert await media_service.remove_unattached(node.fed.node, now=later) == 1
    async with node.sessions() as session:
        assert (await session.scalars(select(Media.key))).all() == [attached_key]
    assert [p.name for p in files_on_disk(node)] == [attached_key]
    assert (await node.client.get(f"/media/{orphan_key}")).status == 404
    assert (await node.client.get(f"/media/{attached_key}")).status == 200
    # and the cleanup is a periodic job the node keeps queued
    async with node.sessions() as session:
        kinds = (await session.scalars(select(Job.kind).where(Job.state == "queued"))).all()
    assert media_service.MEDIA_CLEANUP in kinds
