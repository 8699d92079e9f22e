"""A member's avatar (issue 16), on both engines: uploaded from the account page (a streamed
multipart form, CSRF first, images only by their bytes, ``media.max_bytes``) or set from the API
with an upload's key; the actor document's ``icon``, the profile page, an ``Update{Person}`` on
every change, and the unused-uploads cleanup that keeps an avatar in use and removes a replaced one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from federation.types import utc_now
from federation.validation import validate
from server.db.models import Activity, Actor, Follow, Media
from server.services.errors import InvalidInput
from server.services.media import uploads as media_service
from tests.server.test_account_rights import AP, _fan_out_all, _id, _relate, _remote
from tests.server.test_media import HTML, png
from tests.server.test_web_account import PASSWORD, _csrf, _sign_in
from tests.support.nodes import Node, running_node

MAX_BYTES = 4096


@pytest.fixture
async def small_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """A request body limit below the media limit (an avatar streams past it), no worker."""
    async with running_node(
        tmp_path / "node",
        database_url,
        worker={"in_process": False},
        server={"max_body_bytes": 1024},
        media={"max_bytes": MAX_BYTES},
    ) as running:
        yield running


def _avatar_form(csrf: str | None, data: bytes, *, filename: str = "me.png", csrf_last: bool = False) -> Any:
    body = aiohttp.FormData(quote_fields=False)
    if csrf is not None and not csrf_last:
        body.add_field("csrf", csrf)
    body.add_field("avatar", data, filename=filename, content_type="image/png")
    if csrf is not None and csrf_last:
        body.add_field("csrf", csrf)
    return body


async def _upload(node: Node, data: bytes, **options: Any) -> Any:
    csrf = _csrf(await (await node.client.get("/account")).text())
    return await node.client.post(
        "/account/avatar", data=_avatar_form(csrf, data, **options), allow_redirects=False
    )


async def _actor(node: Node, username: str) -> dict[str, Any]:
    return await (await node.client.get(f"/users/{username}", headers=AP)).json(content_type=None)  # type: ignore[no-any-return]


async def _updates(node: Node) -> list[dict[str, Any]]:
    async with node.sessions() as session:
        rows = await session.scalars(select(Activity).where(Activity.type == "Update").order_by(Activity.id))
        return [row.document["object"] for row in rows]


async def _media_rows(node: Node) -> dict[str, int | None]:
    async with node.sessions() as session:
        return {m.key: m.avatar_of_id for m in await session.scalars(select(Media))}


async def test_avatar_from_the_account_page(small_node: Node) -> None:
    node = small_node
    await node.create_association("collectif")
    lea = await node.add_member("lea", "collectif")
    follower = await _remote(node, "zoe")
    await _relate(
        node,
        follow=Follow(
            follower_id=follower.id, followed_id=await _id(node, lea), state="accepted", created_at=utc_now()
        ),
    )
    await _sign_in(node.client, "lea")
    page = await (await node.client.get("/account")).text()
    assert 'enctype="multipart/form-data"' in page and 'id="avatar-hint"' in page

    # Refused: not an image by its bytes (whatever the name), too large, no file, no CSRF token.
    for data, status in ((HTML, 415), (b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", 415), (b"hello", 415)):
        refused = await _upload(node, data)
        text = await refused.text()
        assert refused.status == status, (data, text[:200])
        assert 'id="avatar-error"' in text and 'aria-invalid="true"' in text
    too_large = await _upload(node, png(40, 40, noise=True))
    assert MAX_BYTES < len(png(40, 40, noise=True))
    assert too_large.status == 413 and 'id="avatar-error"' in await too_large.text()
    empty = await _upload(node, b"", filename="")
    assert empty.status == 400 and 'id="avatar-error"' in await empty.text()
    forged = await node.client.post(
        "/account/avatar", data=_avatar_form(None, png(2, 2)), allow_redirects=False
    )
    assert forged.status == 403
    wrong = await node.client.post(
        "/account/avatar", data=_avatar_form("nope", png(2, 2)), allow_redirects=False
    )
    assert wrong.status == 403
    csrf = _csrf(page)
    late = await node.client.post(
        "/account/avatar", data=_avatar_form(csrf, png(2, 2), csrf_last=True), allow_redirects=False
    )
    assert late.status == 403  # the token must come before the file is read
    assert await _media_rows(node) == {} and await _updates(node) == []
    assert "icon" not in await _actor(node, "lea")

    # Accepted: larger than the request body limit, within media.max_bytes.
    image = png(20, 20, noise=True)
    assert node.settings.server.max_body_bytes < len(image) <= MAX_BYTES
    done = await _upload(node, image, filename="photo.txt")  # the name does not matter
    assert done.status == 303 and done.headers["Location"] == "/account?done=avatar"
    actor = await _actor(node, "lea")
    icon = actor["icon"]
    assert icon["type"] == "Image" and icon["mediaType"] == "image/png"
    validate(actor, "entraide/actor")  # the published actor schema, icon included
    served = await node.client.get(icon["url"].removeprefix(node.uris.origin))
    assert served.status == 200 and served.content_type == "image/png" and await served.read() == image
    profile = await (await node.client.get("/users/lea", headers={"Accept": "text/html"})).text()
    assert f'<img class="avatar" src="{icon["url"]}" alt=""' in profile
    updates = await _updates(node)
    assert len(updates) == 1 and updates[0]["icon"] == icon
    planned = await _fan_out_all(node)
    assert {inbox for kind, _, inbox in planned if kind == "Update"} == {follower.inbox_iri}
    first_key = icon["url"].rsplit("/", 1)[-1]

    # The cleanup of unused uploads keeps the avatar in use, long after it was uploaded.
    later = utc_now() + timedelta(days=3)
    assert await media_service.remove_unattached(node.fed.node, now=later) == 0
    assert first_key in await _media_rows(node)

    # Replaced: the new one is shown and announced; the old one is cleaned, the new one kept.
    second = png(3, 3)
    assert (await _upload(node, second)).status == 303
    new_icon = (await _actor(node, "lea"))["icon"]
    assert new_icon["url"] != icon["url"]
    assert (await _updates(node))[-1]["icon"] == new_icon
    assert await media_service.remove_unattached(node.fed.node, now=later) == 1
    rows = await _media_rows(node)
    assert first_key not in rows and list(rows.values()) == [await _id(node, lea)]
    assert (await node.client.get(icon["url"].removeprefix(node.uris.origin))).status == 404

    # Removed: no icon, an Update without it, and the file goes with the next cleanup.
    csrf = _csrf(await (await node.client.get("/account")).text())
    removed = await node.client.post("/account/avatar/remove", data={"csrf": csrf}, allow_redirects=False)
    assert removed.status == 303 and removed.headers["Location"] == "/account?done=avatar_removed"
    assert "icon" not in await _actor(node, "lea")
    updates = await _updates(node)
    assert len(updates) == 3 and "icon" not in updates[-1]
    assert await media_service.remove_unattached(node.fed.node, now=later) == 1
    assert await _media_rows(node) == {}


async def test_avatar_from_the_api(small_node: Node) -> None:
    node = small_node
    await node.create_association("collectif")
    lea = await node.add_member("lea", "collectif")
    await node.add_member("max", "collectif")
    auth = {"Authorization": f"Bearer {await node.token('lea')}"}
    other = {"Authorization": f"Bearer {await node.token('max')}"}

    async def upload(data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        answer = await node.client.post(
            "/api/media", data=data, headers={**headers, "Content-Type": "application/octet-stream"}
        )
        assert answer.status == 201, await answer.text()
        return await answer.json()  # type: ignore[no-any-return]

    image = await upload(png(4, 4), auth)
    text = await upload(b"just some words\n", auth)
    foreign = await upload(png(5, 5), other)
    assert (await (await node.client.get("/api/account/profile", headers=auth)).json())["icon"] is None

    # Refused, with the field named: not an image, not the caller's, not a key, and no Update.
    for value in (text["key"], foreign["key"], "../etc/passwd", "0" * 32):
        bad = await node.client.patch("/api/account/profile", json={"icon": value}, headers=auth)
        problem = await bad.json()
        assert bad.status == 400 and problem.get("field") == "icon", problem
    assert await _updates(node) == []

    done = await node.client.patch("/api/account/profile", json={"icon": image["key"]}, headers=auth)
    body = await done.json()
    assert done.status == 200 and body["update"] is not None
    assert body["icon"] == {"type": "Image", "mediaType": "image/png", "url": image["url"]}
    assert (await _actor(node, "lea"))["icon"]["url"] == image["url"]
    # The same avatar by its URL: nothing changed, no Update.
    same = await node.client.patch("/api/account/profile", json={"icon": image["url"]}, headers=auth)
    assert same.status == 200 and (await same.json())["update"] is None
    assert len(await _updates(node)) == 1
    # An avatar cannot be attached to a post.
    async with node.sessions.begin() as session:
        owner = await session.get_one(Actor, await _id(node, lea))
        with pytest.raises(InvalidInput) as refused:
            await media_service.attach(session, owner=owner, keys=[image["key"]], object_id=1)
    assert refused.value.context["field"] == "attachment"
    # null removes it.
    gone = await node.client.patch("/api/account/profile", json={"icon": None}, headers=auth)
    assert gone.status == 200 and (await gone.json())["icon"] is None
    assert "icon" not in await _actor(node, "lea") and len(await _updates(node)) == 2


async def test_a_deleted_account_loses_its_avatar(small_node: Node) -> None:
    node = small_node
    await node.create_association("collectif")
    await node.add_member("lea", "collectif")
    auth = {"Authorization": f"Bearer {await node.token('lea')}"}
    answer = await node.client.post(
        "/api/media", data=png(2, 2), headers={**auth, "Content-Type": "application/octet-stream"}
    )
    key = (await answer.json())["key"]
    assert (await node.client.patch("/api/account/profile", json={"icon": key}, headers=auth)).status == 200
    deleted = await node.client.post("/api/account/delete", json={"password": PASSWORD}, headers=auth)
    assert deleted.status == 200, await deleted.text()
    assert await _media_rows(node) == {key: None}  # unlinked: the next cleanup removes it
    later = utc_now() + timedelta(days=2)
    assert await media_service.remove_unattached(node.fed.node, now=later) == 1
    assert (await node.client.get(f"/media/{key}")).status == 404
