"""Moderation reports (issue 17), cases 74-76: the reporter's identity never leaves the node nor
reaches the reported party; a reporter cannot flood the queue nor learn of content they could not
read; a report is read and acted on by the association's admins and moderators (and node admins)
only. On both engines, every answer checked against the OpenAPI document."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from sqlalchemy import select

from server.db.models import Activity, Actor, RemoteObject
from server.services.reading import objects as reading
from server.services.reading.visibility import Viewer, ViewerKind
from tests.server.test_reports import PEER_AUTHOR, PEER_NOTE, _act, _file, _node_admin, _queue, _scene
from tests.support.nodes import Node


async def test_sec_74_a_forwarded_report_never_names_the_reporter(node: Node) -> None:
    api, t, _ = await _scene(node)
    await _node_admin(node, "olga")
    report = await _file(api, t["mia"], PEER_NOTE, "Arnaque signalée par une patiente")
    status, done = await _act(api, t["olga"], report, "forward")
    assert status == 200
    async with node.sessions() as session:
        flag = await session.scalar(select(Activity).where(Activity.iri == done["flag"]))
        sender = await session.get(Actor, flag.actor_id) if flag is not None else None
    assert flag is not None and sender is not None and sender.type == "Application"
    assert flag.document["actor"] == sender.iri
    # only the peer's own IRIs, the node's actor and the comment: no member of ours anywhere
    text = json.dumps(flag.document)
    assert node.uris.iri("/users/") not in text and "mia" not in text
    assert flag.document["to"] == ["http://127.0.0.1:9/users/zoe"] and "cc" not in flag.document
    assert flag.document["content"] == "Arnaque signalée par une patiente"


async def test_sec_64_a_forwarded_reports_iri_is_served_to_nobody(node: Node) -> None:
    """The Flag's IRI answers exactly like a missing activity, to a visitor, to the node admin's
    token and to the reported party's signed fetch (it is addressed to them): the comment and the
    targets were for the origin's moderators, in the delivery, once (decision 86)."""
    api, t, _ = await _scene(node)
    await _node_admin(node, "olga")
    report = await _file(api, t["mia"], PEER_NOTE, "Signalé par une patiente du groupe")
    status, done = await _act(api, t["olga"], report, "forward")
    assert status == 200
    flag = done["flag"]
    missing = node.uris.activity("0" * 32)
    answers = []
    for iri in (flag, missing):
        for token in (None, t["olga"], t["mia"]):
            headers = {"Accept": "application/activity+json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            response = await node.client.get(urlsplit(iri).path, headers=headers)
            answers.append((response.status, (await response.json(content_type=None))["status"]))
    assert answers == [(404, 404)] * 6
    async with node.sessions() as session:
        zoe = await session.scalar(select(Actor.id).where(Actor.iri == PEER_AUTHOR))
        as_zoe = Viewer(ViewerKind.REMOTE, actor_id=zoe, actor_iri=PEER_AUTHOR)
        assert await reading.readable_activity(session, as_zoe, flag) is None
        # and yet the Flag is stored, addressed to her: refused, not missing
        stored = await session.scalar(select(Activity).where(Activity.iri == flag))
        assert stored is not None and stored.document["to"] == [PEER_AUTHOR]


async def test_sec_75_a_reporter_cannot_flood_the_queue_nor_probe_hidden_content(node: Node) -> None:
    api, t, posts = await _scene(node)
    async with node.sessions.begin() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == posts["other"]))
        assert row is not None
        row.visibility = "members"  # other's post is now for other's members only
    # zed (a member of other) may report it; mia (demo) gets the answer of a missing object
    before = await node.row_counts()
    hidden = await api.call("POST", "/api/reports", token=t["mia"], body={"target": posts["other"]})
    missing = await api.call("POST", "/api/reports", token=t["mia"], body={"target": posts["other"] + "x"})
    assert hidden[0] == missing[0] == 404 and hidden[1]["detail"] == missing[1]["detail"]
    assert await node.row_counts() == before
    for _ in range(10):
        await _file(api, t["zed"], posts["other"])
    before = await node.row_counts()
    status, _, _ = await api.call("POST", "/api/reports", token=t["zed"], body={"target": posts["other"]})
    assert status == 409 and await node.row_counts() == before


async def test_sec_76_reports_are_read_and_acted_on_by_their_moderators_only(node: Node) -> None:
    api, t, _ = await _scene(node)
    report = await _file(api, t["zed"], node.uris.iri("/users/mo"), "Abus")
    # another association's admin, a member, a read-only token: refused; the reported moderator
    # sees the report without its reporter
    assert (await _queue(api, t["olga"], association="demo"))[0] == 403
    assert (await _queue(api, t["mia"]))[0] == 403
    assert (await _act(api, t["alice_read"], report, "dismiss"))[0] == 403
    for token in (t["olga"], t["mia"], t["zed"]):
        assert (await _act(api, token, report, "dismiss")) == (await _act(api, token, 999999, "dismiss"))
    _, page = await _queue(api, t["mo"])
    assert page["items"][0]["reporter"] is None and "zed" not in json.dumps(page)
    assert (await _queue(api, t["alice"]))[1]["items"][0]["reporter"] == node.uris.iri("/users/zed")
