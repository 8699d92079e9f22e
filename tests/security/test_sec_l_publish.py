"""Publishing from the browser and members' drafts (issue 17), on both engines: case 81, a draft
seen, listed or sent before an editor publishes it; case 82, a publishing form posted from another
site, without the session's token, or by a member who may not act for the association, or a draft
decided twice."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from server.db.models import Activity, Delivery, Draft, Job, RemoteObject
from tests.server.test_web_account import _csrf
from tests.server.test_web_publish import ALERT, HTML, _as, _get, _post, _world
from tests.support.nodes import Node
from tests.support.signed_inbox import settle

SECRET = "Brouillon confidentiel"


async def test_sec_81_a_draft_is_neither_shown_listed_nor_sent_before_publication(node: Node) -> None:
    # Given paul's members-only draft in alpha, and zoe, another member
    await _world(node)
    await node.add_member("zoe", "alpha")
    await _as(node, "paul")
    fields = {**ALERT, "name": SECRET, "content": SECRET, "visibility": "members"}
    submitted = await _post(
        node, "/groups/alpha/drafts/new/alert", "/groups/alpha/drafts/new/alert", **fields
    )
    assert submitted.status == 303
    draft_id = await node.scalar(select(Draft.id))
    # Then nothing of it is content, an activity, a job or a delivery
    async with node.sessions() as session:
        stored = [repr(row.document) for row in (await session.scalars(select(RemoteObject))).all()] + [
            repr(j.payload) for j in (await session.scalars(select(Job))).all()
        ]
        assert await session.scalar(select(Activity.id)) is None
        assert await session.scalar(select(Delivery.id)) is None
    assert not any(SECRET in text for text in stored)
    # and no one but its author and alpha's editors reads it, by page or by API
    await _as(node, "zoe")
    assert SECRET not in await _get(node, "/groups/alpha/drafts")
    zoe = await node.token("zoe")
    listing = await node.client.get(
        "/api/associations/alpha/drafts", headers={"Authorization": f"Bearer {zoe}"}
    )
    assert SECRET not in await listing.text()
    await _as(node, "bea")  # admin of another association
    await _get(node, "/groups/alpha/drafts", 403)
    node.client.session.cookie_jar.clear()
    for path in (
        "/groups/alpha",
        "/groups/alpha?tab=alerts",
        "/groups/alpha/outbox?page=true",
        "/groups/alpha/feed.atom",
        "/api/associations/alpha/alerts",
        f"/groups/alpha/drafts/{draft_id}",
    ):
        response = await node.client.get(path)
        assert SECRET not in await response.text(), path
    response = await node.client.get("/groups/alpha/drafts", headers=HTML, allow_redirects=False)
    assert response.status == 303  # a visitor is sent to sign in
    await settle(node)  # the in-process worker ran everything due (a fixed sleep proved nothing under load)
    assert await node.scalar(select(Delivery.id)) is None


async def test_sec_82_publishing_forms_refuse_other_sites_missing_tokens_and_members_without_the_role(
    node: Node,
) -> None:
    # Given alpha's admin, a plain member and a pending draft
    await _world(node)
    await _as(node, "paul")
    await _post(node, "/groups/alpha/drafts/new/alert", "/groups/alpha/drafts/new/alert", **ALERT)
    draft_id = await node.scalar(select(Draft.id))
    before = await node.row_counts()
    # When paul (a member, not an editor) posts every editor's form with his valid token
    csrf = _csrf(await _get(node, "/groups/alpha/drafts"))
    for action in (
        "/groups/alpha/manage/new/alert",
        "/groups/alpha/manage/endorse",
        f"/groups/alpha/drafts/{draft_id}/publish",
        f"/groups/alpha/drafts/{draft_id}/refuse",
    ):
        response = await node.client.post(
            action, data={"csrf": csrf, **ALERT}, headers=HTML, allow_redirects=False
        )
        # Then he is refused
        assert response.status == 403, action
    # And alice's session cannot be ridden by another site, or without its token
    await _as(node, "alice")
    csrf = _csrf(await _get(node, "/groups/alpha/manage"))
    for headers, data in (
        ({**HTML, "Origin": "https://evil.example"}, {"csrf": csrf, **ALERT}),
        (HTML, ALERT),
        (HTML, {"csrf": csrf[:-1], **ALERT}),
    ):
        response = await node.client.post(
            "/groups/alpha/manage/new/alert", data=data, headers=headers, allow_redirects=False
        )
        assert response.status == 403
    after = await node.row_counts()
    assert {**after, "web_sessions": 0} == {**before, "web_sessions": 0}
    # And a draft is published once, however many times it is asked
    first, second = await asyncio.gather(
        _post(node, "/groups/alpha/drafts", f"/groups/alpha/drafts/{draft_id}/publish"),
        _post(node, "/groups/alpha/drafts", f"/groups/alpha/drafts/{draft_id}/publish"),
    )
    assert sorted([first.status, second.status]) == [303, 400]
    async with node.sessions() as session:
        alerts = (await session.scalars(select(RemoteObject.id).where(RemoteObject.kind == "alert"))).all()
    assert len(alerts) == 1
